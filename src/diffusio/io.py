"""File I/O shared by every layer (``train``, ``metrics``, ``image`` and ``papers`` sit above it).

Crash-safe writes: a file is written to a temporary sibling, flushed to disk, then renamed over
its target (``os.replace`` is atomic on POSIX), and the directory entry is synced. A crash at any
instant leaves either the old file or the new one.

Verified tensors: :func:`write_safetensors` / :func:`read_safetensors` store tensors in
`safetensors <https://github.com/huggingface/safetensors>`_ files (never pickles) whose header
metadata carries a SHA-256 digest of the tensors (and optionally the training step), checked on
reading, so a truncated, bit-flipped or misplaced file is reported by name instead of loaded;
:func:`apply_tensors` loads them into a module after checking names and shapes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = [
    "STEP_KEY",
    "apply_tensors",
    "atomic_path",
    "cache_root",
    "json_hash",
    "check_tensors",
    "fsync_dir",
    "read_json",
    "read_jsonl",
    "read_run_description",
    "read_safetensors",
    "tensor_digest",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_safetensors",
    "write_synced",
    "write_text_atomic",
]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so a rename or new entry in it is durable (no-op where directories
    cannot be opened, e.g. on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_synced(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes and fsync them (not atomic by itself: for files inside a temporary folder)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds, sync it and move it over
    ``path``. The parent folder is created if needed; on an exception ``path`` is untouched."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=suffix or target.suffix or ".tmp"
    )
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; use the usual mode
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(
    path: str | os.PathLike, obj: Any, indent: int = 1, strict: bool = False
) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically; returns the path. ``strict`` refuses NaN
    and infinities (which are not JSON) instead of writing them."""
    text = json.dumps(obj, indent=indent, allow_nan=not strict)
    return write_text_atomic(path, text + "\n")


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """diffusio's cache directory: ``cache_dir`` if given, else ``$DIFFUSIO_CACHE``, else
    ``~/.cache/diffusio`` (models, classifiers and results live below it)."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("DIFFUSIO_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "diffusio"


def json_hash(obj: Any) -> str:
    """Eight hex digits identifying a JSON-ready object (sha256 of its sorted-key JSON): the
    names of cached models, classifiers and results."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode("utf-8")).hexdigest()[:8]


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing file raises FileNotFoundError and a malformed one ValueError,
    both naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: corrupt JSON ({err})") from None


def read_run_description(run_dir: str | os.PathLike, filename: str, fmt: str,
                         what: str) -> dict[str, Any]:  # fmt: skip
    """The JSON description ``run_dir/filename`` of a run of kind ``what`` (e.g. "Diffusion
    Policy"), checked to be an object whose ``format`` is ``fmt``: a missing file raises
    FileNotFoundError ("not a <what> run"), another content ValueError, both naming the path."""
    path = Path(run_dir) / filename
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a {what} run (no {filename})")
    info = read_json(path)
    if not isinstance(info, dict) or info.get("format") != fmt:
        raise ValueError(f"{path}: not a diffusio {what} run description")
    return info


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file such as a run's ``metrics.jsonl`` (one per line;
    a torn last line from a crash and non-object lines are skipped; a missing file is [])."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


# --------------------------------------------------------------------------- safetensors
DIGEST_KEY = "diffusio_sha256"
STEP_KEY = "diffusio_step"
"""Header metadata keys: the tensors' SHA-256 digest and the step a file belongs to."""


def _tensor_bytes(t: Tensor) -> bytes:
    import torch

    return t.detach().reshape(-1).view(torch.uint8).numpy().tobytes()


def tensor_digest(tensors: Mapping[str, Tensor]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes (sorted by name; CPU tensors)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{str(t.dtype)}|{tuple(t.shape)}|".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def _prepare_tensors(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Detached, contiguous CPU tensors that share no memory (safetensors refuses aliasing)."""
    from torch import Tensor

    out: dict[str, Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"tensor {name!r} is a {type(t).__name__}, not a torch.Tensor")
        t = t.detach().to("cpu").contiguous()
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if t.numel() and key in seen:
            t = t.clone()
        seen.add(key)
        out[str(name)] = t
    return out


def _safetensors_bytes(tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> bytes:
    from safetensors.torch import save

    tensors = _prepare_tensors(tensors)
    meta = {str(k): str(v) for k, v in metadata.items()}
    meta[DIGEST_KEY] = tensor_digest(tensors)
    return save(tensors, metadata=meta)


def write_safetensors(
    path: str | os.PathLike,
    tensors: Mapping[str, Tensor],
    metadata: Mapping[str, str] | None = None,
    *,
    atomic: bool = True,
) -> Path:
    """Write ``tensors`` to a safetensors file whose metadata carries a SHA-256 digest of the
    tensors (checked by :func:`read_safetensors`); atomically unless ``atomic=False``."""
    path = Path(path)
    data = _safetensors_bytes(tensors, metadata or {})
    if atomic:
        return write_bytes_atomic(path, data)
    write_synced(path, data)
    return path


def _header_metadata(data: bytes) -> dict[str, str]:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    return dict(header.get("__metadata__") or {})


def read_safetensors(
    path: str | os.PathLike, *, step: int | None = None
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read and verify a safetensors file written by :func:`write_safetensors`.

    Returns ``(tensors, metadata)``. Raises FileNotFoundError if the file is missing and
    ValueError naming the file if its header cannot be parsed, its digest does not match its
    tensors (truncation, bit flips) or it belongs to another ``step``.
    """
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    data = path.read_bytes()
    try:
        # clone: the tensors then own writable memory instead of viewing an immutable bytes buffer
        tensors = {k: v.clone() for k, v in load(data).items()}
        metadata = _header_metadata(data)
    except Exception as err:  # safetensors raises its own error type; any failure is corruption
        raise ValueError(f"{path}: corrupt safetensors file ({err})") from None
    expected = metadata.get(DIGEST_KEY)
    if expected is not None and tensor_digest(tensors) != expected:
        raise ValueError(f"{path}: corrupt safetensors file (tensor digest mismatch)")
    if step is not None and metadata.get(STEP_KEY) != str(step):
        raise ValueError(
            f"{path}: belongs to step {metadata.get(STEP_KEY)!r}, expected step {step}"
        )
    return tensors, metadata


def check_tensors(module: nn.Module, tensors: Mapping[str, Tensor], source: str | Path) -> None:
    """Raise ValueError naming ``source`` unless ``tensors`` has exactly ``module``'s state-dict
    names and shapes."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{source}: tensor names do not match the model (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    for name in expected:  # the module's order, so the first mismatch reported is stable
        t = tensors[name]
        if tuple(t.shape) != tuple(expected[name].shape):
            raise ValueError(
                f"{source}: shape mismatch for {name!r}: file has {tuple(t.shape)}, model "
                f"expects {tuple(expected[name].shape)}"
            )


def apply_tensors(module: nn.Module, tensors: Mapping[str, Tensor], source: str | Path) -> None:
    """``module.load_state_dict(tensors)`` after checking names and shapes (errors name
    ``source``)."""
    check_tensors(module, tensors, source)
    module.load_state_dict(dict(tensors), strict=True)
