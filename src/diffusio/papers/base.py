"""The one reproduction contract: every paper of the timeline is a :class:`Reproduction`.

A reproduction declares what it is and what it can be told::

    class DDPM2020(Reproduction):
        NAME = "ddpm-2020"
        TITLE = "Denoising Diffusion Probabilistic Models (Ho, Jain & Abbeel, 2020)"
        REFERENCE = "Jonathan Ho, Ajay Jain and Pieter Abbeel. NeurIPS 2020, arXiv:2006.11239."
        DEPENDS = ()                        # reproductions whose models or results it reuses
        Settings = Settings                 # a frozen dataclass: the default run
        QUICK = {"train_steps": 500}        # --quick: overrides of the default
        SMOKE = {"train_steps": 4, ...}     # the contract test's tiny run (on top of QUICK)
        PAPER_NUMBERS = (PaperNumber("FID, L_simple", "3.17", "Table 1", verified=True), ...)

Each claim's verdict comes from a rule registered with
:func:`~diffusio.papers.verdicts.claim_rule` (a pure function of named numbers, with numbers that
support and numbers that contradict the claim, so a test shows every rule can fail). It
implements its stages as methods: :meth:`~Reproduction.run_experiments` (train through the
shared model cache, sample, measure; returns a result dict), then :meth:`add_claims`,
:meth:`add_sections` (tables and figures) and :meth:`record_metrics`. :meth:`reproduce` is
written once, here: it runs the stages, fills the :class:`~diffusio.papers.report.Report` with
the prose of the paper's text file ``papers/text/<module>.md`` (its ``## Scale`` and ``## Notes``
sections are ``str.format`` templates filled from :meth:`text_values`), writes ``report.md``,
``metrics.json`` (with the settings) and the figures, and stores the metrics in the results cache
so that a reproduction declaring this one in ``DEPENDS`` can read them
(:meth:`dependency_results`) instead of reading a sibling folder.

Trained models live in one cache keyed by the training config's hash
(:class:`~diffusio.papers.runs.ModelCache`, ``$DIFFUSIO_CACHE/models``): two reproductions that
train the same recipe share one model, and an interrupted training resumes exactly.

``diffusio reproduce NAME [--quick] [--set key=value ...]`` goes through :func:`reproduce`;
:func:`parse_overrides` validates every ``--set`` against the settings' type hints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import time
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..io import cache_root, json_hash, read_json, write_json_atomic
from .report import PaperNumber, Report, logger
from .runs import ModelCache

__all__ = [
    "PAPERS", "Reproduction", "describe_settings", "get_reproduction", "parse_overrides",
    "reproduce", "said", "settings_from_dict", "settings_hash",
    "settings_to_dict",
]  # fmt: skip

#: Every registered reproduction, in timeline order (module = name with ``-`` -> ``_``).
PAPERS: tuple[str, ...] = (
    "sohl-dickstein-2015", "ncsn-2019", "ddpm-2020", "score-sde-2021", "ddim-2021",
    "iddpm-2021", "guided-diffusion-2021", "cfg-2021", "ldm-2022", "dalle2-2022", "imagen-2022",
    "text-2020",
    "csdi-2021", "tsgm-2023",
    "diffuser-2022",
    "lgd-2023",
    "decision-diffuser-2023",
    "diffusion-policy-2023",
    "diffphycon-2024",
    "cl-diffphycon-2024",
    "dppo-2024",
    "diffuse-cloc-2025",
    "field-reconstruction",
)  # fmt: skip

TEXT_DIR = Path(__file__).with_name("text")


def get_reproduction(name: str) -> type[Reproduction]:
    """The registered :class:`Reproduction` called ``name`` (its module's ``REPRODUCTION``)."""
    if name not in PAPERS:
        raise ValueError(f"no reproduction named {name!r}; registered: {', '.join(PAPERS)}")
    module = importlib.import_module(f"diffusio.papers.{name.replace('-', '_')}")
    cls = getattr(module, "REPRODUCTION", None)
    if cls is None:
        raise ValueError(f"{module.__name__} defines no REPRODUCTION")
    return cls


# --------------------------------------------------------------------------- settings
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_optional(hint: Any) -> tuple[bool, Any]:
    """(whether ``hint`` admits None, the hint without None)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) < len(typing.get_args(hint)):
            return True, args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007
    return False, hint


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """``value`` (a string from the command line, or a JSON value) as type ``hint``."""
    optional, hint = _is_optional(hint)
    if isinstance(value, str) and value.strip().lower() in ("none", "null"):
        if optional:
            return None
        raise ValueError(f"setting {key!r} cannot be None")
    if value is None:
        if optional:
            return None
        raise ValueError(f"setting {key!r} cannot be None")
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value.strip())
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            return str(value)
        if origin in (tuple, list):
            items = value
            if isinstance(value, str):
                text = value.strip()
                items = json.loads(text) if text.startswith("[") else [
                    v for v in text.strip("()").split(",") if v.strip()
                ]
            args = typing.get_args(hint)
            if origin is tuple and args and args[-1] is not Ellipsis:  # tuple[str, int]: fixed
                if len(items) != len(args):
                    raise ValueError
                out = [_coerce(key, v, h) for v, h in zip(items, args, strict=True)]
            else:
                item_hint = args[0] if args else Any
                out = [_coerce(key, v, item_hint) for v in items]
            return tuple(out) if origin is tuple else out
        if origin is dict or hint is dict:
            parsed = json.loads(value) if isinstance(value, str) else value
            if not isinstance(parsed, dict):
                raise ValueError
            return parsed
        if hint is Any and isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value
    except (TypeError, ValueError, json.JSONDecodeError):
        name = str(hint).replace("typing.", "") if typing.get_args(hint) else getattr(
            hint, "__name__", str(hint))
        raise ValueError(
            f"setting {key!r} expects {'None or ' if optional else ''}{name}, got {value!r}"
        ) from None


def parse_overrides(cls: type, overrides: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """``key=value`` strings (or a mapping) as typed values of the settings dataclass ``cls``;
    unknown keys and values of the wrong type raise ValueError with one line."""
    hints = _hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    pairs: list[tuple[str, Any]] = []
    if isinstance(overrides, Mapping):
        pairs = list(overrides.items())
    else:
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--set needs key=value, got {item!r}")
            pairs.append((key.strip(), value))
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key not in fields:
            raise ValueError(f"unknown setting {key!r}; valid: {', '.join(fields)}")
        out[key] = _coerce(key, value, hints[key])
    return out


def settings_to_dict(settings: Any) -> dict[str, Any]:
    """The settings as JSON-ready values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(settings)))


def settings_from_dict(cls: type, values: Mapping[str, Any]) -> Any:
    """The inverse of :func:`settings_to_dict` (validated like ``--set``)."""
    return cls(**parse_overrides(cls, dict(values)))


def settings_hash(settings: Any) -> str:
    """Eight hex digits identifying ``settings``."""
    return json_hash(settings_to_dict(settings))


# --------------------------------------------------------------------------- the contract
class Reproduction:
    """One paper's reproduction (see the module docstring). Subclasses set the class
    attributes and implement :meth:`run_experiments`, :meth:`add_claims`, :meth:`add_sections`
    and :meth:`record_metrics`; the rest is shared."""

    NAME: ClassVar[str]
    TITLE: ClassVar[str]
    REFERENCE: ClassVar[str]
    DEPENDS: ClassVar[tuple[str, ...]] = ()
    Settings: ClassVar[type]
    QUICK: ClassVar[Mapping[str, Any]] = {}
    SMOKE: ClassVar[Mapping[str, Any]] = {}
    #: Every number the report quotes from the paper, marked verified or not (a table in the
    #: report and in metrics.json).
    PAPER_NUMBERS: ClassVar[tuple[PaperNumber, ...]] = ()

    def __init__(
        self,
        settings: Any,
        out_dir: str | os.PathLike,
        *,
        quick: bool = False,
        progress: bool = True,
        cache: ModelCache | None = None,
    ):
        if not isinstance(settings, self.Settings):
            raise TypeError(f"{self.NAME} needs {self.Settings.__name__}, got {settings!r}")
        self.s = settings
        self.out = Path(out_dir)
        self.quick = quick
        self.progress = progress
        self.cache = cache or ModelCache()
        self.log = logger(self.NAME)
        self.stage_seconds: dict[str, float] = {}
        self._lap = time.perf_counter()

    # ------------------------------------------------------------------ settings
    @classmethod
    def settings(cls, quick: bool = False, overrides: Sequence[str] | Mapping[str, Any] = ()):
        """The default settings, with the ``QUICK`` overrides if ``quick``, then ``overrides``
        (``key=value`` strings or a mapping, validated)."""
        values = dict(cls.QUICK) if quick else {}
        values.update(parse_overrides(cls.Settings, overrides))
        return dataclasses.replace(cls.Settings(), **parse_overrides(cls.Settings, values))

    @classmethod
    def run(
        cls,
        out_dir: str | os.PathLike | None = None,
        quick: bool = False,
        *,
        settings: Any = None,
        overrides: Sequence[str] | Mapping[str, Any] = (),
        progress: bool = True,
        cache: ModelCache | None = None,
    ) -> dict[str, Any]:
        """Run the reproduction into ``out_dir`` (default ``runs/NAME``); ``settings`` replaces
        the quick/default ones (tests pass tiny ones). Returns the written metrics."""
        if settings is None:
            settings = cls.settings(quick, overrides)
        elif overrides:
            settings = dataclasses.replace(settings, **parse_overrides(cls.Settings, overrides))
        out = Path("runs") / cls.NAME if out_dir is None else Path(out_dir)
        return cls(settings, out, quick=quick, progress=progress, cache=cache).reproduce()

    # ------------------------------------------------------------------ stages
    def run_experiments(self) -> dict[str, Any]:
        """Train (through :meth:`train`), sample and measure; return what the report needs."""
        raise NotImplementedError

    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        """Record the paper's headline claims with :meth:`Report.claim` and a verdict each."""
        raise NotImplementedError

    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        """Tables, figures and discussion (:meth:`Report.section`, ``table``, ``figure``)."""

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        """The numbers ``metrics.json`` keeps (JSON-ready)."""
        return {}

    def text_values(self, r: dict[str, Any]) -> dict[str, Any]:
        """Values for the placeholders of the text file (``s`` and ``r`` are always there)."""
        return {}

    # ------------------------------------------------------------------ shared pieces
    def train(self, config: Any, label: str, **kwargs: Any) -> tuple[Any, Any, dict[str, Any]]:
        """Train ``config`` or reuse it from the model cache: ``(ema_model, normalizer,
        summary)`` (see :meth:`ModelCache.train`)."""
        return self.cache.train(config, label, progress=self.progress, **kwargs)

    @staticmethod
    @contextlib.contextmanager
    def worker_pool(workers: int) -> Iterator[Any]:
        """A ``ProcessPoolExecutor`` of ``workers`` spawned processes for the block (None when
        ``workers`` <= 1: :meth:`map_jobs` then runs the jobs here), shut down afterwards."""
        if int(workers) <= 1:
            yield None
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(int(workers), mp_context=multiprocessing.get_context("spawn"))
        try:
            yield pool
        finally:
            pool.shutdown()

    @staticmethod
    def map_jobs(pool: Any, fn: Any, jobs: Sequence[tuple]) -> list[Any]:
        """``[fn(*job) for job in jobs]``, in ``pool``'s processes when there is one (``fn``
        must then be a module-level function), results in the jobs' order."""
        if pool is None:
            return [fn(*job) for job in jobs]
        return [f.result() for f in [pool.submit(fn, *job) for job in jobs]]

    def lap(self, stage: str) -> float:
        """Record and log the seconds since the previous lap under ``stage``."""
        now = time.perf_counter()
        seconds = now - self._lap
        self._lap = now
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds
        self.log(f"{stage}: {seconds:.0f} s")
        return seconds

    def dependency_results(self, name: str, *, run: bool = False) -> dict[str, Any] | None:
        """The metrics of the dependency ``name`` (declared in ``DEPENDS``) at the settings it
        would have in this run (quick or default): from the results cache, else by running it
        into ``out_dir/../name`` when ``run``, else None."""
        if name not in self.DEPENDS:
            raise ValueError(f"{self.NAME} does not declare {name!r} in DEPENDS")
        cls = get_reproduction(name)
        path = results_path(name, cls.settings(self.quick))
        if path.is_file():
            return read_json(path)
        if not run:
            return None
        self.log(f"running the dependency {name}")
        return cls.run(self.out.parent / name, self.quick, progress=self.progress,
                       cache=self.cache)  # fmt: skip

    def prose(self, section: str, r: dict[str, Any]) -> str:
        """A section of the paper's text file with its placeholders filled."""
        return paper_text(self.__module__, section).format_map(
            {"s": self.s, "r": r, **self.text_values(r)}
        )

    # ------------------------------------------------------------------ the one reproduce
    def reproduce(self) -> dict[str, Any]:
        """Run the stages and write ``report.md``, ``metrics.json`` and the figures."""
        self.log(f"{'quick' if self.quick else 'default'} run into {self.out}")
        self.out.mkdir(parents=True, exist_ok=True)
        report = Report(self.NAME, self.TITLE, self.REFERENCE, self.out, self.quick, scale="")
        standard = settings_to_dict(self.settings(self.quick))
        report.rerun_args = "".join(
            f" --set {k}={v if isinstance(v, str) else json.dumps(v, separators=(',', ':'))}"
            for k, v in settings_to_dict(self.s).items()
            if v != standard[k]
        )
        r = self.run_experiments()
        self.log("claims, figures and report")
        report.scale = self.prose("scale", r)
        report.paper_numbers = list(self.PAPER_NUMBERS)
        self.add_claims(report, r)
        self.add_sections(report, r)
        notes = self.prose("notes", r)
        if notes.strip():
            report.section("Notes", notes)
        report.metrics.update(self.record_metrics(r))
        report.metrics["settings"] = settings_to_dict(self.s)
        report.metrics["stage_seconds"] = {k: round(v, 1) for k, v in self.stage_seconds.items()}
        metrics = report.write()
        write_json_atomic(results_path(self.NAME, self.s), metrics)
        self.log(f"wrote {self.out / 'report.md'} ({metrics['seconds']:.0f} s)")
        return metrics


# --------------------------------------------------------------------------- text and results
def paper_text(module: str, section: str) -> str:
    """Section ``section`` (a ``## Heading``, matched case-insensitively) of the text file of
    the paper module ``module`` (``papers/text/<module>.md``); empty if the file has none."""
    path = TEXT_DIR / f"{module.rsplit('.', 1)[-1]}.md"
    if not path.is_file():
        raise FileNotFoundError(f"missing the reproduction's text file {path}")
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip().lower(), [])
        elif current is not None:
            current.append(line)
    return "\n".join(sections.get(section.lower(), [])).strip()


def said(module: str, key: str, name: str = "") -> tuple[str, str]:
    """The claim and the paper's statement: the 2 lines of ``claim <key>`` in ``module``'s text."""
    claim, paper = paper_text(module, f"claim {key}").format(name=name).split("\n", 1)
    return claim.strip(), paper.strip()


def results_path(name: str, settings: Any) -> Path:
    """Where the metrics of ``name`` run with ``settings`` are cached."""
    return cache_root() / "results" / f"{name}-{settings_hash(settings)}.json"


# --------------------------------------------------------------------------- entry points
def reproduce(
    name: str,
    out_dir: str | os.PathLike | None = None,
    quick: bool = False,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Run the registered reproduction ``name`` (what ``diffusio reproduce`` calls): the
    overrides are validated before anything runs (see :meth:`Reproduction.run`)."""
    return get_reproduction(name).run(out_dir, quick, overrides=overrides, progress=progress)


def describe_settings(name: str, quick: bool = False) -> str:
    """The settings of ``name`` (quick or default) as ``key = value`` lines with their types."""
    cls = get_reproduction(name)
    settings = cls.settings(quick)
    hints = _hints(cls.Settings)
    lines = [f"# {name} ({'quick' if quick else 'default'} run); change with --set key=value"]
    for field in dataclasses.fields(settings):
        hint = hints[field.name]
        shown = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
        lines.append(f"{field.name} = {getattr(settings, field.name)!r}  ({shown})")
    return "\n".join(lines)
