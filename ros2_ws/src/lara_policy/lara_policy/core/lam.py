"""The latent action model (LAM): an inverse-dynamics encoder of a frame pair (I_t, I_t+C) to M
continuous latent tokens z (B, M, d_z), a cosine vector quantiser, and a forward-dynamics decoder
that reconstructs I_t+C in pixels from I_t and the quantised z (PAPER.md, "Parts")."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lara_policy.core.configuration import LAMConfig
from lara_policy.core.layers import ConvEncoder, TransformerLayer

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
