"""`lara eval sim` / evaluate(): the harness measures real closed-loop success."""
import json
from pathlib import Path

import numpy as np
import pytest

from lara_policy import cli
from lara_policy.common.policy_api import ChunkPrediction, Policy, PolicyMeta
from lara_policy.evaluation.harness import ChunkExecutor, SeedOverlapError, evaluate
from lara_policy.evaluation.policies import OracleFactory, OraclePolicy, RandomFactory, RandomPolicy
from lara_policy.evaluation.stats import wilson_interval

TASKS = ["reach-v3", "push-v3", "drawer-close-v3"]


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-3) and hi == pytest.approx(0.7634, abs=1e-3)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-3)
    lo, hi = wilson_interval(10, 10)
    assert lo == pytest.approx(0.7225, abs=1e-3) and hi == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_reference_policies_implement_the_api():
    """Behaviour, not attribute presence: the oracle returns the scripted expert's clipped action for a
    real observation; the random policy gives (H, 4) in [-1, 1], reproducible per seed."""
    from metaworld.policies import ENV_POLICY_MAP

    from lara_policy.sim.metaworld_env import MetaWorldEnv
    assert isinstance(OraclePolicy(), Policy) and isinstance(RandomPolicy(), Policy)
    env = MetaWorldEnv("reach-v3", image_size=32)
    try:
        obs = env.reset(seed=3)
        pred = OraclePolicy().predict_chunk(obs)          # the task comes from the instruction
        expert = np.clip(ENV_POLICY_MAP["reach-v3"]().get_action(np.asarray(obs.raw)), -1, 1)
        assert pred.actions.shape == (1, 4) and np.allclose(pred.actions[0], expert, atol=1e-6)
        with pytest.raises(ValueError, match="obs.raw"):
            OraclePolicy().predict_chunk(obs.__class__(images=obs.images, state=obs.state,
                                                       instruction=obs.instruction))
    finally:
        env.close()
    r = RandomPolicy(horizon=5, seed=1)
    a, b = r.predict_chunk(None, seed=7).actions, RandomPolicy(horizon=5, seed=1).predict_chunk(None, seed=7).actions
    assert a.shape == (5, 4) and np.all(np.abs(a) <= 1) and np.array_equal(a, b)
    assert not np.array_equal(a, r.predict_chunk(None, seed=8).actions)


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("oracle")
    res = evaluate(OracleFactory(), TASKS, episodes=4, max_steps=300, videos=2, out=out, progress=False)
    return res, out


def test_oracle_scores_high_with_full_report(oracle_run):
    res, out = oracle_run
    assert res["mean_success"] >= 0.9
    for t in TASKS:
        v = res["per_task"][t]
        assert v["episodes"] == 4 and v["success_rate"] >= 0.75
        assert v["ci95"][0] <= v["success_rate"] <= v["ci95"][1]
        assert v["seeds"] == [100000, 100003]
        assert 10 < v["mean_length"] < 300
    data = json.loads((out / "results.json").read_text())
    assert data["mean_success"] == res["mean_success"]
    assert set(data["per_task"]) == set(TASKS)
    assert {"success_rate", "ci95", "episodes"} <= set(data["per_task"]["push-v3"])
    assert len(data["episodes"]) == 12
    md = (out / "results.md").read_text()
    assert "| push-v3 |" in md and "mean" in md
    assert (out / "success.png").stat().st_size > 5000
    gifs = sorted((out / "videos").glob("*.gif"))
    assert len(gifs) == 2 and {g.name.split("_")[0] for g in gifs} == {"reach-v3", "push-v3"}
    import imageio.v2 as imageio
    frames = imageio.mimread(gifs[0])
    assert len(frames) > 5 and frames[0].shape[0] > 256       # frame + text banner


def test_random_policy_scores_near_zero(oracle_run):
    res = evaluate(RandomFactory(seed=1), ["push-v3", "drawer-open-v3", "pick-place-v3"], episodes=4,
                   max_steps=150, progress=False)
    assert res["mean_success"] <= 0.2
    assert oracle_run[0]["mean_success"] - res["mean_success"] >= 0.7
    for v in res["per_task"].values():
        assert v["mean_length"] > 100        # failures run to the step budget


def test_train_eval_seed_overlap_is_refused(tmp_path, capsys):
    from lara_policy.formats.demos import GenConfig, generate
    store = tmp_path / "train.hdf5"
    generate(GenConfig(tasks=["reach-v3"], episodes=2, image_size=(32, 32), seed_start=5), store, progress=False)
    with pytest.raises(SeedOverlapError, match=r"reach-v3: 1 seeds \(6\)"):
        evaluate(OracleFactory(), ["reach-v3"], episodes=3, seed_start=6, train_store=store, progress=False)
    # disjoint seeds are fine; other tasks are not constrained by reach's seeds
    res = evaluate(OracleFactory(), ["reach-v3"], episodes=1, seed_start=7, train_store=store, progress=False)
    assert res["per_task"]["reach-v3"]["episodes"] == 1
    evaluate(OracleFactory(), ["push-v3"], episodes=1, seed_start=5, train_store=store, progress=False)
    # CLI: clear error, exit code 2
    rc = cli.main(["eval", "sim", "--policy", "oracle", "--tasks", "reach", "--episodes", "2",
                   "--seed-start", "4", "--train-store", str(store), "--out", str(tmp_path / "e"), "--quiet"])
    assert rc == 2 and "overlap" in capsys.readouterr().err


def test_checkpoint_train_seeds_json_is_honoured(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "train_seeds.json").write_text(json.dumps({"push-v3": [100000, 100001]}))
    # refused before the checkpoint is ever loaded
    rc = cli.main(["eval", "sim", "--policy", str(ckpt), "--tasks", "push", "--episodes", "2",
                   "--out", str(tmp_path / "e"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "push-v3: 2 seeds (100000..100001)" in err


def test_cli_oracle_end_to_end(tmp_path, capsys):
    rc = cli.main(["eval", "sim", "--policy", "oracle", "--tasks", "reach", "--episodes", "2",
                   "--videos", "1", "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 0
    assert "| reach-v3 | 1.000" in capsys.readouterr().out
    assert len(list((tmp_path / "o" / "videos").glob("*.gif"))) == 1
    capsys.readouterr()
    assert cli.main(["eval", "sim", "--policy", "nosuch/ckpt", "--tasks", "reach", "--out", str(tmp_path)]) == 2
    assert "nosuch/ckpt" in capsys.readouterr().err
    assert cli.main(["eval", "sim", "--policy", "oracle", "--tasks", "rech-v3", "--out", str(tmp_path)]) == 2
    assert "reach-v3" in capsys.readouterr().err
    # no silent oracle: --policy is required
    assert cli.main(["eval", "sim", "--tasks", "reach", "--out", str(tmp_path)]) == 2
    assert "--policy" in capsys.readouterr().err


# -- chunk execution ------------------------------------------------------------------------------
class CountingPolicy:
    """Chunk c (0-based call index) has action[j] = [100*c + j, 0, 0, 0]."""

    def __init__(self, horizon=4):
        self.meta = PolicyMeta("ee_delta_xyz_gripper", 4, horizon, 0.0125, [], (32, 32), 7)
        self.calls = 0

    def reset(self):
        self.calls = 0

    def predict_chunk(self, obs, num_candidates=1, seed=None):
        a = np.zeros((self.meta.horizon, 4), np.float32)
        a[:, 0] = 100 * self.calls + np.arange(self.meta.horizon)
        self.calls += 1
        return ChunkPrediction(actions=a)


def test_execute_k_replans_every_k_steps():
    p = CountingPolicy(4)
    ex = ChunkExecutor(p, execute_k=2)
    xs = [ex.act(None)[0] for _ in range(6)]
    assert xs == [0, 1, 100, 101, 200, 201] and ex.calls == 3
    ex = ChunkExecutor(CountingPolicy(4))             # default: the whole chunk
    assert [ex.act(None)[0] for _ in range(5)] == [0, 1, 2, 3, 100]
    with pytest.raises(ValueError, match="execute_k=5 must be in"):
        ChunkExecutor(CountingPolicy(4), execute_k=5)


def test_temporal_ensembling_averages_overlapping_chunks():
    ex = ChunkExecutor(CountingPolicy(3), ensemble=True, ensemble_decay=0.0)
    got = [ex.act(None)[0] for _ in range(4)]
    # step 0: chunk0[0]=0; step 1: mean(chunk0[1]=1, chunk1[0]=100); step 2: mean(2, 101, 200);
    # step 3: chunk0 expired -> mean(chunk1[2]=102, chunk2[1]=201, chunk3[0]=300)
    np.testing.assert_allclose(got, [0, 50.5, 101, 201])
    ex = ChunkExecutor(CountingPolicy(3), ensemble=True, ensemble_decay=1.0)
    ex.act(None)
    w = np.exp(-np.arange(2.0))
    np.testing.assert_allclose(ex.act(None)[0], (w[0] * 1 + w[1] * 100) / w.sum(), rtol=1e-5)


class ChunkedOracle(OraclePolicy):
    """The expert's action repeated over a horizon-4 chunk (exercises chunk execution end to end)."""

    def __init__(self):
        super().__init__()
        self.meta.horizon = 4

    def predict_chunk(self, obs, num_candidates=1, seed=None):
        a = super().predict_chunk(obs).actions
        return ChunkPrediction(actions=np.repeat(a, 4, axis=0))


def test_chunked_oracle_and_workers_through_the_harness(tmp_path):
    """A horizon-4 policy run with execute_k / ensembling succeeds; 2 spawned workers give
    the same outcome as 1 worker for the deterministic oracle."""
    for kw in ({"execute_k": 2}, {"ensemble": True}, {}):
        r = evaluate(ChunkedOracle, ["reach-v3"], episodes=2, progress=False, **kw)
        assert r["mean_success"] == 1.0, kw
        calls = [e["policy_calls"] for e in r["episodes"]]
        lens = [e["length"] for e in r["episodes"]]
        expect = {"execute_k": lambda n: -(-n // 2), "ensemble": lambda n: n}.get(next(iter(kw), ""),
                                                                               lambda n: -(-n // 4))
        assert calls == [expect(n) for n in lens], kw
    one = evaluate(OracleFactory(), ["reach-v3"], episodes=2, progress=False)
    two = evaluate(OracleFactory(), ["reach-v3"], episodes=2, workers=2, progress=False)
    assert [e["length"] for e in one["episodes"]] == [e["length"] for e in two["episodes"]]
    assert one["mean_success"] == two["mean_success"] == 1.0


def test_bad_policy_output_is_reported():
    class Bad(CountingPolicy):
        def predict_chunk(self, obs, num_candidates=1, seed=None):
            return ChunkPrediction(actions=np.zeros((2, 7), np.float32))
    with pytest.raises(ValueError, match=r"\(H, 4\)"):
        evaluate(lambda: Bad(), ["reach-v3"], episodes=1, max_steps=5, progress=False)
