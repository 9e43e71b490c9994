"""The data plumbing of `lara train`: the model config and normalisation stats from the stores,
initial weights, instruction embeddings, and the global batch of each step (a pure function of
(seed, step), identical on every DDP rank), assembled on a worker thread while the previous step
trains. core/train.py holds the loop that uses them."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from lara_policy.core.checkpoint import CheckpointError, load_stats, load_weights, read_config
from lara_policy.core.configuration import ModelConfig, TrainConfig
from lara_policy.core.modeling import LaraModel
from lara_policy.core.processing import PHOTOMETRIC_CAMERAS, ChunkDataset, NormStats, TextEmbedder
def build_model_config(cfg: TrainConfig, data: ChunkDataset) -> tuple[ModelConfig, NormStats | None, dict]:
    """The model config of this run: from --init (architecture fixed) or from cfg.model + data."""
    info = data.info
    sources: dict = {}
    if cfg.init:
        base, _ = read_config(cfg.init)
        sources["init"] = cfg.init
        if base.has_vla:
            check_data_fits(base, info, Path(cfg.init) / "config.json", cfg.data)
        config = dataclasses.replace(base)
    else:
        config = dataclasses.replace(cfg.model, vla=dataclasses.replace(cfg.model.vla), lam=dataclasses.replace(cfg.model.lam))
        config.action_space, config.state_names, config.dt = info.action_space, list(info.state_names), info.dt
        config.vla.action_dim, config.vla.state_dim, config.vla.cameras = info.action_dim, info.state_dim, list(info.cameras)
    if cfg.lam:
        lam_cfg, _ = read_config(cfg.lam)
        if not lam_cfg.has_lam:
            raise CheckpointError(f"{cfg.lam} holds no LAM (components={lam_cfg.components})")
        if lam_cfg.offset != config.offset:
            raise CheckpointError(
                f"{Path(cfg.lam) / 'config.json'}: its LAM was trained on frame pairs C={lam_cfg.offset} steps apart "
                f"(chunk_offset={lam_cfg.chunk_offset}, horizon={lam_cfg.vla.horizon}) but this run uses "
                f"C={config.offset} (horizon={config.vla.horizon}); its latents would describe another transition. "
                f"Use --horizon {lam_cfg.offset} or a LAM trained with this run's C")
        if lam_cfg.vla.cameras and config.vla.cameras and lam_cfg.vla.cameras[0] != config.vla.cameras[0]:
            import sys
            print(f"warning: the LAM of {cfg.lam} was trained on camera '{lam_cfg.vla.cameras[0]}' but this run's "
                  f"LAM camera (the first) is '{config.vla.cameras[0]}'", file=sys.stderr)
        config.lam = lam_cfg.lam
        sources["lam"] = cfg.lam
    if cfg.paradigm == "lam-pretrain":
        config.components, config.variant = ["lam"], "lara"
    else:
        config.components = ["vla", "lam"]
        config.variant = "lara" if cfg.paradigm == "lam-refine" else cfg.variant
    if cfg.paradigm in ("posttrain",) and not cfg.init:
        raise ValueError("posttrain needs --init PRETRAINED_VLA_CHECKPOINT")
    if cfg.paradigm == "lam-refine" and not (cfg.init or cfg.lam):
        raise ValueError("lam-refine needs --lam LAM_CHECKPOINT and/or --init VLA_CHECKPOINT")
    init_has_lam = bool(cfg.init) and read_config(cfg.init)[0].has_lam
    if cfg.paradigm == "posttrain" and config.has_lam and not (cfg.lam or init_has_lam):
        raise ValueError(f"posttrain with variant {config.variant} needs a pretrained LAM: pass --lam LAM_CHECKPOINT "
                         f"({cfg.init} holds none), or use --variant dit_only")
    if config.variant == "frozen_lam" and not (cfg.lam or init_has_lam):
        print("warning: frozen_lam without --lam aligns to a randomly initialised, frozen LAM")
    stats = None
    if config.has_vla:
        if cfg.init:
            stats = load_stats(cfg.init)
        else:
            if data.num_labelled == 0:
                raise ValueError("the data holds no action-labelled episodes; a VLA needs some (use lam-pretrain "
                                 "for action-free video)")
            stats = data.fit_stats()
    config.validate()
    return config, stats, sources


def check_data_fits(base: ModelConfig, info, where: Path, data: list[str]) -> None:
    """posttrain / lam-refine: the stores must give the init checkpoint exactly the inputs and
    the action space it was trained on (a camera embedding would otherwise broadcast silently
    over another camera set, and actions of another space would be learned under the old stats)."""
    problems = []
    if list(info.cameras) != list(base.vla.cameras):
        problems.append(f"cameras {list(info.cameras)} vs the checkpoint's {list(base.vla.cameras)}")
    if info.action_space != base.action_space:
        problems.append(f"action space '{info.action_space}' vs the checkpoint's '{base.action_space}'")
    if (info.action_dim, info.state_dim) != (base.vla.action_dim, base.vla.state_dim):
        problems.append(f"action_dim={info.action_dim}, state_dim={info.state_dim} vs the checkpoint's "
                        f"{base.vla.action_dim}, {base.vla.state_dim}")
    if base.state_names and list(info.state_names) != list(base.state_names):
        problems.append(f"state names {list(info.state_names)} vs the checkpoint's {list(base.state_names)}")
    if problems:
        raise CheckpointError(f"the data {list(data)} does not fit {where}: " + "; ".join(problems) +
                              ". Post-training cannot change a model's inputs or action space; pretrain a new "
                              "model, or convert the data")


def inherit_train_seeds(final: Path, parents: list[str]) -> None:
    """Add the train_seeds.json of the checkpoints a run started from (--init, --lam): their
    weights carry those layouts too, so evaluation and the probe must refuse them as well."""
    from lara_policy.core.checkpoint import load_train_seeds
    merged = load_train_seeds(final) or {}
    for p in parents:
        for t, v in ((load_train_seeds(p) if p else None) or {}).items():
            merged.setdefault(t, set()).update(v)
    (Path(final) / "train_seeds.json").write_text(json.dumps({t: sorted(v) for t, v in sorted(merged.items())}))


def load_initial_weights(model: LaraModel, cfg: TrainConfig) -> None:
    if cfg.init:
        init_cfg, _ = read_config(cfg.init)
        if init_cfg.has_vla:
            load_weights(cfg.init, model.observation_encoder, prefix_filter="observation_encoder.")
            load_weights(cfg.init, model.action_head, prefix_filter="action_head.")
        if init_cfg.has_lam and hasattr(model, "lam"):
            load_weights(cfg.init, model.lam, prefix_filter="lam.")
        if init_cfg.has_lam and init_cfg.has_vla and hasattr(model, "align_proj"):
            load_weights(cfg.init, model.align_proj, prefix_filter="align_proj.")
    if cfg.lam and hasattr(model, "lam"):
        load_weights(cfg.lam, model.lam, prefix_filter="lam.")


def instruction_embeddings(instructions: list[str], tokens: int, known: list[str] | None = None,
                           known_text: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MiniLM token embeddings for `instructions`, reusing `known` ones (from a checkpoint)."""
    lookup = {}
    if known and known_text is not None and known_text[0].shape[1] == tokens:
        lookup = {s: (known_text[0][i], known_text[1][i]) for i, s in enumerate(known)}
    missing = [s for s in instructions if s not in lookup]
    if missing:
        emb, mask = TextEmbedder.get().embed(missing, tokens)
        lookup.update({s: (emb[i], mask[i]) for i, s in enumerate(missing)})
    return (np.stack([lookup[s][0] for s in instructions]).astype(np.float32),
            np.stack([lookup[s][1] for s in instructions]).astype(bool))


def global_batch_plan(step: int, cfg: TrainConfig, num_samples: int, horizon: int, action_dim: int,
                      labelled: np.ndarray | None = None) -> dict:
    """Random choices of one global batch, identical on every rank. With `labelled` (bool per
    sample) and cfg.video_fraction >= 0, that fraction of the batch is drawn from the action-free
    samples and the rest from the labelled ones (else uniform over all samples, i.e. in
    proportion to their number)."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    b = cfg.batch_size * getattr(cfg, "grad_accum", 1)     # the step's whole batch (all micro-batches)
    if labelled is not None and cfg.video_fraction >= 0 and 0 < labelled.sum() < len(labelled):
        lab, free = np.flatnonzero(labelled), np.flatnonzero(~labelled)
        n_free = int(round(cfg.video_fraction * b))
        index = np.concatenate([free[torch.randint(0, len(free), (n_free,), generator=g).numpy()],
                                lab[torch.randint(0, len(lab), (b - n_free,), generator=g).numpy()]])
        index = index[torch.randperm(b, generator=g).numpy()]      # mixed across the ranks' slices
    else:
        index = torch.randint(0, num_samples, (b,), generator=g).numpy()
    plan = {"index": index,
            "shifts": torch.randint(0, 2 * cfg.aug_shift + 1, (b, 2), generator=g),
            "noise": torch.randn(b, horizon, action_dim, generator=g),
            "tau": torch.rand(b, generator=g)}
    if cfg.aug_photometric > 0:   # drawn last: runs without it keep exactly their batches
        plan["photometric"] = cfg.aug_photometric * (2 * torch.rand(b, PHOTOMETRIC_CAMERAS, 5, generator=g) - 1)
    return plan


def identity_stats(data: ChunkDataset) -> NormStats:
    """For LAM-only runs, where action/state normalisation plays no role."""
    return NormStats([0.0] * data.info.action_dim, [1.0] * data.info.action_dim,
                     [0.0] * data.info.state_dim, [1.0] * data.info.state_dim)


def make_batch(data: ChunkDataset, stats: NormStats | None, plan: dict, cfg: TrainConfig, rank: int, world: int,
               device: torch.device, micro: int = 0) -> dict:
    """This rank's slice of micro-batch `micro` of the step's plan: rows micro x batch_size
    + [rank x per, (rank + 1) x per) with per = batch_size / world."""
    per = cfg.batch_size // world
    first = micro * cfg.batch_size + rank * per
    sl = slice(first, first + per)
    stats = stats if stats is not None else identity_stats(data)
    batch = data.batch(plan["index"][sl], stats, cfg.aug_shift, plan["shifts"][sl],
                       plan["photometric"][sl] if "photometric" in plan else None)
    batch["noise"], batch["tau"] = plan["noise"][sl], plan["tau"][sl]
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def micro_weights(plan: dict, labelled: np.ndarray, cfg: TrainConfig) -> list[float]:
    """Per micro-batch of the step: its labelled count over the step's (all ranks), the weight of
    its action terms in the accumulated gradient (core.step.micro_loss)."""
    n, b = getattr(cfg, "grad_accum", 1), cfg.batch_size
    counts = [float(labelled[plan["index"][j * b:(j + 1) * b]].sum()) for j in range(n)]
    total = sum(counts)
    return [c / total if total > 0 else 0.0 for c in counts]


def step_batches(data: ChunkDataset, stats: NormStats | None, cfg: TrainConfig, step: int, rank: int, world: int,
                 horizon: int, action_dim: int, device: torch.device) -> dict:
    """Everything one step trains on: {"micro": [this rank's micro-batch, ...] (grad_accum of
    them), "act_weights": [...]}; a pure function of (seed, step)."""
    labelled = data.has_action > 0
    plan = global_batch_plan(step, cfg, len(data), horizon, action_dim, labelled)
    return {"micro": [make_batch(data, stats, plan, cfg, rank, world, device, micro=j)
                      for j in range(getattr(cfg, "grad_accum", 1))],
            "act_weights": micro_weights(plan, labelled, cfg)}


class BatchPrefetcher:
    """Assembles the batch of step k+1 on a worker thread while step k trains (the batch is a
    pure function of (seed, step), so the order of work does not change the run)."""

    def __init__(self, assemble, start: int, stop: int):
        from concurrent.futures import ThreadPoolExecutor
        self.assemble, self.stop = assemble, stop
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="lara-batch")
        self.pending = self.pool.submit(assemble, start) if start < stop else None

    def get(self, step: int) -> dict:
        batch = self.pending.result()
        self.pending = self.pool.submit(self.assemble, step + 1) if step + 1 < self.stop else None
        return batch

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
