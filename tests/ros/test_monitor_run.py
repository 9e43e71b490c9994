"""`lara monitor ros` (ros/monitor_run.py) measures what tests/ros/test_fault_monitor.py only
checks happens: on the real graph over DDS, with the LAM double of that test, one frozen-arm
episode gives a record whose onset is sim_node's seeded random step for that layout (the same
FaultSpec draw as `lara eval sim --fault-onset`), whose alarm and hold come after it in that
order with a delay in sim steps, no motion commanded after the hold, and a summary/table built
from it. The real checkpoint's numbers are results/monitor/<model>/ros (the command itself)."""
from __future__ import annotations

import pytest

from graph_helpers import GoalSeekingTestPolicy
from test_fault_monitor import _JamSensingPolicy

pytestmark = pytest.mark.ros


def _probe(ros, graph):
    """monitor_run's probe on the graph's executor, listening where command_node publishes."""
    from lara_policy.ros import monitor_run
    cmd = graph.nodes["command_node"]
    probe = monitor_run._Probe(ros, graph.nodes["sim_node"], cmd.get_parameter("monitor_alarm_topic").value,
                               cmd.get_parameter("safety_status_topic").value)
    graph.executor.add_node(probe.node)
    return probe


def test_one_frozen_arm_episode_is_measured_onset_alarm_hold(ros):
    from lara_policy.ros import monitor_run
    from lara_policy.ros.bringup import resolve_config
    from lara_policy.ros.params import load_params_yaml
    from lara_policy.sim.faults import FaultSpec

    config = load_params_yaml(resolve_config("sim"))
    s = {"id": "test", "fault": "frozen-arm", "fault_onset": [10, 20], "fault_seed": 3, "threshold": 0.5,
         "debounce": 2, "control_rate_hz": 30.0, "post_onset_steps": 90, "normal_steps": 60, "after_hold_s": 0.5,
         "checkpoint": "", "model_id": "double", "config": "sim", "threshold_source": "test"}
    graph = monitor_run._graph(config, s, "frozen-arm", policy=_JamSensingPolicy())
    try:
        rec = monitor_run.run_episode(graph, _probe(ros, graph), "push-v3", 1002, "fault", s)
    finally:
        graph.close()
    assert rec["onset_step"] == FaultSpec("frozen-arm", 10, 20, 3).onset(1002)
    assert rec["fault_reached"] and rec["false_alarms"] == 0, rec
    assert rec["alarm_s"] is not None and rec["hold_s"] is not None, rec
    assert rec["onset_s"] < rec["alarm_s"] <= rec["hold_s"] and rec["alarm_delay_steps"] > 0
    assert "LAM monitor" in rec["hold_reason"] and rec["end"] == "held"
    assert rec["ticks_after_hold"] > 0 and rec["moving_ticks_after_hold"] == 0
    assert rec["hand_path_before_onset_m"] > 0.01 and rec["commanding_share_while_frozen"] > 0.5
    summary = monitor_run.summarise([rec], {})
    assert (summary["fault_episodes"], summary["detected"], summary["held"]) == (1, 1, 1)
    text = monitor_run.table([rec], summary, s, {}, "lara monitor ros --test")
    assert "`lara monitor ros --test`" in text and "| push-v3 | 1002 |" in text
    # held by command_node's not-following watch with no monitor alarm: caught, not missed
    watch = {**rec, "alarm_s": None, "alarm_to_hold_ms": None, "hold_reason": "arm not following: ..."}
    summary = monitor_run.summarise([watch], {})
    assert (summary["detected"], summary["held"], summary["held_without_alarm"]) == (0, 1, 1)
    assert summary["alarm_to_hold_ms_p50"] is None
    text = monitor_run.table([watch], summary, {**s, "not_following_s": 0.5}, {}, "lara monitor ros --test")
    assert "missed faults: none" in text and "1 held by command_node's not-following watch" in text


class _PacingPolicy(GoalSeekingTestPolicy):
    """TEST DOUBLE that keeps the hand moving: each chunk commands 0.5 cm per step along x, the
    direction alternating from chunk to chunk (the hand paces ~4 cm back and forth)."""
    def predict_chunk(self, obs, num_candidates: int = 1, seed=None):
        pred = super().predict_chunk(obs, num_candidates, seed)
        pred.actions[:, :3] = 0.0
        pred.actions[:, 0] = 0.5 if self.calls % 2 else -0.5
        return pred


def test_one_frozen_camera_episode_camera_watch_alarms_and_command_node_holds(ros):
    """sim_node's frozen-camera fault re-sends the onset frame with fresh stamps while the arm moves;
    camera_watch_node (no LAM: the hand moved, the image did not) raises its alarm within its
    debounce x window frames of the onset, command_node holds with its reason; no alarm before."""
    import zlib

    from sensor_msgs.msg import Image

    from lara_policy.ros import monitor_run
    from lara_policy.ros.bringup import resolve_config
    from lara_policy.ros.codec import stamp_to_sec
    from lara_policy.ros.params import load_params_yaml
    from lara_policy.sim.faults import FaultSpec

    config = load_params_yaml(resolve_config("sim"))
    window, debounce = 8, 2
    s = {"id": "test", "fault": "frozen-camera", "fault_onset": [30, 40], "fault_seed": 3, "threshold": 0.5,
         "debounce": debounce, "control_rate_hz": 30.0, "post_onset_steps": 120, "normal_steps": 60,
         "after_hold_s": 0.5, "checkpoint": "", "model_id": "double", "config": "sim", "threshold_source": "test",
         "monitors": ["camera"], "camera_threshold_source": "test",
         "camera": {"threshold": 0.9, "debounce": debounce, "window_frames": window, "min_moved_m": 0.01}}
    graph = monitor_run._graph(config, s, "frozen-camera", policy=_PacingPolicy())
    frames = []       # (sim step at arrival, stamp, crc of the pixels)
    try:
        sim = graph.nodes["sim_node"]
        assert graph.nodes["policy_node"].monitor is None and graph.nodes["camera_watch_node"].enabled
        graph.client.create_subscription(Image, "/camera/image_raw", lambda m: frames.append(
            (int(sim.steps), stamp_to_sec(m.header.stamp), zlib.crc32(bytes(m.data)))), 10)
        rec = monitor_run.run_episode(graph, _probe(ros, graph), "reach-v3", 1002, "fault", s)
    finally:
        graph.close()
    onset = FaultSpec("frozen-camera", 30, 40, 3).onset(1002)      # a few judged windows of a live camera first
    assert rec["onset_step"] == onset and rec["fault_reached"] and rec["false_alarms"] == 0, rec
    # sim_node: from the onset on the same frame again and again, each with a fresh stamp
    after = [(t, c) for k, t, c in frames if k >= onset + 5]
    assert len(after) >= 10 and len({c for _, c in after}) == 1, (len(after), len({c for _, c in after}))
    assert all(b[0] > a[0] for a, b in zip(after, after[1:]))
    assert len({c for k, _, c in frames if k < onset}) > 3            # a live camera before it
    # camera_watch_node caught it, command_node held with its reason and commanded nothing after
    assert rec["first_alarm_monitor"] == "camera" and rec["hold_monitor"] == "camera", rec
    assert rec["hold_reason"].startswith("camera monitor:") and rec["end"] == "held"
    assert 0 < rec["alarms_by"]["camera"]["delay_steps"] <= (debounce + 1) * window + 3, rec["alarms_by"]
    assert rec["ticks_after_hold"] > 0 and rec["moving_ticks_after_hold"] == 0
    assert rec["stillness_max_before_onset"] is not None and rec["stillness_max_before_onset"] < 0.9, rec["stillness"]
    assert any(v == 1.0 for _, v in rec["stillness"]), rec["stillness"]
    summary = monitor_run.summarise([rec], {})
    assert summary["by_monitor"]["camera"]["detected"] == 1 and summary["held"] == 1
    text = monitor_run.table([rec], summary, s, {}, "lara monitor ros --fault frozen-camera")
    assert "camera_watch_node: stillness threshold 0.9000" in text and "(camera)" in text


def test_settings_camera_watch_and_checkpoint_path_relative_to_the_repository(tmp_path, monkeypatch):
    """--fault frozen-camera puts camera_watch_node beside the LAM monitor with monitor.json's
    camera_threshold (--camera-threshold overrides; neither: a clear error), and the results carry a
    checkpoint inside the repository relative to its root (no machine paths in committed results)."""
    import argparse
    import json

    from lara_policy.core.monitor import MonitorConfig
    from lara_policy.ros import monitor_run
    from lara_policy.ros.bringup import BringupError, resolve_config
    from lara_policy.ros.params import load_params_yaml

    monkeypatch.setenv("LARA_ROOT", str(tmp_path))
    ckpt = tmp_path / "models" / "m"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text(json.dumps({"model": {"chunk_offset": -1, "vla": {"horizon": 12}}}))
    MonitorConfig(threshold=0.8, debounce=3).save(ckpt)
    parser = argparse.ArgumentParser()
    monitor_run.add_arguments(parser)
    config = load_params_yaml(resolve_config("sim"))
    args = parser.parse_args(["--fault", "frozen-camera"])
    with pytest.raises(BringupError, match="no camera_threshold .* --camera-threshold"):
        monitor_run._settings(args, ckpt, config)
    s = monitor_run._settings(parser.parse_args(["--fault", "frozen-camera", "--camera-threshold", "0.9"]), ckpt, config)
    assert s["checkpoint"] == "models/m" and s["monitors"] == ["lam", "camera"]
    assert s["camera"] == {"threshold": 0.9, "debounce": 3, "min_moved_m": 0.01, "window_frames": 12}
    MonitorConfig(threshold=0.8, debounce=3, camera_threshold=0.95).save(ckpt)
    s2 = monitor_run._settings(parser.parse_args(["--fault", "frozen-camera", "--monitors", "camera"]), ckpt, config)
    assert s2["camera"]["threshold"] == 0.95 and s2["monitors"] == ["camera"] and s2["id"] != s["id"]
    arm = monitor_run._settings(parser.parse_args([]), ckpt, config)      # frozen-arm: as before, LAM only
    assert "monitors" not in arm and "camera" not in arm and arm["checkpoint"] == "models/m"
    assert monitor_run.repo_relative("/elsewhere/ckpt") == "/elsewhere/ckpt"
