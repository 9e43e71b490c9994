"""MetaWorldEnv: one Meta-World v3 task as a LARA robot (images + 7-D state + instruction).

Used by `lara demos`, the closed-loop evaluation harness and the ROS sim node.

    env = MetaWorldEnv(task="drawer-open-v3", cameras=("corner4",), image_size=(128, 128))
    obs = env.reset(seed=0)                  # lara_policy.common.policy_api.Observation
    obs, success, info = env.step(action)    # action (4,), clipped to [-1, 1] inside
    env.expert_action(obs)                   # Meta-World's scripted expert on obs.raw

Layouts: `reset(seed)` draws the object/goal layout from a generator seeded with
`seed` (Meta-World's `seeded_rand_vec` path), so the layout is a pure function of
(task, seed) and different seeds give different layouts. Keep training and evaluation
seeds disjoint (the episode store records the seeds it used; `lara eval sim` checks).

Rendering: our own `mujoco.Renderer` (MSAA off, shadows and reflections off), ~5-10x
faster than `env.render()`. Corner cameras (corner, corner2/3/4) render upside down in
Meta-World; their rows are flipped so row 0 is the top of the image.

State (7-D float32): hand_x, hand_y, hand_z, gripper (0 closed .. 1 open), goal_x,
goal_y, goal_z. The goal is given in the state because its marker is nearly invisible
in 64-128 px images.

Action (4-D, "ee_delta_xyz_gripper"): end-effector delta x, y, z in units of
`action_scale` metres (0.01 m per unit per step) and gripper effort (-1 open .. +1
close), all clipped to [-1, 1].
"""
from __future__ import annotations

import atexit
import difflib
import os
import warnings
import weakref
from typing import Iterable, Sequence

import numpy as np

from lara_policy.common.policy_api import Observation
from lara_policy.sim.distractors import DistractorConfig, DistractorRenderer
from lara_policy.sim.phrasings import TASK_PHRASINGS  # noqa: F401  (re-exported)

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
# Mesa's llvmpipe (CPU EGL) rasterises on a thread pool by default; at 64-224 px its
# synchronisation costs more than it saves and oversubscribes the cores when several
# workers render. Measured on the 2-core machine: ~100 -> ~150 frames/s single process.
# Must be set before the first GL context exists; an explicit setting is honoured.
os.environ.setdefault("LP_NUM_THREADS", "0")

STATE_NAMES = ["hand_x", "hand_y", "hand_z", "gripper", "goal_x", "goal_y", "goal_z"]
STATE_DIM = len(STATE_NAMES)
ACTION_SPACE = "ee_delta_xyz_gripper"
ACTION_DIM = 4
ENV_NAME = "metaworld-v3"
DEFAULT_CAMERA = "corner4"
CAMERAS = ("corner", "corner2", "corner3", "corner4", "topview", "behindGripper", "gripperPOV")
FLIPPED_CAMERAS = {"corner", "corner2", "corner3", "corner4"}

MT10 = ["reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3",
        "drawer-close-v3", "button-press-topdown-v3", "peg-insert-side-v3",
        "window-open-v3", "window-close-v3"]
ALL_TASKS = list(TASK_PHRASINGS)
SUITES = {"MT10": MT10, "MT50": ALL_TASKS, "MT3": ["reach-v3", "push-v3", "drawer-close-v3"]}


_LIVE: "weakref.WeakSet[MetaWorldEnv]" = weakref.WeakSet()


_ATEXIT = []


def _close_all() -> None:
    # Free EGL contexts before MuJoCo's own atexit terminates the EGL display (otherwise the
    # renderers' __del__ prints harmless-but-noisy EGLError tracebacks at exit).
    for env in list(_LIVE):
        env.close()


from lara_policy.common.errors import LaraError  # noqa: E402  (one error base for the CLI)


class UnknownTaskError(LaraError, ValueError):
    pass


def resolve_tasks(spec: str | Iterable[str]) -> list[str]:
    """'MT10' | 'MT50' | 'reach-v3,push-v3' | ['reach', 'push-v3'] -> list of task names.

    A name without the '-v3' suffix gets it. Unknown names raise UnknownTaskError with
    close matches. Duplicates are dropped, order kept.
    """
    items = [s for s in (spec.split(",") if isinstance(spec, str) else spec)]
    out: list[str] = []
    for raw in items:
        name = str(raw).strip()
        if not name:
            continue
        if name.upper() in SUITES:
            names = SUITES[name.upper()]
        else:
            cand = name if name.endswith("-v3") else f"{name}-v3"
            if cand not in TASK_PHRASINGS:
                close = difflib.get_close_matches(cand, ALL_TASKS, n=5, cutoff=0.5)
                hint = f"; did you mean: {', '.join(close)}" if close else ""
                raise UnknownTaskError(f"unknown Meta-World task '{name}'{hint} "
                                       f"(suites: {', '.join(SUITES)}; 50 v3 task names)")
            names = [cand]
        out += [n for n in names if n not in out]
    if not out:
        raise UnknownTaskError("no tasks given")
    return out


def _make_raw_env(task: str):
    import metaworld  # heavy import (gymnasium, mujoco models): only when an env is built
    key = f"{task}-goal-observable"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = metaworld.ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[key]()
    env.seeded_rand_vec = True
    return env


class MetaWorldEnv:
    """One Meta-World v3 task with fast rendering, 7-D state and instructions."""

    action_space_name = ACTION_SPACE
    action_dim = ACTION_DIM
    state_names = STATE_NAMES
    state_dim = STATE_DIM

    def __init__(self, task: str = "drawer-open-v3", cameras: Sequence[str] = (DEFAULT_CAMERA,),
                 image_size: tuple[int, int] | int = (128, 128), distractors=None,
                 max_steps: int | None = None):
        self.task = resolve_tasks([task])[0]
        cameras = (cameras,) if isinstance(cameras, str) else tuple(cameras)
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        if min(self.image_size) < 8 or max(self.image_size) > 1024:
            raise ValueError(f"image_size {self.image_size} out of range [8, 1024]")
        self._env = _make_raw_env(self.task)
        model = self._env.model
        names = [model.camera(i).name for i in range(model.ncam)]
        twice = sorted({c for c in cameras if cameras.count(c) > 1})
        if twice:
            raise ValueError(f"camera(s) {twice} named more than once in {list(cameras)} (a repeated --cameras "
                             "adds to the list)")
        bad = [c for c in cameras if c not in names]
        if bad:
            raise ValueError(f"unknown camera(s) {bad}; Meta-World v3 cameras: {names}")
        self.cameras = cameras
        self._cam_ids = {c: names.index(c) for c in cameras}
        limit = int(self._env.max_path_length)
        self.max_steps = limit if max_steps is None else int(max_steps)
        if not 1 <= self.max_steps <= limit:
            raise ValueError(f"max_steps must be in [1, {limit}] (Meta-World's episode limit)")
        self.dt = float(self._env.dt)                      # frame_skip * timestep = 0.0125 s
        self.action_scale = float(self._env.action_scale)  # metres per unit action per step
        from metaworld.policies import ENV_POLICY_MAP
        self._expert = ENV_POLICY_MAP[self.task]()
        self.distractors = DistractorConfig.parse(distractors)
        self._renderer = None
        self._dis = None
        self._raw = None
        self._steps = 0
        self._seed = None
        self.instruction = TASK_PHRASINGS[self.task][0]
        self.phrasings = list(TASK_PHRASINGS[self.task])
        _LIVE.add(self)

    # -- rendering ----------------------------------------------------------------------
    def _ensure_renderer(self):
        if self._renderer is None:
            import mujoco
            model = self._env.model
            model.vis.quality.offsamples = 0
            h, w = self.image_size
            model.vis.global_.offheight = max(model.vis.global_.offheight, h)
            model.vis.global_.offwidth = max(model.vis.global_.offwidth, w)
            self._renderer = mujoco.Renderer(model, h, w)
            if not _ATEXIT:  # registered after MuJoCo's EGL atexit, so it runs before it (LIFO)
                atexit.register(_close_all)
                _ATEXIT.append(True)
            if self.distractors is not None:
                self._dis = DistractorRenderer(self.distractors, model)
                self._dis.reset(self._seed or 0)
        return self._renderer

    def render_images(self, cameras: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """cam -> (H, W, 3) uint8 RGB, row 0 = top (corner cameras flipped upright)."""
        cams = self.cameras if cameras is None else tuple(cameras)
        if not cams:
            return {}
        import mujoco
        r = self._ensure_renderer()
        data = self._env.data
        t = self._steps * self.dt
        if self._dis is not None:
            self._dis.apply_model(t)
        out = {}
        for cam in cams:
            cid = self._cam_ids.get(cam)
            if cid is None:
                cid = mujoco.mj_name2id(self._env.model, mujoco.mjtObj.mjOBJ_CAMERA, cam)
                if cid < 0:
                    raise ValueError(f"unknown camera '{cam}'")
            saved = None
            # The jitter is a scene camera shaking on its stand; a camera bolted to the robot
            # (gripperPOV, behindGripper: body != world) moves with the hand, not on its own.
            if self._dis is not None and self._env.model.cam_bodyid[cid] == 0:
                saved = data.cam_xpos[cid].copy()
                data.cam_xpos[cid] += self._dis.camera_offset(t)
            r.update_scene(data, camera=cid)
            if saved is not None:
                data.cam_xpos[cid] = saved
            r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
            if self._dis is not None:
                self._dis.add_geoms(r.scene, t)
            img = r.render()
            if cam in FLIPPED_CAMERAS:
                img = img[::-1]
            if self._dis is not None:
                img = self._dis.apply_image(img, t)
            out[cam] = np.ascontiguousarray(img)
        return out

    # -- episode --------------------------------------------------------------------------
    def _state(self, raw: np.ndarray) -> np.ndarray:
        return np.concatenate([raw[0:4], raw[-3:]]).astype(np.float32)

    def _observation(self) -> Observation:
        return Observation(images=self.render_images(), state=self._state(self._raw),
                           instruction=self.instruction, stamp=self._steps * self.dt,
                           raw=self._raw.copy())

    def reset(self, seed: int = 0, instruction: str | None = None) -> Observation:
        """New episode; layout and phrasing are functions of (task, seed)."""
        seed = int(seed)
        if seed < 0:
            raise ValueError("seed must be >= 0")
        env = self._env
        env._freeze_rand_vec = False
        env.seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw, _ = env.reset()
        env._freeze_rand_vec = True
        self._raw = np.asarray(raw, dtype=np.float64)
        self._steps = 0
        self._seed = seed
        rng = np.random.default_rng([seed, 1])
        self.instruction = instruction or self.phrasings[int(rng.integers(len(self.phrasings)))]
        if self._dis is not None:
            self._dis.reset(seed)
        return self._observation()

    def step(self, action, render: bool = True) -> tuple[Observation, bool, dict]:
        """Apply one action (clipped to [-1, 1]); returns (obs, success, info).

        info: reward, truncated (step budget reached), steps, raw_info (Meta-World's).
        Success is Meta-World's info["success"] after this step; episodes do not end
        on success by themselves.
        """
        if self._raw is None:
            raise RuntimeError("call reset(seed) before step()")
        if self._steps >= self.max_steps:
            raise RuntimeError(f"episode already at max_steps={self.max_steps}; call reset()")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (ACTION_DIM,):
            raise ValueError(f"action must have shape ({ACTION_DIM},), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN/inf: {a}")
        a = np.clip(a, -1.0, 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw, reward, _term, _trunc, info = self._env.step(a)
        self._raw = np.asarray(raw, dtype=np.float64)
        self._steps += 1
        success = bool(info.get("success", False))
        obs = self._observation() if render else Observation(
            images={}, state=self._state(self._raw), instruction=self.instruction,
            stamp=self._steps * self.dt, raw=self._raw.copy())
        return obs, success, {"reward": float(reward), "truncated": self._steps >= self.max_steps,
                              "steps": self._steps, "raw_info": info}

    def expert_action(self, obs: Observation | np.ndarray | None = None) -> np.ndarray:
        """The scripted expert's action for obs (uses obs.raw), clipped to [-1, 1]."""
        raw = self._raw if obs is None else (obs.raw if isinstance(obs, Observation) else obs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = self._expert.get_action(np.asarray(raw))
        return np.clip(np.asarray(a, dtype=np.float32), -1.0, 1.0)

    @property
    def steps(self) -> int:
        return self._steps

    @property
    def seed(self) -> int | None:
        return self._seed

    @property
    def raw_env(self):
        """The underlying Meta-World env (for advanced use)."""
        return self._env

    def close(self) -> None:
        if self._renderer is not None:
            try:
                self._renderer.close()
            except Exception:
                pass
            self._renderer = None
        if self._env is not None:
            try:
                self._env.close()
            except Exception:
                pass
            self._env = None

    def __enter__(self) -> "MetaWorldEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
