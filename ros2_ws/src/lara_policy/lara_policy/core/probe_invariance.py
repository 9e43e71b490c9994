"""`lara probe --invariance`: how much does a LAM's latent action move when only the LOOK of
a transition changes?

Two stores hold the SAME transitions, rendered clean (--data) and with visual distractors
(--distractor-data): `lara demos` with the same tasks, --episodes, --seed-start, cameras and
--image-size, once without and once with `--distractors LEVEL` (distractors change pixels only;
the expert's actions and the states are identical step by step, so the stores pair up episode by
episode and step by step). The stores are checked to pair up (task, seed, length and the states of
every episode, the LAM's camera, the image size); anything else is an error naming the file.

For every sampled step t (with t + C inside its episode; C = the checkpoint's chunk) it encodes
z = z(I_t, I_t+C) from both stores and reports, overall and per task:

- ratio: mean distance between the clean and the distracted latent of the SAME transition,
  divided by the mean distance between the clean latents of two DIFFERENT transitions (random
  pairs of sampled steps of the same task, from different episodes when the task has more than
  one; all tasks pooled for the overall figure). Distance 1 - cos per latent token (the geometry
  the quantiser and L_LARA see), averaged over the M tokens; `ratio_l2` the same with the L2
  distance of the flattened z. 0 = the distractors do not move z at all; 1 = they move it as
  much as a different transition does. Lower = more invariant.
- codes: the fraction of latent tokens whose quantised code is identical, clean vs distracted
  (same transition) and between different transitions (chance level), and
  code_change_ratio = (1 - same) / (1 - different), lower = more invariant.

The stores must hold layouts (seeds) the checkpoint never trained on, as in every probe mode.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from lara_policy.formats.sources import open_episode_source
from lara_policy.formats.store import StoreError

DEFAULT_LIMIT = 2048
STATE_ATOL = 1e-5


class PairingError(StoreError):
    """The clean and the distracted store do not hold the same transitions."""


def _meta_of(src, path) -> tuple[list[str], tuple[int, int]]:
    m = src.meta
    return list(m.cameras), tuple(int(x) for x in m.image_size)


def pair_stores(clean: str, dist: str, camera: str) -> list[dict]:
    """Check that `dist` holds the transitions of `clean` (same episodes in the same order: task,
    seed, length, states) and that both have the LAM's `camera` at the same image size.
    Returns one dict per episode (task, seed, num_steps, index). Raises PairingError naming the file."""
    hint = ("generate both with the same `lara demos` tasks, --episodes, --seed-start, --cameras and "
            "--image-size, the second with --distractors")
    with open_episode_source(clean) as a, open_episode_source(dist) as b:
        cams_a, size_a = _meta_of(a, clean)
        cams_b, size_b = _meta_of(b, dist)
        for path, cams in ((clean, cams_a), (dist, cams_b)):
            if camera not in cams:
                raise PairingError(f"{path} has no camera '{camera}' (the LAM's camera; it has {cams}): {hint}")
        if size_a != size_b:
            raise PairingError(f"{dist}: image size {list(size_b)} differs from {clean}'s {list(size_a)}: {hint}")
        if len(a) != len(b):
            raise PairingError(f"{dist} holds {len(b)} episodes, {clean} {len(a)}: not the same transitions; {hint}")
        episodes = []
        for i in range(len(a)):
            ea, eb = a.episode_attrs(i), b.episode_attrs(i)
            for key in ("task", "seed", "num_steps"):
                if ea[key] != eb[key]:
                    raise PairingError(f"{dist} episode {i}: {key} {eb[key]!r} differs from {clean}'s {ea[key]!r}: "
                                       f"not the same transition; {hint}")
            sa, sb = a.episode(i).state, b.episode(i).state
            if sa.shape != sb.shape or not np.allclose(sa, sb, atol=STATE_ATOL, rtol=0):
                diff = float(np.abs(sa - sb).max()) if sa.shape == sb.shape else float("inf")
                raise PairingError(f"{dist} episode {i} ({ea['task']}, seed {ea['seed']}): the states differ from "
                                   f"{clean}'s (max |diff| {diff:.3g}): not the same trajectory; {hint}")
            episodes.append({"index": i, "task": ea["task"], "seed": ea["seed"], "num_steps": ea["num_steps"]})
    return episodes


def _distractor_meta(path: str):
    with open_episode_source(path) as src:
        return (getattr(src.meta, "extra", None) or {}).get("distractors")


def _pair_stats(zc: torch.Tensor, zd: torch.Tensor, ic: torch.Tensor, idd: torch.Tensor, ep: np.ndarray,
                rng: np.random.Generator) -> dict:
    """Figures for one set of steps: zc/zd (n, M, d) clean/distracted latents, ic/idd (n, M) codes,
    ep (n,) episode of each step."""
    n = len(zc)
    out = {"steps": int(n)}
    if n < 2:
        return {**out, "ratio": float("nan"), "ratio_l2": float("nan")}
    cos_same = 1 - torch.nn.functional.cosine_similarity(zc, zd, dim=-1).mean(-1)          # (n,)
    l2_same = (zc - zd).flatten(1).norm(dim=-1)
    perm = rng.permutation(n)
    keep = perm != np.arange(n)
    if len(np.unique(ep)) > 1:
        keep &= ep[perm] != ep                    # different episodes: really different transitions
    i, j = np.flatnonzero(keep), perm[keep]
    cos_diff = 1 - torch.nn.functional.cosine_similarity(zc[i], zc[j], dim=-1).mean(-1)
    l2_diff = (zc[i] - zc[j]).flatten(1).norm(dim=-1)
    same_codes = float((ic == idd).float().mean())
    diff_codes = float((ic[i] == ic[j]).float().mean())
    d_cos, d_l2 = float(cos_diff.mean()), float(l2_diff.mean())
    return {**out, "pairs_different": int(len(i)),
            "dist_same_cos": float(cos_same.mean()), "dist_different_cos": d_cos,
            "ratio": float(cos_same.mean()) / d_cos if d_cos > 0 else float("nan"),
            "dist_same_l2": float(l2_same.mean()), "dist_different_l2": d_l2,
            "ratio_l2": float(l2_same.mean()) / d_l2 if d_l2 > 0 else float("nan"),
            "codes_identical_same": same_codes, "codes_identical_different": diff_codes,
            "code_change_ratio": (1 - same_codes) / (1 - diff_codes) if diff_codes < 1 else float("nan")}


@torch.no_grad()
def invariance(lam: str | Path, data: list[str], distractor_data: list[str], limit: int = DEFAULT_LIMIT,
               seed: int = 0, batch: int = 256, allow_train_seeds: bool = False) -> dict:
    """Distractor invariance of the checkpoint's LAM (see the module docstring)."""
    from lara_policy.core.probe_lam import check_heldout, lam_camera, load_lam
    from lara_policy.core.processing import resize_uint8

    data, distractor_data = list(data), list(distractor_data)
    if len(data) != len(distractor_data):
        raise PairingError(f"--data has {len(data)} store(s), --distractor-data {len(distractor_data)}: they pair up "
                           "in order, one distracted store per clean one")
    for w in check_heldout(lam, data + distractor_data, allow_train_seeds):
        print(w, file=sys.stderr)
    model, config = load_lam(lam)
    cam, c, size = lam_camera(config), config.offset, config.lam.image_size
    pairs = [(a, b, pair_stores(a, b, cam)) for a, b in zip(data, distractor_data)]
    # every valid step (t + C inside the episode), then a seeded sample of at most `limit`
    index = [(k, e["index"], t, e["task"]) for k, (_, _, eps) in enumerate(pairs) for e in eps
             for t in range(e["num_steps"] - c)]
    if not index:
        raise ValueError(f"{data}: no step with {c} more steps in its episode (the LAM's chunk)")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(index), min(limit, len(index)), replace=False))
    chosen: dict[tuple[int, int], list[int]] = {}
    for p in pick:
        k, i, t, _ = index[p]
        chosen.setdefault((k, i), []).append(t)
    zc_all, zd_all, ic_all, id_all, tasks, eps = [], [], [], [], [], []

    def encode(images: np.ndarray, ts: np.ndarray):
        imgs = resize_uint8(images, size)
        zs, idx = [], []
        for s in range(0, len(ts), batch):
            tb = ts[s:s + batch]
            z = model.lam.encode(imgs[tb].float() / 255.0, imgs[tb + c].float() / 255.0)
            zs.append(z)
            idx.append(model.lam.quantizer.lookup(z)[2])
        return torch.cat(zs), torch.cat(idx)

    for (k, i), ts in sorted(chosen.items()):
        clean, dist, episodes = pairs[k]
        ts = np.asarray(ts)
        with open_episode_source(clean) as a, open_episode_source(dist) as b:
            ea, eb = a.episode(i), b.episode(i)
        zc, ic = encode(ea.images[cam], ts)
        zd, idd = encode(eb.images[cam], ts)
        zc_all.append(zc), zd_all.append(zd), ic_all.append(ic), id_all.append(idd)
        tasks += [ea.task] * len(ts)
        eps += [k * 1_000_000 + i] * len(ts)
    zc, zd, ic, idd = torch.cat(zc_all), torch.cat(zd_all), torch.cat(ic_all), torch.cat(id_all)
    tasks_a, eps_a = np.asarray(tasks), np.asarray(eps)
    per_task = {}
    for t in sorted(set(tasks)):
        m = torch.from_numpy(tasks_a == t)
        per_task[t] = _pair_stats(zc[m], zd[m], ic[m], idd[m], eps_a[m.numpy()], np.random.default_rng(seed + 1))
    overall = _pair_stats(zc, zd, ic, idd, eps_a, np.random.default_rng(seed + 1))
    return {"lam": str(lam), "data": data, "distractor_data": distractor_data, "camera": cam, "chunk": c,
            "lam_image_size": size, "steps": int(len(zc)), "limit": limit, "seed": seed,
            "episodes": int(sum(len(e) for _, _, e in pairs)),
            "distractors": [_distractor_meta(p) for p in distractor_data],
            "overall": overall, "per_task": per_task}


def format_invariance(r: dict) -> str:
    def f(x):
        return "nan" if x is None or x != x else f"{x:.3f}"

    lines = [f"distractor invariance of {r['lam']} on {r['steps']} transitions ({r['episodes']} episode pairs, "
             f"camera {r['camera']}, chunk {r['chunk']}): distance of the SAME transition clean vs distracted / "
             "distance of DIFFERENT clean transitions (0 = invariant, 1 = a distractor moves z like a different "
             "transition)",
             "| task | steps | ratio (1-cos) | ratio (L2) | codes identical: same / different | code-change ratio |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in [*r["per_task"].items(), ("all", r["overall"])]:
        lines.append(f"| {name} | {s['steps']} | {f(s.get('ratio'))} | {f(s.get('ratio_l2'))} | "
                     f"{f(s.get('codes_identical_same'))} / {f(s.get('codes_identical_different'))} | "
                     f"{f(s.get('code_change_ratio'))} |")
    if not any(r["distractors"]):
        lines.append("note: the --distractor-data store(s) record no distractors (extra.distractors); "
                     "are they really the distracted rendering?")
    return "\n".join(lines)
