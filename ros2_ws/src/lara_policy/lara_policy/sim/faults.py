"""Faults injected into a simulated episode, to measure run-time monitors (issue 25).

From a seeded random onset step of each episode:
- frozen-arm:      the arm ignores every command (a jammed joint, a controller that stopped
                   following, an e-stop nobody reported): the hand stays, frames keep coming;
- frozen-camera:   the camera keeps delivering its last frame (a stuck driver, a frozen USB
                   stream); the arm and the state still move;
- object-teleport: the task object's state jumps once (its first two object coordinates by
                   8 cm each; for a drawer, the slide): somebody moved it.
The onset is uniform in [onset_min, onset_max] steps, a function of (fault seed, episode seed),
so every policy and monitor sees the same fault at the same step of the same layout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAULTS = ("none", "frozen-arm", "frozen-camera", "object-teleport")
ARM_QPOS = 9            # Sawyer: 7 arm joints + 2 finger joints come first in qpos; objects follow
JAM_DOFS = 7            # the arm joints a frozen-arm fault jams (their dofs come first in qvel)
JAM_DAMPING = 1e9       # N m s / rad: the weld's pull then moves the hand < 1 um per step
TELEPORT_M = 0.08


@dataclass(frozen=True)
class FaultSpec:
    kind: str = "none"
    onset_min: int = 24
    onset_max: int = 56
    seed: int = 0

    def __post_init__(self):
        if self.kind not in FAULTS:
            raise ValueError(f"unknown fault '{self.kind}'; choose from {', '.join(FAULTS)}")
        if not 0 <= self.onset_min <= self.onset_max:
            raise ValueError(f"fault onset range [{self.onset_min}, {self.onset_max}] is empty")

    def onset(self, episode_seed: int) -> int | None:
        """The first faulty step of that episode (None for kind none)."""
        if self.kind == "none":
            return None
        rng = np.random.default_rng([int(self.seed) & 0xFFFFFFFF, int(episode_seed) & 0xFFFFFFFF, 25])
        return int(rng.integers(self.onset_min, self.onset_max + 1))


class FaultyEnv:
    """A MetaWorldEnv with one fault from its onset on; same reset/step interface. `fault_active`
    says whether the current episode's fault has started."""

    def __init__(self, env, spec: FaultSpec):
        self.env, self.spec = env, spec
        self._damping0 = None
        self.onset: int | None = None
        self._frozen_images = None
        self._last_gripper = 0.0

    def __getattr__(self, name):              # everything else is the wrapped env's
        return getattr(self.env, name)

    @property
    def fault_active(self) -> bool:
        return self.onset is not None and self.env.steps >= self.onset

    def reset(self, seed: int = 0, instruction: str | None = None):
        self.onset = self.spec.onset(seed)
        self._frozen_images, self._last_gripper = None, 0.0
        self._release()
        return self.env.reset(seed=seed, instruction=instruction)

    def step(self, action, render: bool = True):
        a = np.asarray(action, dtype=np.float32).copy()
        starting = self.onset is not None and self.env.steps + 1 == self.onset
        if self.spec.kind == "frozen-arm" and self.onset is not None and self.env.steps + 1 >= self.onset:
            a[:3] = 0.0                       # the hand holds; the gripper keeps its last command
            a[3] = self._last_gripper
            if starting:                      # where the hand IS: the mocap target runs up to ~4 cm ahead
                self._stop_hand()             # of it in motion, and a zero command alone let it creep there
        else:
            self._last_gripper = float(a[3])
        if starting and self.spec.kind == "object-teleport":
            self._teleport()
        obs, success, info = self.env.step(a, render=render)
        if self.spec.kind == "frozen-camera" and self.onset is not None and self.env.steps >= self.onset:
            if self._frozen_images is None:
                self._frozen_images = {k: v.copy() for k, v in (obs.images or self.env.render_images()).items()}
            if obs.images:
                obs.images = {k: v.copy() for k, v in self._frozen_images.items()}
        info["fault_active"] = self.fault_active
        return obs, success, info

    def render_images(self, cameras=None):
        if self._frozen_images is not None and self.fault_active:
            cams = self.env.cameras if cameras is None else tuple(cameras)
            return {c: self._frozen_images[c].copy() for c in cams if c in self._frozen_images}
        return self.env.render_images(cameras)

    def _stop_hand(self) -> None:
        """A jammed arm stops where it is. Zeroing the command alone is not that in Meta-World: the
        hand follows its mocap target through a soft weld, lagging by up to ~4 cm in fast motion, and
        crept there over ~2 s. So the arm joints get a damping that holds them (the jam) until reset."""
        raw = self.env.raw_env
        if self._damping0 is None:
            self._damping0 = raw.model.dof_damping[:JAM_DOFS].copy()
        raw.model.dof_damping[:JAM_DOFS] = JAM_DAMPING
        raw.data.qvel[:JAM_DOFS] = 0.0

    def _release(self) -> None:
        if self._damping0 is not None:        # the env is reused by the next episode
            self.env.raw_env.model.dof_damping[:JAM_DOFS] = self._damping0
            self._damping0 = None

    def _teleport(self) -> None:
        raw = self.env.raw_env
        qpos, qvel = raw.data.qpos.flat.copy(), raw.data.qvel.flat.copy()
        if qpos.shape[0] <= ARM_QPOS:
            raise ValueError(f"task {self.env.task} has no object state to teleport")
        n = min(2, qpos.shape[0] - ARM_QPOS)
        rng = np.random.default_rng([int(self.spec.seed), int(self.env.seed or 0), 26])
        qpos[ARM_QPOS:ARM_QPOS + n] += TELEPORT_M * rng.choice([-1.0, 1.0], size=n)
        qvel[:] = 0.0
        raw.set_state(qpos, qvel)
