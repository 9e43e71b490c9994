"""Fault monitors inside closed-loop episodes (`lara eval sim --fault KIND --monitor`), and their
figures: detection rate, detection delay, false alarms per minute of normal operation.

The detectors watch every episode side by side: the LAM monitor (core/monitor.py,
SurpriseMonitor: observed vs predicted latent action; with a stall threshold also its stall
score) and two without a LAM: the hand-motion monitor (HandMotionMonitor: the hand did not move
as commanded) and the camera-motion monitor (CameraMotionMonitor: the hand moved, the image did
not). Normal operation = fault-free episodes
plus the steps of fault episodes before their onset; an alarm there is a false alarm. A fault is
detected by the first alarm at or after its onset.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from lara_policy.core.monitor import CameraMotionMonitor, HandMotionMonitor, MonitorConfig, SurpriseMonitor


@dataclass(frozen=True)
class MonitorSpec:
    threshold: float | None = None     # None: the checkpoint's monitor.json; inf: collect surprises only
    debounce: int = 2
    post_onset_steps: int = 240        # a fault episode ends this long after the onset (3 s at 80 Hz)
    hand_threshold: float = 0.8        # the hand-motion detector's shortfall threshold (inf: collect only)
    stall_threshold: float | None = None   # the LAM stall score's (None: not run; inf: collect only)
    camera_threshold: float = CameraMotionMonitor.DEFAULT_THRESHOLD   # stillness threshold (inf: collect only)
    camera_debounce: int | None = None # the camera detector's debounce (None: `debounce`)
    normal_steps: int = 0              # > 0: success does not end an episode before this step (more
                                       # minutes of normal operation per episode, as a robot keeps running)


def resolve_threshold(spec: MonitorSpec, checkpoint: str | None) -> MonitorSpec:
    if spec.threshold is not None:
        return spec
    cfg = MonitorConfig.load(checkpoint) if checkpoint else None
    if cfg is None:
        raise ValueError(f"no monitor threshold: {checkpoint or 'this policy'} has no monitor.json; calibrate one "
                         "with `lara eval sim --policy CKPT --monitor --calibrate-monitor` on fault-free held-out "
                         "layouts, or give --monitor-threshold")
    hand = cfg.hand_threshold if cfg.hand_threshold is not None else spec.hand_threshold
    stall = cfg.stall_threshold if cfg.stall_threshold is not None else spec.stall_threshold
    camera = cfg.camera_threshold if cfg.camera_threshold is not None else spec.camera_threshold
    return dataclasses.replace(spec, threshold=cfg.threshold, debounce=cfg.debounce, hand_threshold=hand,
                               stall_threshold=stall, camera_threshold=camera, camera_debounce=cfg.camera_debounce)


class EpisodeMonitors:
    def __init__(self, policy, action_scale: float, spec: MonitorSpec):
        self.lam = self.stall = None
        if getattr(getattr(policy, "config", None), "has_lam", False):
            self.lam = SurpriseMonitor(policy, spec.threshold if spec.threshold is not None else float("inf"),
                                       spec.debounce)
            if spec.stall_threshold is not None:
                self.stall = SurpriseMonitor(policy, spec.stall_threshold, spec.debounce, score="stall")
        window = int(policy.config.offset) if hasattr(policy, "config") else 16
        self.hand = HandMotionMonitor(action_scale, window=window, threshold=spec.hand_threshold, debounce=spec.debounce)
        self.camera = policy.meta.cameras[0] if policy.meta.cameras else None
        self.image = CameraMotionMonitor(window=window, threshold=spec.camera_threshold,
                                         debounce=spec.camera_debounce or spec.debounce) if self.camera else None

    def on_prediction(self, step: int, obs, pred) -> None:
        for mon in (self.lam, self.stall):
            if mon is not None and self.camera in obs.images:
                mon.on_chunk(step, obs.images[self.camera], pred.info.get("predicted_latent"))

    def on_step(self, step: int, obs, action) -> None:
        for mon in (self.lam, self.stall):
            if mon is not None and self.camera in obs.images:
                mon.on_frame(step, obs.images[self.camera])
        self.hand.on_step(step, obs.state[:3], action)
        if self.image is not None and self.camera in obs.images:
            self.image.on_step(step, obs.state[:3], obs.images[self.camera])

    def record(self) -> dict:
        out = {"hand": {"alarms": list(self.hand.alarms), "scores": [round(s, 5) for s in self.hand.scores],
                        "steps": list(self.hand.score_steps)}}
        if self.image is not None:
            out["camera"] = {"alarms": list(self.image.alarms), "scores": [round(s, 5) for s in self.image.scores],
                             "steps": list(self.image.score_steps)}
        for name, mon in (("lam", self.lam), ("lam_stall", self.stall)):
            if mon is not None:      # steps: the frame each surprise was judged at (alarm-vs-threshold curves)
                out[name] = {"alarms": list(mon.alarms), "surprises": [round(s, 5) for _, s in mon.surprises],
                             "steps": [int(t) for t, _ in mon.surprises]}
        return out


def summarise_monitor(episodes: list[dict], dt: float) -> dict:
    """Per detector: detection_rate (of episodes whose fault started), detection_delay_s_p50/p90,
    false_alarms_per_min over normal operation, and the counts behind them."""
    out = {}
    detectors = sorted({d for r in episodes for d in r.get("monitor", {})})
    for det in detectors:
        normal_steps, false_alarms, delays, reached, detected = 0, 0, [], 0, 0
        for r in episodes:
            alarms = r["monitor"].get(det, {}).get("alarms", [])
            onset = r.get("fault_onset")
            if onset is None or not r.get("fault_reached"):
                normal_steps += r["length"]
                false_alarms += len(alarms)
                continue
            reached += 1
            normal_steps += onset - 1
            false_alarms += sum(a < onset for a in alarms)
            after = [a for a in alarms if a >= onset]
            if after:
                detected += 1
                delays.append((after[0] - onset) * dt)
        minutes = normal_steps * dt / 60.0
        out[det] = {"detection_rate": detected / reached if reached else None,
                    "detection_delay_s_p50": float(np.median(delays)) if delays else None,
                    "detection_delay_s_p90": float(np.percentile(delays, 90)) if delays else None,
                    "false_alarms": int(false_alarms), "normal_minutes": round(minutes, 3),
                    "false_alarms_per_min": false_alarms / minutes if minutes > 0 else None,
                    "fault_episodes": reached, "detected": detected}
    return out
