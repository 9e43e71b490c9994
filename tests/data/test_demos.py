"""`lara demos`: real scripted experts into the episode store; schema, seeds, failures."""
import json

import h5py
import numpy as np
import pytest

from lara_policy import cli
from lara_policy.formats.demos import GenConfig, generate
from lara_policy.formats.store import EpisodeStore, StoreError
from lara_policy.sim.metaworld_env import TASK_PHRASINGS


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("demos") / "demos.hdf5"
    cfg = GenConfig(tasks=["reach-v3", "drawer-close-v3"], episodes=2, cameras=("corner4", "gripperPOV"),
                    image_size=(48, 48), seed_start=10, post_success_steps=3)
    stats = generate(cfg, path, progress=False)
    return path, stats


def test_store_schema_and_contents(small_store):
    path, stats = small_store
    assert stats["episodes"] == 4 and sum(stats["failed"].values()) == 0
    with EpisodeStore(path) as s:
        m = s.meta
        assert m.env == "metaworld-v3" and m.action_space == "ee_delta_xyz_gripper"
        assert m.action_dim == 4 and m.state_dim == 7 and m.cameras == ["corner4", "gripperPOV"]
        assert m.state_names == ["hand_x", "hand_y", "hand_z", "gripper", "goal_x", "goal_y", "goal_z"]
        assert m.image_size == (48, 48) and m.dt == pytest.approx(0.0125)
        assert set(m.phrasings) == {"reach-v3", "drawer-close-v3"}
        assert s.summary()["per_task"] == {"reach-v3": 2, "drawer-close-v3": 2}
        for ep in s:
            t = ep.num_steps
            assert ep.success and ep.source == "expert" and not ep.action_free
            assert ep.actions.shape == (t, 4) and np.abs(ep.actions).max() <= 1.0
            assert ep.images["corner4"].shape == (t, 48, 48, 3) and ep.images["corner4"].dtype == np.uint8
            assert ep.images["gripperPOV"].shape == (t, 48, 48, 3)
            assert ep.instruction in TASK_PHRASINGS[ep.task]
            # stops a few steps after the first success
            first = ep.extra["first_success_step"]
            assert first is not None and t == first + 3 and ep.step_success[first - 1]
            assert not ep.step_success[: first - 1].any()
            # goal is constant within an episode and the hand moves
            assert np.ptp(ep.state[:, 4:], axis=0).max() < 1e-6
            assert np.linalg.norm(ep.state[-1, :3] - ep.state[0, :3]) > 0.01
    # raw HDF5 layout as documented
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "lara-episodes"
        g = f["episodes/ep_000000"]
        assert {"obs", "state", "actions", "step_success"} <= set(g.keys())
        assert {"task", "instruction", "seed", "success", "action_free", "source", "num_steps"} <= set(g.attrs)


def test_seeds_recorded(small_store):
    path, stats = small_store
    with EpisodeStore(path) as s:
        assert s.seeds_by_task() == {"reach-v3": {10, 11}, "drawer-close-v3": {10, 11}}
        assert s.used_seeds() == {"reach-v3": {10, 11}, "drawer-close-v3": {10, 11}}
        assert s.meta.extra["seeds"] == {"drawer-close-v3": [10, 11], "reach-v3": [10, 11]}


def test_demos_are_replayable(small_store):
    """Replaying the stored actions from the recorded seed reproduces the stored states."""
    from lara_policy.sim.metaworld_env import MetaWorldEnv
    path, _ = small_store
    with EpisodeStore(path) as s:
        ep = s.episode(0)
    with MetaWorldEnv(ep.task, cameras=()) as env:
        obs = env.reset(seed=ep.seed)
        states = [obs.state]
        for a in ep.actions[:-1]:
            obs, _, _ = env.step(a)
            states.append(obs.state)
    np.testing.assert_allclose(np.stack(states), ep.state, atol=1e-5)


def test_failed_episodes_are_counted_and_discarded(tmp_path):
    # 8 steps are far too few for the drawer expert: every attempt fails
    cfg = GenConfig(tasks=["drawer-close-v3"], episodes=2, image_size=(32, 32), max_steps=8, fill=True,
                    max_attempts=3)
    st = generate(cfg, tmp_path / "f.hdf5", progress=False)
    assert st["failed"] == {"drawer-close-v3": 3} and st["episodes"] == 0
    assert st["short"] == {"drawer-close-v3": 2}
    with EpisodeStore(tmp_path / "f.hdf5") as s:
        assert len(s) == 0 and s.used_seeds() == {"drawer-close-v3": {0, 1, 2}}
        assert s.meta.extra["failed"] == {"drawer-close-v3": 3}


def test_cli_demos_and_bad_input(tmp_path, capsys):
    out = tmp_path / "cli.hdf5"
    rc = cli.main(["demos", "--tasks", "reach", "--episodes", "1", "--image-size", "32",
                   "--out", str(out), "--quiet"])
    assert rc == 0 and "failed expert episodes (discarded): 0" in capsys.readouterr().out
    with EpisodeStore(out) as s:
        assert len(s) == 1
        # the exact command line given to cli.main (not pytest's sys.argv)
        assert s.meta.extra["command"] == f"lara demos --tasks reach --episodes 1 --image-size 32 --out {out} --quiet"
    assert cli.main(["demos", "--tasks", "reach", "--episodes", "1", "--out", str(out), "--quiet"]) == 2
    assert "exists" in capsys.readouterr().err
    assert cli.main(["demos", "--tasks", "pusj", "--out", str(tmp_path / "x.hdf5")]) == 2
    assert "push-v3" in capsys.readouterr().err


def test_two_workers_match_one_worker(tmp_path):
    """Spawned workers produce the same episodes (layouts are a function of the seed)."""
    def gen(w):
        cfg = GenConfig(tasks=["reach-v3", "push-v3"], episodes=2, image_size=(32, 32), workers=w)
        generate(cfg, tmp_path / f"w{w}.hdf5", progress=False)
        with EpisodeStore(tmp_path / f"w{w}.hdf5") as s:
            return {(e.task, e.seed): e for e in s}
    one, two = gen(1), gen(2)
    assert one.keys() == two.keys() and len(one) == 4
    for k in one:
        np.testing.assert_array_equal(one[k].actions, two[k].actions)
        np.testing.assert_array_equal(one[k].state, two[k].state)
        assert np.abs(one[k].images["corner4"].astype(int) - two[k].images["corner4"]).mean() < 0.5


def test_store_rejects_bad_episode(small_store, tmp_path):
    from lara_policy.formats.demos import store_meta
    s = EpisodeStore.create(tmp_path / "bad.hdf5", store_meta(GenConfig(tasks=["reach-v3"], image_size=(32, 32))))
    with EpisodeStore(small_store[0]) as src:
        ep = src.episode(0)          # 48 px, two cameras: does not fit a 32 px corner4-only store
    with pytest.raises(StoreError, match="cameras"):
        s.append(ep)
    s.close()
    json.dumps(store_meta(GenConfig(tasks=["reach-v3"])).extra)   # meta extra stays JSON-able


def test_bench_option_reports_frames_per_second(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = cli.main(["demos", "--bench", "--bench-workers", "1", "--tasks", "reach", "--episodes", "1",
                   "--image-size", "32", "--quiet", "--compression", "gzip", "--json", str(out)])
    assert rc == 0 and "frames/s" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["compression"] == "gzip"             # the bench measures what a real run would write
    row = res["rows"][0]
    assert row["workers"] == 1 and row["episodes"] == 1 and row["frames"] > 10 and row["frames_per_s"] > 0
    assert row["projected_1000_demos_min"] > 0


def test_content_digest_names_what_a_store_holds_not_its_file_bytes(small_store, tmp_path):
    """HDF5 writes object times into the file, so two generations of the same seeds differ in bytes;
    the content digest (what `lara experiment` records in provenance.json) does not, and one pixel
    changes it."""
    path, _ = small_store
    again = tmp_path / "again.hdf5"
    generate(GenConfig(tasks=["reach-v3", "drawer-close-v3"], episodes=2, cameras=("corner4", "gripperPOV"),
                       image_size=(48, 48), seed_start=10, post_success_steps=3), again, progress=False)
    assert again.read_bytes() != path.read_bytes()
    with EpisodeStore(path) as a, EpisodeStore(again) as b:
        assert a.content_digest() == b.content_digest()
    with h5py.File(again, "a") as f:
        f["episodes/ep_000001/obs/gripperPOV"][3, 5, 5, 0] ^= 1
    with EpisodeStore(path) as a, EpisodeStore(again) as b:
        assert a.content_digest() != b.content_digest()
