"""The import direction of docs/architecture.md: a lower layer never imports a higher one.

Every module under ``src/diffusio`` is parsed with :mod:`ast` (nothing is imported) and each of
its imports of diffusio -- absolute or relative, at module level or inside a function -- is
checked against :data:`MAY_IMPORT`. Paper modules also may not import one another.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "diffusio"

#: The layer of each top-level module of diffusio (subpackages are layers by their own name;
#: a subpackage not named in MAY_IMPORT is a domain package: image, toy, text, control, ...).
TOP_LEVEL = {
    "diffusio": "api",  # the package itself: lazy re-exports of core
    "diffusio.io": "util",  # atomic writes, JSON, safetensors
    "diffusio.threads": "util",  # torch thread-count context
    "diffusio.oracle": "core",  # re-exports diffusio.core.oracle
    "diffusio.plotting": "plotting",  # matplotlib figures, image grids
    "diffusio.cli": "app",
    "diffusio.commands": "app",
    "diffusio.__main__": "app",
    "diffusio.timeline": "app",
    "diffusio.demo": "app",  # the digits demo (`diffusio demo`)
}

#: Which layers each layer may import (besides itself). "domain" stands for every domain
#: package; a domain package may import another one.
MAY_IMPORT: dict[str, set[str]] = {
    "util": set(),
    "core": {"util"},
    "api": {"core", "util"},
    "nets": {"core", "util"},
    "data": {"core", "util"},
    "plotting": {"util", "data"},
    "metrics": {"core", "nets", "data", "util", "api"},
    "train": {"core", "nets", "data", "util", "plotting", "api"},
    "domain": {"core", "nets", "data", "util", "plotting", "metrics", "train", "api", "domain"},
    "papers": {"core", "nets", "data", "util", "plotting", "metrics", "train", "api", "domain"},
    "app": {"core", "nets", "data", "util", "plotting", "metrics", "train", "api", "domain",
            "papers"},
}  # fmt: skip

#: Modules of diffusio.papers every paper may import (everything else there is a paper).
SHARED_PAPER_MODULES = {"__init__", "base", "report", "runs", "verdicts", "_template"}

#: Known violations being fixed now (issue 10): each is (importing module, imported module).
#: Empty this list as they go (an entry that no longer occurs is reported as a warning).
ALLOWED: set[tuple[str, str]] = set()  # known violations being fixed (none today)


def module_name(path: Path) -> str:
    """``src/diffusio/a/b.py`` -> ``diffusio.a.b``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str:
    """The module an import of ``name`` loads last (``diffusio.x.y`` or a package above it)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports_of(path: Path, module: str | None = None) -> list[tuple[int, str]]:
    """``(line, module)`` for every import of a diffusio module in the file at ``path`` (whose
    module name is ``module``, by default the one its place under ``src`` gives)."""
    module = module or module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "diffusio"
            ]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "diffusio":
                continue
            for alias in node.names:  # `from diffusio import commands` imports a submodule
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if sub in MODULES else target))
    return sorted({(line, _resolve(name)) for line, name in found})


def layer(module: str) -> str:
    """The layer of a diffusio module (see :data:`TOP_LEVEL`, :data:`MAY_IMPORT`)."""
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    sub = module.split(".")[1]
    if f"diffusio.{sub}" in TOP_LEVEL:
        return TOP_LEVEL[f"diffusio.{sub}"]
    return sub if sub in MAY_IMPORT else "domain"


def paper(module: str) -> str | None:
    """The paper a module of diffusio.papers belongs to; None for the shared ones."""
    parts = module.split(".")
    if parts[:2] != ["diffusio", "papers"] or len(parts) < 3:
        return None
    return None if parts[2] in SHARED_PAPER_MODULES else parts[2]


def module_violations(module: str, path: Path) -> list[tuple[str, str, str]]:
    """``(module, imported module, why)`` for every import of ``module`` breaking a rule."""
    out = []
    for line, target in imports_of(path, module):
        where = f"{path.relative_to(path.parents[2]) if module in MODULES else path}:{line}"
        src, dst = layer(module), layer(target)
        if src != dst and dst not in MAY_IMPORT[src]:
            out.append((module, target, f"{where}: {src} may not import {dst}"))
        elif paper(module) and paper(target) and paper(module) != paper(target):
            out.append((module, target, f"{where}: a paper may not import another paper"))
    return out


def violations() -> list[tuple[str, str, str]]:
    """Every rule-breaking import in diffusio."""
    return [v for module, path in MODULES.items() for v in module_violations(module, path)]


def test_every_top_level_module_has_a_layer():
    unknown = [m for m in MODULES if m.count(".") == 1 and MODULES[m].name != "__init__.py"
               and m not in TOP_LEVEL]  # fmt: skip
    assert not unknown, f"add these modules to TOP_LEVEL in {Path(__file__).name}: {unknown}"


def test_the_parser_sees_function_level_and_relative_imports():
    imports = {m for _, m in imports_of(MODULES["diffusio.cli"])}
    assert "diffusio.commands" in imports  # imported inside a function
    assert "diffusio.io" in {m for _, m in imports_of(MODULES["diffusio.plotting"])}  # relative
    assert layer("diffusio.core.samplers") == "core" and layer("diffusio.image.demo") == "domain"
    assert (
        paper("diffusio.papers.ddpm_2020") == "ddpm_2020" and paper("diffusio.papers.base") is None
    )


def test_lower_layers_never_import_higher_ones():
    found = violations()
    new = [why + f" ({src} -> {dst})" for src, dst, why in found if (src, dst) not in ALLOWED]
    assert not new, "import-direction violations:\n" + "\n".join(new)


def test_allowed_violations_still_exist():
    """An ALLOWED entry that was fixed should be removed from the list (a warning: the module
    is fixed in another change than this file)."""
    found = {(src, dst) for src, dst, _ in violations()}
    stale = sorted(ALLOWED - found)
    if stale:
        warnings.warn(f"fixed, remove from ALLOWED in {Path(__file__).name}: {stale}", stacklevel=1)


def test_a_planted_violation_is_found(tmp_path):
    """Relative, absolute and function-level imports are all caught, with the line."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from ..train import trainer\n"
        "def f():\n"
        "    import diffusio.papers.ddpm_2020\n"
        "    from diffusio import commands\n"
    )
    found = module_violations("diffusio.core.bad", bad)
    assert [(dst, why.rsplit(": ", 1)[1]) for _, dst, why in found] == [
        ("diffusio.train.trainer", "core may not import train"),
        ("diffusio.papers.ddpm_2020", "core may not import papers"),
        ("diffusio.commands", "core may not import app"),
    ]
    assert found[1][2].startswith(f"{bad}:3")
    paper_bad = tmp_path / "p.py"
    paper_bad.write_text("from .ddpm_2020 import Settings\nfrom .base import Reproduction\n")
    found = module_violations("diffusio.papers.new_2099", paper_bad)
    assert [(dst, why.rsplit(": ", 1)[1]) for _, dst, why in found] == [
        ("diffusio.papers.ddpm_2020", "a paper may not import another paper")
    ]


@pytest.mark.parametrize("module", ["diffusio", "diffusio.cli"])
def test_import_is_light(module):
    """`import diffusio` and the CLI module pull in neither torch nor matplotlib nor accelerate."""
    import subprocess
    import sys

    code = (f"import sys, {module}; "
            "print(sorted({'torch', 'matplotlib', 'accelerate'} & set(sys.modules)))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_public_names_resolve_lazily():
    """Every name in ``diffusio.__all__`` resolves to the object of the module defining it."""
    import importlib

    import diffusio

    assert set(diffusio.__all__) == {*diffusio._EXPORTS, "oracle", "__version__"}
    for name, module in diffusio._EXPORTS.items():
        assert getattr(diffusio, name) is getattr(importlib.import_module(module), name), name
    from diffusio import ClassifierFreeGuidance, ClassifierGuidance, VPCosine, ddim_encode

    assert (
        ClassifierGuidance.__module__
        == ClassifierFreeGuidance.__module__
        == "diffusio.core.steering"
    )
    assert callable(ddim_encode) and issubclass(VPCosine, diffusio.Process)
    assert diffusio.oracle.GaussianMixture is not None
    with pytest.raises(AttributeError):
        _ = diffusio.no_such_name
