"""`lara bench model --vision conv,lite0`: both vision presets timed in one run, each with its
inference figures per runtime and its train step, the first preset's as the headline."""
from __future__ import annotations

import json

from lara_policy.cli import main as lara_main


def test_bench_model_times_both_vision_presets(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert lara_main(["bench", "model", "--vision", "conv,lite0", "--runtime", "torch", "--repeats", "2",
                      "--rounds", "1", "--steps-per-round", "1", "--batch-size", "4", "--fake-text",
                      "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert list(res["vision"]) == ["conv", "lite0"]
    conv, lite = res["vision"]["conv"], res["vision"]["lite0"]
    for f in (conv, lite):
        assert f["runtimes"]["torch"]["n1_p50_ms"] > 0 and f["runtimes"]["torch"]["n8_p50_ms"] > 0
        assert f["train_samples_per_s_dit_only"] > 0
    assert res["infer_p50_ms_n1"] == conv["infer_p50_ms_n1"]          # the headline is the first preset's
    assert lite["settings"]["vision_backbone"] == "efficientnet_lite0" and lite["params_total"] > conv["params_total"]
    assert "vision lite0: train samples/s" in capsys.readouterr().out
