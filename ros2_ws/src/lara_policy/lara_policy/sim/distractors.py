"""Spurious visual change for action-free video: the things a vanilla LAM latches onto.

Everything here changes PIXELS ONLY, never the physics: lighting (scene light
intensities), colour (per-channel gain, slowly varying), camera jitter (a scene camera's
position shakes by up to 3 cm x strength at 2-5 Hz, for the render only; cameras mounted on
the robot, such as gripperPOV, stay rigid on their mount) and moving distractor
objects (coloured spheres/boxes added to the MuJoCo scene as visual-only geoms after
`update_scene`, so they do not exist for the simulator). Robot motion with and
without distractors is therefore identical for the same seed and actions.

Strength s in [0, 1] scales every effect; presets: low=0.25, medium=0.5, high=1.0. A spec
"STRENGTH:EFFECT[,EFFECT]" keeps only the named effects (lighting, colour, jitter, objects), e.g.
"high:lighting" or "0.5:colour,objects", so each effect can be measured alone.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import mujoco
import numpy as np

PRESETS = {"none": 0.0, "low": 0.25, "medium": 0.5, "high": 1.0}
EFFECTS = {"lighting": "lighting", "colour": "colour", "color": "colour", "jitter": "camera_jitter",
           "camera_jitter": "camera_jitter", "objects": "objects"}


@dataclass
class DistractorConfig:
    strength: float = 0.5
    lighting: bool = True
    colour: bool = True
    camera_jitter: bool = True
    objects: bool = True
    num_objects: int = 3
    seed: int = 0                    # mixed with the episode seed: same seed -> same distractors
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def parse(cls, spec) -> "DistractorConfig | None":
        """None / "none" / 0 -> None; a preset name or a float strength, optionally followed by
        ":EFFECT,..." (only those effects: lighting, colour, jitter, objects); a dict or a config."""
        if spec is None or isinstance(spec, DistractorConfig):
            return spec if (spec is None or spec.strength > 0) else None
        if isinstance(spec, str) and ":" in spec:
            level, _, names = spec.partition(":")
            effects = [n.strip().lower() for n in names.split(",") if n.strip()]
            unknown = [n for n in effects if n not in EFFECTS]
            if unknown or not effects:
                raise ValueError(f"unknown distractor effect(s) {unknown or names!r} in '{spec}'; use "
                                 f"STRENGTH:EFFECT[,EFFECT] with effects lighting, colour, jitter, objects")
            base = cls.parse(level)
            if base is None:
                return None
            keep = {EFFECTS[n] for n in effects}
            for name in ("lighting", "colour", "camera_jitter", "objects"):
                setattr(base, name, name in keep)
            return base
        if isinstance(spec, str):
            key = spec.strip().lower()
            if key in PRESETS:
                s = PRESETS[key]
            else:
                try:
                    s = float(key)
                except ValueError:
                    raise ValueError(f"unknown distractor strength '{spec}'; use one of "
                                     f"{', '.join(PRESETS)} or a number in [0, 1]") from None
            return cls(strength=s).validated() if s > 0 else None
        if isinstance(spec, (int, float)):
            return cls(strength=float(spec)).validated() if spec > 0 else None
        if isinstance(spec, dict):
            known = {k: v for k, v in spec.items() if k in cls.__dataclass_fields__}
            s = known.get("strength", 0.5)
            if isinstance(s, str):
                known["strength"] = PRESETS.get(s, None) if s in PRESETS else float(s)
            cfg = cls(**known).validated()
            return cfg if cfg.strength > 0 else None
        raise TypeError(f"distractors must be None, a preset name, a number, a dict or "
                        f"DistractorConfig, not {type(spec).__name__}")

    def validated(self) -> "DistractorConfig":
        if not 0.0 <= float(self.strength) <= 1.0:
            raise ValueError(f"distractor strength must be in [0, 1], got {self.strength}")
        if self.num_objects < 0:
            raise ValueError("num_objects must be >= 0")
        return self


class DistractorRenderer:
    """Per-episode distractor state; `apply_*` hooks are called around each render."""

    _COLOURS = np.array([[0.95, 0.15, 0.15], [0.15, 0.35, 0.95], [0.95, 0.85, 0.1],
                         [0.1, 0.85, 0.3], [0.85, 0.2, 0.9], [0.1, 0.9, 0.9]])

    def __init__(self, cfg: DistractorConfig, model: mujoco.MjModel):
        self.cfg = cfg
        self.model = model
        self._light_diffuse0 = model.light_diffuse.copy()
        self._light_ambient0 = model.light_ambient.copy()
        self._head_diffuse0 = model.vis.headlight.diffuse.copy()
        self._head_ambient0 = model.vis.headlight.ambient.copy()
        self.reset(0)

    def reset(self, episode_seed: int) -> None:
        rng = np.random.default_rng([int(self.cfg.seed) & 0xFFFFFFFF, int(episode_seed) & 0xFFFFFFFF, 7])
        s = float(self.cfg.strength)
        self.s = s
        self.light_freq = rng.uniform(0.5, 1.5)
        self.light_phase = rng.uniform(0, 2 * np.pi)
        self.colour_freq = rng.uniform(0.3, 1.2, size=3)
        self.colour_phase = rng.uniform(0, 2 * np.pi, size=3)
        self.colour_bias = rng.uniform(-1, 1, size=3)
        self.jitter_freq = rng.uniform(2.0, 5.0, size=3)
        self.jitter_phase = rng.uniform(0, 2 * np.pi, size=3)
        n = self.cfg.num_objects if self.cfg.objects else 0
        self.obj_centre = np.stack([rng.uniform(-0.35, 0.35, n), rng.uniform(0.45, 0.85, n),
                                    rng.uniform(0.03, 0.2, n)], axis=1)
        self.obj_amp = rng.uniform(0.05, 0.15, size=(n, 3)) * np.array([1, 1, 0.3])
        self.obj_freq = rng.uniform(0.5, 2.0, size=(n, 3))
        self.obj_phase = rng.uniform(0, 2 * np.pi, size=(n, 3))
        self.obj_size = rng.uniform(0.015, 0.035, size=n) * (0.5 + s)
        self.obj_type = rng.integers(0, 2, size=n)
        self.obj_rgb = self._COLOURS[rng.integers(0, len(self._COLOURS), size=n)]

    # -- model-level effects (before update_scene) -------------------------------------
    def apply_model(self, t: float) -> None:
        if self.cfg.lighting:
            f = 1.0 + 0.6 * self.s * np.sin(2 * np.pi * self.light_freq * t + self.light_phase)
            self.model.light_diffuse[:] = np.clip(self._light_diffuse0 * f, 0, 1)
            self.model.light_ambient[:] = np.clip(self._light_ambient0 * f, 0, 1)
            self.model.vis.headlight.diffuse[:] = np.clip(self._head_diffuse0 * f, 0, 1)
            self.model.vis.headlight.ambient[:] = np.clip(self._head_ambient0 * f, 0, 1)

    def camera_offset(self, t: float) -> np.ndarray:
        if not self.cfg.camera_jitter:
            return np.zeros(3)
        smooth = np.sin(2 * np.pi * self.jitter_freq * t + self.jitter_phase)
        return 0.03 * self.s * smooth

    # -- scene-level effects (after update_scene) --------------------------------------
    def add_geoms(self, scene: mujoco.MjvScene, t: float) -> None:
        n = len(self.obj_size)
        for i in range(n):
            if scene.ngeom >= scene.maxgeom:
                return
            pos = self.obj_centre[i] + self.obj_amp[i] * (0.5 + self.s) * np.sin(
                2 * np.pi * self.obj_freq[i] * t + self.obj_phase[i])
            size = np.array([self.obj_size[i]] * 3)
            gtype = mujoco.mjtGeom.mjGEOM_SPHERE if self.obj_type[i] == 0 else mujoco.mjtGeom.mjGEOM_BOX
            rgba = np.array([*self.obj_rgb[i], 1.0], dtype=np.float32)
            mujoco.mjv_initGeom(scene.geoms[scene.ngeom], gtype, size, pos.astype(np.float64),
                                np.eye(3).flatten(), rgba)
            scene.ngeom += 1

    # -- pixel-level effects (after render) --------------------------------------------
    def apply_image(self, img: np.ndarray, t: float) -> np.ndarray:
        if not self.cfg.colour:
            return img
        gain = 1.0 + 0.35 * self.s * (np.sin(2 * np.pi * self.colour_freq * t + self.colour_phase)
                                      + 0.5 * self.colour_bias)
        out = img.astype(np.float32) * gain[None, None, :].astype(np.float32)
        return np.clip(out, 0, 255).astype(np.uint8)

    def restore(self) -> None:
        self.model.light_diffuse[:] = self._light_diffuse0
        self.model.light_ambient[:] = self._light_ambient0
        self.model.vis.headlight.diffuse[:] = self._head_diffuse0
        self.model.vis.headlight.ambient[:] = self._head_ambient0
