"""The report every reproduction writes: ``report.md``, ``metrics.json`` and PNG figures.

A :class:`Report` collects *claims* (what the paper says, what we measured, the gap and a
verdict), free-form sections with tables and figures, and a flat dict of metrics. ``write()``
puts them in ``out_dir`` atomically, with the run's scale (quick or default), wall time, torch
version and thread count, so a reader can tell how and where the numbers were made.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..io import write_json_atomic, write_text_atomic
from ..plotting import save_figure
from .verdicts import VERDICTS, overall_status

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "VERDICTS", "Claim", "PaperNumber", "Report", "fmt", "json_ready", "logger",
    "markdown_table",
]  # fmt: skip

S = TypeVar("S")
R = TypeVar("R")



def fmt(value: Any, digits: int = 3) -> str:
    """A number for a report table: ``digits`` significant digits, ints as they are."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells go through :func:`fmt`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"table row has {len(row)} cells, header {len(header)}")
        lines.append("| " + " | ".join(fmt(c).replace("|", "/") for c in row) + " |")
    return "\n".join(lines)


def json_ready(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


@dataclass
class Claim:
    """One headline claim of the paper, checked: ``paper`` is what the paper reports,
    ``measured`` what we got, ``gap`` the difference (in words or numbers), ``verdict`` one of
    :data:`VERDICTS`; ``main`` whether it is one of the paper's main claims (the status counts
    only those; our own acceptance targets are not), ``rule`` the registered
    :class:`~diffusio.papers.verdicts.Rule` that gave the verdict."""

    claim: str
    paper: str
    measured: str
    gap: str
    verdict: str
    main: bool = True
    rule: str | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; valid: {', '.join(VERDICTS)}")
        self.verdict = str(self.verdict)


@dataclass(frozen=True)
class PaperNumber:
    """A number a report quotes from the paper, where it is, and whether it was checked against
    the paper itself (``verified``; ``note`` says how, or why it could not be)."""

    quantity: str
    value: str
    source: str
    verified: bool
    note: str = ""


class Report:
    """Collects a reproduction's results and writes them to ``out_dir``.

    Args:
        name: the reproduction name (``ncsn-2019``).
        title: the paper's title and authors, as the report's heading.
        reference: the citation line (venue, arXiv id).
        out_dir: where ``report.md``, ``metrics.json`` and the figures go.
        quick: whether this is the ``--quick`` run (stated in the report).
        scale: one paragraph: what the paper did and what we do instead (data, model, steps).
    """

    def __init__(
        self,
        name: str,
        title: str,
        reference: str,
        out_dir: str | os.PathLike,
        quick: bool,
        scale: str,
    ):
        self.name, self.title, self.reference, self.quick, self.scale = (
            name, title, reference, quick, scale,
        )  # fmt: skip
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.claims: list[Claim] = []
        self.metrics: dict[str, Any] = {}
        self._body: list[str] = []
        self.borrowed: dict[str, str] = {}
        self.paper_numbers: list[PaperNumber] = []
        self.rerun_args = ""  # e.g. " --set steps=10": what reproduces this run besides --quick
        self._t0 = time.perf_counter()

    def claim(
        self, claim: str, paper: str, measured: str, gap: str, verdict: str, main: bool = True
    ) -> Claim:
        """Record one checked claim (see :class:`Claim`); a verdict from a registered rule
        carries the rule's name into the report."""
        entry = Claim(claim, paper, measured, gap, str(verdict), main,
                      getattr(verdict, "rule", None))  # fmt: skip
        self.claims.append(entry)
        return entry

    def borrow(self, name: str, what: str) -> None:
        """Say that the numbers labelled ``[from name]`` (``what``) were read from another
        reproduction's run, not measured by this one (the report's header lists them)."""
        self.borrowed[name] = what

    def section(self, heading: str, text: str = "") -> None:
        """Start a ``##`` section, optionally with a paragraph."""
        self._body.append(f"## {heading}\n")
        if text:
            self._body.append(text.strip() + "\n")

    def text(self, text: str) -> None:
        """Add a paragraph (markdown)."""
        self._body.append(text.strip() + "\n")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Add a markdown table."""
        self._body.append(markdown_table(header, rows) + "\n")

    def figure(self, fig: Figure, filename: str, caption: str) -> Path:
        """Save ``fig`` as ``out_dir/filename`` and show it in the report with ``caption``."""
        path = save_figure(fig, self.out_dir / filename)
        self._body.append(f"![{caption}]({filename})\n\n*{caption}*\n")
        return path

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._t0

    def write(self) -> dict[str, Any]:
        """Write ``report.md`` and ``metrics.json``; return the metrics (with the run info)."""
        import torch

        info = {
            "name": self.name,
            "quick": self.quick,
            "seconds": round(self.seconds, 1),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
        }
        claims = [asdict(c) for c in self.claims]
        status = overall_status(claims)
        metrics = json_ready({
            **info, "status": status, "metrics": self.metrics, "claims": claims,
            "paper_numbers": [asdict(p) for p in self.paper_numbers],
            "borrowed": dict(self.borrowed),
        })  # fmt: skip
        write_json_atomic(self.out_dir / "metrics.json", metrics, strict=True)
        run = "quick (`--quick`)" if self.quick else "default"
        measured = "Every number below was measured by this run"
        if self.borrowed:
            measured += ", except those labelled [from NAME], read from the results of another "
            measured += "reproduction: " + "; ".join(
                f"{what} [from {name}]" for name, what in self.borrowed.items()
            )
        lines = [
            f"# {self.title}\n",
            f"{self.reference}\n",
            f"Reproduction `{self.name}`, {run} run: {info['seconds']:.0f} s on {info['machine']}"
            f" (torch threads: {info['threads']}), torch {info['torch']}. {measured}; rerun "
            f"with `diffusio reproduce {self.name}{' --quick' if self.quick else ''}"
            f"{self.rerun_args}`.\n",
            f"Status: **{status}** (reproduced only when every main claim is; claims marked "
            "*(ours)* are our own acceptance targets and do not count).\n",
            "## Scale\n",
            self.scale.strip() + "\n",
        ]
        if self.claims:
            lines.append("## Claims checked\n")
            rows = [[c.claim + ("" if c.main else " *(ours)*"), c.paper, c.measured, c.gap,
                     c.verdict] for c in self.claims]  # fmt: skip
            lines.append(
                markdown_table(["claim", "paper", "measured here", "gap", "verdict"], rows) + "\n"
            )
        if self.paper_numbers:
            lines.append("## Paper numbers quoted\n")
            lines.append(
                "Each number this report quotes from the paper, and whether it was checked "
                "against the paper itself.\n"
            )
            rows = [[p.quantity, p.value, p.source, "yes" if p.verified else "**no**", p.note]
                    for p in self.paper_numbers]  # fmt: skip
            lines.append(
                markdown_table(["quantity", "paper", "where", "verified", "how / why not"], rows)
                + "\n"
            )
        lines.extend(self._body)
        write_text_atomic(self.out_dir / "report.md", "\n".join(lines))
        return metrics


# --------------------------------------------------------------------------- logging
def logger(name: str) -> Callable[[str], None]:
    """A function printing ``[name] message`` lines, flushed (progress of a long reproduction)."""

    def log(message: str) -> None:
        print(f"[{name}] {message}", flush=True)

    return log
