"""The int8 policy graph of `lara export --quantize int8` (runtime onnxruntime-int8) and how far it
is from the fp32 graph.

Dynamic quantisation (onnxruntime.quantization.quantize_dynamic): the weights of every MatMul/Gemm
with a constant weight become int8 (the once-per-chunk composition of the cross-attention is an
Einsum, core/export_graph.py, and stays fp32), one scale per output channel; activations are quantised to
uint8 at run time, per tensor. The attention products (two activations), layer norms, softmax, the convolutions of the vision encoder
and the dynamics check stay fp32.

The error is measured, not bounded by construction: on fixed observations and noise, the int8
actions against the fp32 graph's in normalised units, that error relative to the spread between
the N candidates of the fp32 graph (how much another noise draw moves a chunk), and how often the
dynamics check (latent consensus) picks the same candidate.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

QUANTIZED_OPS = ["MatMul", "Gemm"]


def quantize_policy(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)      # "consider pre-processing": shape inference, not needed for dynamic int8
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=QUANTIZED_OPS)
    finally:
        root.setLevel(level)


def _inputs(policy, seed: int, n: int):
    v = policy.config.vla
    g = torch.Generator().manual_seed(1000 + seed)
    images = torch.rand(1, len(v.cameras), 3, v.image_size, v.image_size, generator=g)
    state = torch.randn(1, v.state_dim, generator=g)
    text = torch.randn(1, v.text_tokens, v.text_dim, generator=g)
    mask = torch.ones(1, v.text_tokens, dtype=torch.bool)
    noise = torch.randn(n, v.horizon, v.action_dim, generator=g)
    return images, state, text, mask, noise


@torch.no_grad()
def int8_error(policy, fp32, int8, observations: int = 16, n: int = 8) -> dict:
    """Error of the int8 graph against the fp32 graph (both core.export.OnnxSession) on
    `observations` fixed random observations with `n` candidates each (normalised actions)."""
    from lara_policy.core.policy import latent_consensus
    errors, spreads, same, latent_cos = [], [], 0, []
    for seed in range(observations):
        inputs = _inputs(policy, seed, n)
        a32, z32 = fp32.sample(*inputs)
        a8, z8 = int8.sample(*inputs)
        errors.append((a8 - a32).abs())
        spreads.append((a32 - a32.mean(0, keepdim=True)).abs().mean())
        if policy.config.has_lam:
            same += int(int(latent_consensus(z32).argmax()) == int(latent_consensus(z8).argmax()))
            latent_cos.append(torch.nn.functional.cosine_similarity(z32.flatten(1), z8.flatten(1)).min())
    err = torch.stack(errors)
    mean_abs = float(err.mean())
    spread = float(torch.stack(spreads).mean())
    out = {"observations": observations, "candidates": n, "actions_mean_abs": mean_abs,
           "actions_max_abs": float(err.max()), "candidate_spread_mean_abs": spread,
           "relative_to_spread": mean_abs / max(spread, 1e-12),
           "same_choice": same / observations if policy.config.has_lam else 1.0}
    if latent_cos:
        out["latent_cos_min"] = float(torch.stack(latent_cos).min())
    return out
