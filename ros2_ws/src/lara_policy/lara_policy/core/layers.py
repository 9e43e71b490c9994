"""Building blocks shared by the LAM (core/lam.py) and the VLA (core/modeling.py): attention,
transformer layers, the convolutional image encoder."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------
# Building blocks


class Attention(nn.Module):
    """Multi-head attention; keys/values come from `context` (cross) or from x (self)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x, context=None, key_mask=None):
        context = x if context is None else context
        b, n, d = x.shape
        q = self.q(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)
        k, v = self.kv(context).view(b, context.shape[1], 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        mask = None if key_mask is None else key_mask[:, None, None, :]   # True = attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


def mlp(dim: int, ratio: float) -> nn.Sequential:
    hidden = int(dim * ratio)
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))


class TransformerLayer(nn.Module):
    """Pre-norm layer: optional cross-attention to a context, self-attention, MLP."""

    def __init__(self, dim: int, heads: int, cross: bool, mlp_ratio: float = 2.0):
        super().__init__()
        self.cross = Attention(dim, heads) if cross else None
        self.norm_c = nn.LayerNorm(dim) if cross else None
        self.self_attn = Attention(dim, heads)
        self.norm_s = nn.LayerNorm(dim)
        self.mlp = mlp(dim, mlp_ratio)
        self.norm_m = nn.LayerNorm(dim)

    def forward(self, x, context=None):
        if self.cross is not None:
            x = x + self.cross(self.norm_c(x), context)
        x = x + self.self_attn(self.norm_s(x))
        return x + self.mlp(self.norm_m(x))


class ConvEncoder(nn.Module):
    """Optional stride-1 stem, then stride-2 conv stages (GroupNorm + SiLU) -> a grid of tokens
    (B, h*w, width). With `keypoints` > 0 it also returns spatial-softmax keypoints taken at the
    FIRST stage's resolution (32x32 at 64 px): expected (x, y) of K learned feature maps, which
    locate a 2-px object to sub-pixel precision where the coarse token grid cannot."""

    def __init__(self, in_channels: int, channels: list[int], image_size: int, width: int,
                 stem: int = 0, keypoints: int = 0, keypoint_temperature: float = 1.0, standardise: bool = False):
        super().__init__()
        layers, c = [], in_channels
        if stem > 0:
            layers += [nn.Conv2d(c, stem, 3, stride=1, padding=1), nn.GroupNorm(min(8, stem), stem), nn.SiLU()]
            c = stem
        for out in channels:
            layers += [nn.Conv2d(c, out, 3, stride=2, padding=1), nn.GroupNorm(min(8, out), out), nn.SiLU()]
            c = out
        self.net = nn.Sequential(*layers)
        self.grid = image_size // 2 ** len(channels)
        self.to_tokens = nn.Linear(c, width)
        self.pos = nn.Parameter(torch.randn(1, self.grid * self.grid, width) * 0.02)
        self.num_tokens = self.grid * self.grid
        self.keypoints, self.standardise = keypoints, standardise
        self.split = 3 * (1 if stem > 0 else 0) + 3          # layers up to the end of the first stage
        if keypoints > 0:
            self.keypoint_maps = nn.Conv2d(channels[0], keypoints, 1)
            # log inverse temperature over per-map STANDARDISED logits: a 2-px object that lights up
            # a map stands out by a large z-score, so the softmax peaks on it from the first step
            # (raw logits at temperature 1 gave near-uniform weights: keypoints stuck at the centre
            # and the policy ignored the image, docs/model.md "Vision pathway")
            self.keypoint_temperature = nn.Parameter(torch.full((), math.log(keypoint_temperature)))
            side = image_size // 2
            lin = torch.linspace(-1.0, 1.0, side)
            self.register_buffer("grid_xy", torch.stack(torch.meshgrid(lin, lin, indexing="xy"), -1).view(-1, 2),
                                 persistent=False)

    def forward(self, x, with_keypoints: bool = False):
        if self.keypoints > 0:
            f = self.net[:self.split](x)                                                     # first stage
            logits = self.keypoint_maps(f).flatten(2)                                        # (B, K, hw)
            if self.standardise:
                logits = (logits - logits.mean(-1, keepdim=True)) / (logits.std(-1, keepdim=True) + 1e-5)
            logits = logits * self.keypoint_temperature.exp()
            kp = (logits.softmax(-1) @ self.grid_xy).flatten(1)                              # (B, 2K)
            f = self.net[self.split:](f)
        else:
            f, kp = self.net(x), None
        tokens = self.to_tokens(f.flatten(2).transpose(1, 2)) + self.pos
        return (tokens, kp) if with_keypoints else tokens


# A vision backbone maps (B, 3, S, S) images in [0, 1] to (B, n_tokens, width) tokens and
# exposes `num_tokens`. Register a pretrained one with `register_backbone`.
