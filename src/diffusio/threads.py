"""Thread control for small-tensor work.

Two-dimensional toy models run on tiny tensors, where torch's extra intra-op threads mostly
spin-wait: on a 2-core machine with one core busy elsewhere, two threads were measured 20x slower
than one (the demo's oracle sampling; toy training shows the same effect, 4-5x).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["torch_threads"]


@contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads inside the block (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
