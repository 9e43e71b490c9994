"""`lara convert`: rosbag2 bags (recorder episodes, foreign bags through a mapping, sqlite3,
SIGKILLed recorder episodes, truncated bags) -> the LARA episode store, and bad input -> exit 2."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")
pytest.importorskip("rclpy")
pytest.importorskip("lara_msgs.msg")

sys.path.insert(0, str(Path(__file__).parent))
from bagmaker import FOREIGN_MAPPING, SCALE, foreign_bag, plan, recorder_episode  # noqa: E402

from lara_policy.cli import main as lara  # noqa: E402
from lara_policy.formats.convert import FORMATS, detect  # noqa: E402
from lara_policy.formats.store import EpisodeStore  # noqa: E402


def convert(*argv) -> int:
    return lara(["convert", *map(str, argv)])


def test_recorder_episodes_convert_without_mapping(tmp_path, capsys):
    rec = tmp_path / "rec"
    for i in range(2):
        recorder_episode(rec, f"episode_{i}", seed=i, t0=1000.0 + 100 * i, success=(i == 0))
    out = tmp_path / "rec.hdf5"
    assert detect(rec) == "rosbag2"
    assert convert(rec, "--out", out) == 0
    with EpisodeStore(out) as s:
        m = s.meta
        assert m.state_names == ["hand_x", "hand_y", "hand_z", "gripper", "goal_x", "goal_y", "goal_z"]
        assert m.cameras == ["corner4"] and m.image_size == (32, 32) and m.action_dim == 4
        assert m.action_space == "ee_delta_xyz_gripper" and abs(m.dt - 1 / 30) < 1e-9
        assert len(s) == 2
        ep = s.episode(0)
        want = plan(40, seed=0)
        # every tick: one frame, the action = the twist commanded after that frame, in units
        assert ep.num_steps == len(want)
        np.testing.assert_allclose(ep.actions, want, atol=1e-5)
        # state: hand position after the previous action (recorded pose) and the gripper joint
        np.testing.assert_allclose(np.diff(ep.state[:, :3], axis=0), want[:-1, :3] * SCALE, atol=1e-6)
        assert ep.instruction == "reach the red goal" and ep.task == "reach-v3"
        assert ep.seed == 1000 and s.episode(1).seed == 1001         # from `lara bringup`'s recorder notes
        assert ep.success is True and s.episode(1).success is False          # from episode_meta.json
        assert ep.step_success is not None and ep.step_success[-1] and not ep.step_success[0]
        assert ep.extra["episode_id"] == "episode_0" and ep.extra["action_dims"] == ["dx", "dy", "dz", "gripper"]
        # the frame content is the recorded one (the square moved with the action)
        assert not np.array_equal(ep.images["corner4"][0], ep.images["corner4"][-1])


def test_trim_idle_and_action_free(tmp_path):
    recorder_episode(tmp_path / "rec", "episode_0", steps=30)
    assert convert(tmp_path / "rec", "--out", tmp_path / "t.hdf5", "--trim-idle") == 0
    with EpisodeStore(tmp_path / "t.hdf5") as s:
        ep = s.episode(0)
        # 5 idle steps before and after the 30 moving ones
        assert ep.num_steps == 30
        np.testing.assert_allclose(ep.actions, plan(30, seed=0)[5:35], atol=1e-5)
    assert convert(tmp_path / "rec", "--out", tmp_path / "v.hdf5", "--action-free") == 0
    with EpisodeStore(tmp_path / "v.hdf5") as s:
        assert s.episode(0).actions is None and s.summary()["action_free"] == 1
        # dims kept (as `lara demos --action-free`): the store trains as --video beside labelled ones
        assert s.meta.action_dim == 4 and s.meta.action_space == "ee_delta_xyz_gripper"


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_foreign_bag_through_mapping(tmp_path, storage):
    bag = foreign_bag(tmp_path / f"foreign_{storage}", storage=storage, episodes=2)
    mp = tmp_path / "map.yaml"
    mp.write_text(FOREIGN_MAPPING)
    # without a mapping it is refused, naming what is missing
    assert convert(bag, "--out", tmp_path / "x.hdf5") == 2
    out = tmp_path / "f.hdf5"
    assert convert(bag, "--out", out, "--mapping", mp, "--trim-idle") == 0
    with EpisodeStore(out) as s:
        assert len(s) == 2                                    # split at the /episode_marker events
        assert s.meta.cameras == ["wrist"] and s.meta.image_size == (48, 48)
        assert s.meta.state_names == ["hand_x", "hand_y", "hand_z", "gripper"]
        for i in range(2):
            ep = s.episode(i)
            assert ep.instruction == "move the gripper to the target" and ep.task == "wrist-reach"
            np.testing.assert_allclose(ep.actions[:40, :3], plan(40, seed=1 + i)[5:45, :3], atol=1e-5)
            assert ep.state[0, 3] == pytest.approx(0.04)       # finger_joint, picked by name
            img = ep.images["wrist"][0]
            assert img[..., 0].max() == 230 and img[..., 2].max() == 40     # png decoded to RGB (not BGR)


def test_bare_mcap_file_and_uncompressed_bgr(tmp_path):
    bag = foreign_bag(tmp_path / "plain", compressed=False)
    mcap = next(bag.glob("*.mcap"))
    bare = tmp_path / "bare.mcap"
    shutil.copy(mcap, bare)                                   # no metadata.yaml at all
    mp = tmp_path / "m.yaml"
    mp.write_text(FOREIGN_MAPPING.replace("/wrist_cam/image/compressed", "/wrist_cam/image"))
    assert detect(bare) == "rosbag2"
    assert convert(bare, "--out", tmp_path / "b.hdf5", "--mapping", mp) == 0
    with EpisodeStore(tmp_path / "b.hdf5") as s:
        img = s.episode(0).images["wrist"][0]
        assert tuple(img[24, 24]) == (230, 80, 30)            # bgr8 decoded to RGB


def test_malformed_frames_are_skipped_and_counted_not_fatal(tmp_path, capsys):
    """One bad message (cut short, another size) costs that frame, says so, and the rest of the
    bag converts; a camera with no good frame at all is still a clear error."""
    mp = tmp_path / "m.yaml"
    mp.write_text(FOREIGN_MAPPING.replace("/wrist_cam/image/compressed", "/wrist_cam/image").replace(
        "image_size: [48, 48]\n", ""))
    assert "image_size" not in mp.read_text()                 # without resizing, a 30x20 frame is an odd size
    bag = foreign_bag(tmp_path / "glitchy", compressed=False, bad_frames={5: "short", 9: "size"})
    out = tmp_path / "g.hdf5"
    assert convert(bag, "--out", out, "--mapping", mp) == 0
    said = capsys.readouterr()
    text = said.out + said.err
    assert re.search(r"skipped 2 malformed frame\(s\) of \d+ on camera 'wrist'", text) and "too short" in text
    with EpisodeStore(out) as s:
        ep = s.episode(0)
        assert ep.images["wrist"].shape[1:] == (48, 48, 3) and len(ep.actions) >= 38
        assert "skipped 2 malformed" in ep.extra["conversion_note"]
    dead = foreign_bag(tmp_path / "dead", compressed=False, bad_frames={k: "short" for k in range(1000)})
    assert convert(dead, "--out", tmp_path / "d.hdf5", "--mapping", mp) == 2
    err = _err(capsys)
    assert "too short" in err and re.search(r"\d+ malformed, none usable", err) and "/wrist_cam/image" in err


def test_sigkilled_recorder_episode_converts_from_complete_segments(tmp_path, capsys):
    ep = recorder_episode(tmp_path / "rec", "episode_k", steps=60, flush_every=10, kill_after_segments=3,
                          lose_metadata=True)
    assert not (ep / "metadata.yaml").exists() and any((tmp_path / "rec").glob(".*.partial"))
    assert convert(ep, "--out", tmp_path / "k.hdf5") == 0
    assert "complete segment" in capsys.readouterr().err
    with EpisodeStore(tmp_path / "k.hdf5") as s:
        e = s.episode(0)
        assert 28 <= e.num_steps <= 30                        # 3 segments of 10 ticks, in-flight one lost
        np.testing.assert_allclose(e.actions[:25], plan(60, seed=0)[:25], atol=1e-5)
    assert not (ep / "metadata.yaml").exists()                # the source is not modified


def _err(capsys) -> str:
    return capsys.readouterr().err


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_is_a_clear_error(tmp_path, capsys, storage):
    bag = foreign_bag(tmp_path / "trunc", storage=storage)
    f = next(bag.glob("*.mcap" if storage == "mcap" else "*.db3"))
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])                     # as a killed `ros2 bag record` leaves it
    mp = tmp_path / "m.yaml"
    mp.write_text(FOREIGN_MAPPING)
    assert convert(bag, "--out", tmp_path / "t.hdf5", "--mapping", mp) == 2
    err = _err(capsys)
    assert str(bag) in err and ("truncated" in err or "cannot open" in err) and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    # the explanation is the storage's own: no MCAP footer talk for a sqlite3 bag
    if storage == "mcap":
        assert "MCAP file cut short" in err and "sqlite3" not in err
    else:
        assert "sqlite3 .db3 file cut short" in err and "MCAP" not in err
    assert not (tmp_path / "t.hdf5").exists()


@pytest.mark.parametrize("edit,needle", [
    (("/tcp_pose, field: pose.position.x", "/tcp_pose, field: pose.positon.x"),
     ["'positon' is not a field", "state 'hand_x'", "/tcp_pose", "position"]),
    (("topic: /arm/servo/cmd", "topic: /arm/servo/cmd_missing"),
     ["action topic '/arm/servo/cmd_missing' is not in the bag"]),
    (("joint: finger_joint", "joint: thumb"), ["joint 'thumb' is not in the message", "finger_joint"]),
    (("field: data}", 'field: "data[3]"}'), ["gripper", "/gripper/cmd", "index [3] out of range"]),
    (("field: data}", "field: data[3]}"), ["not valid YAML at line 14, column", 'must be quoted: field: "position[2]"']),
    (("rate_hz: 30", "rate_hz: 30\nbogus_key: 1"), ["unknown key(s) ['bogus_key']"]),
])
def test_bad_mapping_names_topic_and_field(tmp_path, capsys, edit, needle):
    bag = foreign_bag(tmp_path / "fb", steps=10)
    mp = tmp_path / "m.yaml"
    mp.write_text(FOREIGN_MAPPING.replace(*edit))
    assert convert(bag, "--out", tmp_path / "o.hdf5", "--mapping", mp) == 2
    err = _err(capsys)
    for n in needle:
        assert n in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_unknown_type_and_camera_type_errors(tmp_path, capsys):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    ts = get_typestore(Stores.LATEST)
    bag = tmp_path / "odd"
    with Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        c = w.add_connection("/cam", "std_msgs/msg/String", typestore=ts)
        w.write(c, 1, ts.serialize_cdr(ts.types["std_msgs/msg/String"](data="x"), "std_msgs/msg/String"))
    mp = tmp_path / "m.yaml"
    mp.write_text("cameras: {front: /cam}\ninstruction: go\n")
    assert convert(bag, "--out", tmp_path / "o.hdf5", "--mapping", mp) == 2
    assert "camera 'front' topic '/cam' has type std_msgs/msg/String" in _err(capsys)
    # a type with no definition anywhere (bag without message definitions): named
    from lara_policy.formats.rosbag import ConvertError, Mapping, read_streams
    m = Mapping(cameras={"front": "/cam"})
    from lara_policy.formats.rosbag import streams as rc
    orig = rc._typestore
    rc._typestore = lambda reader: type("TS", (), {"fielddefs": {}})()
    try:
        with pytest.raises(ConvertError, match="'/cam' has type 'std_msgs/msg/String', which has no message definition"):
            read_streams(bag, m)
    finally:
        rc._typestore = orig


def test_hdf5_round_trip_and_registry(tmp_path):
    recorder_episode(tmp_path / "rec", "episode_0", steps=20)
    assert convert(tmp_path / "rec", "--out", tmp_path / "a.hdf5") == 0
    assert detect(tmp_path / "a.hdf5") == "lara-hdf5"
    assert convert(tmp_path / "a.hdf5", "--out", tmp_path / "b.hdf5", "--trim-idle") == 0
    with EpisodeStore(tmp_path / "a.hdf5") as a, EpisodeStore(tmp_path / "b.hdf5") as b:
        assert b.episode(0).num_steps < a.episode(0).num_steps
    assert {"rosbag2", "lara-hdf5"} <= set(FORMATS)
    assert convert(tmp_path / "rec", "--out", tmp_path / "a.hdf5") == 2          # exists, no --overwrite
    assert convert(tmp_path / "rec", "--out", tmp_path / "x.unknown") == 2       # no target format


def test_cli_exit_code_and_stderr_in_a_process(tmp_path):
    """The real `lara` entry point: exit 2, one clear line on stderr, no traceback."""
    r = subprocess.run([sys.executable, "-m", "lara_policy.cli", "convert", str(tmp_path / "nope"),
                        "--out", str(tmp_path / "o.hdf5")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no such file or folder" in r.stderr and "Traceback" not in r.stderr


def test_refine_loop_auc():
    from lara_policy.ros.refine_loop import auc
    assert auc([3.0, 2.0], [1.0, 0.5]) == 1.0 and auc([0.1], [1.0, 2.0]) == 0.0
    assert auc([1.0], [1.0]) == 0.5 and auc([], [1.0]) is None and auc([float("nan"), 2.0], [1.0]) == 1.0
