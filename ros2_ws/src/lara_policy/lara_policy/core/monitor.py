"""The LAM as a run-time fault monitor (issue 25): does the world answer the commands?

After a chunk predicted at step t starts executing, the LAM's latent of what then happened,
z(I_t, I_t+C), is compared with the latent the policy predicted for that chunk, f_psi(h):
surprise = 1 - cos (LaraPolicy.surprise). A jammed arm, a frozen camera or an object moved by
someone else make the observed change disagree with the predicted one. An alarm is raised when
`debounce` consecutive surprises exceed the threshold (then it re-arms: every alarm is
counted), calibrated as a high quantile of the
surprises of held-out normal episodes and stored beside the checkpoint (monitor.json).

Two detectors without a LAM are compared with it: `HandMotionMonitor` (the hand moved much less
than the commands asked for, over the same window) and `CameraMotionMonitor` (the proprioception
says the hand moved but the camera image did not change: a frozen camera).
"""
from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

MONITOR_FILE = "monitor.json"


class Debounce:
    """`count` consecutive scores above `threshold` raise one alarm, then it re-arms (every alarm
    is counted). The one debounce of the LAM monitor, the hand-motion detector and the ROS node."""

    def __init__(self, threshold: float, count: int):
        if count < 1:
            raise ValueError(f"debounce must be >= 1, got {count}")
        self.threshold, self.count, self.run = float(threshold), int(count), 0

    def update(self, above: bool) -> bool:
        """Count one judgement (True: above the threshold); True when it raises an alarm."""
        self.run = self.run + 1 if above else 0
        if self.run >= self.count:
            self.run = 0
            return True
        return False

    def score(self, value: float) -> bool:
        return self.update(value > self.threshold)

    def reset(self) -> None:
        self.run = 0


@dataclass
class MonitorConfig:
    threshold: float                 # surprise above it counts (1 - cos: 0 as predicted, 2 opposite)
    debounce: int = 2                # consecutive counted surprises that raise the alarm
    quantile: float = 0.999          # of the calibration episodes' surprises
    calibration: dict = field(default_factory=dict)    # where the threshold came from
    hand_threshold: float | None = None   # the hand-motion detector's, calibrated the same way (None: 0.8)
    stall_threshold: float | None = None  # the LAM stall score's (motion predicted, none seen), the same way
    camera_threshold: float | None = None  # the camera-motion detector's (hand moved, image still), the same way
    camera_debounce: int | None = None     # its debounce (None: `debounce`): calibrate_debounce

    def save(self, checkpoint: str | Path) -> Path:
        from lara_policy.common.fileio import write_json
        return write_json(Path(checkpoint) / MONITOR_FILE, asdict(self))

    @classmethod
    def load(cls, checkpoint: str | Path) -> "MonitorConfig | None":
        p = Path(checkpoint) / MONITOR_FILE
        if not p.exists():
            return None
        d = json.loads(p.read_text())
        return cls(**{k: d[k] for k in ("threshold", "debounce", "quantile", "calibration", "hand_threshold",
                                                "stall_threshold", "camera_threshold", "camera_debounce")
                      if k in d})


class SurpriseMonitor:
    """Feed it every chunk prediction (`on_chunk`) and every frame (`on_frame`); `alarms` lists
    the steps at which an alarm was raised."""

    def __init__(self, policy, threshold: float, debounce: int = 2, score: str = "surprise"):
        if not getattr(policy.config, "has_lam", False):
            raise ValueError("the LAM monitor needs a checkpoint with a LAM (not variant dit_only)")
        self.policy, self.threshold, self.debounce = policy, float(threshold), int(debounce)
        self.score = score          # "surprise" (1 - cos to the prediction) or "stall" (LaraModel.stall)
        self._debounce = Debounce(self.threshold, self.debounce)
        self.offset = int(policy.config.offset)            # C: the LAM's frame gap
        self.camera = policy.meta.cameras[0]
        self.reset()

    def reset(self) -> None:
        self._pending: deque = deque()     # (step, image at step, predicted latent)
        self.surprises: list[tuple[int, float]] = []
        self._debounce.reset()
        self.alarms: list[int] = []

    def on_chunk(self, step: int, image: np.ndarray, predicted_latent) -> None:
        if predicted_latent is not None:
            self._pending.append((int(step), np.asarray(image).copy(), np.asarray(predicted_latent)))

    def on_frame(self, step: int, image: np.ndarray) -> float | None:
        """The surprise of the chunk predicted C steps ago, when there is one (else None)."""
        score = None
        while self._pending and self._pending[0][0] + self.offset <= step:
            t0, img0, z = self._pending.popleft()
            if t0 + self.offset < step:          # a frame was skipped: that prediction cannot be judged
                continue
            score = float(self.policy.surprise(z, img0, image) if self.score == "surprise"
                          else self.policy.surprise(z, img0, image, score=self.score))
            self.surprises.append((int(step), score))
            if self._debounce.score(score):
                self.alarms.append(int(step))
        return score


class HandMotionMonitor:
    """No LAM: over the last `window` steps, while the commands asked for at least `min_command_m`,
    the shortfall 1 - moved / commanded (0: the hand went as far as commanded, 1: it did not move)
    is scored once per window; `debounce` shortfalls in a row above `threshold` raise an alarm.
    The threshold is calibrated like the LAM monitor's (calibrate_debounced on normal episodes'
    `scores`); 0.8 (moved < 20 % of the command) when uncalibrated."""

    def __init__(self, action_scale: float, window: int = 16, threshold: float = 0.8, min_command_m: float = 0.01,
                 debounce: int = 2):
        self.scale, self.window, self.threshold, self.min_cmd = float(action_scale), int(window), float(threshold), \
            float(min_command_m)
        self.debounce = int(debounce)
        self._debounce = Debounce(self.threshold, self.debounce)
        self.reset()

    def reset(self) -> None:
        self._hist: deque = deque()
        self._debounce.reset()
        self.alarms: list[int] = []
        self.scores: list[float] = []
        self.score_steps: list[int] = []

    def on_step(self, step: int, hand_xyz: np.ndarray, action: np.ndarray | None) -> None:
        self._hist.append((np.asarray(hand_xyz, np.float64).copy(),
                           None if action is None else np.asarray(action[:3], np.float64) * self.scale))
        if len(self._hist) <= self.window:
            return
        self._hist.popleft()
        commanded = np.sum([c for _, c in list(self._hist)[1:] if c is not None], axis=0)
        if np.linalg.norm(commanded) < self.min_cmd:
            self._debounce.reset()
            return
        moved = np.linalg.norm(self._hist[-1][0] - self._hist[0][0])
        if step % self.window == 0:          # judged once per window, like the LAM monitor per chunk
            shortfall = float(1.0 - moved / np.linalg.norm(commanded))
            self.scores.append(shortfall)
            self.score_steps.append(int(step))
            if self._debounce.score(shortfall):
                self.alarms.append(int(step))


class CameraJudgement(NamedTuple):
    """One window judged by CameraMotionMonitor: stillness is None when the hand stood still."""
    step: int
    stillness: float | None
    hand_path_m: float
    alarm: bool


class CameraMotionMonitor:
    """No LAM: the hand moved but the image did not. Over the last `window` steps, while the hand
    (proprioception) travelled at least `min_moved_m`, stillness = 1 / (1 + mean |I_t - I_t-window|)
    (pixel values 0-255; exactly 1 for identical frames) is scored once per window; `debounce`
    scores in a row above `threshold` raise an alarm. A camera whose driver keeps re-sending its last
    frame with fresh stamps passes every staleness check; a real sensor's noise alone keeps the
    mean difference above ~0.5. Calibrated like the others (calibrate_debounced, upper bound 1) but
    never below DEFAULT_THRESHOLD (a mean difference of 0.05 grey levels): a frozen camera scores
    exactly 1, and a calibration set without a slow, barely visible hand motion (a noiseless
    simulator's failed episodes reach 0.52) must not pull the threshold down to where one alarms."""

    DEFAULT_THRESHOLD = 0.95

    def __init__(self, window: int = 16, threshold: float = DEFAULT_THRESHOLD, min_moved_m: float = 0.01,
                 debounce: int = 2, history: int | None = None):
        self.window, self.threshold, self.min_moved = int(window), float(threshold), float(min_moved_m)
        self.debounce = int(debounce)
        self.history = history               # scores/alarms kept (None: all; a long-running node bounds them)
        self._debounce = Debounce(self.threshold, self.debounce)
        self.reset()

    def reset(self) -> None:
        self._hist: deque = deque()
        self._debounce.reset()
        self.alarms: deque = deque(maxlen=self.history)
        self.scores: deque = deque(maxlen=self.history)
        self.score_steps: deque = deque(maxlen=self.history)

    def on_step(self, step: int, hand_xyz: np.ndarray, image: np.ndarray) -> CameraJudgement | None:
        """Feed one frame with the hand position at it; the judgement when this step closes a window."""
        self._hist.append((np.asarray(hand_xyz, np.float64).copy(), np.asarray(image)))
        if len(self._hist) <= self.window:
            return None
        self._hist.popleft()
        if step % self.window:               # judged once per window, like the hand-motion detector
            return None
        hands = np.stack([h for h, _ in self._hist])
        path = float(np.linalg.norm(np.diff(hands, axis=0), axis=1).sum())
        if path < self.min_moved:
            self._debounce.reset()           # the hand stood still: a still image is expected
            return CameraJudgement(int(step), None, path, False)
        first, last = self._hist[0][1], self._hist[-1][1]
        if first.shape != last.shape:
            raise ValueError(f"camera image changed shape {first.shape} -> {last.shape}")
        change = float(np.mean(np.abs(last.astype(np.float32) - first.astype(np.float32))))
        stillness = 1.0 / (1.0 + change)
        self.scores.append(stillness)
        self.score_steps.append(int(step))
        alarm = self._debounce.score(stillness)
        if alarm:
            self.alarms.append(int(step))
        return CameraJudgement(int(step), stillness, path, alarm)


def calibrate_debounce(sequences: list[list[float]], threshold: float, max_debounce: int) -> int:
    """The smallest debounce (1..max_debounce) at which no normal episode raises an alarm at a FIXED
    threshold: for a detector whose threshold physics sets (the camera's stillness: identical frames
    score exactly 1) the calibration data choose how many judgements in a row it takes instead."""
    for count in range(1, int(max_debounce) + 1):
        if not any(_alarms(seq, threshold, count) for seq in sequences):
            return count
    return int(max_debounce)


def _alarms(seq: list[float], threshold: float, count: int) -> int:
    d = Debounce(threshold, count)
    return sum(d.score(v) for v in seq)


def calibrate_threshold(surprises: list[float], quantile: float = 0.999, margin: float = 1.1) -> float:
    """A threshold above `quantile` of normal surprises (times a margin): few false alarms."""
    if not surprises:
        raise ValueError("no surprises to calibrate on (episodes shorter than the LAM's frame gap?)")
    return float(np.quantile(np.asarray(surprises, np.float64), quantile) * margin)


def calibrate_debounced(sequences: list[list[float]], debounce: int, margin: float = 1.05,
                        upper: float | None = None) -> float:
    """The lowest threshold at which no normal episode raises a debounced alarm (`debounce`
    consecutive surprises above it), times a margin: a single surprising chunk is normal (the
    heavy tail of 1 - cos), a run of them is what a fault looks like. Per episode that lowest
    threshold is the largest over its windows of the window's minimum. A score that cannot exceed
    `upper` (the hand's shortfall, the camera's stillness: 1) gets at most half the way from that
    lowest threshold to the bound, so the margin cannot put the threshold where no score reaches."""
    worst = []
    for seq in sequences:
        x = np.asarray(seq, np.float64)
        if len(x) >= debounce:
            windows = np.lib.stride_tricks.sliding_window_view(x, debounce)
            worst.append(float(windows.min(axis=1).max()))
    if not worst:
        raise ValueError(f"no calibration episode has {debounce} surprises (episodes too short?)")
    lowest = max(worst)
    threshold = lowest + abs(lowest) * (margin - 1.0)
    if upper is not None and threshold >= upper:
        threshold = lowest + 0.5 * (upper - lowest) if lowest < upper else float(upper)
    return float(threshold)
