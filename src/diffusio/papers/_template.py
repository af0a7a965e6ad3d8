"""Author et al. YEAR, "Title" (venue, arXiv id): the reproduction ``template-0000``.

Copy this file to ``papers/<name_with_underscores>.py`` and ``text/_template.md`` to
``text/<name_with_underscores>.md``, add the name to :data:`diffusio.papers.base.PAPERS`, and the
contract test (``tests/test_papers_contract.py``) runs it with ``SMOKE``. Keep the module short:
training goes through :meth:`Reproduction.train` (the shared model cache), evaluation through the
domain package's scorer, verdicts through :mod:`diffusio.papers.verdicts`, prose in the text
file. It is not registered, so ``diffusio list`` does not show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..metrics.stats import mean_se
from .base import Reproduction
from .report import PaperNumber, Report, fmt
from .verdicts import claim_rule, win_verdict

__all__ = ["REPRODUCTION", "Template", "reproduce"]


@dataclass(frozen=True)
class Settings:
    """Every knob of the default run; ``QUICK`` and ``SMOKE`` override some of them."""

    draws: int = 1000
    seed: int = 0


@claim_rule("template-0000/beats-baseline",
            supports={"mean": 0.5, "se": 0.1}, contradicts={"mean": 0.1, "se": 0.1})
def beats_baseline(mean: float, se: float) -> str:
    """The method beats the baseline's score 0: clearly, beyond the noise (else not shown)."""
    return win_verdict(mean, se)


class Template(Reproduction):
    NAME = "template-0000"
    TITLE = "Title (Author et al., YEAR)"
    REFERENCE = "Author. *Title.* Venue YEAR, arXiv:0000.00000."
    DEPENDS = ()
    Settings = Settings
    QUICK = {"draws": 200}
    SMOKE = {"draws": 20}
    PAPER_NUMBERS = (
        PaperNumber("score gain over the baseline", "+0.5", "Table 1", verified=False,
                    note="the template quotes no real paper"),
    )

    def run_experiments(self) -> dict[str, Any]:
        import torch

        g = torch.Generator().manual_seed(self.s.seed)
        ours = torch.randn(self.s.draws, generator=g) + 0.5  # stand-in for a measurement
        self.lap("experiment")
        return {"ours": ours.tolist()}

    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        mean, se = mean_se(r["ours"])
        report.claim("the method beats the baseline (score 0)", "+0.5",
                     f"{fmt(mean)} +/- {fmt(se)}", fmt(mean - 0.5), beats_baseline(mean=mean, se=se))

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        return {"mean": mean_se(r["ours"])[0]}


REPRODUCTION = Template
reproduce = Template.run
