"""One optimisation step of `lara train` (what `lara bench model` times too): the learning-rate
schedule, the forward under the chosen precision, gradient accumulation over micro-batches,
clipping per module group, LAM maintenance and the weight EMA.

Gradient accumulation (`--grad-accum N`): the step's global batch is batch_size x N samples,
drawn by `train_data.global_batch_plan` exactly as one batch of that size would be (same indices,
shifts, noise, flow times), and run as N micro-batches of batch_size whose gradients add up before
one clip and one optimizer step. Each micro-batch's action terms (L_ACT, L_LARA, normalised by the
labelled count of their micro-batch in the model) are re-weighted by that count over the step's
labelled count, and the LAM's own loss (a batch mean) by 1/N, so the accumulated gradient equals
the gradient of one batch of batch_size x N wherever the loss is a sum over samples: `dit_only`,
`frozen_lam` (the frozen LAM runs in eval mode), the VLA side of `lara`. What does not decompose:
the trained LAM's batch statistics (latent centring by the batch mean, the spread penalty's batch
covariance, the VQ's code statistics) see a micro-batch, as they see a batch in a run of that
size; the running latent mean is updated once per step with the mean of the micro-batches'.
With N = 1 the step is the step of before, operation for operation."""
from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist

from lara_policy.core.optim import alignment_gradient_ratio, clip_gradients, lr_at

PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device | str, precision: str):
    """The forward's precision: bf16 = torch.autocast(device type, bfloat16) (CUDA and CPU alike;
    the weights, gradients and optimizer state stay fp32, so no loss scaling is needed); fp32 = off."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


def micro_loss(losses: dict, variant: str, w_lam: float, lam_only: bool, act_weight: float, n: int):
    """The loss whose gradient, summed over the step's n micro-batches, is the gradient of the whole
    step's batch: action terms x act_weight (this micro-batch's labelled count / the step's), the
    LAM's batch-mean loss / n. n = 1: the loss itself (nothing re-weighted, bit for bit)."""
    if n == 1:
        return losses["loss"]
    if lam_only:
        return losses["loss"] / n
    lam_part = w_lam * losses["loss_lam"] if variant == "lara" and "loss_lam" in losses else None
    if lam_part is None:
        return losses["loss"] * act_weight
    return (losses["loss"] - lam_part) * act_weight + lam_part / n


def _merge(parts: list[dict], weights: list[float], totals: list[torch.Tensor]) -> dict:
    """The step's logged terms from its micro-batches' (same meaning as one batch's)."""
    if len(parts) == 1:
        return parts[0]
    n = len(parts)
    out = {}
    for k, v in parts[0].items():
        if k in ("lam_indices", "lam_z"):
            out[k] = torch.cat([p[k] for p in parts])
        elif k == "loss":
            out[k] = sum(t.detach().float() for t in totals)
        elif k in ("loss_act", "loss_lara"):
            out[k] = sum(w * p[k].detach().float() for w, p in zip(weights, parts))
        elif k == "grad_ratio_lara_act":
            out[k] = v
        elif torch.is_tensor(v) and v.dim() == 0:
            out[k] = sum(p[k].detach().float() for p in parts) / n
    return out


def train_step(forward, model, optimizer: torch.optim.Optimizer, groups: dict, ema, batch, cfg, variant: str,
               lam_only: bool, step: int, world: int = 1, measure_ratio: bool = False,
               act_weights: list[float] | None = None) -> dict:
    """One optimisation step exactly as `lara train` takes it (lr schedule, loss, clipping per
    module group, LAM maintenance, EMA); `lara bench model` times this same function. groups:
    core.optim.module_groups(model). batch: one batch (dict) or the step's micro-batches (list;
    act_weights: their labelled counts over the step's, see train_data.micro_weights).
    measure_ratio (one process only): also put the alignment-to-action gradient ratio into the
    result as `grad_ratio_lara_act` (of the first micro-batch)."""
    micro = batch if isinstance(batch, list) else [batch]
    n = len(micro)
    if act_weights is None:
        act_weights = [1.0 / n] * n
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, cfg)
    device = micro[0]["state"].device
    precision = getattr(cfg, "precision", "fp32")
    optimizer.zero_grad(set_to_none=True)
    parts, totals, raw_means, code_batches = [], [], [], []
    lam = getattr(model, "lam", None)
    for j, b in enumerate(micro):
        sync = contextlib.nullcontext()
        if j < n - 1 and isinstance(forward, torch.nn.parallel.DistributedDataParallel):
            sync = forward.no_sync()             # all-reduce the gradients once, after the last micro-batch
        with sync:
            with autocast(device, precision):
                losses = forward(b, variant, cfg.w_lara, cfg.w_lam, lam_only)
            if j == 0 and measure_ratio and world == 1 and not lam_only and "vla" in groups:
                ratio = alignment_gradient_ratio(losses, groups["vla"], cfg.w_lara)
                if ratio is not None:
                    losses["grad_ratio_lara_act"] = torch.tensor(ratio)
            total = micro_loss(losses, variant, cfg.w_lam, lam_only, act_weights[j], n)
            total.backward()
        if lam is not None:        # what LAM maintenance reads after the step, per micro-batch
            if getattr(lam, "_last_raw_mean", None) is not None:
                raw_means.append(lam._last_raw_mean)
            if getattr(lam.quantizer, "_last_batch", None) is not None:
                code_batches.append(lam.quantizer._last_batch)
        parts.append(losses)
        totals.append(total)
    _merge_lam_statistics(lam, raw_means, code_batches)
    clip_gradients(groups, cfg.grad_clip, cfg.grad_clip_scope)
    optimizer.step()
    if hasattr(model, "lam") and variant != "frozen_lam" or lam_only:
        model.lam.maintain()
    if ema is not None:
        update_ema(ema, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
    if world > 1 and hasattr(model, "lam"):
        dist.broadcast(model.lam.quantizer.codebook.data, 0)   # dead-code re-seeding is rank-local
    return _merge(parts, act_weights, totals)


@torch.no_grad()
def _merge_lam_statistics(lam, raw_means: list, code_batches: list) -> None:
    """The LAM's running latent mean and its codebook's dead-code statistics (used by
    lam.maintain() after the step) from all of the step's micro-batches, not the last one, in fp32
    (bf16 autocast makes them bfloat16; the buffers they update are fp32). One fp32 micro-batch:
    untouched."""
    if len(raw_means) > 1 or (raw_means and raw_means[0].dtype != torch.float32):
        lam._last_raw_mean = torch.stack([m.float() for m in raw_means]).mean(0)
    if len(code_batches) > 1 or (code_batches and code_batches[0][1].dtype != torch.float32):
        lam.quantizer._last_batch = (torch.cat([i for i, _ in code_batches]),
                                     torch.cat([z.float() for _, z in code_batches]))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)
