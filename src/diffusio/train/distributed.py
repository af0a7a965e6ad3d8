"""Data-parallel training on one or several processes: who owns the run, who draws what.

The trainer runs unchanged on 1 or N processes started by ``torchrun`` / ``python -m
torch.distributed.run`` (``--nproc_per_node N``, CPU with gloo or GPUs with NCCL, and
``--nnodes`` / ``--rdzv_endpoint`` across machines) or by ``accelerate launch --multi_gpu
--num_processes N`` (which runs torch's launcher, on GPUs or CPUs alike). Note that
``accelerate launch --cpu --num_processes N`` starts a *single* process: for the CPU accelerate
spawns several processes only through MPI (``--mpirun_hostfile``), and otherwise ignores
``--num_processes`` without a word (accelerate 1.x, ``accelerate/commands/launch.py``:
``--cpu`` selects ``simple_launcher``).

The rules (data parallelism as in DistributedDataParallel, Li et al. 2020, "PyTorch
Distributed: Experiences on Accelerating Data Parallel Training"):

* ``config.batch_size`` is the global batch; each of the N processes draws
  :func:`per_process_batch` = ``batch_size / N`` examples per step from its own random streams
  (seeded by :func:`derived_seed` with its rank), and the gradients are averaged over
  processes, so every step follows the gradient of the global batch's mean loss and ``lr`` is
  the learning rate of that batch: one process and N processes train the same objective.
* rank 0 owns the run directory: it alone inspects, validates and creates it and decides
  whether to resume and from which checkpoint (:func:`on_main`); the other ranks wait for that
  decision, receive it (or the same error) and then all load the same checkpoint. Checkpoints
  are written by rank 0 after every rank's generator states were gathered. Several machines
  need the run directory on a shared file system.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "check_launcher",
    "derived_seed",
    "distributed_info",
    "new_accelerator",
    "on_main",
    "per_process_batch",
]

T = TypeVar("T")

_SHARED_ERRORS: dict[str, type[Exception]] = {
    "FileExistsError": FileExistsError,
    "FileNotFoundError": FileNotFoundError,
    "ValueError": ValueError,
}


def new_accelerator(mixed_precision: str, cpu: bool) -> Any:
    """An ``accelerate.Accelerator``. Its process-wide state is a singleton that refuses a
    second mixed-precision setting in one process (a reproduction training an fp32 and a bf16
    model, say); the precision part of it is reset when it differs, the distributed part kept."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    state = AcceleratorState._shared_state
    if state and str(state.get("_mixed_precision", mixed_precision)) != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu)


def check_launcher(accelerator: Any) -> None:
    """Warn when ``accelerate launch --cpu`` started this single process: accelerate ignores
    ``--num_processes`` there (it does not even pass it on), so a two-process request would
    otherwise train in one process unnoticed."""
    cpu_launch = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("true", "1", "yes")
    if cpu_launch and "WORLD_SIZE" not in os.environ and accelerator.num_processes == 1:
        warnings.warn(
            "started by 'accelerate launch --cpu', which runs ONE process whatever "
            "--num_processes says; for N CPU processes use 'accelerate launch --multi_gpu "
            "--num_processes N' (it runs torch's launcher, CPU with gloo) or 'torchrun "
            "--nproc_per_node N'",
            stacklevel=3,
        )


def derived_seed(seed: int, name: str, rank: int) -> int:
    """A 63-bit seed for stream ``name`` of process ``rank`` (SHA-256 of all three): streams of
    different ranks and names are independent; rank 0's equal a one-process run's."""
    digest = hashlib.sha256(f"{seed}:{name}:{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def per_process_batch(global_batch: int, num_processes: int) -> int:
    """Each process's share of the global batch; it must divide evenly (equal shares keep the
    averaged gradient equal to the global batch's)."""
    if num_processes < 1:
        raise ValueError(f"num_processes must be positive, got {num_processes}")
    if global_batch % num_processes:
        raise ValueError(
            f"batch_size {global_batch} is the global batch and must divide evenly among "
            f"{num_processes} processes"
        )
    return global_batch // num_processes


def distributed_info(accelerator: Any, global_batch: int, lr: float) -> dict[str, Any]:
    """What a run records about its processes: count, batch sizes, learning rate, backend."""
    n = int(accelerator.num_processes)
    return {
        "num_processes": n,
        "global_batch_size": int(global_batch),
        "per_process_batch_size": per_process_batch(global_batch, n),
        "lr": float(lr),
        "distributed_type": str(getattr(accelerator.distributed_type, "value", "NO")),
    }


def on_main(accelerator: Any, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result (picklable) to every rank; if it raises,
    every rank raises too (the same FileExistsError, FileNotFoundError or ValueError, else a
    RuntimeError with its message), so no rank is left waiting in a collective. With one
    process, just ``fn()``."""
    if accelerator.num_processes == 1:
        return fn()
    import torch.distributed as dist

    message: list[Any] = [None]
    if accelerator.is_main_process:
        try:
            message[0] = ("ok", fn())
        except Exception as err:
            message[0] = ("error", type(err).__name__, str(err))
            dist.broadcast_object_list(message, src=0)
            raise
    dist.broadcast_object_list(message, src=0)
    if message[0][0] == "error":
        _, kind, text = message[0]
        raise _SHARED_ERRORS.get(kind, RuntimeError)(text)
    return message[0][1]
