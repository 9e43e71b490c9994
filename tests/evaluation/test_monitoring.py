"""Fault monitors (core/monitor.py, evaluation/monitoring.py): alarms with debounce and re-arming,
the hand-motion baseline, and the figures results.json reports, checked on hand-made episodes;
then `lara eval sim --fault --monitor --calibrate-monitor` end to end on a tiny real checkpoint."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from lara_policy.core.monitor import Debounce, HandMotionMonitor, MonitorConfig, SurpriseMonitor, calibrate_threshold
from lara_policy.evaluation.monitoring import summarise_monitor


class _ScriptedPolicy:
    """Stands in for LaraPolicy.surprise: the score is the mean of the later image (scripted)."""
    def __init__(self):
        self.config = SimpleNamespace(has_lam=True, offset=4)
        self.meta = SimpleNamespace(cameras=["corner4"])

    def surprise(self, z, img0, img1):
        return float(np.mean(img1))


def test_surprise_monitor_debounces_and_rearms():
    mon = SurpriseMonitor(_ScriptedPolicy(), threshold=0.5, debounce=2)
    frame = lambda v: np.full((2, 2, 3), v, np.float32)   # noqa: E731
    # a chunk every 4 steps, judged 4 steps later against the frame then
    scores = {4: 0.1, 8: 0.9, 12: 0.1, 16: 0.9, 20: 0.9, 24: 0.9, 28: 0.9}
    for step in range(0, 29):
        if step % 4 == 0:
            mon.on_chunk(step, frame(0), np.zeros((2, 2)))
        if step in scores:
            assert mon.on_frame(step, frame(scores[step])) == pytest.approx(scores[step])
    assert mon.alarms == [20, 28]         # one high score alone (8) raises nothing; then every 2nd
    assert len(mon.surprises) == 7
    with pytest.raises(ValueError, match="LAM"):
        SurpriseMonitor(SimpleNamespace(config=SimpleNamespace(has_lam=False)), 0.5)


def test_debounce_counts_runs_rearms_and_resets():
    d = Debounce(threshold=0.5, count=3)
    fired = [d.score(v) for v in [0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.5]]
    assert fired == [False, False, False, False, False, True, False, False, True, False]   # > threshold, not >=
    d.score(0.9)
    d.reset()
    assert [d.score(0.9) for _ in range(3)] == [False, False, True]
    with pytest.raises(ValueError, match="debounce"):
        Debounce(0.5, 0)


def test_hand_motion_monitor_flags_commands_the_hand_does_not_follow():
    def run(follow: bool):
        m = HandMotionMonitor(action_scale=0.01, window=8, debounce=2)
        hand = np.zeros(3)
        for step in range(1, 60):
            a = np.array([1.0, 0, 0, 0])
            if follow or step < 20:
                hand = hand + a[:3] * 0.01
            m.on_step(step, hand, a)
        return m.alarms
    assert run(True) == []
    alarms = run(False)
    assert alarms and 20 < alarms[0] <= 20 + 3 * 8
    # the shortfall scores it judges on: ~0 while the hand follows, 1 once it stands still
    m = HandMotionMonitor(action_scale=0.01, window=8, threshold=float("inf"), debounce=2)
    hand = np.zeros(3)
    for step in range(1, 60):
        hand = hand + (0.01 if step < 30 else 0.0) * np.array([1.0, 0, 0])
        m.on_step(step, hand, np.array([1.0, 0, 0, 0]))
    assert m.alarms == []                                   # inf: collect only (calibration)
    assert m.scores[0] == pytest.approx(0.0, abs=1e-9) and m.scores[-1] == pytest.approx(1.0)


def test_monitor_figures_from_episode_records():
    eps = [  # normal: 800 steps = 10 s, one false alarm
        {"length": 800, "monitor": {"lam": {"alarms": [300]}}},
        # fault at 100, detected at 180 (1.0 s), one false alarm before the onset
        {"length": 340, "fault_onset": 100, "fault_reached": True, "monitor": {"lam": {"alarms": [40, 180]}}},
        # fault at 50, never detected
        {"length": 290, "fault_onset": 50, "fault_reached": True, "monitor": {"lam": {"alarms": []}}},
        # succeeded before its fault: normal operation only
        {"length": 60, "fault_onset": 70, "fault_reached": False, "monitor": {"lam": {"alarms": []}}},
    ]
    m = summarise_monitor(eps, dt=0.0125)["lam"]
    assert m["fault_episodes"] == 2 and m["detected"] == 1 and m["detection_rate"] == 0.5
    assert m["detection_delay_s_p50"] == pytest.approx(1.0)
    normal_s = (800 + 99 + 49 + 60) * 0.0125
    assert m["false_alarms"] == 2 and m["false_alarms_per_min"] == pytest.approx(2 / (normal_s / 60))
    assert calibrate_threshold([0.1, 0.2, 0.3], quantile=1.0) == pytest.approx(0.33)


def test_eval_sim_fault_monitor_end_to_end(tmp_path, capsys):
    """A tiny joint checkpoint (LAM included) in Meta-World: calibrate on fault-free layouts (writes
    monitor.json), then a frozen camera with the calibrated threshold; every figure is reported."""
    from lara_policy.cli import main as lara_main
    from lara_policy.core.configuration import ModelConfig, TrainConfig
    from lara_policy.core.train import train
    from lara_policy.formats.demos import GenConfig, generate
    store = tmp_path / "demos.hdf5"
    generate(GenConfig(tasks=["reach-v3"], episodes=2, image_size=(32, 32)), store, progress=False)
    m = ModelConfig(name="tiny", variant="lara")
    m.vla.image_size, m.vla.width, m.vla.depth, m.vla.heads = 32, 32, 2, 2
    m.vla.vision_channels, m.vla.horizon, m.vla.euler_steps, m.vla.align_block = [8, 16, 32], 8, 2, 1
    m.lam.image_size, m.lam.width, m.lam.num_queries, m.lam.latent_dim, m.lam.codebook_size = 16, 32, 4, 8, 16
    m.lam.channels, m.lam.patch_size = [16, 32], 4
    final = train(TrainConfig(data=[str(store)], out=str(tmp_path / "run"), steps=5, batch_size=8, warmup_steps=1,
                              threads=1, progress=False, log_every=5, save_every=0, model=m))
    common = ["eval", "sim", "--policy", str(final), "--tasks", "reach-v3", "--episodes", "2", "--max-steps", "90",
              "--videos", "0", "--quiet", "--monitor"]
    assert lara_main([*common, "--seed-start", "300000", "--calibrate-monitor", "--out", str(tmp_path / "cal")]) == 0
    cfg = MonitorConfig.load(final)
    assert cfg is not None and cfg.threshold > 0 and cfg.calibration["surprises"] > 0
    cal = json.loads((tmp_path / "cal" / "results.json").read_text())
    assert all("scores" in e["monitor"]["hand"] for e in cal["episodes"])
    if any(len(e["monitor"]["hand"]["scores"]) >= 2 for e in cal["episodes"]):   # the hand detector calibrated too
        assert cfg.hand_threshold is not None
    assert lara_main([*common, "--seed-start", "300100", "--fault", "frozen-camera", "--fault-onset", "20,30",
                      "--out", str(tmp_path / "fault")]) == 0
    res = json.loads((tmp_path / "fault" / "results.json").read_text())
    assert set(res["monitor"]) == {"lam", "lam_stall", "hand", "camera"}
    assert cfg.stall_threshold is not None
    if any(len(e["monitor"]["camera"]["scores"]) >= 2 for e in cal["episodes"]):   # the camera detector too
        assert cfg.camera_threshold is not None and 0.95 <= cfg.camera_threshold <= 1.0
    for det in ("lam", "lam_stall", "hand", "camera"):
        assert res["monitor"][det]["fault_episodes"] + sum(not e["fault_reached"] for e in res["episodes"]) == 2
    assert all(20 <= e["fault_onset"] <= 30 for e in res["episodes"])
    assert "monitor lam:" in capsys.readouterr().out
    # a fault with calibration is refused in one line
    assert lara_main([*common, "--fault", "frozen-arm", "--calibrate-monitor", "--out", str(tmp_path / "x")]) == 2


def test_normal_steps_keep_a_successful_episode_running(tmp_path):
    """--monitor-normal-steps: success does not end a fault-free episode before that step (the
    scripted oracle solves reach well before step 150)."""
    from lara_policy.cli import main as lara_main
    common = ["eval", "sim", "--policy", "oracle", "--tasks", "reach-v3", "--episodes", "2", "--max-steps", "300",
              "--videos", "0", "--quiet", "--monitor", "--monitor-threshold", "1.0"]
    assert lara_main([*common, "--out", str(tmp_path / "short")]) == 0
    short = json.loads((tmp_path / "short" / "results.json").read_text())
    assert all(e["success"] and e["length"] < 150 for e in short["episodes"])
    assert lara_main([*common, "--monitor-normal-steps", "150", "--out", str(tmp_path / "long")]) == 0
    long = json.loads((tmp_path / "long" / "results.json").read_text())
    assert [e["length"] for e in long["episodes"]] == [150, 150] and all(e["success"] for e in long["episodes"])
    assert long["monitor"]["hand"]["normal_minutes"] > short["monitor"]["hand"]["normal_minutes"]


def test_debounced_calibration_is_the_lowest_threshold_without_an_alarm():
    from lara_policy.core.monitor import calibrate_debounced
    seqs = [[0.1, 0.9, 0.2, 0.3], [0.4, 0.5, 0.1], [0.2]]   # one lone spike; runs of two at most 0.4..0.5
    t = calibrate_debounced(seqs, debounce=2, margin=1.0)
    assert t == pytest.approx(0.4)                         # min(0.4, 0.5) is the worst pair
    for seq in seqs:                                       # no debounced alarm at that threshold ...
        assert not any(a > t and b > t for a, b in zip(seq, seq[1:]))
    assert any(a > t - 1e-3 and b > t - 1e-3 for a, b in zip(seqs[1], seqs[1][1:]))   # ... but just below it
    with pytest.raises(ValueError, match="too short"):
        calibrate_debounced([[0.1]], debounce=3)


def test_camera_debounce_is_the_smallest_without_a_calibration_alarm():
    from lara_policy.core.monitor import calibrate_debounce
    seqs = [[0.2, 0.96, 0.3], [0.96, 0.97, 0.1]]          # normal: one single, one pair above 0.95
    assert calibrate_debounce(seqs, 0.95, max_debounce=3) == 3
    assert calibrate_debounce([[0.2, 0.96, 0.3]], 0.95, max_debounce=3) == 2
    assert calibrate_debounce([[0.2, 0.5]], 0.95, max_debounce=3) == 1
    assert calibrate_debounce([[0.99] * 5], 0.95, max_debounce=3) == 3        # never quiet: the cap
    cfg = MonitorConfig(0.9, 3, camera_threshold=0.95, camera_debounce=1)
    assert cfg.camera_debounce == 1


def test_bounded_scores_calibrate_below_their_bound():
    """The hand's shortfall and the camera's stillness never exceed 1: the x 1.05 margin on a worst
    normal score of 0.998 would put the threshold at 1.048, where no fault can ever raise an alarm
    (monitor.json of 2026-12-07 had hand_threshold 1.047). With the bound it goes half-way instead;
    a normal episode at the bound itself leaves the detector unable to fire (threshold = bound)."""
    from lara_policy.core.monitor import calibrate_debounced
    seqs = [[0.5, 0.998, 0.998, 0.2], [0.1, 0.3]]
    assert calibrate_debounced(seqs, debounce=2) == pytest.approx(0.998 * 1.05)     # unbounded: as before
    t = calibrate_debounced(seqs, debounce=2, upper=1.0)
    assert t == pytest.approx(0.999) and t < 1.0
    assert calibrate_debounced([[0.2, 0.4, 0.4]], debounce=2, upper=1.0) == pytest.approx(0.42)   # margin fits
    assert calibrate_debounced([[1.0, 1.0]], debounce=2, upper=1.0) == 1.0
    # a negative worst score gets its margin upwards too (never a threshold below a normal run)
    assert calibrate_debounced([[-0.2, -0.2]], debounce=2) == pytest.approx(-0.19)


def test_camera_motion_monitor_flags_a_still_image_while_the_hand_moves():
    """A frozen camera: the proprioception says the hand moved, the image stays bit-identical."""
    from lara_policy.core.monitor import CameraMotionMonitor
    rng = np.random.default_rng(0)

    def run(frozen_from: int | None, hand_moves: bool = True, threshold: float = 0.9):
        m = CameraMotionMonitor(window=8, threshold=threshold, debounce=2)
        img = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        hand = np.zeros(3)
        for step in range(1, 80):
            if hand_moves:
                hand = hand + np.array([0.003, 0, 0])
            if frozen_from is None or step < frozen_from:
                img = np.clip(img.astype(int) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
            m.on_step(step, hand, img)
        return m
    normal = run(None)
    assert not normal.alarms and max(normal.scores) < 0.2          # the image changes with the hand
    frozen = run(30)
    assert frozen.alarms and 30 < frozen.alarms[0] <= 30 + 3 * 8
    assert frozen.scores[-1] == pytest.approx(1.0)                   # identical frames: stillness exactly 1
    # the hand at rest: a still image is expected, nothing is judged
    still = run(30, hand_moves=False)
    assert not still.scores and not still.alarms
    # collect only (calibration)
    assert not run(30, threshold=float("inf")).alarms
    # each window's judgement is returned (None between windows); a bounded history for a long-running node
    m = CameraMotionMonitor(window=2, threshold=0.5, debounce=1, history=3)
    img = np.zeros((4, 4, 3), np.uint8)
    got = [m.on_step(step, np.full(3, 0.02 * step), img) for step in range(1, 12)]
    assert [g is None for g in got] == [True, True, True, False, True, False, True, False, True, False, True]
    assert got[3].step == 4 and got[3].stillness == 1.0 and got[3].alarm
    assert got[3].hand_path_m == pytest.approx(0.02 * np.sqrt(3))     # the window holds `window` frames
    assert len(m.scores) == len(m.alarms) == 3 and list(m.score_steps) == [6, 8, 10]
    still = CameraMotionMonitor(window=2).on_step
    still(1, np.zeros(3), img), still(2, np.zeros(3), img)
    assert still(4, np.zeros(3), img).stillness is None           # the hand stood still: judged, no score
    m = CameraMotionMonitor(window=2)
    m.on_step(1, np.zeros(3), np.zeros((4, 4, 3), np.uint8))
    m.on_step(2, np.ones(3), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        m.on_step(4, np.full(3, 2.0), np.zeros((8, 8, 3), np.uint8))


def test_stall_score_is_zero_as_predicted_and_positive_when_nothing_moves():
    """LaraModel.stall: the observed change equal to the predicted one scores 0; the same
    prediction while the camera sees nothing change (I_t, I_t) scores 1 - cos(predicted, null) > 0."""
    import torch
    from lara_policy.core.configuration import ModelConfig
    from lara_policy.core.modeling import LaraModel
    torch.manual_seed(0)
    m = ModelConfig(name="tiny", variant="lara")
    m.vla.image_size, m.vla.width, m.vla.depth, m.vla.heads, m.vla.vision_channels = 32, 32, 2, 2, [8, 16]
    m.vla.align_block = 1
    m.lam.image_size, m.lam.width, m.lam.num_queries, m.lam.latent_dim, m.lam.codebook_size = 16, 32, 4, 8, 16
    m.lam.channels, m.lam.patch_size = [16, 32], 4
    model = LaraModel(m).eval()
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        moved = model.lam.encode(a, b)
        null = model.lam.encode(a, a)
    expect = 1 - torch.nn.functional.cosine_similarity(moved.flatten(1), null.flatten(1)).item()
    assert model.stall(moved, a, b) == pytest.approx(0.0, abs=1e-5)          # moved as predicted
    assert model.stall(moved, a, a) == pytest.approx(expect, abs=1e-5)       # predicted a move, saw none
    assert model.stall(null, a, a) == pytest.approx(0.0, abs=1e-5)           # predicted none, saw none
    assert model.stall(-null, a, a) == pytest.approx(2.0, abs=1e-5)          # the opposite of "nothing"


def test_monitor_curves_rescores_recorded_episodes_at_a_monitor_json(tmp_path):
    """scripts/monitor_curves.py --at: a recalibrated monitor.json judged on the recorded scores,
    no episode run again; a detector whose threshold sits above its scores detects nothing."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("monitor_curves", Path(__file__).parents[2] / "scripts" / "monitor_curves.py")
    mc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mc)
    steps = [16, 32, 48, 64, 80, 96]

    def ep(scores, onset=None):
        e = {"length": 100, "monitor": {"camera": {"steps": steps, "scores": scores, "alarms": []},
                                        "hand": {"steps": steps, "scores": scores, "alarms": []}}}
        if onset is not None:
            e.update(fault_onset=onset, fault_reached=True)
        return e
    for name, eps in {"none": [ep([0.2, 0.3, 0.5, 0.5, 0.2, 0.1])],
                      "frozen-camera": [ep([0.2, 0.3, 1.0, 1.0, 1.0, 1.0], onset=40),
                                        ep([0.1, 0.1, 0.1, 0.1, 0.1, 0.1], onset=40)]}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({"episodes": eps}))
    (tmp_path / "monitor.json").write_text(json.dumps({"threshold": 0.9, "camera_threshold": 0.95,
                                                       "hand_threshold": 1.0}))
    text = mc.operating_point(tmp_path, mc.load(tmp_path, "none"), tmp_path / "monitor.json", debounce=3)
    rows = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| frozen-camera")}
    assert "| 3 | 1/2 | 0.50 | 0.50 | 0.00 |" in rows["camera"]   # alarm at 80 = onset 40 + 40 steps x 12.5 ms
    assert "| 3 | 0/2 | 0.00 | - |" in rows["hand"]                # 1.0 is never above 1.0
    # the camera's own calibrated debounce: 2 windows of identical frames -> the alarm at 64
    (tmp_path / "db2.json").write_text(json.dumps({"camera_threshold": 0.95, "camera_debounce": 2}))
    db2 = mc.operating_point(tmp_path, mc.load(tmp_path, "none"), tmp_path / "db2.json", debounce=3)
    assert "| camera | 0.9500 | 2 | 1/2 | 0.50 | 0.30 | 0.00 |" in db2
    # at a threshold below the normal episode's run of 0.5s the same scores give false alarms
    (tmp_path / "low.json").write_text(json.dumps({"camera_threshold": 0.05}))
    low = mc.operating_point(tmp_path, mc.load(tmp_path, "none"), tmp_path / "low.json", debounce=3)
    assert not low.splitlines()[-1].endswith("| 0.00 |")
