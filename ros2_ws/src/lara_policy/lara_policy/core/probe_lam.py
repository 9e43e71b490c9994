"""What every probe of a checkpoint's LAM needs first: the LAM loaded, the camera it watches, and
the check that the probe's stores are held out from the checkpoint's training layouts. Shared by
core/probe.py (action, alignment, dynamics-check probes and the `lara probe` command) and
core/probe_invariance.py, which import this module and not each other."""
from __future__ import annotations

from pathlib import Path

from lara_policy.core.checkpoint import CheckpointError, load_train_seeds, load_weights, read_config, seed_overlap
from lara_policy.core.configuration import ModelConfig
from lara_policy.core.modeling import LaraModel
from lara_policy.formats.sources import open_episode_source
from lara_policy.formats.store import seed_ranges


class TrainSeedOverlap(ValueError):
    """The evaluation store holds layouts the checkpoint was trained on."""


def check_heldout(checkpoint: str | Path, data: list[str], allow_train_seeds: bool = False) -> list[str]:
    """Raise TrainSeedOverlap when a store in `data` holds seeds (layouts) listed in the
    checkpoint's train_seeds.json, unless `allow_train_seeds`. Returns warnings to show."""
    seeds = load_train_seeds(checkpoint)
    if seeds is None:
        return [f"warning: {checkpoint} has no train_seeds.json; cannot verify that {list(data)} is held out"]
    warnings = []
    for p in data:
        with open_episode_source(p) as store:
            bad = seed_overlap(seeds, store.used_seeds())
        if not bad:
            continue
        desc = "; ".join(f"{t}: {len(v)} seeds ({seed_ranges(v)})" for t, v in sorted(bad.items()))
        msg = (f"{p} holds layouts the checkpoint {checkpoint} was trained on (its train_seeds.json) -> {desc}. "
               "Through L_LARA its LAM saw those steps' actions, so these would be training-set figures")
        if not allow_train_seeds:
            raise TrainSeedOverlap(f"{msg}. Measure on a store generated with disjoint seeds (e.g. `lara demos "
                                   "... --seed-start 90000`), or pass --allow-train-seeds to do it knowingly")
        warnings.append(f"warning: {msg} (--allow-train-seeds)")
    return warnings


def lam_camera(config: ModelConfig) -> str:
    """The camera the checkpoint's LAM watches: the first of its cameras (the store's first at
    training time, or the --init checkpoint's)."""
    return config.vla.cameras[0]


def load_lam(path: str | Path, device: str = "cpu") -> tuple[LaraModel, ModelConfig]:
    config, _ = read_config(path)
    if not config.has_lam:
        raise CheckpointError(f"{path} holds no LAM (components={config.components}, variant={config.variant})")
    model = LaraModel(config)
    load_weights(path, model)
    return model.to(device).eval(), config
