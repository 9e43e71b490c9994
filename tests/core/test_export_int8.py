"""Runtime onnxruntime-int8 (`lara export --quantize int8`): the int8 policy graph loads, runs at
N=1 and N=8, stays within a measured error bound of the fp32 graph, and its absence is one clear
error. Also: the export's rewritten sampling graph (core/export_graph.py) is the eager sampler's
function for configurations the trained fixture does not cover (no LAM, no FiLM, two cameras).

The int8 bound: on the same observation and noise, the mean |int8 - fp32| of the normalised
actions must stay below 0.1 x the mean spread between the N=8 fp32 candidates (another noise
draw moves a chunk ten times more than quantisation may), no action off by more than 0.1
normalised, and the dynamics check must pick the same candidate in at least 3 of 4 cases. On the
shipped checkpoint the export measures 0.0038 normalised, 0.17 of the candidate spread and 10 of
16 same choices on random inputs (where the candidates nearly coincide; on real MT3 frames 0.0035,
0.20 and 80%: docs/model.md, "Deployment speed"); a broken quantisation (weights saturated, the
wrong graph, a per-tensor scale on an outlier channel) moves actions by whole normalised units.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from synthetic import TASKS, draw, tiny_model_config
from lara_policy.cli import main as lara_main
from lara_policy.common.policy_api import Observation
from lara_policy.core.policy import LaraPolicy

pytest.importorskip("onnxruntime")


def _obs(x: float, y: float = 0.3) -> Observation:
    return Observation(images={"corner4": draw(x, y, 40)}, state=np.array([x, y, 0, -1, 0.9, 0.9, 0], np.float32),
                       instruction=TASKS["move-right"])


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx_int8")
    assert lara_main(["export", str(trained_run), "--to", "onnx", "--quantize", "int8", "--out", str(out)]) == 0
    return out


def test_int8_runtime_loads_and_runs_n1_n8(trained_run, exported):
    policy = LaraPolicy.from_checkpoint(trained_run, device="cpu", runtime="onnxruntime-int8", onnx_dir=exported)
    assert policy.runtime == "onnxruntime-int8" and policy.onnx.precision == "int8"
    for n in (1, 8):
        pred = policy.predict_chunk(_obs(0.4), num_candidates=n, seed=3)
        assert pred.actions.shape == (policy.meta.horizon, policy.meta.action_dim)
        assert np.all(np.isfinite(pred.actions))
        assert pred.info["predicted_latent"].shape == (4, 8)
        assert (pred.check is None) == (n == 1)
        if n == 8:
            assert 0 <= pred.check.chosen_index < 8 and pred.check.predicted_effect.shape == (8,)


def test_int8_error_bound_against_fp32(trained_run, exported):
    info = json.loads((exported / "export.json").read_text())["int8"]
    assert info["observations"] == 16 and info["relative_to_spread"] < 0.25 and info["latent_cos_min"] > 0.98, info
    fp32 = LaraPolicy.from_checkpoint(trained_run, device="cpu", runtime="onnxruntime", onnx_dir=exported)
    int8 = LaraPolicy.from_checkpoint(trained_run, device="cpu", runtime="onnxruntime-int8", onnx_dir=exported)
    std = fp32._action_std.numpy()
    errors, spreads, same, cases = [], [], 0, 0
    for i, (x, y) in enumerate(((0.2, 0.3), (0.5, 0.3), (0.7, 0.6), (0.35, 0.5), (0.6, 0.2), (0.45, 0.7),
                                (0.25, 0.6), (0.8, 0.4))):
        with torch.inference_mode():
            inputs = fp32._observation_tensors(_obs(x, y))
        noise = torch.randn(8, fp32.meta.horizon, fp32.meta.action_dim, generator=torch.Generator().manual_seed(i))
        a32, z32 = fp32.onnx.sample(*inputs, noise)
        a8, z8 = int8.onnx.sample(*inputs, noise)
        errors.append((a8 - a32).abs())
        spreads.append(float((a32 - a32.mean(0, keepdim=True)).abs().mean()))
        p32, p8 = (p.predict_chunk(_obs(x, y), num_candidates=8, seed=i) for p in (fp32, int8))
        same += p32.check.chosen_index == p8.check.chosen_index
        cases += 1
        # the physical chunk the policy returns: the same bound, in the checkpoint's units
        if p32.check.chosen_index == p8.check.chosen_index:
            assert np.abs((p32.actions - p8.actions) / std).max() < 0.1
    err = torch.stack(errors)
    assert float(err.max()) < 0.1, float(err.max())
    assert float(err.mean()) < 0.1 * float(np.mean(spreads)), (float(err.mean()), float(np.mean(spreads)))
    assert same >= 0.75 * cases, (same, cases)


def test_missing_int8_graph_is_one_clear_error(trained_run, exported, tmp_path, capsys):
    from lara_policy.core.export import ExportError
    fp32_only = tmp_path / "fp32_only"
    shutil.copytree(exported, fp32_only)
    (fp32_only / "policy.int8.onnx").unlink()
    with pytest.raises(ExportError, match=r"no policy.int8.onnx .*--quantize int8"):
        LaraPolicy.from_checkpoint(trained_run, device="cpu", runtime="onnxruntime-int8", onnx_dir=fp32_only)
    assert LaraPolicy.from_checkpoint(trained_run, device="cpu", runtime="onnxruntime", onnx_dir=fp32_only).runtime \
        == "onnxruntime"
    # a re-export without --quantize leaves no int8 graph of older weights behind
    again = tmp_path / "again"
    shutil.copytree(exported, again)
    assert lara_main(["export", str(trained_run), "--out", str(again)]) == 0
    assert not (again / "policy.int8.onnx").exists()
    with pytest.raises(ValueError, match="runtime must be one of"):
        LaraPolicy.from_checkpoint(trained_run, device="cpu", runtime="onnxruntime-fp16")
    assert lara_main(["eval", "sim", "--policy", str(trained_run), "--runtime", "int4", "--out", str(tmp_path / "e")]) == 2
    assert "int4" in capsys.readouterr().err


@pytest.mark.parametrize("variant,film,cameras", [("dit_only", True, ("corner4",)), ("lara", False, ("corner4",)),
                                                  ("lara", True, ("corner4", "gripperPOV"))])
def test_export_graph_is_the_eager_sampler(variant, film, cameras):
    """InferenceGraph (what policy.onnx is traced from) == LaraModel.sample + f_psi, random weights
    (the zero-initialised adaLN modulation randomised too), N=1 and N=3."""
    from lara_policy.core.export import PolicyGraph
    from lara_policy.core.export_graph import InferenceGraph
    from lara_policy.core.modeling import LaraModel
    cfg = tiny_model_config(variant)
    cfg.vla.film, cfg.vla.cameras = film, list(cameras)
    torch.manual_seed(0)
    model = LaraModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    v = cfg.vla
    g = torch.Generator().manual_seed(1)
    images = torch.rand(1, len(cameras), 3, v.image_size, v.image_size, generator=g)
    state, text = torch.randn(1, v.state_dim, generator=g), torch.randn(1, v.text_tokens, v.text_dim, generator=g)
    mask = torch.arange(v.text_tokens)[None] < 5          # padded instruction: the mask bias matters
    with torch.no_grad():
        for n in (1, 3):
            noise = torch.randn(n, v.horizon, v.action_dim, generator=g)
            a0, z0 = PolicyGraph(model)(images, state, text, mask, noise)
            a1, z1 = InferenceGraph(model)(images, state, text, mask, noise)
            assert a1.shape == a0.shape and z1.shape == z0.shape
            assert float((a0 - a1).abs().max()) < 1e-5 and float((z0 - z1).abs().max()) < 1e-5
