"""imagen-2022: the claim rules' edges and the smoke run's report (the contract test checks the
rest): every arm evaluated on both vocabularies, the sweep and cascade tables complete, the
trained runs ordinary run directories that ``diffusio txt2img`` samples."""

import json

import numpy as np
import pytest

pytest.importorskip("tokenizers")

from diffusio.papers import imagen_2022 as imagen  # noqa: E402
from diffusio.papers.verdicts import NOT, PARTLY, REPRODUCED  # noqa: E402


def test_rule_edges():
    # the paraphrase gain must clear 10 points beyond the noise, not merely be positive
    assert imagen.frozen_encoder(in_vocab=0.0, in_se=0.01, paraphrase=0.12, para_se=0.02) == NOT
    assert imagen.frozen_encoder(in_vocab=0.0, in_se=0.01, paraphrase=0.2, para_se=0.02) == REPRODUCED
    # clearly worse in the training vocabulary fails whatever the paraphrases say
    assert imagen.frozen_encoder(in_vocab=-0.1, in_se=0.01, paraphrase=0.5, para_se=0.02) == NOT
    assert imagen.dynamic_thresholding(outcomes=[1, 0, 1]) == PARTLY
    assert imagen.dynamic_thresholding(outcomes=[1, -1, 1]) == NOT
    assert imagen.txt2img_target(attributes=0.8, digit=0.95) == REPRODUCED
    assert imagen.txt2img_target(attributes=0.75, digit=0.93) == PARTLY


def test_smoke_report(smoke_run, capsys, tmp_path):
    from cli_helpers import run_command

    out, _ = smoke_run("imagen-2022")
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    s = imagen.Imagen2022.settings(True, imagen.Imagen2022.SMOKE)
    assert set(m["encoders"]) == set(imagen.ARMS)
    assert all(set(e) == {"train", "heldout"} for e in m["encoders"].values())
    assert len(m["sweep"]) == 3 * len(s.scales)
    models = {(x["model"], x["input"]) for x in m["cascade"]["rows"]}
    assert ("sr-aug", "base samples") in models and ("sr-clean", "real low-res") in models
    assert m["params"]["minilm"]["encoder_trained"] is False
    assert m["params"]["scratch"]["encoder_trained"] is True
    assert m["params"]["scratch-wide"]["unet"] > m["params"]["scratch"]["unet"]
    for name in ("paraphrases.png", "guidance-sweep.png"):
        assert (out / name).is_file()
    npz = tmp_path / "s.npz"
    code, _, err = run_command(capsys, "txt2img", m["runs"]["minilm"], "a bold seven", "--n", 2,
                               "--steps", 2, "--out", npz)  # fmt: skip
    assert code == 0, err
    with np.load(npz) as f:
        assert f["samples"].shape == (2, 1, s.canvas, s.canvas)
