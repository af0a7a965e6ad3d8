# The two commands: `make demo` (set up + main job) and `make test` (set up + tests).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint bench install-check clean

$(VENV)/.installed: pyproject.toml scripts/setup_env.sh
	bash scripts/setup_env.sh $(VENV) dev

setup: $(VENV)/.installed

demo: setup
	$(PY) -m diffusio list
	$(PY) -m diffusio demo

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q

bench: setup
	bash scripts/setup_env.sh $(VENV) dev,bench
	$(PY) benchmarks/samplers.py

# A plain `pip install .` (no extras) into a fresh venv, built from a copy of the working tree
# (git-tracked and unignored files; no build/ or egg-info in the repo), then a first training.
install-check:
	rm -rf /tmp/diffusio-install-check && mkdir -p /tmp/diffusio-install-check/src
	git ls-files -z --cached --others --exclude-standard | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C /tmp/diffusio-install-check/src
	python3 -m venv /tmp/diffusio-install-check/venv
	/tmp/diffusio-install-check/venv/bin/pip install --quiet "torch==$$($(PY) -c 'import torch; print(torch.__version__.split("+")[0])')"
	/tmp/diffusio-install-check/venv/bin/pip install --quiet /tmp/diffusio-install-check/src
	cd /tmp/diffusio-install-check && venv/bin/diffusio train toy-moons --steps 50 --out run --no-progress

clean:
	rm -rf $(VENV) runs .pytest_cache
