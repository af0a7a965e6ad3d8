"""The seed timeline as data: every paper, the module that implements it, and an honest status.

Each :class:`Entry` is one row of the seed table in ``DESIGN.md``. Its status is *measured*, not
written down: for a paper with a reproduction it is what the committed default-run report says
(``docs/reports/NAME/metrics.json``, its ``status``: see
:func:`diffusio.papers.verdicts.overall_status`), so "reproduced" can fail.

``reproduced`` / ``partly`` / ``not-reproduced``
    the reproduction exists and its default-run report finds every main claim reproduced /
    some / none.
``stale``
    the committed default-run report predates the claim rules (its claims name no registered
    rule), so its verdicts are not evidence under today's rules until the run is redone.
``no-report``
    ``diffusio.papers.<reproduction>`` defines its ``REPRODUCTION`` (``diffusio reproduce NAME``
    runs it) but no default-run report is committed: nothing is measured yet.
``core-only``
    the core algorithm the paper contributes is implemented (every module in ``Entry.core`` is
    importable) but there is no reproduction yet; ``Entry.notes`` says what exists and what not.
``missing``
    neither.

Module presence is checked with :func:`importlib.util.find_spec`, which does not import the module
(nor torch); only an existing paper module is imported, to look for its ``REPRODUCTION``. The
reports folder is ``$DIFFUSIO_REPORTS`` when set, else ``docs/reports`` of the source checkout.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CONTRACT_ATTR",
    "REPRODUCE_ATTR",
    "STATUSES",
    "TIMELINE",
    "Entry",
    "find_entry",
    "format_table",
    "module_exists",
    "report_status",
    "reports_dir",
    "status_counts",
]

STATUSES: tuple[str, ...] = (
    "missing", "core-only", "no-report", "stale", "not-reproduced", "partly", "reproduced",
)  # fmt: skip
#: A report's status (a verdict word) as the one-token status ``list`` shows.
_REPORT_STATUS = {"reproduced": "reproduced", "partly reproduced": "partly",
                  "not reproduced": "not-reproduced"}  # fmt: skip

#: The attribute a paper module defines to count as a reproduction: its
#: :class:`~diffusio.papers.base.Reproduction` class, or (older modules) a ``reproduce`` function.
CONTRACT_ATTR = "REPRODUCTION"
REPRODUCE_ATTR = "reproduce"

PAPERS_PACKAGE = "diffusio.papers"


def module_exists(name: str) -> bool:
    """Whether module ``name`` can be found, without importing it (its parents are imported)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing parent package raises ModuleNotFoundError
        return False


def reports_dir() -> Path:
    """Where the committed default-run reports live: ``$DIFFUSIO_REPORTS``, else the source
    checkout's ``docs/reports``."""
    env = os.environ.get("DIFFUSIO_REPORTS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "docs" / "reports"


def report_status(name: str, reports: Path | None = None) -> str:
    """The status the default-run report of reproduction ``name`` supports: ``reproduced``,
    ``partly`` or ``not-reproduced`` (from its claims), ``stale`` when its claims were not judged
    by registered rules (an older report), or ``no-report`` when there is no readable
    default-run ``metrics.json`` (a quick run's report does not count)."""
    path = (reports or reports_dir()) / name / "metrics.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "no-report"
    if not isinstance(saved, dict) or saved.get("quick", True) or saved.get("name") != name:
        return "no-report"
    from .papers.verdicts import overall_status  # torch-free

    claims = saved.get("claims") or []
    if not all(isinstance(c, dict) and c.get("rule") for c in claims):
        return "stale"
    return _REPORT_STATUS.get(overall_status(claims), "no-report")


@dataclass(frozen=True)
class Entry:
    """One seed paper.

    ``label`` is the seed entry as written in DESIGN.md; ``reproduction`` its reproduction name
    (``None`` for entries without a reproduction of their own, such as the backbones); ``core``
    the modules implementing the algorithm the paper contributes, the first being the one shown
    (empty when none is written yet); ``notes`` what exists and what does not.
    """

    year: int
    label: str
    authors: str
    short: str
    title: str
    reproduction: str | None
    core: tuple[str, ...] = ()
    notes: str = ""

    @property
    def paper_module(self) -> str | None:
        """``diffusio.papers.<name>`` holding this entry's reproduction (may not exist yet)."""
        if self.reproduction is None:
            return None
        return f"{PAPERS_PACKAGE}.{self.reproduction.replace('-', '_')}"

    def has_reproduction(self) -> bool:
        """Whether the paper module exists and defines ``REPRODUCTION`` or a ``reproduce``
        (``diffusio reproduce NAME`` can run it)."""
        name = self.paper_module
        if name is None or not module_exists(name):
            return False
        try:
            module = importlib.import_module(name)
        except Exception:  # a broken paper module is not a reproduction; never break `list`
            return False
        if getattr(module, CONTRACT_ATTR, None) is not None:
            return True
        return callable(getattr(module, REPRODUCE_ATTR, None))

    def core_implemented(self) -> bool:
        """Whether every module of the paper's core algorithm exists."""
        return bool(self.core) and all(module_exists(m) for m in self.core)

    @property
    def status(self) -> str:
        """One of :data:`STATUSES`: measured by the committed report where a reproduction
        exists, else what code exists now."""
        if self.has_reproduction():
            return report_status(self.reproduction)
        if self.core_implemented():
            return "core-only"
        return "missing"

    @property
    def module(self) -> str:
        """The module to read for this entry: the reproduction once it exists, else the core
        module implementing its algorithm, else where the reproduction will live."""
        if self.paper_module is not None and self.has_reproduction():
            return self.paper_module
        if self.core and (self.core_implemented() or self.paper_module is None):
            return self.core[0]
        return self.paper_module or "-"


TIMELINE: tuple[Entry, ...] = (
    Entry(
        year=2015,
        label="Sohl-Dickstein 2015",
        authors="Sohl-Dickstein et al.",
        short="diffusion probabilistic models",
        title="Deep Unsupervised Learning using Nonequilibrium Thermodynamics",
        reproduction="sohl-dickstein-2015",
        core=("diffusio.core.vlb", "diffusio.core.processes"),
        notes=(
            "Core: the bound split into per-step KL terms (core.vlb, the 'vlb' loss), Gaussian "
            "reverse kernels with learned mean and variance (variance='learned'), the paper's "
            "vp-reciprocal schedule; reproduced on the swiss roll (Figure 1, Table 1)."
        ),
    ),
    Entry(
        year=2019,
        label="Song & Ermon 2019 (NCSN)",
        authors="Song & Ermon",
        short="NCSN",
        title="Generative Modeling by Estimating Gradients of the Data Distribution",
        reproduction="ncsn-2019",
        core=(
            "diffusio.core.samplers",
            "diffusio.core.processes",
            "diffusio.core.losses",
        ),
        notes=(
            "Core: geometric noise levels (ve process), denoising score matching with sigma^2"
            " weighting, the annealed-langevin sampler."
        ),
    ),
    Entry(
        year=2020,
        label="Ho 2020 (DDPM)",
        authors="Ho et al.",
        short="DDPM",
        title="Denoising Diffusion Probabilistic Models",
        reproduction="ddpm-2020",
        core=(
            "diffusio.core.samplers",
            "diffusio.core.processes",
            "diffusio.core.losses",
        ),
        notes=(
            "Core: vp-linear schedule, L_simple eps loss on the discrete grid, ddpm ancestral"
            " sampler, x0 clipping."
        ),
    ),
    Entry(
        year=2021,
        label="Song 2021 (Score SDE)",
        authors="Song et al.",
        short="Score SDE",
        title="Score-Based Generative Modeling through Stochastic Differential Equations",
        reproduction="score-sde-2021",
        core=(
            "diffusio.core.samplers",
            "diffusio.core.processes",
            "diffusio.core.likelihood",
        ),
        notes=(
            "Core: vp, sub-vp and ve SDEs; euler-maruyama, pc and probability-flow ODE "
            "samplers (ode-euler, ode-heun, ode-rk45); exact likelihood via the probability-"
            "flow ODE."
        ),
    ),
    Entry(
        year=2021,
        label="Song 2021 (DDIM)",
        authors="Song et al.",
        short="DDIM",
        title="Denoising Diffusion Implicit Models",
        reproduction="ddim-2021",
        core=("diffusio.core.samplers",),
        notes=("Core: the ddim sampler (eta interpolates to ddpm), on any trained eps model."),
    ),
    Entry(
        year=2021,
        label="Nichol & Dhariwal 2021 (improved DDPM)",
        authors="Nichol & Dhariwal",
        short="improved DDPM",
        title="Improved Denoising Diffusion Probabilistic Models",
        reproduction="iddpm-2021",
        core=(
            "diffusio.core.processes",
            "diffusio.core.timesteps",
            "diffusio.core.losses",
        ),
        notes=(
            "Core: vp-cosine schedule (processes), importance-sampled training times "
            "(timesteps), the learned variance (variance='learned', eq. 15) and the hybrid loss "
            "(weighting 'hybrid', stop-gradient on the mean); preset digits-iddpm."
        ),
    ),
    Entry(
        year=2021,
        label="Dhariwal & Nichol 2021 (classifier guidance)",
        authors="Dhariwal & Nichol",
        short="classifier guidance",
        title="Diffusion Models Beat GANs on Image Synthesis",
        reproduction="guided-diffusion-2021",
        core=("diffusio.core.steering",),
        notes=(
            "Core: ClassifierGuidance (a prediction modifier: score shift, Alg. 2, or the "
            "ancestral mean shift, Alg. 1), exact against the oracle's Bayes classifier; the "
            "noise-aware classifier (image.classifier); reproduced on digits."
        ),
    ),
    Entry(
        year=2021,
        label="Ho & Salimans (classifier-free guidance)",
        authors="Ho & Salimans",
        short="classifier-free guidance",
        title="Classifier-Free Diffusion Guidance",
        reproduction="cfg-2021",
        core=("diffusio.core.steering", "diffusio.train.trainer"),
        notes=(
            "Core: ClassifierFreeGuidance (prediction modifier, eq. 6) and label dropout in "
            "training (class_dropout); preset digits-ddpm-cond; reproduced on digits."
        ),
    ),
    Entry(
        year=2022,
        label="Rombach 2022 (latent diffusion)",
        authors="Rombach et al.",
        short="latent diffusion",
        title="High-Resolution Image Synthesis with Latent Diffusion Models",
        reproduction="ldm-2022",
        core=("diffusio.core.latent", "diffusio.image.autoencoder",
              "diffusio.image.latent_diffusion", "diffusio.nets.spatial_transformer"),
        notes=(
            "KL autoencoders at f = 2, 4, 8 (perceptual loss from a network trained here, "
            "PatchGAN), the computed latent scale, LatentModel; class- and caption-conditional "
            "latent vs pixel U-Nets against training time and counted FLOPs."
        ),
    ),
    Entry(
        year=2022,
        label="Ramesh 2022 (DALL·E 2)",
        authors="Ramesh et al.",
        short="DALL·E 2",
        title="Hierarchical Text-Conditional Image Generation with CLIP Latents",
        reproduction="dalle2-2022",
        core=("diffusio.image.unclip", "diffusio.nets.clip", "diffusio.nets.unclip_prior",
              "diffusio.nets.unclip_decoder"),
        notes=(
            "A tiny CLIP trained here, the diffusion prior (best of two) and a regression "
            "prior, the embedding-conditioned decoder (time embedding + 4 context tokens), "
            "image variations; priors and diversity judged by re-measured caption attributes."
        ),
    ),
    Entry(
        year=2022,
        label="Saharia 2022 (Imagen)",
        authors="Saharia et al.",
        short="Imagen",
        title="Photorealistic Text-to-Image Diffusion Models with Deep Language Understanding",
        reproduction="imagen-2022",
        core=("diffusio.image.text2image", "diffusio.image.super_resolution",
              "diffusio.core.steering"),
        notes=(
            "Frozen MiniLM vs scratch text encoder (cross-attention + pooled embedding), the "
            "noise-augmented super-resolution cascade and dynamic thresholding on captioned "
            "MNIST digits, judged by re-measured caption attributes; diffusio txt2img."
        ),
    ),
    Entry(
        year=2020,
        label="Brown 2020 (language generation)",
        authors="Brown et al.",
        short="language generation",
        title="Language Models are Few-Shot Learners",
        reproduction="text-2020",
        core=("diffusio.text",),
        notes=(
            "GPT-3's few-shot claims are not testable here; the entry measures masked "
            "(absorbing-state) diffusion (D3PM, MDLM) against an autoregressive transformer of "
            "the same size on Shakespeare characters (diffusio text)."
        ),
    ),
    Entry(
        year=2021,
        label="Tashiro 2021 (CSDI)",
        authors="Tashiro et al.",
        short="CSDI",
        title=(
            "CSDI: Conditional Score-based Diffusion Models for Probabilistic Time Series "
            "Imputation"
        ),
        reproduction="csdi-2021",
        notes=(
            "Building blocks in core: the vp-quadratic schedule (processes) and the "
            "inpainting constraint (steering). Not yet: the conditional imputation network "
            "and self-supervised masking."
        ),
    ),
    Entry(
        year=2022,
        label="Janner 2022 (Diffuser)",
        authors="Janner et al.",
        short="Diffuser",
        title="Planning with Diffusion for Flexible Behavior Synthesis",
        reproduction="diffuser-2022",
        notes=(
            "Building blocks in core: the inpainting constraint for start/goal clamping "
            "(steering) and the x0 loss (losses). Not yet: temporal U-Net, value guidance, "
            "environments."
        ),
    ),
    Entry(
        year=2023,
        label="Ajay 2023 (Decision Diffuser)",
        authors="Ajay et al.",
        short="Decision Diffuser",
        title="Is Conditional Generative Modeling all you need for Decision-Making?",
        reproduction="decision-diffuser-2023",
        notes=("Return conditioning and inverse dynamics are not written yet."),
    ),
    Entry(
        year=2023,
        label="Song 2023 (loss-guided diffusion)",
        authors="Song et al.",
        short="loss-guided diffusion",
        title="Loss-Guided Diffusion Models for Plug-and-Play Controllable Generation",
        reproduction="lgd-2023",
        notes=("Loss guidance (DPS / LGD-MC) is not written yet."),
    ),
    Entry(
        year=2023,
        label="Chi 2023 (Diffusion Policy)",
        authors="Chi et al.",
        short="Diffusion Policy",
        title="Diffusion Policy: Visuomotor Policy Learning via Action Diffusion",
        reproduction="diffusion-policy-2023",
        notes=(
            "The policy domain (observation-conditioned action chunks, receding horizon) is "
            "not written yet."
        ),
    ),
    Entry(
        year=2023,
        label="Nikitin 2023 (TSGM)",
        authors="Nikitin et al.",
        short="TSGM",
        title="TSGM: A Flexible Framework for Generative Modeling of Synthetic Time Series",
        reproduction="tsgm-2023",
        notes=("The time-series generation domain is not written yet."),
    ),
    Entry(
        year=2024,
        label="Wei 2024 (DiffPhyCon)",
        authors="Wei et al.",
        short="DiffPhyCon",
        title="DiffPhyCon: A Generative Approach to Control Complex Physical Systems",
        reproduction="diffphycon-2024",
        core=("diffusio.physics.burgers", "diffusio.physics.diffphycon",
              "diffusio.physics.baselines"),
        notes=(
            "NeurIPS 2024. The Burgers task's exact differentiable solver, data and control "
            "environment (diffusio.physics), DiffPhyCon's joint [u; f] model with inpainted "
            "initial and target states, J-guidance and prior reweighting, and its baselines "
            "(the adjoint oracle, SL, BC, a PI controller); at 2% of the paper's data."
        ),
    ),
    Entry(
        year=2024,
        label="Wei 2024 (CL-DiffPhyCon)",
        authors="Wei et al.",
        short="CL-DiffPhyCon",
        title="CL-DiffPhyCon: Closed-loop Diffusion Control of Complex Physical Systems",
        reproduction="cl-diffphycon-2024",
        core=("diffusio.physics.cl_diffphycon",),
        notes=(
            "ICLR 2025 (arXiv:2408.03124). Core: a window model of (u, f) frames with one noise "
            "level per frame, trained on synchronous and staircase levels; the staircase "
            "initialiser, the asynchronous closed loop (K/H network calls per step) and the "
            "replanning baselines through the Burgers environment."
        ),
    ),
    Entry(
        year=2024,
        label="Ren 2024 (DPPO)",
        authors="Ren et al.",
        short="DPPO",
        title="Diffusion Policy Policy Optimization",
        reproduction="dppo-2024",
        notes=("Policy-gradient fine-tuning of the denoising chain is not written yet."),
    ),
    Entry(
        year=2025,
        label="Huang 2025 (Diffuse-CLoC)",
        authors="Huang et al.",
        short="Diffuse-CLoC",
        title="Diffuse-CLoC: Guided Diffusion for Physics-based Character Look-ahead Control",
        reproduction="diffuse-cloc-2025",
        core=("diffusio.control.cloc", "diffusio.control.cloc_net", "diffusio.control.clutter"),
        notes=(
            "SIGGRAPH 2025 (ACM Transactions on Graphics), arXiv 2503.11801; the seed lists it "
            "as ICLR. The state-action transformer with the paper's mask and per-token noise "
            "levels, rolling inference, obstacle-SDF and waypoint guidance and keyframe "
            "inpainting on diffusio/Clutter-v0 (a MuJoCo point mass with force limits in unseen "
            "clutter); no humanoid."
        ),
    ),
    Entry(
        year=2015,
        label="Ronneberger 2015 (U-Net) and the attention appendix",
        authors="Ronneberger et al.",
        short="U-Net",
        title="U-Net: Convolutional Networks for Biomedical Image Segmentation",
        reproduction="field-reconstruction",
        core=("diffusio.nets.unet", "diffusio.nets.attention", "diffusio.physics.fields"),
        notes=(
            "Backbones: the DDPM/ADM U-Net with multi-head self-attention blocks (nets.unet), "
            "exercised by the image reproductions; cross-attention, a Perceiver IO "
            "encoder/decoder over (position, value) sets and gated cross-channel attention "
            "(nets.attention). The appendix's one reproduction, field-reconstruction: Zhuang, "
            "Cheng & Duraisamy 2024 (arXiv 2409.00230), global field reconstruction from sparse "
            "sensors with cross-attention, on Burgers frames against interpolation, "
            "scikit-learn kriging and the same network trained by MSE (1-D, small scale)."
        ),
    ),
)


def find_entry(name: str) -> Entry:
    """The entry with reproduction name ``name`` (``ValueError`` listing valid names if none)."""
    for entry in TIMELINE:
        if entry.reproduction == name:
            return entry
    valid = ", ".join(e.reproduction for e in TIMELINE if e.reproduction)
    raise ValueError(f"unknown reproduction {name!r}; valid: {valid}")


def status_counts(entries: tuple[Entry, ...] | list[Entry] = TIMELINE) -> dict[str, int]:
    """Number of entries per status, in :data:`STATUSES` order."""
    counts = Counter(e.status for e in entries)
    return {s: counts.get(s, 0) for s in STATUSES}


def format_table(entries: tuple[Entry, ...] | list[Entry] = TIMELINE, notes: bool = False) -> str:
    """The timeline as an aligned text table plus a summary line of counts per status."""
    header = ("year", "paper", "reproduction", "module", "status")
    rows = []
    statuses = []
    for e in entries:
        status = e.status
        statuses.append(status)
        rows.append((str(e.year), e.label, e.reproduction or "-", e.module, status))
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(header), line(tuple("-" * w for w in widths))]
    for entry, row in zip(entries, rows, strict=True):
        out.append(line(row))
        if notes and entry.notes:
            indent = " " * (widths[0] + 2)
            out.extend(
                textwrap.wrap(entry.notes, 98, initial_indent=indent, subsequent_indent=indent)
            )
    counts = Counter(statuses)
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in reversed(STATUSES))
    out.append("")
    out.append(f"{len(rows)} entries: {summary}")
    return "\n".join(out)
