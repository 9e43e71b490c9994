"""`lara export --to onnx` and the onnxruntime runtime: the exported graphs give PyTorch's chunks
(same observation, same noise) within 1e-4 normalised, at N=1 and N=8, and the dynamics check
picks the same candidate; graphs of other weights are refused; a bad checkpoint is one line.
The int8 graph (`--quantize int8`, runtime onnxruntime-int8) is held to a measured error bound
against the fp32 graph instead (tests/core/test_export_int8.py)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from synthetic import TASKS, draw
from lara_policy.cli import main as lara_main
from lara_policy.common.policy_api import Observation
from lara_policy.core.policy import LaraPolicy

pytest.importorskip("onnxruntime")


def _obs(x: float) -> Observation:
    return Observation(images={"corner4": draw(x, 0.3, 40)}, state=np.array([x, 0.3, 0, -1, 0.9, 0.9, 0], np.float32),
                       instruction=TASKS["move-right"])


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    assert lara_main(["export", str(trained_run), "--to", "onnx", "--quantize", "int8", "--out", str(out)]) == 0
    return out


def test_export_writes_graphs_with_parity(exported):
    info = json.loads((exported / "export.json").read_text())
    assert sorted(info["graphs"]) == ["check.onnx", "policy.int8.onnx", "policy.onnx"]
    assert (exported / "policy.onnx").stat().st_size > 10_000 and (exported / "check.onnx").exists()
    for n in ("n1", "n8"):
        assert info["parity"][n]["actions_max_abs"] < 1e-4, info["parity"]
        assert info["parity"][n]["latent_max_abs"] < 1e-4, info["parity"]
    assert info["parity"]["n8"]["effect_max_abs"] < 1e-4


def test_onnxruntime_policy_matches_torch(trained_run, exported):
    torch_policy = LaraPolicy.from_checkpoint(trained_run, device="cpu")
    ort_policy = LaraPolicy.from_checkpoint(trained_run, device="cpu", runtime="onnxruntime", onnx_dir=exported)
    assert ort_policy.runtime == "onnxruntime" and torch_policy.runtime == "torch"
    std = torch_policy._action_std.numpy()
    for x, n, seed in ((0.3, 1, 0), (0.5, 8, 1), (0.2, 8, 7)):
        a, b = torch_policy.predict_chunk(_obs(x), num_candidates=n, seed=seed), \
            ort_policy.predict_chunk(_obs(x), num_candidates=n, seed=seed)
        assert np.abs((a.actions - b.actions) / std).max() < 1e-4
        np.testing.assert_allclose(a.info["predicted_latent"], b.info["predicted_latent"], atol=1e-4)
        if n > 1:
            assert a.check.chosen_index == b.check.chosen_index
            np.testing.assert_allclose(a.check.predicted_effect, b.check.predicted_effect, rtol=1e-3, atol=1e-5)


def test_graphs_of_other_weights_are_refused(trained_run, exported, tmp_path, capsys):
    """An export folder records the weights it came from (sha256); other weights are refused."""
    stale = tmp_path / "stale"
    shutil.copytree(exported, stale)
    info = json.loads((stale / "export.json").read_text())
    info["weights_sha256"], info["model_id"] = "0" * 64, "an-older-model"
    (stale / "export.json").write_text(json.dumps(info))
    from lara_policy.core.export import ExportError
    with pytest.raises(ExportError, match="other weights"):
        LaraPolicy.from_checkpoint(trained_run, device="cpu", runtime="onnxruntime", onnx_dir=stale)
    with pytest.raises(ExportError, match="no policy.onnx"):
        LaraPolicy.from_checkpoint(trained_run, device="cpu", runtime="onnxruntime", onnx_dir=tmp_path / "empty")
    assert lara_main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "not a checkpoint directory" in err and "Traceback" not in err
