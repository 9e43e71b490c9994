"""Checkpoints are DIRECTORIES, loaded without unpickling anything:

    config.json         {"format": "lara-checkpoint", "version": 1, "model": ModelConfig,
                         "train": TrainConfig | null, "step": int}
    model.safetensors   weights (model.state_dict())
    stats.json          per-dimension action/state normalisation (VLA checkpoints)
    text.safetensors    MiniLM token embeddings of every instruction seen in training
    meta.json           PolicyMeta fields, model_id, sha256 of model.safetensors, instructions
    optimizer.safetensors + optimizer.json   (optional) optimizer state, for --resume

A missing, corrupt or mismatched file raises CheckpointError naming the file and the fix.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file as load_numpy, save_file as save_numpy
from safetensors.torch import load_file, save_file

from lara_policy.core.configuration import ModelConfig
from lara_policy.core.processing import NormStats

FORMAT = "lara-checkpoint"
VERSION = 1


from lara_policy.common.errors import LaraError  # noqa: E402  (one error base for the CLI)
from lara_policy.common.fileio import temp_path, write_json  # noqa: E402


class CheckpointError(LaraError, RuntimeError):
    """A checkpoint directory is missing, corrupt, or does not fit the model it claims."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(path: str | Path, model: torch.nn.Module, config: ModelConfig, *,
                    stats: NormStats | None = None, instructions: list[str] | None = None,
                    text: tuple[np.ndarray, np.ndarray] | None = None, train_config: dict | None = None,
                    step: int = 0, optimizer: torch.optim.Optimizer | None = None, extra: dict | None = None) -> Path:
    """Write a checkpoint directory (files replaced atomically one by one)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = temp_path(path / "model.safetensors")
    save_file(weights, str(tmp))
    os.replace(tmp, path / "model.safetensors")
    digest = file_sha256(path / "model.safetensors")
    if stats is not None:
        write_json(path / "stats.json", stats.to_dict())
    if text is not None:
        save_numpy({"embeddings": np.ascontiguousarray(text[0], np.float32),
                    "mask": np.ascontiguousarray(text[1]).astype(np.uint8)}, str(path / "text.safetensors"))
    if optimizer is not None:
        _save_optimizer(path, optimizer)
    v = config.vla
    meta = {
        "model_id": f"{config.name}-{digest[:10]}", "sha256": digest,
        "components": config.components, "variant": config.variant,
        "action_space": config.action_space, "action_dim": v.action_dim, "horizon": v.horizon,
        "dt": config.dt, "cameras": v.cameras, "image_size": [v.image_size, v.image_size],
        "state_dim": v.state_dim, "state_names": config.state_names,
        "instructions": list(instructions or []), "step": step, **(extra or {}),
    }
    write_json(path / "meta.json", meta)
    write_json(path / "config.json", {"format": FORMAT, "version": VERSION, "model": config.to_dict(),
                                       "train": train_config, "step": step})
    return path


def _read_json(path: Path, what: str) -> dict:
    if not path.exists():
        raise CheckpointError(f"{path} is missing: {what}. Is {path.parent} a complete LARA checkpoint "
                              "directory (written by `lara train`)?")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is corrupt ({exc}); re-export or retrain the checkpoint") from exc


def read_config(path: str | Path) -> tuple[ModelConfig, dict]:
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a directory "
                              "(a LARA checkpoint is a directory with config.json + model.safetensors)")
    raw = _read_json(path / "config.json", "the model configuration")
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path / 'config.json'} is not a LARA checkpoint config "
                              f"(format={raw.get('format') if isinstance(raw, dict) else type(raw).__name__!r})")
    version = raw.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path / 'config.json'}: version must be an integer, got {version!r}")
    if version > VERSION:
        raise CheckpointError(f"{path / 'config.json'}: checkpoint version {raw['version']} is newer than this "
                              f"lara_policy reads ({VERSION}); upgrade lara_policy")
    try:
        config = ModelConfig.from_dict(raw["model"])
        if not (isinstance(config.components, list) and all(isinstance(c, str) for c in config.components)):
            raise TypeError(f"components must be a list of names, got {config.components!r}")
        config.has_vla, config.has_lam, config.offset      # noqa: B018  (derived values must compute)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path / 'config.json'}: invalid model config ({exc})") from exc
    # The pretrained backbone's weights are in model.safetensors: the file it was initialised from
    # (recorded in config.json) is not read again, and need not exist on this machine.
    config.vla.vision_weights = ""
    return config, raw


def load_weights(path: str | Path, model: torch.nn.Module, verify_hash: bool = True,
                 prefix_filter: str | None = None) -> None:
    """Load model.safetensors into `model` strictly (or only keys under `prefix_filter`)."""
    path = Path(path)
    file = path / "model.safetensors"
    if not file.exists():
        raise CheckpointError(f"{file} is missing; the checkpoint directory is incomplete")
    if verify_hash and (path / "meta.json").exists():
        meta = _read_json(path / "meta.json", "checkpoint metadata")
        if meta.get("sha256") and meta["sha256"] != file_sha256(file):
            raise CheckpointError(f"{file} does not match the sha256 recorded in {path / 'meta.json'}: the weights "
                                  "are corrupt or were replaced; re-copy or retrain the checkpoint")
    try:
        weights = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{file} is corrupt or not a safetensors file ({exc}); re-copy or retrain it") from exc
    if prefix_filter is not None:
        weights = {k[len(prefix_filter):]: v for k, v in weights.items() if k.startswith(prefix_filter)}
        if not weights:
            raise CheckpointError(f"{file} holds no '{prefix_filter}' weights (wrong kind of checkpoint?)")
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    wrong = sorted(k for k in set(own) & set(weights) if own[k].shape != weights[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(x for x in [
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}" if missing else "",
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}" if unexpected else "",
            "shape mismatch " + ", ".join(f"{k}: file {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
                                          for k in wrong[:5]) if wrong else ""] if x)
        raise CheckpointError(f"{file} does not fit the model described by its config.json ({detail}). "
                              "The config and weights come from different runs or code versions; use the "
                              "matching config.json or retrain")
    model.load_state_dict(weights, strict=True)


def load_stats(path: str | Path) -> NormStats:
    raw = _read_json(Path(path) / "stats.json", "the normalisation statistics")
    try:
        stats = NormStats(**raw)
        for name, values in stats.to_dict().items():
            if not (isinstance(values, list) and values and
                    all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in values)):
                raise TypeError(f"{name} must be a non-empty list of finite numbers")
        return stats
    except TypeError as exc:
        raise CheckpointError(f"{Path(path) / 'stats.json'}: invalid statistics ({exc})") from exc


def load_text(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    path = Path(path)
    meta = _read_json(path / "meta.json", "checkpoint metadata")
    instructions = list(meta.get("instructions", []))
    file = path / "text.safetensors"
    if not file.exists():
        return [], np.zeros((0, 1, 384), np.float32), np.zeros((0, 1), bool)
    try:
        t = load_numpy(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{file} is corrupt ({exc}); re-copy or retrain the checkpoint") from exc
    if t["embeddings"].shape[0] != len(instructions):
        raise CheckpointError(f"{file} holds {t['embeddings'].shape[0]} embeddings but meta.json lists "
                              f"{len(instructions)} instructions")
    return instructions, t["embeddings"], t["mask"].astype(bool)


def load_train_seeds(path: str | Path) -> dict[str, set[int]] | None:
    """{task: seeds} from the checkpoint's train_seeds.json (every layout its training saw,
    written by `lara train`), or None when the checkpoint has none (older checkpoints)."""
    file = Path(path) / "train_seeds.json"
    if not file.exists():
        return None
    raw = _read_json(file, "the training seeds")
    if not isinstance(raw, dict):
        raise CheckpointError(f"{file}: expected a JSON object {{task: [seeds]}}, got {type(raw).__name__}")
    try:
        return {str(t): {int(s) for s in v} for t, v in raw.items()}
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{file}: invalid seed list ({exc})") from exc


def seed_overlap(train_seeds: dict[str, set[int]], store_seeds: dict[str, set[int]]) -> dict[str, list[int]]:
    """{task: sorted seeds present in both} (empty when the layouts are disjoint)."""
    out = {t: sorted(v & train_seeds.get(t, set())) for t, v in store_seeds.items()}
    return {t: v for t, v in out.items() if v}


# -- optimizer state, flattened into safetensors + JSON (no pickle) ------------------------

def _save_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for k, v in state.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    save_file(tensors, str(path / "optimizer.safetensors"))
    write_json(path / "optimizer.json", {"param_groups": sd["param_groups"], "scalars": scalars})


def load_optimizer(path: str | Path, optimizer: torch.optim.Optimizer) -> bool:
    path = Path(path)
    if not (path / "optimizer.safetensors").exists():
        return False
    raw = _read_json(path / "optimizer.json", "optimizer state")
    try:
        tensors = load_file(str(path / "optimizer.safetensors"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path / 'optimizer.safetensors'} is corrupt ({exc}); resume from another checkpoint") from exc
    state: dict[int, dict] = {}
    for key, v in list(tensors.items()) + list(raw["scalars"].items()):
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    try:
        optimizer.load_state_dict({"state": state, "param_groups": raw["param_groups"]})
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{path / 'optimizer.json'} does not fit this optimizer ({exc})") from exc
    return True
