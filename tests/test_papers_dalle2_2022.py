"""dalle2-2022: the claim rules' edges and the smoke run's report (the contract test checks the
rest): every conditioning arm decoded and judged, the diversity sweep for both decoders at every
scale, CLIP's zero-shot and retrieval numbers, the variations figure."""

import json

from diffusio.papers import dalle2_2022 as dalle2
from diffusio.papers.verdicts import NOT, REPRODUCED


def test_rule_edges():
    assert dalle2.prior_beats_text(gain=0.03, se=0.02) == NOT  # inside 2 se
    assert dalle2.prior_beats_text(gain=0.05, se=0.02) == REPRODUCED
    assert dalle2.diversity(gain=0.0, se=0.01) == NOT
    assert dalle2.diffusion_over_regression(gain=-5.0, se=0.1) == NOT


def test_smoke_report(smoke_run):
    out, _ = smoke_run("dalle2-2022")
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    s = dalle2.DALLE22022.settings(True, dalle2.DALLE22022.SMOKE)
    assert set(m["priors"]) == set(dalle2.ARMS)
    assert "embedding_fd" in m["priors"]["diffusion prior"]
    assert "embedding_fd" not in m["priors"]["caption only"]
    assert len(m["diversity"]) == 2 * len(s.scales)
    assert all(len(x["per_caption"]) == s.n_captions for x in m["diversity"])
    assert 0 <= m["clip"]["zero_shot"] <= 1 and 0 <= m["clip"]["recall_at_5"] <= 1
    assert 0 <= m["variations_digit_kept"] <= 1
    assert (out / "diversity.png").is_file() and (out / "variations.png").is_file()


def test_txt2img_samples_the_unclip_run(smoke_run, capsys, tmp_path):
    import numpy as np
    import pytest
    from cli_helpers import one_line_error, run_command

    out, _ = smoke_run("dalle2-2022")
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    run = m["runs"]["unclip"]
    npz = tmp_path / "s.npz"
    with pytest.warns(UserWarning, match="never seen the words"):
        code, _, err = run_command(capsys, "txt2img", run, "a zebra seven", "--n", 3,
                                   "--steps", 2, "--out", npz)  # fmt: skip
    assert code == 0, err
    with np.load(npz) as f:
        assert f["samples"].shape == (3, 1, 8, 8)
    assert "unknown threshold" in one_line_error(capsys, "txt2img", run, "a seven", "--threshold",
                                                 "soft", "--out", npz)  # fmt: skip
