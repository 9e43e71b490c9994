"""Typed configurations of the LARA model and of a training run.

Everything is a plain dataclass of JSON-able values so a checkpoint's config.json can be
read back into exactly the same types (`ModelConfig.from_dict`), and nothing needs pickle.
Defaults are sized for a 2-core CPU (about 1.3M VLA parameters, 64 px, chunk 16); every
size is a config value, so the same code scales up on a GPU.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

VARIANTS = ("dit_only", "frozen_lam", "lara")
PARADIGMS = ("lam-pretrain", "pretrain", "posttrain", "lam-refine")
VISION_TRAIN_MODES = ("frozen", "last", "full")


def _from_dict(cls, data: dict[str, Any]):
    """Build dataclass `cls` from a dict, recursing into nested dataclasses; unknown keys fail."""
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config keys {sorted(unknown)}")
    kwargs = {name: value for (owner, name), value in _LEGACY.items() if owner == cls.__name__ and name not in data}
    for name, value in data.items():
        sub = _NESTED.get((cls.__name__, name))
        if sub is not None and isinstance(value, dict):
            value = _from_dict(sub, value)
        elif isinstance(value, list) and name in ("image_size",):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


@dataclass
class LAMConfig:
    """Latent action model: IDM (M learnable queries) -> z (M x d_z) -> VQ -> FDM (pixels)."""
    image_size: int = 32              # the LAM watches the primary camera at this size
    width: int = 48                   # transformer / feature width inside the LAM
    num_queries: int = 8              # M (paper: 8)
    latent_dim: int = 16              # d_z per query (paper: 32)
    codebook_size: int = 128          # K (paper: 128)
    commitment: float = 0.25          # beta (paper: 0.25)
    channels: list[int] = field(default_factory=lambda: [16, 32, 48])  # conv stages (stride 2 each)
    idm_layers: int = 2               # query-transformer layers in the IDM
    patch_size: int = 8               # FDM (ViT) patch size
    fdm_layers: int = 2               # transformer layers in the FDM (patch tokens <- latent tokens)
    heads: int = 4
    dead_code_steps: int = 50         # re-seed codes unused for this many steps (collapse guard)
    motion_weight: float = 10.0       # extra pixel-loss weight where the frames differ (0 = plain MSE)
    perceptual_weight: float = 0.0    # weight of an optional feature-space (perceptual) loss
    spread_weight: float = 10.0       # variance + decorrelation penalty on z (VICReg-style) against
                                      # dimensional collapse; 0 = off (every z on one line: latent_dims
                                      # ~1). 10, not 1: joint training's L_LARA (no stop-gradient)
                                      # re-collapsed z at 1 (measurements in docs/model.md)


@dataclass
class VLAConfig:
    """Vision-language-action model with a flow-matching DiT action head."""
    image_size: int = 64
    cameras: list[str] = field(default_factory=lambda: ["corner4"])
    state_dim: int = 7
    action_dim: int = 4
    horizon: int = 16                 # H, action chunk length
    width: int = 128                  # DiT / condition-token width
    depth: int = 4                    # L DiT blocks (self-attn + cross-attn + MLP each)
    heads: int = 4
    mlp_ratio: float = 2.0
    vision_channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])  # stride-2 stages:
                                      # 64 px -> 4x4 tokens. The puck is located by the keypoints at
                                      # the first (32x32) stage; an 8x8 grid ([32,64,128]) probed no
                                      # better (puck R^2 0.67 both) and cost 1.3x the train step
    vision_stem: int = 0              # stride-1 conv stem channels before the stages (0 = none; 32 cost
                                      # ~3x the encoder step time on CPU for no measured gain here)
    vision_keypoints: int = 32        # spatial-softmax keypoints at the first stage's resolution (0 = none)
    keypoint_temperature: float = 4.0 # initial inverse temperature on per-map standardised logits
                                      # (1.0 = the first version: raw logits, no standardisation)
    film: bool = True                 # pooled observation (state, text, keypoints) modulates every DiT block
    vision_backbone: str = "conv"     # name in lara_policy.core.modeling.VISION_BACKBONES (conv,
                                      # efficientnet_lite0), or timm:NAME / module:PKG.MOD:FACTORY (core/backbones.py)
    vision_train: str = "full"        # pretrained backbones: frozen | last (last stage trains) | full (fine-tune);
                                      # "full" = every vision weight trains, as the conv encoder always did
    vision_weights: str = ""          # file the backbone is initialised from when a model is BUILT FOR TRAINING
                                      # ("" = random init); a checkpoint holds the weights, loading it ignores this
    text_dim: int = 384               # all-MiniLM-L6-v2 token embedding size
    text_tokens: int = 16             # instruction tokens kept (padded/truncated)
    euler_steps: int = 10             # K Euler steps at inference
    align_block: int = -1             # hidden state AFTER this many blocks; -1 -> depth - 2


@dataclass
class ModelConfig:
    name: str = "lara"
    variant: str = "lara"             # dit_only | frozen_lam | lara
    components: list[str] = field(default_factory=lambda: ["vla", "lam"])  # ["lam"] for a LAM-only checkpoint
    action_space: str = "ee_delta_xyz_gripper"
    state_names: list[str] = field(default_factory=list)
    dt: float = 0.0125
    chunk_offset: int = -1            # C, frames between the LAM's image pair; -1 -> horizon
    vla: VLAConfig = field(default_factory=VLAConfig)
    lam: LAMConfig = field(default_factory=LAMConfig)
    # dynamics check at inference (DESIGN.md)
    null_effect_threshold: float = 0.0   # calibrated at the end of training; <= 0 disables the flag
    plausibility_weight: float = 0.5

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")

    def validate(self) -> "ModelConfig":
        """Raise ValueError naming the field when the sizes cannot build a working model
        (called before a model is built; a bad config.json fails here, not deep in torch)."""
        v, lam = self.vla, self.lam
        problems = []
        if self.has_vla:
            if v.depth < 1:
                problems.append(f"vla.depth={v.depth} must be >= 1")
            if v.horizon < 1:
                problems.append(f"vla.horizon={v.horizon} must be >= 1")
            if v.width % v.heads:
                problems.append(f"vla.width={v.width} is not divisible by vla.heads={v.heads}")
            if not v.cameras:
                problems.append("vla.cameras is empty")
            if v.euler_steps < 1:
                problems.append(f"vla.euler_steps={v.euler_steps} must be >= 1")
            if v.vision_train not in VISION_TRAIN_MODES:
                problems.append(f"vla.vision_train={v.vision_train!r} must be one of {VISION_TRAIN_MODES}")
            elif v.vision_backbone == "conv" and v.vision_train != "full":
                problems.append(f"vla.vision_train={v.vision_train!r} needs a pretrained backbone (--vision-backbone); "
                                "the conv encoder trains from scratch (full)")
            if self.has_lam and v.depth >= 1 and not 1 <= self.align_after <= v.depth:
                problems.append(
                    f"the alignment reads the DiT hidden state after block {self.align_after} "
                    f"(align_block={v.align_block}{' -> depth - 2' if v.align_block < 0 else ''}), which must be "
                    f"1..depth={v.depth}: use depth >= 3 (the paper's block L-2) or set align_block "
                    f"(--align-block) to 1..{v.depth}")
        if self.has_lam:
            if lam.width % lam.heads:
                problems.append(f"lam.width={lam.width} is not divisible by lam.heads={lam.heads}")
            if lam.image_size % lam.patch_size:
                problems.append(f"lam.image_size={lam.image_size} is not a multiple of lam.patch_size={lam.patch_size}")
            if min(lam.num_queries, lam.latent_dim, lam.codebook_size) < 1:
                problems.append("lam.num_queries, lam.latent_dim and lam.codebook_size must be >= 1")
        if self.chunk_offset == 0 or self.chunk_offset < -1:
            problems.append(f"chunk_offset={self.chunk_offset} must be >= 1 (or -1 = horizon)")
        if problems:
            raise ValueError("invalid model config: " + "; ".join(problems))
        return self

    @property
    def has_vla(self) -> bool:
        return "vla" in self.components

    @property
    def has_lam(self) -> bool:
        return "lam" in self.components and (self.variant != "dit_only" or not self.has_vla)

    @property
    def offset(self) -> int:
        return self.vla.horizon if self.chunk_offset < 0 else self.chunk_offset

    @property
    def align_after(self) -> int:
        return self.vla.depth - 2 if self.vla.align_block < 0 else self.vla.align_block

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return _from_dict(cls, data)


@dataclass
class TrainConfig:
    paradigm: str = "pretrain"
    data: list[str] = field(default_factory=list)       # action-labelled (or mixed) stores
    video: list[str] = field(default_factory=list)      # extra stores used action-free
    val: list[str] = field(default_factory=list)        # held-out labelled stores: val_loss_act in metrics.csv
    val_every: int = 250
    video_fraction: float = 0.25      # share of a batch from action-free samples; -1 = by their number
    out: str = "runs/lara"
    variant: str = "lara"
    steps: int = 2000
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    w_lara: float = 0.01              # w1
    w_lam: float = 0.01               # w2
    grad_clip: float = 1.0
    grad_clip_scope: str = "group"    # group: per module group (VLA, LAM, f_psi); global: all together
    grad_ratio_every: int = 0         # log ||w_LARA grad L_LARA|| / ||grad L_ACT|| every N steps (0: off)
    ema_decay: float = 0.999          # EMA of the weights (warmed up); final/ holds the EMA; 0 = off
    seed: int = 0
    init: str = ""                    # VLA checkpoint to start from (posttrain, lam-refine)
    lam: str = ""                     # LAM checkpoint to start the LAM from
    resume: bool = False
    save_every: int = 500
    log_every: int = 10
    aug_shift: int = 0                # +-pixels of random shift on VLA images. 0: the state (hand, goal)
                                      # is in world coordinates and is not shifted, so a shifted image
                                      # moves the object relative to it; at 64 px push's puck spans
                                      # ~13 x 6 px across layouts and +-4 px left the policy unable to
                                      # use the image (push 0.18 -> 0.78 with 0; docs/model.md)
    aug_photometric: float = 0.0      # strength of brightness/contrast/colour-gain augmentation (0 = off)
    threads: int = 2
    device: str = ""                  # "" -> cuda if available else cpu
    precision: str = "fp32"           # fp32 | bf16 (torch.autocast on the training forward)
    grad_accum: int = 1               # micro-batches per optimizer step (effective batch = batch_size x N)
    workers: int = 0                  # 0: stores in memory, batches on a thread; N: lazy DataLoader, N processes
    feature_cache: str = "auto"       # frozen vision features computed once per frame: auto | off
    tensorboard: bool = False
    progress: bool = True
    cameras: list[str] = field(default_factory=list)    # [] -> all cameras of the store
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self):
        if self.paradigm not in PARADIGMS:
            raise ValueError(f"paradigm must be one of {PARADIGMS}, got {self.paradigm!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.grad_clip_scope not in ("group", "global"):
            raise ValueError(f"grad_clip_scope must be group or global, got {self.grad_clip_scope!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return _from_dict(cls, data)


# Keys a config.json written before they existed lacks: the architecture it was trained with.
_LEGACY = {("VLAConfig", "vision_stem"): 0, ("VLAConfig", "vision_keypoints"): 0, ("VLAConfig", "film"): False,
           ("VLAConfig", "keypoint_temperature"): 1.0}

_NESTED = {("ModelConfig", "vla"): VLAConfig, ("ModelConfig", "lam"): LAMConfig,
           ("TrainConfig", "model"): ModelConfig}
