"""Vision backbone cost, one process, interleaved rounds (a shared machine: compare ratios of one run).

    OMP_NUM_THREADS=1 python scripts/bench_vision.py [--rounds 7] [--batch 32] [--json FILE]

Per variant: observation-encoder forward at batch 1 (ms), the whole sample (10 Euler steps, N=1, ms)
and train samples/s (forward + backward + AdamW step of the default `lara` model on a random batch);
"frozen+cached" feeds precomputed frozen features (core/backbones.py) instead of images.
Variants: conv 64 px (the default) and efficientnet_lite0 at 128 px (stride 16: 8x8 tokens;
stride 32: 4x4 tokens; stride 16 average-pooled 2x2: 4x4 tokens) frozen / full; weights need not be pretrained for timing (random init).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn as nn

from lara_policy.core.backbones import EfficientNetLite0, TokenBackbone, lite0_normalise
from lara_policy.core.configuration import ModelConfig
from lara_policy.core.modeling import LaraModel, register_backbone


def stride32(c):
    trunk = EfficientNetLite0(stages=7, classifier=False)
    pieces = nn.Sequential(trunk.stem, *trunk.blocks)
    return TokenBackbone(pieces, len(pieces) if c.vision_train == "frozen" else 0, c.image_size, c.width,
                         c.vision_train, lite0_normalise)


def pooled(c):
    trunk = EfficientNetLite0(stages=5, classifier=False)
    pieces = nn.Sequential(trunk.stem, *trunk.blocks)
    n = len(pieces)
    pieces.append(nn.AvgPool2d(2))        # 8x8 -> 4x4 tokens at 128 px
    return TokenBackbone(pieces, n if c.vision_train == "frozen" else 0, c.image_size, c.width, c.vision_train,
                         lite0_normalise)


register_backbone("bench_lite0_stride32", stride32)
register_backbone("bench_lite0_pool2", pooled)

VARIANTS = {   # name: (backbone, image size, vision_train, cached features)
    "conv 64": ("conv", 64, "full", False),
    "lite0 s16 128 frozen": ("efficientnet_lite0", 128, "frozen", False),
    "lite0 s16 128 frozen+cached": ("efficientnet_lite0", 128, "frozen", True),
    "lite0 s16 128 full": ("efficientnet_lite0", 128, "full", False),
    "lite0 s16 128 frozen pool2": ("bench_lite0_pool2", 128, "frozen", False),
    "lite0 s32 128 frozen": ("bench_lite0_stride32", 128, "frozen", False),
    "lite0 s16 64 frozen": ("efficientnet_lite0", 64, "frozen", False),
}


def build(backbone, size, mode):
    cfg = ModelConfig()
    cfg.vla.image_size, cfg.vla.vision_backbone, cfg.vla.vision_train = size, backbone, mode
    torch.manual_seed(0)
    model = LaraModel(cfg)
    return cfg, model


def batch_for(cfg, b, g):
    v, lam = cfg.vla, cfg.lam
    return {"images": torch.rand(b, 1, 3, v.image_size, v.image_size, generator=g),
            "image_t": torch.rand(b, 3, v.image_size, v.image_size, generator=g),
            "image_tc": torch.rand(b, 3, v.image_size, v.image_size, generator=g),
            "state": torch.randn(b, v.state_dim, generator=g), "text": torch.randn(b, v.text_tokens, v.text_dim, generator=g),
            "text_mask": torch.ones(b, v.text_tokens, dtype=torch.bool),
            "actions": torch.randn(b, v.horizon, v.action_dim, generator=g),
            "action_mask": torch.ones(b, v.horizon, dtype=torch.bool), "has_action": torch.ones(b)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--only", nargs="*", default=None)
    p.add_argument("--json", default="")
    a = p.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    setups = {}
    for name, (backbone, size, mode, cached) in VARIANTS.items():
        if a.only and name not in a.only:
            continue
        cfg, model = build(backbone, size, mode)
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
        batch = batch_for(cfg, a.batch, g)
        if cached:
            vis = model.observation_encoder.vision
            batch["vision_features"] = vis.features(batch["images"].flatten(0, 1)).view(a.batch, 1, *vis.feature_shape)
        one = {k: v[:1] for k, v in batch.items()}
        setups[name] = (cfg, model, opt, batch, one, cached)
    times = {n: {"encoder_ms": [], "sample_ms": [], "train_samples_s": []} for n in setups}
    for r in range(a.rounds + 1):          # round 0 warms up
        for name, (cfg, model, opt, batch, one, cached) in setups.items():
            model.eval()
            enc = model.observation_encoder
            with torch.no_grad():
                t0 = time.perf_counter()
                for _ in range(5):
                    enc(one["images"], one["state"], one["text"], one["text_mask"])
                t_enc = (time.perf_counter() - t0) / 5 * 1e3
                noise = torch.randn(1, cfg.vla.horizon, cfg.vla.action_dim)
                t0 = time.perf_counter()
                model.sample(one["images"], one["state"], one["text"], one["text_mask"], noise, cfg.vla.euler_steps)
                t_sample = (time.perf_counter() - t0) * 1e3
            model.train()
            t0 = time.perf_counter()
            loss = model.compute_losses(batch, "lara", 0.01, 0.01)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            t_train = time.perf_counter() - t0
            if r > 0:
                times[name]["encoder_ms"].append(t_enc)
                times[name]["sample_ms"].append(t_sample)
                times[name]["train_samples_s"].append(a.batch / t_train)
    base = "conv 64" if "conv 64" in times else next(iter(times))
    med = {n: {k: statistics.median(v) for k, v in d.items()} for n, d in times.items()}
    vis_params = {n: (sum(q.numel() for q in s[1].observation_encoder.vision.parameters()),
                      sum(q.numel() for q in s[1].observation_encoder.vision.parameters() if q.requires_grad),
                      getattr(s[1].observation_encoder.vision, "num_tokens", 0)) for n, s in setups.items()}
    print(f"threads 1, batch {a.batch}, {a.rounds} rounds, medians; ratios vs '{base}'")
    print(f"{'variant':30s} {'tokens':>6s} {'vision params (trainable)':>26s} {'encoder ms':>11s} {'sample ms':>10s} "
          f"{'train samples/s':>16s} {'train ratio':>11s}")
    for n, m in med.items():
        tot, tr, tok = vis_params[n]
        print(f"{n:30s} {tok:6d} {tot:>15,d} ({tr:>8,d}) {m['encoder_ms']:11.2f} {m['sample_ms']:10.1f} "
              f"{m['train_samples_s']:16.1f} {m['train_samples_s'] / med[base]['train_samples_s']:11.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"median": med, "runs": times, "vision_params": vis_params, "batch": a.batch}, f, indent=2)


if __name__ == "__main__":
    main()
