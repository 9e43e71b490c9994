"""Inference API: checkpoint round trip, the dynamics check, surprise, bad input, bad checkpoints."""
from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
import torch

from lara_policy.common.policy_api import ChunkPrediction, Observation, Policy
from lara_policy.core.checkpoint import (CheckpointError, load_stats, load_text, load_weights, read_config,
                                         save_checkpoint)
from lara_policy.core.modeling import LaraModel
from lara_policy.core.policy import LaraPolicy
from synthetic import TASKS, draw


def _obs(size=40, instruction=TASKS["move-right"], state=None, x=0.3):
    st = np.array([x, 0.3, 0, -1, 0.9, 0.9, 0], np.float32) if state is None else state
    return Observation(images={"corner4": draw(x, 0.3, size)}, state=st, instruction=instruction)


@pytest.fixture(scope="module")
def policy(trained_run):
    return LaraPolicy.from_checkpoint(trained_run, device="cpu")


def test_meta_and_protocol(policy, trained_run):
    assert isinstance(policy, Policy)
    m = policy.meta
    assert (m.action_space, m.action_dim, m.horizon, m.state_dim) == ("ee_delta_xyz_gripper", 4, 8, 7)
    assert m.cameras == ["corner4"] and m.image_size == (32, 32) and len(m.state_names) == 7
    assert m.model_id.startswith("tiny-") and len(m.model_id) > 8
    assert json.loads((trained_run / "meta.json").read_text())["model_id"] == m.model_id


def test_predict_chunk_any_image_size(policy):
    for size in (40, 64, 17):
        pred = policy.predict_chunk(_obs(size), seed=0)
        assert isinstance(pred, ChunkPrediction) and pred.check is None
        assert pred.actions.shape == (8, 4) and pred.actions.dtype == np.float32
        assert np.all(np.isfinite(pred.actions)) and pred.info["latency_ms"] > 0
        assert pred.info["predicted_latent"].shape == (4, 8)


def test_save_load_identical_chunks(trained_run, tmp_path, policy):
    a = policy.predict_chunk(_obs(), seed=7).actions
    # in-memory model -> save -> load: same chunks for the same noise seed
    copy = tmp_path / "copy"
    cfg, _ = read_config(trained_run)
    model = LaraModel(cfg)
    load_weights(trained_run, model)
    shutil.copytree(trained_run, copy)
    instructions, emb, mask = load_text(trained_run)
    save_checkpoint(copy, model, cfg, stats=load_stats(trained_run), instructions=instructions, text=(emb, mask))
    b = LaraPolicy.from_checkpoint(copy, device="cpu").predict_chunk(_obs(), seed=7).actions
    np.testing.assert_array_equal(a, b)
    c = policy.predict_chunk(_obs(), seed=8).actions
    assert not np.array_equal(a, c), "a different noise seed should give a different chunk"


def test_dynamics_check_picks_the_candidate_the_others_agree_on(policy, monkeypatch):
    """N candidates: the check publishes the one whose predicted latent f_psi(h) agrees most
    with the other candidates'. An outlier loses even with the largest predicted visual change
    (which the score before issue 9 picked), and the chunk returned is the chosen candidate's."""
    from lara_policy.core.policy import latent_consensus
    n = 5
    base = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    pred_z = base + 0.3 * torch.randn(n, 4, 8, generator=torch.Generator().manual_seed(1))
    pred_z[0] = -base                                                  # the outlier ...
    effect = torch.tensor([5.0, 1.0, 1.0, 1.0, 1.0])                  # ... with the biggest effect
    real_sample = policy._sample
    monkeypatch.setattr(policy, "_sample", lambda *a: (real_sample(*a)[0], pred_z))
    monkeypatch.setattr(policy.model, "check_scores", lambda image_t, z: (effect, torch.zeros(n)))
    pred = policy.predict_chunk(_obs(), num_candidates=n, seed=3)
    chosen = pred.check.chosen_index
    assert chosen == int(latent_consensus(pred_z).argmax()) and chosen != 0
    np.testing.assert_allclose(pred.info["check_consensus"], latent_consensus(pred_z).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(pred.check.predicted_latent, pred_z[chosen].numpy())
    # the published chunk is candidate `chosen` of the same noise draw
    images, state, text, text_mask = policy._observation_tensors(_obs())
    noise = torch.randn(n, 8, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        cands, _ = policy.model.sample(images, state, text, text_mask, noise, policy.config.vla.euler_steps)
    want = (cands[chosen] * policy._action_std + policy._action_mean).numpy()
    np.testing.assert_allclose(pred.actions, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(pred.actions, (cands[0] * policy._action_std + policy._action_mean).numpy())
    # the earlier score, kept for comparisons, takes the biggest predicted change
    policy.check_score = "effect"
    try:
        assert policy.predict_chunk(_obs(), num_candidates=n, seed=3).check.chosen_index == 0
    finally:
        policy.check_score = "consensus"
    # same seed, same candidates, same choice (real check)
    monkeypatch.undo()
    a, b = (policy.predict_chunk(_obs(), num_candidates=6, seed=1) for _ in range(2))
    assert a.check.num_candidates == 6 and a.check.predicted_latent.shape == (4, 8)
    np.testing.assert_array_equal(a.actions, b.actions)
    assert a.info["predicted_latent"].shape == (4, 8)


def test_all_null_flag(policy):
    """With a null threshold above every candidate's effect, the step is flagged, not accepted."""
    old = policy.config.null_effect_threshold
    try:
        policy.config.null_effect_threshold = 1e9
        chk = policy.predict_chunk(_obs(), num_candidates=4, seed=0).check
        assert not chk.accepted and "do nothing" in chk.reason
        policy.config.null_effect_threshold = 1e-12
        assert policy.predict_chunk(_obs(), num_candidates=4, seed=0).check.accepted
    finally:
        policy.config.null_effect_threshold = old


@pytest.mark.parametrize("bad, match", [
    (dict(images={"corner4": np.zeros((32, 32, 3), np.float32)}), "uint8"),
    (dict(images={"corner4": np.zeros((32, 32), np.uint8)}), "shape"),
    (dict(images={"wrist": np.zeros((32, 32, 3), np.uint8)}), "camera"),
    (dict(state=np.array([np.nan] * 7, np.float32)), "NaN"),
    (dict(state=np.zeros(5, np.float32)), "state"),
    (dict(instruction="   "), "instruction"),
])
def test_bad_input_raises_value_error(policy, bad, match):
    obs = _obs()
    for k, v in bad.items():
        setattr(obs, k, v)
    with pytest.raises(ValueError, match=match):
        policy.predict_chunk(obs)


def test_unknown_instruction_loads_language_model(policy):
    pred = policy.predict_chunk(_obs(instruction="slide the red block rightwards"), seed=0)
    assert pred.actions.shape == (8, 4)
    from lara_policy.core.processing import TextEmbedder
    assert ("slide the red block rightwards", policy.config.vla.text_tokens) in TextEmbedder.get().cache


def test_meta_readable_while_predicting(policy):
    errors = []

    def worker():
        try:
            for _ in range(5):
                policy.predict_chunk(_obs(), num_candidates=2)
        except Exception as exc:   # pragma: no cover - reported below
            errors.append(exc)

    th = threading.Thread(target=worker)
    th.start()
    while th.is_alive():
        assert policy.meta.action_dim == 4
    th.join()
    assert not errors


def test_corrupt_and_mismatched_checkpoints_refused(trained_run, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        LaraPolicy.from_checkpoint(tmp_path / "nowhere")
    # truncated weights: the recorded sha256 no longer matches
    bad = tmp_path / "truncated"
    shutil.copytree(trained_run, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        LaraPolicy.from_checkpoint(bad)
    # truncated weights without a hash to compare: safetensors itself refuses
    meta = json.loads((bad / "meta.json").read_text())
    meta.pop("sha256")
    (bad / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="corrupt"):
        LaraPolicy.from_checkpoint(bad)
    # config of another architecture than the weights
    mism = tmp_path / "mismatch"
    shutil.copytree(trained_run, mism)
    raw = json.loads((mism / "config.json").read_text())
    raw["model"]["vla"]["width"] = 96
    (mism / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="does not fit"):
        LaraPolicy.from_checkpoint(mism)
    # garbage config
    (mism / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json"):
        LaraPolicy.from_checkpoint(mism)
    # a pickle where safetensors belongs is never unpickled
    pick = tmp_path / "pickle"
    shutil.copytree(trained_run, pick)
    torch.save({"x": torch.zeros(2)}, pick / "model.safetensors")
    with pytest.raises(CheckpointError):
        LaraPolicy.from_checkpoint(pick)


def test_run_time_instructions_go_through_the_embedder_and_checkpoint_ones_never_do(policy, monkeypatch):
    """Run-time instructions are embedded by TextEmbedder (whose bounded LRU cache is tested
    below: a robot fed endless distinct instructions must not grow memory); the checkpoint's own
    instructions are answered from the checkpoint and never embedded."""
    from lara_policy.core import policy as policy_module
    calls = []

    class FakeEmbedder:            # MiniLM's output is irrelevant here; counting calls is the point
        def embed(self, instructions, tokens):
            calls.append(instructions[0])
            return np.full((1, tokens, 384), len(calls), np.float32), np.ones((1, tokens), bool)

    monkeypatch.setattr(policy_module.TextEmbedder, "get", classmethod(lambda cls: FakeEmbedder()))
    emb, mask = policy._instruction("move to place 7")
    assert calls == ["move to place 7"] and float(emb[0, 0]) == 1.0 and bool(mask.all())
    emb, _ = policy._instruction(TASKS["move-right"])
    assert calls == ["move to place 7"]                       # a checkpoint instruction: never embedded
    assert not torch.equal(emb, torch.ones_like(emb))


def test_language_model_cache_is_bounded_and_answers_every_call(monkeypatch):
    from lara_policy.core.processing import TextEmbedder
    emb = TextEmbedder.get()
    monkeypatch.setattr(emb, "max_cache", 2)
    monkeypatch.setattr(emb, "cache", type(emb.cache)())
    e3, m3 = emb.embed(["push the puck", "open the drawer", "reach the goal"], 16)   # more than the cache holds
    assert e3.shape == (3, 16, 384) and m3.shape == (3, 16) and len(emb.cache) == 2
    again, _ = emb.embed(["reach the goal"], 16)                     # kept (most recent): identical
    assert np.array_equal(again[0], e3[2]) and ("push the puck", 16) not in emb.cache
