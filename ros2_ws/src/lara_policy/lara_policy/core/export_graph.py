"""The sampling path of LaraModel rewritten for export (core/export.py): the same function as
`LaraModel.sample` + f_psi (parity with eager ~1e-6), arranged so the ONNX graph has few nodes
and does each piece of work once. Measured on the 2-core development CPU (onnxruntime, one
thread) the per-node cost, not the arithmetic, dominates at N=1, and the elementwise work at N=8.

What changes against the eager module (weights are only rearranged, never retrained):
- everything that depends on the observation alone is computed once, at batch 1, and broadcast
  over the N candidates: the condition tokens, each block's cross-attention keys/values and mask
  bias, and the adaLN modulation of all K Euler steps (flow time tau = k/K is a constant, so the
  time embedding is folded; one (K, w) x (w, 6w) product per block instead of K);
- the adaLN shift/scale go into LayerNormalization's own scale/bias inputs ((1 + scale) folded);
- self-attention projects q, k, v with one matrix; 1/sqrt(d_head) is folded into the q weights;
- the Euler step size dt is folded into the output projection, the position embedding into the
  input projection's bias; reshapes use constant shapes (no Shape/Gather chains on the dynamic N).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lara_policy.core.modeling import timestep_embedding


class _SelfAttention(nn.Module):
    def __init__(self, attn, tokens: int):
        super().__init__()
        d = attn.q.weight.shape[0]
        self.heads, self.dh, self.tokens = attn.heads, d // attn.heads, tokens
        s = 1.0 / math.sqrt(self.dh)
        # rows ordered (head, q|k|v, d_head): one transpose gives (N, h, t, 3 d_head), one split q, k, v
        w = torch.cat([attn.q.weight * s, attn.kv.weight]).view(3, self.heads, self.dh, d).transpose(0, 1)
        b = torch.cat([attn.q.bias * s, attn.kv.bias]).view(3, self.heads, self.dh).transpose(0, 1)
        self.register_buffer("w", w.reshape(3 * d, d).detach().clone())
        self.register_buffer("b", b.reshape(3 * d).detach().clone())
        self.register_buffer("w_out", attn.out.weight.detach().clone())
        self.register_buffer("b_out", attn.out.bias.detach().clone())

    def forward(self, x):
        """x (N * H, w) -> (N * H, w)."""
        h, dh, t = self.heads, self.dh, self.tokens
        q, k, v = F.linear(x, self.w, self.b).view(-1, t, h, 3 * dh).transpose(1, 2).split(dh, dim=-1)
        y = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
        return F.linear(y.transpose(1, 2).reshape(-1, h * dh), self.w_out, self.b_out)


class _CrossAttention(nn.Module):
    """Cross-attention to the condition (batch 1, fixed for the chunk) composed into two products:
    the scores of every head are x A + c with A = W_q^T K^T (w, h L) and c = b_q K^T + mask bias,
    and the output is softmax(scores) B + b_out with B = the heads' V W_out^T stacked (h L, w).
    A, c and B are computed once per chunk; per Euler step no transposes, no per-head products."""

    def __init__(self, attn, tokens: int):
        super().__init__()
        d = attn.q.weight.shape[0]
        self.heads, self.dh, self.tokens, self.width = attn.heads, d // attn.heads, tokens, d
        s = 1.0 / math.sqrt(self.dh)
        self.kv = attn.kv
        self.register_buffer("w_q", (attn.q.weight * s).detach().clone().view(self.heads, self.dh, d))
        self.register_buffer("b_q", (attn.q.bias * s).detach().clone().view(self.heads, 1, self.dh))
        self.register_buffer("w_out", attn.out.weight.detach().clone().view(d, self.heads, self.dh).permute(1, 2, 0))
        self.register_buffer("b_out", attn.out.bias.detach().clone())

    def compose(self, cond, mask_bias):
        """cond (1, L, w), mask_bias (L,) -> A (w, h L), c (h L,), B (h L, w): once per chunk."""
        h, dh, d = self.heads, self.dh, self.width
        # Einsum, not MatMul: `lara export --quantize int8` quantises MatMul/Gemm weights, and these
        # products of a constant with the condition run once per chunk (core/export_int8.py)
        k, v = self.kv(cond[0]).view(-1, 2, h, dh).unbind(1)                         # (L, h, dh) each
        a = torch.einsum("hdw,lhd->whl", self.w_q, k).reshape(d, -1)                 # (w, h L)
        c = (torch.einsum("hd,lhd->hl", self.b_q[:, 0], k) + mask_bias).reshape(-1)  # (h L,)
        b = torch.einsum("lhd,hdw->hlw", v, self.w_out).reshape(-1, d)               # (h L, w)
        return a, c, b

    def forward(self, x, a, c, b):
        """x (N * H, w) -> (N * H, w)."""
        p = torch.softmax((x @ a + c).view(-1, self.heads, a.shape[1] // self.heads), dim=-1)
        return p.view(-1, a.shape[1]) @ b + self.b_out


class InferenceGraph(nn.Module):
    """(images, state, text, text_mask, noise) -> (actions, pred_latent) like PolicyGraph; N
    candidates = the batch of noise; the observation inputs have batch 1."""

    def __init__(self, model):
        super().__init__()
        cfg = model.config
        v = cfg.vla
        head = model.action_head
        self.encoder = model.observation_encoder
        self.steps, self.width, self.horizon, self.action_dim = v.euler_steps, v.width, v.horizon, v.action_dim
        self.align_after = cfg.align_after
        self.has_lam = cfg.has_lam
        self.align_proj = model.align_proj if cfg.has_lam else None
        self.lam_shape = (cfg.lam.num_queries, cfg.lam.latent_dim) if cfg.has_lam else (1, 1)
        self.time_mlp = head.time_mlp
        dt = 1.0 / self.steps
        taus = torch.arange(self.steps, dtype=torch.float32) * dt
        self.register_buffer("t_emb", timestep_embedding(taus, v.width).detach().clone())   # (K, w) constant
        self.register_buffer("w_in", head.action_in.weight.detach().clone())
        self.register_buffer("b_in", (head.action_in.bias + head.pos[0]).detach().clone())  # (H, w)
        self.norm_out = head.norm_out
        self.register_buffer("w_out", (head.action_out.weight * dt).detach().clone())
        self.register_buffer("b_out", (head.action_out.bias * dt).detach().clone())
        self.blocks = head.blocks
        self.register_buffer("one", torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 1.0]).repeat_interleave(v.width))
        self.self_attn = nn.ModuleList(_SelfAttention(b.self_attn, v.horizon) for b in head.blocks)
        self.cross_attn = nn.ModuleList(_CrossAttention(b.cross_attn, v.horizon) for b in head.blocks)
        self.eval()

    def forward(self, images, state, text, text_mask, noise):
        cond, cond_mask, pooled = self.encoder(images, state, text, text_mask)            # batch 1
        t = self.time_mlp(self.t_emb)                                                     # (K, w)
        if pooled is not None:
            t = t + pooled
        mask_bias = torch.zeros(cond_mask.shape[1:], dtype=cond.dtype).masked_fill(~cond_mask[0], float("-inf"))
        per_block = []
        for block, cross in zip(self.blocks, self.cross_attn):
            mods = (block.modulation(t) + self.one).reshape(-1).split(self.width)   # s1, 1+c1, 1+g1, s2, ...
            per_block.append(([mods[6 * k:6 * k + 6] for k in range(self.steps)], cross.compose(cond, mask_bias)))
        x, w, t_len = noise, self.width, self.horizon
        hidden = None
        for k in range(self.steps):       # action tokens as (N * H, w): every projection is one Gemm
            h = F.linear(x, self.w_in, self.b_in).view(-1, w)
            for i, (block, attn, cross) in enumerate(zip(self.blocks, self.self_attn, self.cross_attn)):
                (s1, c1, g1, s2, c2, g2), composed = per_block[i][0][k], per_block[i][1]
                h = h + g1 * attn(F.layer_norm(h, (w,), c1, s1, block.norm1.eps))
                nc = block.norm_c
                h = h + cross(F.layer_norm(h, (w,), nc.weight, nc.bias, nc.eps), *composed)
                h = h + g2 * block.mlp(F.layer_norm(h, (w,), c2, s2, block.norm2.eps))
                if k == self.steps - 1 and i + 1 == self.align_after:
                    hidden = h.view(-1, t_len, w)[:, -1]
            x = x + F.linear(self.norm_out(h), self.w_out, self.b_out).view(-1, t_len, self.action_dim)
        if self.has_lam:
            return x, self.align_proj(hidden).view(-1, *self.lam_shape)
        return x, x[:, :1, :1] * 0.0
