"""`lara monitor ros` (ros/monitor_run.py) measures what tests/ros/test_fault_monitor.py only
checks happens: on the real graph over DDS, with the LAM double of that test, one frozen-arm
episode gives a record whose onset is sim_node's seeded random step for that layout (the same
FaultSpec draw as `lara eval sim --fault-onset`), whose alarm and hold come after it in that
order with a delay in sim steps, no motion commanded after the hold, and a summary/table built
from it. The real checkpoint's numbers are results/monitor/<model>/ros (the command itself)."""
from __future__ import annotations

import pytest

from test_fault_monitor import _JamSensingPolicy

pytestmark = pytest.mark.ros


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
        sim, cmd = graph.nodes["sim_node"], graph.nodes["command_node"]
        probe = monitor_run._Probe(ros, sim, cmd.get_parameter("monitor_alarm_topic").value,
                                   cmd.get_parameter("safety_status_topic").value)
        graph.executor.add_node(probe.node)
        rec = monitor_run.run_episode(graph, probe, "push-v3", 1002, "fault", s)
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
