"""The LARA model, top to bottom: building blocks, the latent action model (LAM), the
flow-matching DiT VLA, and `LaraModel`, which ties them together with the alignment term.

Conventions: images enter as float tensors in [0, 1], shape (B, 3, H, W); actions and state
enter NORMALISED (see processing.py); a LAM latent z has shape (B, M, d_z).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from lara_policy.core.configuration import LAMConfig, ModelConfig, VLAConfig

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
VISION_BACKBONES: dict[str, Callable[[VLAConfig], nn.Module]] = {
    "conv": lambda c: ConvEncoder(3, list(c.vision_channels), c.image_size, c.width, c.vision_stem,
                                  c.vision_keypoints, c.keypoint_temperature, c.keypoint_temperature > 1.0),
}


def register_backbone(name: str, factory: Callable[[VLAConfig], nn.Module]) -> None:
    """Make `VLAConfig(vision_backbone=name)` build `factory(config)`."""
    VISION_BACKBONES[name] = factory


def timestep_embedding(tau: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of flow time tau in [0, 1] -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=tau.device) / half)
    args = tau[:, None].float() * 1000.0 * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


# ----------------------------------------------------------------------------------------
# Latent action model


def token_covariance(z: torch.Tensor, global_batch: bool) -> torch.Tensor:
    """Covariance of each latent token's d_z dimensions over the batch: z (B, M, d) -> (M, d, d).
    global_batch: moments over ALL ranks through a differentiable all-reduce under DDP, so a
    distributed step equals a single-process step on the same global batch."""
    z = z.transpose(0, 1)                                               # (M, B, d)
    m, d = z.shape[0], z.shape[2]
    moments = torch.cat([z.sum(1).flatten(), (z.transpose(1, 2) @ z).flatten(), z.new_ones(1) * z.shape[1]])
    if global_batch and torch.distributed.is_available() and torch.distributed.is_initialized():
        from torch.distributed.nn.functional import all_reduce
        moments = all_reduce(moments)
    n = moments[-1]
    mean = (moments[:m * d] / n).view(m, d)
    second = moments[m * d:-1].view(m, d, d)
    return (second - n * mean[:, :, None] * mean[:, None, :]) / (n - 1).clamp(min=1)


class VectorQuantizer(nn.Module):
    """Cosine-similarity VQ with a commitment term and dead-code re-seeding (see maintain()).

    Latents and codes are l2-normalised before lookup (keeps codes in use); codes unused for
    `dead_code_steps` training steps are re-seeded from current encoder outputs."""

    def __init__(self, num_codes: int, dim: int, commitment: float, dead_code_steps: int):
        super().__init__()
        self.codebook = nn.Parameter(F.normalize(torch.randn(num_codes, dim), dim=-1))
        self.commitment = commitment
        self.dead_code_steps = dead_code_steps
        self.register_buffer("steps_unused", torch.zeros(num_codes), persistent=False)
        self.register_buffer("initialised", torch.zeros(()))   # codes seeded from data on the first step

    def lookup(self, z):
        """z (B, M, d) -> (normalised z, normalised codes chosen, indices, cosine to them)."""
        zn = F.normalize(z, dim=-1)
        codes = F.normalize(self.codebook, dim=-1)
        sim = zn @ codes.t()                               # (B, M, K)
        cos, idx = sim.max(dim=-1)
        return zn, codes[idx], idx, cos

    def forward(self, z):
        zn, q, idx, _ = self.lookup(z)
        loss = F.mse_loss(q, zn.detach()) + self.commitment * F.mse_loss(zn, q.detach())
        z_q = zn + (q - zn).detach()                       # straight-through
        if self.training:
            self._last_batch = (idx.detach(), zn.detach())
        return z_q, loss, idx

    @torch.no_grad()
    def maintain(self) -> None:
        """Collapse guard, called by the training loop AFTER the optimizer step: seed the codes
        from data on the first step, then re-seed codes unused for `dead_code_steps` steps."""
        last = getattr(self, "_last_batch", None)
        if last is None:
            return
        self._last_batch = None
        idx, zn = last
        pool = zn.reshape(-1, zn.shape[-1])
        if not bool(self.initialised):
            pick = torch.randint(0, pool.shape[0], (self.codebook.shape[0],), device=pool.device)
            self.codebook.data.copy_(pool[pick] + 0.05 * torch.randn_like(pool[pick]))
            self.initialised.fill_(1.0)
            return
        used = torch.bincount(idx.flatten(), minlength=self.codebook.shape[0]) > 0
        self.steps_unused = torch.where(used, torch.zeros_like(self.steps_unused), self.steps_unused + 1)
        dead = (self.steps_unused >= self.dead_code_steps).nonzero().flatten()
        if len(dead):
            pick = torch.randint(0, pool.shape[0], (len(dead),), device=pool.device)
            self.codebook.data[dead] = pool[pick] + 0.01 * torch.randn_like(pool[pick])
            self.steps_unused[dead] = 0

    @staticmethod
    def effective_dims(z: torch.Tensor) -> float:
        """Participation ratio (sum lambda)^2 / sum lambda^2 of the latent's covariance, per
        latent token, averaged: 1 = every z on one line (dimensional collapse, which code
        perplexity counted over all tokens does not show), d_z = all dimensions used evenly.
        Local batch only (rank 0 calls it alone when logging)."""
        z = z.detach().float().reshape(-1, *z.shape[-2:])
        lam = torch.linalg.eigvalsh(token_covariance(z, global_batch=False)).clamp(min=0)
        return float((lam.sum(-1) ** 2 / (lam ** 2).sum(-1).clamp(min=1e-12)).mean())

    @staticmethod
    def perplexity(idx: torch.Tensor, num_codes: int) -> float:
        p = torch.bincount(idx.flatten(), minlength=num_codes).float()
        p = p / p.sum().clamp(min=1)
        return float(torch.exp(-(p * torch.log(p.clamp(min=1e-10))).sum()))


class LatentActionModel(nn.Module):
    """IDM (I_t, I_{t+C}) -> z (M x d_z) -> VQ -> FDM reconstructs I_{t+C} from I_t and z_q."""

    def __init__(self, c: LAMConfig):
        super().__init__()
        self.config = c
        stages = list(c.channels)
        # inverse dynamics: both frames and their difference, stacked on channels
        self.idm_encoder = ConvEncoder(9, stages, c.image_size, c.width)
        self.queries = nn.Parameter(torch.randn(1, c.num_queries, c.width) * 0.02)
        self.idm_layers = nn.ModuleList(TransformerLayer(c.width, c.heads, cross=True) for _ in range(c.idm_layers))
        self.to_latent = nn.Sequential(nn.LayerNorm(c.width), nn.Linear(c.width, c.latent_dim))
        self.quantizer = VectorQuantizer(c.codebook_size, c.latent_dim, c.commitment, c.dead_code_steps)
        # running mean of the raw IDM output, subtracted from it: z is the latent RELATIVE to the
        # typical transition, so the part every pair shares (scene content) neither fills the
        # codes' directions (collapse) nor makes every alignment/surprise cosine look high
        self.register_buffer("latent_mean", torch.zeros(c.num_queries, c.latent_dim))
        self.register_buffer("latent_mean_ready", torch.zeros(()))
        self.latent_mean_momentum = 0.9
        # forward dynamics (a small ViT, as the paper's FDM): patch tokens of I_t attend to the
        # latent-action tokens, then each token decodes its patch of the predicted change
        p, n = c.patch_size, c.image_size // c.patch_size
        self.patch_size, self.grid = p, n
        self.fdm_patches = nn.Conv2d(3, c.width, p, stride=p)
        self.fdm_pos = nn.Parameter(torch.randn(1, n * n, c.width) * 0.02)
        self.latent_in = nn.Linear(c.latent_dim, c.width)
        self.latent_global = nn.Linear(c.num_queries * c.latent_dim, c.width)   # direct path to every patch
        self.fdm_layers = nn.ModuleList(TransformerLayer(c.width, c.heads, cross=True) for _ in range(c.fdm_layers))
        self.fdm_norm = nn.LayerNorm(c.width)
        self.fdm_out = nn.Linear(c.width, 3 * p * p)

    def resize(self, images):
        s, size = self.config.image_size, images.shape[-1]
        if size == s:
            return images
        if size % s == 0 and images.shape[-2] == size:
            return F.avg_pool2d(images, size // s)          # exact area resampling, fast
        return F.interpolate(images, size=(s, s), mode="area")

    def encode(self, image_t, image_tc):
        """Continuous (pre-quantisation) latent action z, (B, M, d_z)."""
        a, b = self.resize(image_t), self.resize(image_tc)
        tokens = self.idm_encoder(torch.cat([a, b, b - a], dim=1))
        q = self.queries.expand(a.shape[0], -1, -1)
        for layer in self.idm_layers:
            q = layer(q, tokens)
        raw = self.to_latent(q)
        if self.training:
            # centre with the (global) batch mean, detached: the raw output drifts faster than a
            # running mean follows; the running mean serves inference and is re-estimated
            # exactly over the data at the end of training (train.calibrate_null_effect)
            mean = self._global_batch_mean(raw.detach())
            self._last_raw_mean = mean
            return raw - mean
        return raw - self.latent_mean

    @staticmethod
    def _global_batch_mean(raw):
        """Mean over the batch (over ALL ranks under DDP, so a distributed step equals a
        single-process step on the same global batch)."""
        stats = torch.cat([raw.sum(0).flatten(), raw.new_tensor([raw.shape[0]])])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)
        return (stats[:-1] / stats[-1]).view(raw.shape[1:])

    @torch.no_grad()
    def frozen_targets(self, image_t, image_tc) -> dict:
        """The frozen LAM's alignment target for `frozen_lam`: the IDM latent z and its code
        indices, detached, WITHOUT the FDM decode that forward() runs for L_LAM (nothing of the
        LAM trains): {"z": (B, M, d_z), "indices": (B, M)}; z and indices equal forward()'s."""
        z = self.encode(image_t, image_tc)
        return {"z": z, "indices": self.quantizer.lookup(z)[2]}

    @torch.no_grad()
    def maintain(self) -> None:
        """Called by the training loop after each optimizer step: update the running latent
        mean, then the codebook's collapse guard."""
        batch_mean = getattr(self, "_last_raw_mean", None)
        if batch_mean is not None:
            self._last_raw_mean = None
            if not bool(self.latent_mean_ready):
                self.latent_mean.copy_(batch_mean)
                self.latent_mean_ready.fill_(1.0)
            else:
                self.latent_mean.lerp_(batch_mean, 1 - self.latent_mean_momentum)
        self.quantizer.maintain()

    def image_features(self, image):
        """The LAM's feature space for an image (FDM patch tokens; used to measure predicted effect)."""
        return self.fdm_patches(self.resize(image)).flatten(2).transpose(1, 2)

    def predict_future(self, image_t, z_q):
        """FDM: predicted I_{t+C} (B, 3, S, S) from I_t and (quantised) latent tokens."""
        a = self.resize(image_t)
        x = self.image_features(a) + self.fdm_pos + self.latent_global(z_q.flatten(1))[:, None]
        ctx = self.latent_in(z_q)
        for layer in self.fdm_layers:
            x = layer(x, ctx)
        b, n, p = a.shape[0], self.grid, self.patch_size
        delta = self.fdm_out(self.fdm_norm(x)).view(b, n, n, 3, p, p).permute(0, 3, 1, 4, 2, 5)
        return a + delta.reshape(b, 3, n * p, n * p)

    def _weighted_recon(self, pred, image_t, target):
        """Pixel MSE with pixels that change between the frames up-weighted: the moving arm is
        a few percent of the image, and only the latent can tell the FDM where it goes."""
        gain = self.config.motion_weight
        if gain <= 0:
            return F.mse_loss(pred, target)
        moving = ((target - image_t).abs().amax(1, keepdim=True) > 0.05).float()
        weight = 1 + gain * moving                       # normalised per sample (DDP-decomposable)
        per_sample = ((pred - target) ** 2 * weight).mean((1, 2, 3)) / weight.mean((1, 2, 3))
        return per_sample.mean()

    @staticmethod
    def spread_penalty(z):
        """Keeps every latent dimension in use: hinge on each dimension's batch std (>= 1) plus
        the squared off-diagonal covariance, per latent token (VICReg's variance/covariance
        terms). Without it the cosine VQ settled with each token's z on one line (+-d): latent_dims
        ~1.0 and 8 usable scalars instead of 8 x d_z directions."""
        cov = token_covariance(z, global_batch=True)                     # (M, d, d)
        std = torch.sqrt(torch.diagonal(cov, dim1=1, dim2=2).clamp(min=0) + 1e-4)
        off = cov - torch.diag_embed(torch.diagonal(cov, dim1=1, dim2=2))
        return F.relu(1 - std).mean() + (off ** 2).sum((1, 2)).mean() / cov.shape[-1]

    def forward(self, image_t, image_tc):
        """Returns dict: z (pre-VQ), z_q, indices, recon, loss terms."""
        image_t, target = self.resize(image_t), self.resize(image_tc)    # once; later calls are no-ops
        z = self.encode(image_t, target)
        z_q, vq_loss, idx = self.quantizer(z)
        pred = self.predict_future(image_t, z_q)
        recon = F.mse_loss(pred, target)
        loss = vq_loss + self._weighted_recon(pred, image_t, target)
        if self.config.spread_weight > 0 and self.training:
            loss = loss + self.config.spread_weight * self.spread_penalty(z)
        if self.config.perceptual_weight > 0:
            with torch.no_grad():
                feat_target = self.image_features(target)
            loss = loss + self.config.perceptual_weight * F.mse_loss(self.image_features(pred), feat_target)
        return {"z": z, "z_q": z_q, "indices": idx, "pred": pred, "recon": recon, "vq": vq_loss, "loss": loss}


# ----------------------------------------------------------------------------------------
# VLA: observation encoder + flow-matching DiT action head


class DiTBlock(nn.Module):
    """Action tokens: adaLN-modulated self-attention, cross-attention to the condition tokens,
    adaLN-modulated MLP. Modulation (shift, scale, gate) comes from the flow-time embedding."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.self_attn = Attention(dim, heads)
        self.norm_c = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = mlp(dim, mlp_ratio)
        self.modulation = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x, t_emb, cond, cond_mask):
        s1, c1, g1, s2, c2, g2 = self.modulation(t_emb)[:, None].chunk(6, dim=-1)
        x = x + (1 + g1) * self.self_attn(self.norm1(x) * (1 + c1) + s1)
        x = x + self.cross_attn(self.norm_c(x), cond, cond_mask)
        return x + (1 + g2) * self.mlp(self.norm2(x) * (1 + c2) + s2)


class ObservationEncoder(nn.Module):
    """Cameras + proprio state + cached MiniLM token embeddings -> condition tokens for the
    DiT's cross-attention, and (with `film`) one pooled observation vector (state, text and
    the vision keypoints) that modulates every DiT block beside the flow time (FiLM/adaLN):
    cross-attention alone left the hand state and a small object's position weakly coupled
    (docs/model.md, "Vision pathway")."""

    def __init__(self, c: VLAConfig):
        super().__init__()
        self.config = c
        self.vision = VISION_BACKBONES[c.vision_backbone](c)
        self.camera_embed = nn.Parameter(torch.zeros(len(c.cameras), 1, c.width))
        self.state_in = nn.Sequential(nn.Linear(c.state_dim, c.width), nn.SiLU(), nn.Linear(c.width, c.width))
        self.text_in = nn.Linear(c.text_dim, c.width)
        self.norm = nn.LayerNorm(c.width)
        self.keypoints = getattr(self.vision, "keypoints", 0)
        if self.keypoints > 0:
            self.keypoint_in = nn.Sequential(nn.Linear(2 * self.keypoints * len(c.cameras), c.width), nn.SiLU(),
                                             nn.Linear(c.width, c.width))
        if c.film:
            self.film_out = nn.Sequential(nn.SiLU(), nn.Linear(c.width, c.width))

    def forward(self, images, state, text, text_mask):
        """images (B, n_cam, 3, S, S); state (B, s); text (B, T, 384); text_mask (B, T) bool.
        Returns condition tokens (B, n, w), their mask (B, n) and the pooled vector (B, w) or None."""
        b, n_cam = images.shape[:2]
        if self.keypoints > 0:
            vis, kp = self.vision(images.flatten(0, 1), with_keypoints=True)      # (B*n_cam, n, w), (B*n_cam, 2K)
        else:
            vis, kp = self.vision(images.flatten(0, 1)), None
        vis = vis.view(b, n_cam, *vis.shape[1:]) + self.camera_embed[None, :, 0, None]
        vis = vis.flatten(1, 2)
        state_tok, text_tok = self.state_in(state), self.text_in(text)
        tokens = [vis, state_tok[:, None], text_tok]
        n_fixed = vis.shape[1] + 1
        if kp is not None:
            kp_tok = self.keypoint_in(kp.view(b, -1))
            tokens.insert(2, kp_tok[:, None])
            n_fixed += 1
        tokens = torch.cat(tokens, dim=1)
        mask = torch.cat([torch.ones(b, n_fixed, dtype=torch.bool, device=state.device), text_mask], 1)
        pooled = None
        if self.config.film:
            m = text_mask.float()[..., None]
            pooled = state_tok + (text_tok * m).sum(1) / m.sum(1).clamp(min=1)
            if kp is not None:
                pooled = pooled + kp_tok
            pooled = self.film_out(pooled)
        return self.norm(tokens), mask, pooled


class DiTActionHead(nn.Module):
    def __init__(self, c: VLAConfig):
        super().__init__()
        self.config = c
        self.action_in = nn.Linear(c.action_dim, c.width)
        self.pos = nn.Parameter(torch.randn(1, c.horizon, c.width) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(c.width, c.width), nn.SiLU(), nn.Linear(c.width, c.width))
        self.blocks = nn.ModuleList(DiTBlock(c.width, c.heads, c.mlp_ratio) for _ in range(c.depth))
        self.norm_out = nn.LayerNorm(c.width)
        self.action_out = nn.Linear(c.width, c.action_dim)

    def forward(self, noisy_actions, tau, cond, cond_mask, align_after: int, pooled=None):
        """Velocity (B, H, D) and the hidden state after `align_after` blocks at the LAST action
        token. `pooled` (B, w): the observation vector added to the flow-time embedding (FiLM)."""
        t_emb = self.time_mlp(timestep_embedding(tau, self.config.width))
        if pooled is not None:
            t_emb = t_emb + pooled
        x = self.action_in(noisy_actions) + self.pos
        hidden = None
        for i, block in enumerate(self.blocks):
            x = block(x, t_emb, cond, cond_mask)
            if i + 1 == align_after:
                hidden = x[:, -1]
        return self.action_out(self.norm_out(x)), hidden


# ----------------------------------------------------------------------------------------
# LARA: VLA + LAM + alignment projection f_psi


class LaraModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config.validate()
        if config.has_vla:
            self.observation_encoder = ObservationEncoder(config.vla)
            self.action_head = DiTActionHead(config.vla)
        if config.has_lam:
            self.lam = LatentActionModel(config.lam)
        if config.has_vla and config.has_lam:
            # f_psi: a single Linear from the DiT width to the LAM latent (M x d_z), as released
            self.align_proj = nn.Linear(config.vla.width, config.lam.num_queries * config.lam.latent_dim)

    def forward(self, batch: dict, variant: str, w_lara: float = 0.01, w_lam: float = 0.01,
                lam_only: bool = False) -> dict:
        """Training forward = the losses (so DistributedDataParallel wraps it directly)."""
        return self.compute_losses(batch, variant, w_lara, w_lam, lam_only)

    # -- pieces -----------------------------------------------------------------------
    def project(self, hidden):
        lam = self.config.lam
        return self.align_proj(hidden).view(-1, lam.num_queries, lam.latent_dim)

    def velocity(self, noisy_actions, tau, cond, cond_mask, pooled=None):
        return self.action_head(noisy_actions, tau, cond, cond_mask, self.config.align_after, pooled)

    # -- training -----------------------------------------------------------------------
    def compute_losses(self, batch: dict, variant: str, w_lara: float, w_lam: float,
                       lam_only: bool = False) -> dict:
        """One training objective for every variant and paradigm.

        batch: images (B, n_cam, 3, S, S) float, image_tc (B, 3, S, S) float (primary camera at
        t + C), state (B, s), text (B, T, 384), text_mask (B, T), actions (B, H, D) normalised,
        action_mask (B, H) bool (False = padding past the episode end), has_action (B,) float.
        Returns the total `loss` and its terms (detached floats are left to the caller)."""
        out: dict[str, torch.Tensor] = {}
        zero = batch["state"].new_zeros(())
        total = zero
        image_t = batch["image_t"] if "image_t" in batch else batch["images"][:, 0]   # un-augmented
        use_lam = self.config.has_lam and (lam_only or variant != "dit_only")
        if use_lam:
            if variant == "frozen_lam" and not lam_only:     # target only: no FDM decode, nothing trains
                with torch.no_grad():
                    lam_out = self.lam.frozen_targets(image_t, batch["image_tc"])
                lam_out = {k: v.detach() for k, v in lam_out.items()}
            else:
                lam_out = self.lam(image_t, batch["image_tc"])
                out["loss_lam"] = lam_out["loss"]
                out["lam_recon"] = lam_out["recon"]
                out["lam_vq"] = lam_out["vq"]
            out["lam_indices"] = lam_out["indices"]
            out["lam_z"] = lam_out["z"]
        if lam_only:
            out["loss"] = lam_out["loss"]
            return out

        # The VLA sees only the action-labelled samples: action-free video feeds L_LAM alone,
        # so running it through the VLA would cost ~40% of a step for a zero-weighted loss.
        labelled = batch["has_action"] > 0
        rows = labelled.nonzero().flatten()
        sub = {k: batch[k].index_select(0, rows) for k in ("images", "state", "text", "text_mask", "actions",
                                                          "action_mask") }
        actions = sub["actions"]
        b = actions.shape[0]
        noise = batch["noise"].index_select(0, rows) if "noise" in batch else torch.randn_like(actions)
        tau = batch["tau"].index_select(0, rows) if "tau" in batch else torch.rand(b, device=actions.device)
        # Normalise by the labelled count of the GLOBAL batch, times the world size, so that DDP's
        # gradient average over ranks equals one process on the whole batch whatever each rank drew.
        n_act, world = labelled.sum().float(), 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            n_act = n_act.clone()
            torch.distributed.all_reduce(n_act)
        norm = n_act.clamp(min=1) / world
        if b > 0:
            cond, cond_mask, pooled = self.observation_encoder(sub["images"], sub["state"], sub["text"],
                                                               sub["text_mask"])
            noisy = tau[:, None, None] * actions + (1 - tau[:, None, None]) * noise
            velocity, hidden = self.velocity(noisy, tau, cond, cond_mask, pooled)
            mask = sub["action_mask"].float()[..., None]
            per_sample = (((velocity - (actions - noise)) ** 2 * mask).sum((1, 2))
                          / (mask.sum((1, 2)) * actions.shape[-1]).clamp(min=1))
            out["loss_act"] = per_sample.sum() / norm
        else:   # a rank drew no labelled sample: zero loss that still touches every VLA parameter (DDP)
            out["loss_act"] = sum(p.sum() * 0.0 for n, p in self.named_parameters()
                                  if n.startswith(("observation_encoder.", "action_head.")))
        total = total + out["loss_act"]
        if use_lam:
            if b > 0:
                pred_z = self.project(hidden)
                target = lam_out["z"].index_select(0, rows)   # NO stop-gradient in `lara`; detached for frozen_lam
                cos = F.cosine_similarity(pred_z, target, dim=-1).mean(-1)      # (b,)
                out["loss_lara"] = (1 - cos).sum() / norm
            else:
                out["loss_lara"] = self.align_proj.weight.sum() * 0.0
            total = total + w_lara * out["loss_lara"]
            if variant == "lara":
                total = total + w_lam * lam_out["loss"]
        out["loss"] = total
        return out

    # -- inference --------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, images, state, text, text_mask, noise, steps: int):
        """Euler-integrate the flow from noise (tau=0) to actions (tau=1).
        images etc. have batch 1 or N; noise (N, H, D). Returns (actions (N, H, D), hidden (N, w))."""
        cond, cond_mask, pooled = self.observation_encoder(images, state, text, text_mask)
        n = noise.shape[0]
        if cond.shape[0] != n:
            cond, cond_mask = cond.expand(n, -1, -1), cond_mask.expand(n, -1)
            pooled = None if pooled is None else pooled.expand(n, -1)
        x, dt = noise, 1.0 / steps
        hidden = None
        for k in range(steps):
            tau = torch.full((n,), k * dt, device=noise.device)
            v, hidden = self.velocity(x, tau, cond, cond_mask, pooled)
            x = x + dt * v
        return x, hidden

    @torch.no_grad()
    def predicted_effect(self, image_t, z, quantized: bool = True):
        """How much the FDM's predicted future under latent z differs from its prediction under
        the NULL latent (the IDM's latent of (I_t, I_t): "nothing happens"), in the LAM's
        patch-feature space. image_t (1 or B, 3, S, S); z (B, M, d) -> (B,) >= 0.
        quantized=False decodes the l2-normalised continuous latent instead of its nearest codes
        (same scale as the codes; no ties between candidates that share codes)."""
        lam = self.lam
        to_fdm = (lambda x: lam.quantizer.lookup(x)[1]) if quantized else (lambda x: F.normalize(x, dim=-1))
        q = to_fdm(z)
        now = image_t.expand(z.shape[0], -1, -1, -1)
        null = to_fdm(lam.encode(image_t, image_t))
        future = lam.image_features(lam.predict_future(now, q))
        future_null = lam.image_features(lam.predict_future(image_t, null))
        return (future - future_null).abs().mean((1, 2))

    @torch.no_grad()
    def dynamics_check(self, image_t, hidden):
        """For N candidates: predicted latent f_psi(h), predicted effect (see predicted_effect)
        and plausibility (distance of the normalised latent to the nearest code)."""
        pred_z = self.project(hidden)                                 # (N, M, d)
        _, _, _, cos = self.lam.quantizer.lookup(pred_z)
        effect = self.predicted_effect(image_t, pred_z)
        plausibility = torch.sqrt((2 - 2 * cos).clamp(min=0)).mean(-1)
        return pred_z, effect, plausibility

    @torch.no_grad()
    def surprise(self, predicted_latent, image_t, image_tc):
        """1 - cos(observed latent, predicted latent) over the whole M x d_z latent; both are
        relative to the LAM's mean latent and f_psi is trained by cosine, so only directions
        are comparable. 0 = as predicted, 1 = unrelated, 2 = the opposite change."""
        z_obs = self.lam.encode(image_t, image_tc).flatten(1)
        return float(1 - F.cosine_similarity(z_obs, predicted_latent.flatten(1), dim=-1).mean())


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
