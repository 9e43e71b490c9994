"""The LARA model, top to bottom: the flow-matching DiT VLA and `LaraModel`, which ties it to the
latent action model (core/lam.py) with the alignment term. Building blocks: core/layers.py.

Conventions: images enter as float tensors in [0, 1], shape (B, 3, H, W); actions and state
enter NORMALISED (see processing.py); a LAM latent z has shape (B, M, d_z).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from lara_policy.core.backbones import BackboneError, build_named, efficientnet_lite0
from lara_policy.core.configuration import ModelConfig, VLAConfig
from lara_policy.core.lam import LatentActionModel, VectorQuantizer  # noqa: F401  (re-exported)
from lara_policy.core.layers import Attention, ConvEncoder, mlp

# ----------------------------------------------------------------------------------------
# VLA


VISION_BACKBONES: dict[str, Callable[[VLAConfig], nn.Module]] = {
    "conv": lambda c: ConvEncoder(3, list(c.vision_channels), c.image_size, c.width, c.vision_stem,
                                  c.vision_keypoints, c.keypoint_temperature, c.keypoint_temperature > 1.0),
    # ImageNet EfficientNet-Lite0, stride-16 tokens; weights, modes, feature caching: core/backbones.py
    "efficientnet_lite0": efficientnet_lite0,
}


def register_backbone(name: str, factory: Callable[[VLAConfig], nn.Module]) -> None:
    """Make `VLAConfig(vision_backbone=name)` build `factory(config)`."""
    VISION_BACKBONES[name] = factory


def build_backbone(c: VLAConfig) -> nn.Module:
    """The vision backbone `c.vision_backbone` names: a registered name, timm:NAME or module:PKG.MOD:FACTORY."""
    named = build_named(c.vision_backbone, c)
    if named is not None:
        return named
    if c.vision_backbone not in VISION_BACKBONES:
        raise BackboneError(f"unknown vision backbone {c.vision_backbone!r}: one of {sorted(VISION_BACKBONES)}, "
                            "timm:NAME or module:PACKAGE.MODULE:FACTORY")
    return VISION_BACKBONES[c.vision_backbone](c)


def timestep_embedding(tau: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of flow time tau in [0, 1] -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=tau.device) / half)
    args = tau[:, None].float() * 1000.0 * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


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
        self.vision = build_backbone(c)
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

    def forward(self, images, state, text, text_mask, vision_features=None):
        """images (B, n_cam, 3, S, S); state (B, s); text (B, T, 384); text_mask (B, T) bool.
        vision_features (B, n_cam, C, h, w): the backbone's cached frozen features (`vision.features`,
        core/backbones.py) used instead of the images. Returns condition tokens (B, n, w), their
        mask (B, n) and the pooled vector (B, w) or None."""
        if vision_features is not None:
            b, n_cam = vision_features.shape[:2]
            vis, kp = self.vision(features=vision_features.flatten(0, 1)), None
        elif self.keypoints > 0:
            b, n_cam = images.shape[:2]
            vis, kp = self.vision(images.flatten(0, 1), with_keypoints=True)      # (B*n_cam, n, w), (B*n_cam, 2K)
        else:
            b, n_cam = images.shape[:2]
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
                                                          "action_mask", "vision_features") if k in batch}
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
            cond, cond_mask, pooled = self.observation_encoder(sub.get("images"), sub["state"], sub["text"],
                                                               sub["text_mask"], sub.get("vision_features"))
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
    def sample(self, images, state, text, text_mask, noise, steps: int, guide=None, guide_weights=None):
        """Euler-integrate the flow from noise (tau=0) to actions (tau=1).
        images etc. have batch 1 or N; noise (N, H, D). Returns (actions (N, H, D), hidden (N, w)).

        Real-time chunking (inpainting): with `guide` (1 or N, H, D; normalised actions the new
        chunk should continue, e.g. the rest of the chunk still executing) and `guide_weights`
        (H,) in [0, 1], after every Euler step the guided positions are pulled toward the
        flow's own interpolant of the guide at that time, tau * guide + (1 - tau) * noise, by
        their weight: weight 1 ends exactly on the guide, 0 leaves the sample free."""
        cond, cond_mask, pooled = self.observation_encoder(images, state, text, text_mask)
        n = noise.shape[0]
        if cond.shape[0] != n:
            cond, cond_mask = cond.expand(n, -1, -1), cond_mask.expand(n, -1)
            pooled = None if pooled is None else pooled.expand(n, -1)
        x, dt = noise, 1.0 / steps
        w = None if guide is None else guide_weights.to(noise).view(1, -1, 1)
        hidden = None
        for k in range(steps):
            tau = torch.full((n,), k * dt, device=noise.device)
            v, hidden = self.velocity(x, tau, cond, cond_mask, pooled)
            x = x + dt * v
            if w is not None:
                t1 = (k + 1) * dt
                x = w * (t1 * guide + (1 - t1) * noise) + (1 - w) * x
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
        return (pred_z, *self.check_scores(image_t, pred_z))

    def check_scores(self, image_t, pred_z):
        """(effect, plausibility) of N predicted latents (N, M, d) from the current image."""
        _, _, _, cos = self.lam.quantizer.lookup(pred_z)
        effect = self.predicted_effect(image_t, pred_z)
        plausibility = torch.sqrt((2 - 2 * cos).clamp(min=0)).mean(-1)
        return effect, plausibility

    @torch.no_grad()
    def surprise(self, predicted_latent, image_t, image_tc):
        """1 - cos(observed latent, predicted latent) over the whole M x d_z latent; both are
        relative to the LAM's mean latent and f_psi is trained by cosine, so only directions
        are comparable. 0 = as predicted, 1 = unrelated, 2 = the opposite change."""
        z_obs = self.lam.encode(image_t, image_tc).flatten(1)
        return float(1 - F.cosine_similarity(z_obs, predicted_latent.flatten(1), dim=-1).mean())

    @torch.no_grad()
    def stall(self, predicted_latent, image_t, image_tc):
        """Motion predicted, none seen: cos(observed, null) - cos(predicted, null), where null is
        the LAM's latent of (I_t, I_t) ("nothing happens"). Near 0 when the world moved as
        predicted (or nothing was predicted to move), up to 2 when the chunk predicted a change
        and the camera saw none: a jammed arm or a frozen camera, whatever the direction."""
        z_obs = self.lam.encode(image_t, image_tc).flatten(1)
        z_null = self.lam.encode(image_t, image_t).flatten(1)
        pred = predicted_latent.flatten(1)
        return float((F.cosine_similarity(z_obs, z_null, dim=-1) - F.cosine_similarity(pred, z_null, dim=-1)).mean())


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
