"""A lab's own bag (bagmaker.lab_bag: 15 Hz CompressedImage camera, three episodes split by 3 s
camera gaps, Servo twists at 30 Hz that stop in the gaps, a gripper command that starts 0.2 s
in, the arm at full speed at each episode's end) through `lara convert` and `lara eval bag`:
one alignment for both (formats/rosbag/align.py), checked against the bag's ground truth."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")
pytest.importorskip("cv2")

sys.path.insert(0, str(Path(__file__).parent))
from bagmaker import LAB_MAPPING, lab_bag  # noqa: E402

from lara_policy.cli import main as lara  # noqa: E402
from lara_policy.common.policy_api import ChunkPrediction, PolicyMeta  # noqa: E402
from lara_policy.formats.rosbag import ConvertError  # noqa: E402
from lara_policy.formats.store import EpisodeStore  # noqa: E402
from lara_policy.evaluation.bag_eval import episodes_for_policy, evaluate_bags  # noqa: E402

STATE = ["hand_x", "hand_y", "hand_z", "gripper"]
META = PolicyMeta("ee_delta_xyz_gripper", 4, 8, 1 / 15, ["front"], (48, 48), 4, STATE, "lab")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    d = tmp_path_factory.mktemp("lab")
    bag, truth = lab_bag(d / "lab_sqlite", storage="sqlite3")
    mp = d / "lab.yaml"
    mp.write_text(LAB_MAPPING)
    return bag, truth, mp


def _episodes(path: Path) -> list:
    with EpisodeStore(path) as s:
        return [s.episode(i) for i in range(len(s))]


def test_gap_split_episodes_match_the_truth(lab, tmp_path):
    bag, truth, mp = lab
    assert lara(["convert", str(bag), "--mapping", str(mp), "--out", str(tmp_path / "c.hdf5")]) == 0
    eps = _episodes(tmp_path / "c.hdf5")
    assert len(eps) == 3
    for e, (ep, tr) in enumerate(zip(eps, truth["episodes"])):
        # the gripper command starts 0.2 s in: episode 0 begins at the first frame whose next
        # frame sees it (frame 3), never with a 0.0 gripper action
        first = int(np.argmax(np.isfinite(tr["action"][:, 3])))
        assert first == (3 if e == 0 else 0)
        want = tr["action"][first:]
        assert ep.num_steps == len(want)
        np.testing.assert_allclose(ep.extra["t_start"], tr["frame_t"][first], atol=1e-6)
        # every action, the LAST one of each episode too (the arm at full speed before the gap)
        np.testing.assert_allclose(ep.actions, want, atol=1e-5)
        assert np.abs(ep.actions[-1, :3]).max() > 0.5
        np.testing.assert_allclose(ep.state[:, :3], tr["pos"][first:], atol=1e-6)


def test_eval_bag_scores_exactly_the_converted_steps(lab, tmp_path):
    bag, truth, mp = lab
    for trim in (False, True):
        out = tmp_path / f"c{int(trim)}.hdf5"
        assert lara(["convert", str(bag), "--mapping", str(mp), "--out", str(out)] + (["--trim-idle"] if trim else [])) == 0
        conv = _episodes(out)
        scored = episodes_for_policy([bag], META, str(mp), None, trim=trim)
        assert [be.episode.num_steps for be, _ in scored] == [ep.num_steps for ep in conv]
        for (be, _), ep in zip(scored, conv):
            np.testing.assert_allclose(be.episode.actions, ep.actions, atol=1e-6)
            np.testing.assert_allclose(be.episode.state, ep.state, atol=1e-6)

    class Zero:
        meta = META

        def reset(self):
            pass

        def predict_chunk(self, obs, num_candidates=1, seed=None):
            return ChunkPrediction(actions=np.zeros((8, 4), np.float32), info={"latency_ms": 1.0})

    res = evaluate_bags(Zero(), episodes_for_policy([bag], META, str(mp), None, trim=False), replan_steps=8)
    assert [e["steps"] for e in res["per_episode"]] == [21, 24, 24]
    # frames: grid (every control tick) neither runs on through a camera gap
    grid = tmp_path / "grid.yaml"
    grid.write_text(LAB_MAPPING + "frames: grid\n")
    assert [be.episode.num_steps for be, _ in episodes_for_policy([bag], META, str(grid), None, trim=False)] == [21, 24, 24]
    # scored against zero: the error is the executed action itself, gap steps would add zeros
    ex = np.concatenate([np.asarray(e["executed"]) for e in res["per_episode"]])
    want = np.concatenate([tr["action"][3 if i == 0 else 0:] for i, tr in enumerate(truth["episodes"])])
    np.testing.assert_allclose(ex, want, atol=1e-5)


def test_mcap_converts_to_the_same_store(lab, tmp_path):
    bag, truth, mp = lab
    mcap, _ = lab_bag(tmp_path / "lab_mcap", storage="mcap")
    for b, o in ((bag, "s.hdf5"), (mcap, "m.hdf5")):
        assert lara(["convert", str(b), "--mapping", str(mp), "--out", str(tmp_path / o)]) == 0
    for a, b in zip(_episodes(tmp_path / "s.hdf5"), _episodes(tmp_path / "m.hdf5")):
        assert np.array_equal(a.actions, b.actions) and np.array_equal(a.state, b.state)
        assert np.array_equal(a.images["front"], b.images["front"])


def test_contradictions_are_errors_or_one_warning(lab):
    """--ee-delta-scale-m against the mapping's scale: an error. A replay rate (--rate, or the
    mapping's rate_hz) other than the checkpoint's: one warning line (a sim-trained checkpoint,
    dt 0.0125 s, is legitimately run by policy_node at 30 Hz)."""
    bag, _, mp = lab
    with pytest.raises(ConvertError, match=r"--ee-delta-scale-m 0.02 contradicts the mapping's"):
        episodes_for_policy([bag], META, str(mp), None, trim=False, ee_delta_scale_m=0.02)
    lines = []
    eps = episodes_for_policy([bag], META, str(mp), 30.0, trim=False, warn=lines.append)
    assert lines == ["lara eval bag: warning: --rate 30 Hz differs from the checkpoint's control rate 15 Hz "
                     "(dt 0.0666667 s): its chunks are scored against executed actions of 33.3 ms steps, not 66.7 ms"]
    assert [be.episode.num_steps for be, _ in eps] == [21, 24, 24]      # frames: unique: one step per 15 Hz frame
    lines.clear()
    assert episodes_for_policy([bag], META, str(mp), 15.0, trim=False, ee_delta_scale_m=0.01, warn=lines.append)
    assert lines == []
    meta30 = PolicyMeta("ee_delta_xyz_gripper", 4, 8, 1 / 30, ["front"], (48, 48), 4, STATE, "lab30")
    episodes_for_policy([bag], meta30, str(mp), None, trim=False, warn=lines.append)
    assert len(lines) == 1 and lines[0].startswith("lara eval bag: warning: the mapping's rate_hz")

TF_MAPPING = LAB_MAPPING.replace("""\
  - {name: hand_x, topic: /tcp_pose, field: pose.position.x}
  - {name: hand_y, topic: /tcp_pose, field: pose.position.y}
  - {name: hand_z, topic: /tcp_pose, field: pose.position.z}
""", """\
  - {name: hand_x, tf: {parent: base_link, child: tool0}, field: translation.x}
  - {name: hand_y, tf: {parent: base_link, child: tool0}, field: translation.y}
  - {name: hand_z, tf: {parent: base_link, child: tool0}, field: translation.z}
  - {name: qx, tf: {parent: base_link, child: tool0}, field: rotation.x}
  - {name: qy, tf: {parent: base_link, child: tool0}, field: rotation.y}
  - {name: qz, tf: {parent: base_link, child: tool0}, field: rotation.z}
  - {name: qw, tf: {parent: base_link, child: tool0}, field: rotation.w}
  - {name: world_x, tf: {parent: world, child: tool0}, field: translation.x}
  - {name: world_y, tf: {parent: world, child: tool0}, field: translation.y}
""")


def test_state_from_tf_by_frame_matches_the_truth(lab, tmp_path):
    """The tool pose is only in /tf as base_link -> flange (among other transforms, shuffled in
    every message) plus flange -> tool0 in /tf_static: chained, stamped by the headers."""
    from scipy.spatial.transform import Rotation
    from bagmaker import BASE_IN_WORLD
    bag, truth, _ = lab
    assert "transforms[0]" not in TF_MAPPING
    mp = tmp_path / "tf.yaml"
    mp.write_text(TF_MAPPING)
    assert lara(["convert", str(bag), "--mapping", str(mp), "--out", str(tmp_path / "tf.hdf5")]) == 0
    with EpisodeStore(tmp_path / "tf.hdf5") as s:
        assert s.meta.state_names[:7] == ["hand_x", "hand_y", "hand_z", "qx", "qy", "qz", "qw"]
        eps = [s.episode(i) for i in range(len(s))]
    rw = Rotation.from_quat(BASE_IN_WORLD[1])
    for i, (ep, tr) in enumerate(zip(eps, truth["episodes"])):
        first = 3 if i == 0 else 0
        np.testing.assert_allclose(ep.state[:, :3], tr["pos"][first:], atol=2e-6)
        q, qt = ep.state[:, 3:7].astype(np.float64), tr["quat"][first:]
        np.testing.assert_allclose(np.abs(np.sum(q * qt, axis=1)), 1.0, atol=2e-6)     # same rotation (+-q)
        world = rw.apply(tr["pos"][first:]) + np.asarray(BASE_IN_WORLD[0])
        np.testing.assert_allclose(ep.state[:, 7:9], world[:, :2], atol=2e-6)


@pytest.mark.parametrize("entry, message", [
    ("{name: hand_x, tf: {parent: base_link, child: nowhere}, field: translation.x}",
     "no chain of transforms from 'base_link' to 'nowhere' in /tf and /tf_static (frames there: base_footprint"),
    ("{name: hand_x, tf: {parent: base_link, child: tool0}, field: position.x}",
     "tf field 'position.x' unknown (one of translation.x"),
    ("{name: hand_x, tf: {parent: flange, child: tool0}, field: translation.x}",
     "'flange' -> 'tool0' is static (only in /tf_static)"),
    ("{name: hand_x, tf: {parent: base_link}, field: translation.x}", "a tf entry is {tf: {parent: FRAME"),
])
def test_bad_tf_entries_one_line(lab, tmp_path, capsys, entry, message):
    bag, _, _ = lab
    mp = tmp_path / "bad.yaml"
    mp.write_text(LAB_MAPPING.replace("{name: hand_x, topic: /tcp_pose, field: pose.position.x}", entry))
    assert lara(["convert", str(bag), "--mapping", str(mp), "--out", str(tmp_path / "x.hdf5")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("lara convert: ") and len(err.splitlines()) == 1
    assert not (tmp_path / "x.hdf5").exists()


@pytest.mark.parametrize("to", ["hdf5", "lerobot"])
def test_a_conversion_failing_part_way_leaves_nothing(lab, tmp_path, capfd, to):
    """The first bag converts, the second is cut short: no store at --out (a rerun is not
    blocked), no temp left; with --overwrite the previous output stays as it was."""
    import shutil
    bag, _, mp = lab
    bad = tmp_path / "cut"
    shutil.copytree(bag, bad)
    db = next(bad.glob("*.db3"))
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    out = tmp_path / ("o.hdf5" if to == "hdf5" else "o_v3")
    extra = ["--to", "lerobot"] if to == "lerobot" else []
    argv = ["convert", str(bag), str(bad), "--mapping", str(mp), "--out", str(out), *extra]
    assert lara(argv) == 2
    err = capfd.readouterr().err.strip()          # fd level: the video encoder's own stderr too
    assert err.startswith(f"lara convert: {bad}") and len(err.splitlines()) == 1, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["cut"]
    # the rerun with the good bag is not blocked, and a failed --overwrite keeps it
    assert lara(["convert", str(bag), "--mapping", str(mp), "--out", str(out), *extra]) == 0
    before = sorted((p.relative_to(out), p.stat().st_size) for p in out.rglob("*")) if out.is_dir() \
        else out.read_bytes()
    assert lara([*argv, "--overwrite"]) == 2
    after = sorted((p.relative_to(out), p.stat().st_size) for p in out.rglob("*")) if out.is_dir() \
        else out.read_bytes()
    assert after == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_convert_refuses_a_scale_that_contradicts_the_mapping(lab, tmp_path, capsys):
    bag, _, mp = lab
    out = tmp_path / "o.hdf5"
    assert lara(["convert", str(bag), "--mapping", str(mp), "--out", str(out), "--ee-delta-scale-m", "0.02"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lara convert: --ee-delta-scale-m 0.02 contradicts the mapping's action.ee_delta_scale_m "
                          "0.01") and len(err.splitlines()) == 1 and not out.exists()
    assert lara(["convert", str(bag), "--mapping", str(mp), "--out", str(out), "--ee-delta-scale-m", "0.01"]) == 0


def test_before_the_first_twist_the_steps_are_kept_as_zero_motion(tmp_path):
    """A twist stream's silence means 'hold still' (Servo): the steps before its first message are
    kept with zero motion (unlike a late gripper command, whose steps are dropped)."""
    bag, truth = lab_bag(tmp_path / "late_twist", episodes=1, grip_start_s=0.0, twist_start_s=0.5)
    mp = tmp_path / "m.yaml"
    mp.write_text(LAB_MAPPING)
    assert lara(["convert", str(bag), "--mapping", str(mp), "--out", str(tmp_path / "o.hdf5")]) == 0
    ep, = _episodes(tmp_path / "o.hdf5")
    want = truth["episodes"][0]["action"]
    assert ep.num_steps == len(want) == 24
    np.testing.assert_allclose(ep.actions, want, atol=1e-5)
    assert (np.abs(ep.actions[:7, :3]).max() == 0) and np.abs(ep.actions[8:, :3]).min() > 0
