"""``diffusio text train | sample | nll`` on a small user-style text file, both kinds of model
(masked diffusion, Sahoo et al. 2024 MDLM; autoregressive), and one clear line + exit code 2 for
each kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffusio.cli import main

POEM = (
    "The quick brown fox jumps over the lazy dog.\n"
    "A stitch in time saves nine, and a rolling stone gathers no moss.\n"
    "All that glitters is not gold; the early bird catches the worm.\n"
) * 6


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "poem.txt"
    path.write_text(POEM, encoding="utf-8")
    return path


def _train(corpus: Path, out: Path, kind: str) -> int:
    return main(["text", "train", str(corpus), "--out", str(out), "--model", kind,
                 "--steps", "20", "--length", "16", "--batch-size", "8", "--d-model", "32",
                 "--n-layers", "1", "--n-heads", "2", "--no-progress"])  # fmt: skip


@pytest.fixture(scope="module", params=["mdlm", "ar"])
def run(request, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp(request.param) / "run"
    assert _train(corpus, out, request.param) == 0
    return request.param, out


def _one_line_error(capsys, code: int, *fragments: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("diffusio: error:") and "\n" not in err, err
    for f in fragments:
        assert f in err, err


def test_train_writes_a_text_run(run, capsys):
    kind, out = run
    for name in ("text.json", "config.json", "ema.safetensors", "model.safetensors",
                 "metrics.jsonl", "latest"):  # fmt: skip
        assert (out / name).is_file(), name
    from diffusio.text.runs import load_text_run

    model, vocab = load_text_run(out)
    assert model.kind == kind and model.length == 16 and vocab.size == len(set(POEM)) + 1


def test_sample_with_and_without_a_prompt(run, capsys):
    kind, out = run
    capsys.readouterr()
    assert main(["text", "sample", str(out), "--n", "3", "--length", "12", "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert text.count("--- sample") == 3
    assert main(["text", "sample", str(out), "--n", "2", "--length", "16", "--steps", "4",
                 "--prompt", "The quick"]) == 0  # fmt: skip
    chunks = capsys.readouterr().out.split("--- sample ")[1:]
    assert len(chunks) == 2
    for chunk in chunks:
        body = chunk.split("\n", 1)[1]
        assert body.startswith("The quick") and len(body.rstrip("\n")) >= 9


def test_nll_reports_bits_per_char_exact_or_bound(run, corpus, capsys):
    kind, out = run
    capsys.readouterr()
    assert main(["text", "nll", str(out), str(corpus), "--draws", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert "bits/char" in line and "+-" in line
    assert ("exact NLL" in line) if kind == "ar" else ("upper bound" in line)


def test_help_says_how_mdlm_conditions_on_a_prompt(capsys):
    assert main(["text", "sample", "--help"]) == 0
    assert "infills the rest" in " ".join(capsys.readouterr().out.split())


def test_bad_input_is_one_line_and_exit_2(run, tmp_path, capsys):
    _, out = run
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x00\x01\x02binary\xff")
    capsys.readouterr()
    _one_line_error(capsys, _train(empty, tmp_path / "r1", "mdlm"), "empty")
    _one_line_error(capsys, _train(binary, tmp_path / "r2", "ar"), "binary")
    _one_line_error(capsys, _train(tmp_path / "nope.txt", tmp_path / "r3", "ar"), "no such file")
    _one_line_error(capsys, main(["text", "sample", str(out), "--prompt", "Zebra\u00e9"]),
                    "not in the vocabulary")  # fmt: skip
    unknown = tmp_path / "other.txt"
    unknown.write_text("Quixotic jazz @ 42 %" * 3, encoding="utf-8")
    _one_line_error(capsys, main(["text", "nll", str(out), str(unknown)]), "not in the vocabulary")
    _one_line_error(capsys, main(["text", "nll", str(out), str(empty)]), "empty")
    _one_line_error(capsys, main(["text", "sample", str(tmp_path / "missing")]), "no such run")
    _one_line_error(capsys, main(["text", "nll", str(tmp_path), str(unknown)]), "not a text run")
    _one_line_error(capsys, main(["text", "sample", str(out), "--length", "99"]), "block length")
    _one_line_error(capsys, _train(Path(__file__), out, "ar"), "already holds a run")


def test_validation_curve_and_resume(corpus, tmp_path, capsys):
    """--validation logs the EMA model's validation bits/char every --eval-every steps; --resume
    continues to more steps from the run's checkpoint, and refuses a different model."""
    import json

    held = tmp_path / "held.txt"
    held.write_text(POEM[:200], encoding="utf-8")
    out = tmp_path / "run"
    args = ["text", "train", str(corpus), "--out", str(out), "--model", "mdlm", "--length", "16",
            "--batch-size", "8", "--d-model", "32", "--n-layers", "1", "--n-heads", "2",
            "--no-progress", "--validation", str(held), "--eval-every", "5"]  # fmt: skip
    assert main([*args, "--steps", "10"]) == 0
    assert "validation" in capsys.readouterr().out
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in metrics if m["kind"] == "eval"]
    assert [m["step"] for m in evals] == [5, 10]
    assert all(m["val_bits"] > 0 and m["val_stderr"] >= 0 for m in evals)
    assert main([*args, "--steps", "15", "--resume"]) == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m["kind"] == "eval"] == [5, 10, 15]
    capsys.readouterr()
    code = main([*args, "--steps", "20", "--resume", "--d-model", "16"])
    _one_line_error(capsys, code, "cannot resume")
