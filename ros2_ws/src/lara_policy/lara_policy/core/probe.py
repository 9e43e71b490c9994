"""`lara probe`: how much of the real action does a LAM's latent carry?

Fits a probe (ridge-regularised linear, or a small MLP) from LAM latents z(I_t, I_{t+C}) to
the ground-truth action chunk a[t : t+C] on training episodes, and reports R^2 on HELD-OUT
episodes (the last `holdout` fraction of each task's episodes). A shuffled-target control is
reported beside it (its R^2 should be <= 0). Used to compare a vanilla LAM with a LARA-refined one.

`--alignment` (joint checkpoints) asks whether a low L_LARA means anything: on held-out steps it
reports L_LARA = 1 - cos(f_psi(h), z) as trained (random flow time tau), with the targets
shuffled across samples, with tau = 0 (pure noise: no action information in the DiT's input),
and the loss of the best CONSTANT prediction (the mean latent direction). If the constant does
as well as f_psi, z is (nearly) one direction and the alignment is trivial; `future_sensitivity`
(1 - cos between z(I_t, I_{t+C}) and z(I_t, I_t)) near 0 means z ignores the future frame.

`--dynamics-check` (joint checkpoints) measures the run-time LAM dynamics check offline: on
held-out demonstrations, does its score rank the expert's chunk above corrupted ones (opposite
motion, no motion, shifted in time, another task's chunk, noise)? And does surprise rank a
transition where the arm was blocked above the one that was executed? ROC-AUC per corruption
(0.5 = chance), for the shipped score and the candidate scores beside it.

`--invariance` (any checkpoint with a LAM; core/probe_invariance.py) measures distractor invariance:
the latents of the same transitions rendered clean (--data) and with distractors (--distractor-data),
relative to the distance between different transitions, and the fraction of identical codes, per task.

Every mode refuses a store holding layouts (seeds) the checkpoint trained on (its
train_seeds.json): through L_LARA a joint LAM saw those steps' actions, so figures on them
are training-set figures. `--allow-train-seeds` measures on them anyway, knowingly.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from lara_policy.core.checkpoint import CheckpointError, load_stats, load_text
from lara_policy.core.configuration import ModelConfig
from lara_policy.core.modeling import LaraModel, VectorQuantizer
from lara_policy.core.processing import ChunkDataset, NormStats
from lara_policy.core.probe_lam import TrainSeedOverlap, check_heldout, lam_camera, load_lam  # noqa: F401
from lara_policy.formats.sources import open_episode_source
from lara_policy.formats.store import StoreError


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean over output dimensions of 1 - SSE/SST (dimensions with no variance are skipped)."""
    sst = ((y - y.mean(0)) ** 2).sum(0)
    keep = sst > 1e-8
    if not keep.any():
        return float("nan")
    sse = ((y - pred) ** 2).sum(0)
    return float(np.mean(1 - sse[keep] / sst[keep]))


def step_tasks(data: list[str], ds: ChunkDataset) -> np.ndarray:
    """The task of every flat step of `ds` (built from `data`, episodes in store order)."""
    tasks = []
    for p in data:
        with open_episode_source(p) as src:
            for i in range(len(src)):
                if hasattr(src, "episode_attrs"):
                    a = src.episode_attrs(i)
                    task, n = a["task"], a["num_steps"]
                else:
                    ep = src.episode(i)
                    task, n = ep.task, ep.num_steps
                tasks += [task] * n
    if len(tasks) != len(ds):
        raise ValueError(f"{data}: could not line up episodes and steps ({len(tasks)} vs {len(ds)})")
    return np.asarray(tasks)


def heldout_mask(ds: ChunkDataset, tasks: np.ndarray, holdout: float) -> np.ndarray:
    """Per flat step: does it belong to a held-out episode? The last `holdout` fraction of each
    TASK's episodes (at least one when a task has two or more): `lara demos` writes a store
    task by task, so the last episodes of the store would be one task only. When no task has
    two episodes, the last episodes of the store."""
    ends = np.unique(ds.ep_end)
    starts = np.r_[0, ends[:-1] + 1]
    ep_task = tasks[starts]
    held = np.zeros(len(ds), bool)
    for t in np.unique(ep_task):
        eps = np.flatnonzero(ep_task == t)
        k = min(max(int(round(len(eps) * holdout)), 1 if len(eps) >= 2 else 0), len(eps) - 1)
        for e in eps[len(eps) - k:]:
            held[starts[e]:ends[e] + 1] = True
    if not held.any() and len(ends) >= 2:      # no task has 2 episodes: the last ones of the store
        k = min(max(int(round(len(ends) * holdout)), 1), len(ends) - 1)
        held[starts[len(ends) - k]:] = True
    if not held.any():
        raise ValueError("need at least 2 episodes to hold some out")
    return held


@torch.no_grad()
def latent_dataset(model: LaraModel, config: ModelConfig, data: list[str], quantized: bool = False,
                   holdout: float = 0.25, batch: int = 256, device: str = "cpu"):
    """(X_train, Y_train, X_test, Y_test): latents and flattened action chunks of length C,
    for every step whose chunk and future frame lie inside the episode."""
    c = config.offset
    ds = ChunkDataset(data, cameras=[lam_camera(config)], image_size=config.lam.image_size, horizon=c, offset=c)
    if ds.num_labelled == 0:
        raise ValueError("the probe needs action-labelled episodes")
    ds.attach_text(np.zeros((len(ds.instructions), 1, 1), np.float32), np.ones((len(ds.instructions), 1), bool))
    ident = NormStats([0.0] * ds.info.action_dim, [1.0] * ds.info.action_dim, [0.0] * ds.info.state_dim,
                      [1.0] * ds.info.state_dim)
    idx = np.arange(len(ds))
    valid = (idx + c <= ds.ep_end) & (ds.has_action > 0)
    held = heldout_mask(ds, step_tasks(data, ds), holdout)
    xs, ys = [], []
    sel = idx[valid]
    for i in range(0, len(sel), batch):
        b = ds.batch(sel[i:i + batch], ident)
        z = model.lam.encode(b["image_t"].to(device), b["image_tc"].to(device))
        if quantized:
            z = model.lam.quantizer.lookup(z)[1]
        xs.append(z.flatten(1).cpu().numpy())
        ys.append(b["actions"].flatten(1).numpy())
    x, y = np.concatenate(xs), np.concatenate(ys)
    train = ~held[sel]
    if train.all() or not train.any():
        raise ValueError("need at least 2 episodes to hold some out")
    return x[train], y[train], x[~train], y[~train]


def _ridge(x, y, ridge: float):
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xn = np.c_[(x - mu) / sd, np.ones(len(x))]
    reg = ridge * len(x) * np.eye(xn.shape[1])
    reg[-1, -1] = 0.0                                          # the bias is not penalised
    w = np.linalg.solve(xn.T @ xn + reg, xn.T @ y)
    return lambda q: np.c_[(q - mu) / sd, np.ones(len(q))] @ w


def fit_linear(x, y, ridges=(1e-4, 1e-3, 1e-2, 1e-1, 1.0)):
    """Ridge regression; the strength is chosen on the last 20% of the training samples
    (later episodes), then the probe is refit on all of them."""
    cut = int(len(x) * 0.8)
    best = min(ridges, key=lambda r: ((_ridge(x[:cut], y[:cut], r)(x[cut:]) - y[cut:]) ** 2).mean())
    return _ridge(x, y, best)


def fit_mlp(x, y, hidden: int = 128, epochs: int = 300, seed: int = 0):
    torch.manual_seed(seed)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xt, yt = torch.tensor((x - mu) / sd, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.GELU(), torch.nn.Linear(hidden, y.shape[1]))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-3)
    for _ in range(epochs):
        for i in torch.randperm(len(xt)).split(256):
            loss = torch.nn.functional.mse_loss(net(xt[i]), yt[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return lambda q: net(torch.tensor((q - mu) / sd, dtype=torch.float32)).detach().numpy()


def probe(lam: str | Path, data: list[str], kind: str = "linear", holdout: float = 0.25, quantized: bool = False,
          seed: int = 0, allow_train_seeds: bool = False) -> dict:
    """R^2 of a probe from LAM latents to action chunks on held-out episodes (+ a shuffled control).
    Refuses stores the checkpoint trained on (see check_heldout)."""
    for w in check_heldout(lam, data, allow_train_seeds):
        print(w, file=sys.stderr)
    model, config = load_lam(lam)
    xtr, ytr, xte, yte = latent_dataset(model, config, data, quantized, holdout)
    fit = fit_linear if kind == "linear" else fit_mlp
    r2 = r2_score(yte, fit(xtr, ytr)(xte))
    rng = np.random.default_rng(seed)
    r2_control = r2_score(yte, fit(xtr, ytr[rng.permutation(len(ytr))])(xte))
    m, d = config.lam.num_queries, config.lam.latent_dim
    dims = VectorQuantizer.effective_dims(torch.from_numpy(np.concatenate([xtr, xte]).reshape(-1, m, d)))
    return {"lam": str(lam), "kind": kind, "quantized": quantized, "r2": r2, "r2_shuffled_control": r2_control,
            "latent_dims": dims,
            "train_samples": int(len(xtr)), "test_samples": int(len(xte)), "latent_size": int(xtr.shape[1]),
            "chunk": config.offset}


def _heldout_steps(ds: ChunkDataset, tasks: np.ndarray, holdout: float, limit: int, seed: int) -> np.ndarray:
    """Labelled steps of the last `holdout` fraction of each task's episodes (at most `limit`, sampled)."""
    sel = np.flatnonzero(heldout_mask(ds, tasks, holdout) & (ds.has_action > 0))
    if len(sel) == 0:
        raise ValueError("need at least 2 action-labelled episodes to hold some out")
    if len(sel) > limit:
        sel = np.sort(np.random.default_rng(seed).choice(sel, limit, replace=False))
    return sel


def _one_minus_cos(pred: torch.Tensor, target: torch.Tensor) -> float:
    """L_LARA as trained: 1 - cos per latent token (M of them), averaged."""
    return float((1 - torch.nn.functional.cosine_similarity(pred, target, dim=-1)).mean())


@torch.no_grad()
def alignment(path: str | Path, data: list[str], holdout: float = 0.25, limit: int = 1024, seed: int = 0,
              batch: int = 128, allow_train_seeds: bool = False) -> dict:
    """Is the checkpoint's L_LARA informative? (see the module docstring)."""
    from lara_policy.core.train_data import instruction_embeddings

    for w in check_heldout(path, data, allow_train_seeds):
        print(w, file=sys.stderr)
    model, config = load_lam(path)
    if not config.has_vla:
        raise CheckpointError(f"{path}: --alignment needs a joint VLA + LAM checkpoint (variant lara or "
                              f"frozen_lam), this one has components={config.components}")
    v = config.vla
    ds = ChunkDataset(data, cameras=list(v.cameras), image_size=v.image_size, horizon=v.horizon, offset=config.offset)
    known, emb, mask = load_text(path)
    ds.attach_text(*instruction_embeddings(ds.instructions, v.text_tokens, known, (emb, mask)))
    sel = _heldout_steps(ds, step_tasks(data, ds), holdout, limit, seed)
    stats = load_stats(path)
    g = torch.Generator().manual_seed(seed)
    z_all, h_rand, h_zero, z_null = [], [], [], []
    for i in range(0, len(sel), batch):
        b = ds.batch(sel[i:i + batch], stats)
        z_all.append(model.lam.encode(b["image_t"], b["image_tc"]))
        z_null.append(model.lam.encode(b["image_t"], b["image_t"]))
        cond, cond_mask, pooled = model.observation_encoder(b["images"], b["state"], b["text"], b["text_mask"])
        noise = torch.randn(b["actions"].shape, generator=g)
        for taus, out in ((torch.rand(len(noise), generator=g), h_rand), (torch.zeros(len(noise)), h_zero)):
            noisy = taus[:, None, None] * b["actions"] + (1 - taus[:, None, None]) * noise
            out.append(model.project(model.velocity(noisy, taus, cond, cond_mask, pooled)[1]))
    z, zn = torch.cat(z_all), torch.cat(z_null)
    pred, pred0 = torch.cat(h_rand), torch.cat(h_zero)
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(z)))
    mean_dir = torch.nn.functional.normalize(z, dim=-1).mean(0, keepdim=True).expand_as(z)
    return {
        "checkpoint": str(path), "variant": config.variant, "samples": int(len(z)),
        "l_lara": _one_minus_cos(pred, z),
        "l_lara_shuffled_targets": _one_minus_cos(pred, z[perm]),
        "l_lara_tau0": _one_minus_cos(pred0, z),
        "l_lara_constant": _one_minus_cos(mean_dir, z),
        "future_sensitivity": _one_minus_cos(z, zn),
        "latent_dims": VectorQuantizer.effective_dims(z),
        "latent_norm_mean": float(z.norm(dim=-1).mean()),
    }


# -- the dynamics check, offline ------------------------------------------------------------

CORRUPTIONS = ("reversed", "zeroed", "shifted", "other_task", "noise")
SCORES = ("shipped", "effect_continuous", "consensus", "vla_denoise")


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counting 1/2 (Mann-Whitney ROC-AUC)."""
    pos, neg = np.asarray(pos, np.float64).ravel(), np.asarray(neg, np.float64).ravel()
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sv = allv[order]
    i = 0
    while i < len(sv):                                     # average ranks over ties
        j = i
        while j + 1 < len(sv) and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def paired_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Per observation: does the positive beat its own negative? (ties 1/2), averaged."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def _condition(model: LaraModel, b: dict):
    """Condition tokens of a batch; the extra arguments velocity() takes with them."""
    enc = model.observation_encoder(b["images"], b["state"], b["text"], b["text_mask"])
    return enc[0], enc[1], tuple(enc[2:3]) if len(enc) > 2 and enc[2] is not None else ()


def _repeat(x, n: int):
    return x.repeat_interleave(n, 0)


def _flat_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.flatten(-2), b.flatten(-2), dim=-1)


@torch.no_grad()
def dynamics_check_auc(path: str | Path, data: list[str], limit: int = 256, samples: int = 8, seed: int = 0,
                       batch: int = 32, shift: int = 8, allow_train_seeds: bool = False) -> dict:
    """Does the LAM dynamics check rank the expert's chunk above corrupted ones, and does
    surprise rank a blocked transition above the executed one? (ROC-AUC; see the module doc.)

    Each candidate is scored as at run time: the DiT's hidden state at the last Euler step
    (tau = (K-1)/K, the chunk plus a little noise), f_psi of it, then
      shipped            effect of the quantised latent / null threshold - w * plausibility
                         (policy.LaraPolicy's score until issue 9)
      effect_continuous  effect of the continuous (l2-normalised) latent
      consensus          mean cosine of its predicted latent with those of `samples` chunks the
                         policy itself samples for the observation (agreement with the policy's mode)
      vla_denoise        (reference, no LAM) minus the flow's reconstruction error of the chunk
    Corruptions (physical units, then normalised): reversed (xyz motion negated), zeroed (no xyz
    motion; gripper kept), shifted (the expert's chunk `shift` steps later), other_task (a chunk
    of another task's episode), noise (N(0, 1) in normalised units).
    Surprise: 1 - cos(z(I_t, I_t'), f_psi(h(expert chunk))) with I_t' = I_{t+C} (executed),
    I_t (arm blocked from the start) or I_{t+C/2} (blocked half way)."""
    from lara_policy.core.train_data import instruction_embeddings

    for w in check_heldout(path, data, allow_train_seeds):
        print(w, file=sys.stderr)
    model, config = load_lam(path)
    if not config.has_vla:
        raise CheckpointError(f"{path}: --dynamics-check needs a joint VLA + LAM checkpoint, this one has "
                              f"components={config.components}")
    v, c = config.vla, config.offset
    ds = ChunkDataset(data, cameras=list(v.cameras), image_size=v.image_size, horizon=v.horizon, offset=c)
    known, emb, mask = load_text(path)
    ds.attach_text(*instruction_embeddings(ds.instructions, v.text_tokens, known, (emb, mask)))
    stats = load_stats(path)
    tasks = step_tasks(data, ds)
    idx = np.arange(len(ds))
    last = max(v.horizon, c) - 1
    valid = np.flatnonzero((idx + last + shift <= ds.ep_end) & (ds.has_action > 0))
    if len(valid) == 0:
        raise ValueError(f"{data}: no labelled step with {last + shift + 1} steps left in its episode")
    rng = np.random.default_rng(seed)
    sel = np.sort(rng.choice(valid, min(limit, len(valid)), replace=False))
    other = {t: valid[tasks[valid] != t] for t in np.unique(tasks)}
    if any(len(o) == 0 for o in other.values()):
        raise ValueError(f"{data}: the other_task corruption needs episodes of at least 2 tasks")
    a_mean = torch.tensor(stats.action_mean, dtype=torch.float32)
    a_std = torch.tensor(stats.action_std, dtype=torch.float32)
    xyz = min(3, v.action_dim)
    g = torch.Generator().manual_seed(seed)
    k_steps = v.euler_steps
    tau_last = (k_steps - 1) / k_steps
    threshold = config.null_effect_threshold
    scores = {s: {k: [] for k in ("expert", *CORRUPTIONS)} for s in SCORES}
    surprise = {k: [] for k in ("executed", "blocked_start", "blocked_half")}
    moving, chunk_sensitivity = [], []
    null_flag = {"expert": [], "zeroed": []}          # shipped null test: effect below the threshold
    chosen_err: dict[str, list] = {}                    # MSE to the expert's chunk of the sample each score picks

    def physical(a):
        return a * a_std + a_mean

    def normalised(a):
        return (a - a_mean) / a_std

    for i in range(0, len(sel), batch):
        ix = sel[i:i + batch]
        b = ds.batch(ix, stats)
        n = len(ix)
        cond, cmask, extra = _condition(model, b)
        expert = b["actions"]
        phys = physical(expert)
        rev, zero = phys.clone(), phys.clone()
        rev[..., :xyz] *= -1
        zero[..., :xyz] = 0
        oth = np.array([rng.choice(other[t]) for t in tasks[ix]])
        cands = {"expert": expert, "reversed": normalised(rev), "zeroed": normalised(zero),
                 "shifted": ds.batch(ix + shift, stats)["actions"], "other_task": ds.batch(oth, stats)["actions"],
                 "noise": torch.randn(expert.shape, generator=g)}
        moving.append((phys[:, :c, :xyz].sum(1).norm(dim=-1)).numpy())
        # the policy's own samples (consensus reference)
        x = torch.randn(n * samples, v.horizon, v.action_dim, generator=g)
        rc, rm, rx = _repeat(cond, samples), _repeat(cmask, samples), tuple(_repeat(e, samples) for e in extra)
        hid = None
        for k in range(k_steps):
            vel, hid = model.velocity(x, torch.full((len(x),), k / k_steps), rc, rm, *rx)
            x = x + vel / k_steps
        z_samples = model.project(hid).view(n, samples, config.lam.num_queries, config.lam.latent_dim)
        # which of the policy's own samples would each score pick? (distance to the expert's chunk)
        from lara_policy.core.policy import latent_consensus
        err_s = ((x.view(n, samples, *expert.shape[1:]) - expert[:, None]) ** 2).mean((2, 3))     # (n, N)
        zs = z_samples.flatten(0, 1)
        eff_s = model.predicted_effect(_repeat(b["image_t"], samples), zs).view(n, samples)
        plaus_s = torch.sqrt((2 - 2 * model.lam.quantizer.lookup(zs)[3]).clamp(min=0)).mean(-1).view(n, samples)
        scale_s = threshold if threshold > 0 else float(eff_s.mean().clamp(min=1e-6))
        pick_shipped = (eff_s / scale_s - config.plausibility_weight * plaus_s).argmax(1)
        pick_consensus = torch.stack([latent_consensus(z).argmax() for z in z_samples])
        rows = torch.arange(n)
        for name, e in (("first (N=1)", err_s[:, 0]), ("shipped", err_s[rows, pick_shipped]),
                        ("consensus", err_s[rows, pick_consensus]), ("mean", err_s.mean(1)),
                        ("best (oracle)", err_s.min(1).values)):
            chosen_err.setdefault(name, []).append(e.numpy())
        eps = torch.randn(expert.shape, generator=g)                  # shared by all candidates
        img_lam = b["image_t"]
        pred = {}
        for name, a in cands.items():
            x_t = tau_last * a + (1 - tau_last) * eps
            _, hidden = model.velocity(x_t, torch.full((n,), tau_last), cond, cmask, *extra)
            pz = model.project(hidden)
            pred[name] = pz
            cos = model.lam.quantizer.lookup(pz)[3]
            plaus = torch.sqrt((2 - 2 * cos).clamp(min=0)).mean(-1)
            eff_q = model.predicted_effect(img_lam, pz)
            scale = threshold if threshold > 0 else float(eff_q.mean().clamp(min=1e-6))
            scores["shipped"][name].append((eff_q / scale - config.plausibility_weight * plaus).numpy())
            if name in null_flag:
                null_flag[name].append((eff_q < threshold).numpy())
            scores["effect_continuous"][name].append(model.predicted_effect(img_lam, pz, quantized=False).numpy())
            scores["consensus"][name].append(_flat_cos(pz[:, None], z_samples).mean(1).numpy())
            err = 0.0
            for tau in (0.3, 0.6, 0.9):
                x_tau = tau * a + (1 - tau) * eps
                vel, _ = model.velocity(x_tau, torch.full((n,), tau), cond, cmask, *extra)
                err = err + ((x_tau + (1 - tau) * vel - a) ** 2).mean((1, 2))
            scores["vla_denoise"][name].append((-err).numpy())
        chunk_sensitivity.append((1 - _flat_cos(pred["expert"], pred["reversed"])).numpy())
        # surprise of the expert's (executed) chunk against observed transitions
        tc = np.minimum(ix + c, ds.ep_end[ix])
        half = np.minimum(ix + c // 2, ds.ep_end[ix])
        img_tc = ds.images[tc, 0].float() / 255.0
        img_half = ds.images[half, 0].float() / 255.0
        for name, other_img in (("executed", img_tc), ("blocked_start", img_lam), ("blocked_half", img_half)):
            z_obs = model.lam.encode(img_lam, other_img)
            surprise[name].append((1 - _flat_cos(z_obs, pred["expert"])).numpy())

    cat = lambda d: {k: np.concatenate(v) for k, v in d.items()}   # noqa: E731
    moving = np.concatenate(moving)
    moves = moving >= np.median(moving)
    result = {"checkpoint": str(path), "data": list(data), "steps": int(len(sel)), "samples": samples,
              "shift": shift, "chunk": c, "null_effect_threshold": threshold,
              "chunk_sensitivity_reversed": float(np.concatenate(chunk_sensitivity).mean()),
              "check": {}, "surprise": {}}
    for sname in SCORES:
        sc = cat(scores[sname])
        result["check"][sname] = {cor: {"auc": roc_auc(sc["expert"], sc[cor]),
                                        "paired": paired_auc(sc["expert"], sc[cor]),
                                        "ties": float(np.mean(sc["expert"] == sc[cor]))} for cor in CORRUPTIONS}
    su = cat(surprise)
    for blocked in ("blocked_start", "blocked_half"):
        result["surprise"][blocked] = {
            "auc": roc_auc(su[blocked], su["executed"]), "paired": paired_auc(su[blocked], su["executed"]),
            "auc_moving": roc_auc(su[blocked][moves], su["executed"][moves]),
            "paired_moving": paired_auc(su[blocked][moves], su["executed"][moves])}
    result["surprise"]["mean"] = {k: float(v.mean()) for k, v in su.items()}
    result["null_flag_rate"] = {k: float(np.concatenate(v).mean()) for k, v in null_flag.items()}
    result["chosen_sample_mse"] = {k: float(np.concatenate(v).mean()) for k, v in chosen_err.items()}
    first = np.concatenate(chosen_err["first (N=1)"])
    result["chosen_sample_win_vs_first"] = {k: paired_auc(-np.concatenate(v), -first) for k, v in chosen_err.items()
                                            if k != "first (N=1)"}
    return result


def format_dynamics_check(r: dict) -> str:
    lines = [f"dynamics check on {r['steps']} held-out steps: ROC-AUC that the expert's chunk scores above the "
             f"corrupted one (pooled / paired per observation; 0.5 = chance)",
             "| score | " + " | ".join(CORRUPTIONS) + " |", "|---|" + "---:|" * len(CORRUPTIONS)]
    for sname, row in r["check"].items():
        lines.append(f"| {sname} | " + " | ".join(f"{row[c]['auc']:.2f} / {row[c]['paired']:.2f}"
                                                  for c in CORRUPTIONS) + " |")
    lines.append(f"f_psi's sensitivity to the chunk: 1 - cos(pred(expert), pred(reversed)) = "
                 f"{r['chunk_sensitivity_reversed']:.4f}")
    lines.append("surprise: ROC-AUC that a blocked transition is more surprising than the executed one "
                 "(all steps / the half with the most expert motion; pooled, paired)")
    for k in ("blocked_start", "blocked_half"):
        s = r["surprise"][k]
        lines.append(f"  {k}: {s['auc']:.2f}, {s['paired']:.2f} | moving {s['auc_moving']:.2f}, "
                     f"{s['paired_moving']:.2f}")
    f = r["null_flag_rate"]
    lines.append(f"null test (effect < threshold {r['null_effect_threshold']:.4g}) fires on {f['expert']:.1%} of expert "
                 f"chunks and {f['zeroed']:.1%} of zeroed (no-motion) chunks")
    lines.append(f"among {r['samples']} chunks the policy samples, the one each score picks: MSE to the expert's chunk "
                 "(normalised units; P(better than the first sample))")
    lines.append("  " + "; ".join(f"{k} {v:.3f}" + (f" ({r['chosen_sample_win_vs_first'][k]:.2f})"
                                                   if k in r["chosen_sample_win_vs_first"] else "")
                                  for k, v in r["chosen_sample_mse"].items()))
    m = r["surprise"]["mean"]
    lines.append("  mean surprise: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lara_policy.common.args import add_list_option, deprecated_alias, float_in_range
    from lara_policy.common.errors import positive_int
    parser.add_argument("--lam", required=True, help="checkpoint holding a LAM (LAM-only or joint)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--alignment", action="store_true",
                      help="instead of the action probe: is L_LARA informative? (joint checkpoints; "
                           "compares f_psi with shuffled targets, tau=0 and a constant prediction)")
    mode.add_argument("--dynamics-check", action="store_true",
                      help="instead of the action probe: does the LAM dynamics check rank the expert's chunk above "
                           "corrupted ones, and surprise a blocked transition above the executed one? (ROC-AUC; "
                           "joint checkpoints)")
    mode.add_argument("--invariance", action="store_true",
                      help="instead of the action probe: distractor invariance of the LAM: distance between the "
                           "latents of the same transition in --data (clean) and --distractor-data (the same "
                           "episodes rendered with distractors), relative to different transitions, and the "
                           "fraction of identical codes; per task (any checkpoint with a LAM)")
    add_list_option(parser, "--distractor-data", metavar="STORE",
                    help="--invariance: the --data store(s) regenerated with `lara demos ... --distractors LEVEL` "
                         "(same tasks, --episodes, --seed-start, cameras, image size), paired with --data in order")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="steps scored, sampled: --dynamics-check held-out steps (default 256), --invariance "
                             "transitions (default 2048)")
    parser.add_argument("--samples", type=positive_int, default=8, help="--dynamics-check: policy samples for 'consensus'")
    add_list_option(parser, "--data", required=True, metavar="STORE",
                    help="action-labelled episode store(s) with layouts (seeds) the checkpoint never trained on "
                         "(--invariance: the clean rendering; labels not needed)")
    parser.add_argument("--allow-train-seeds", action="store_true",
                        help="measure even on a store that overlaps the checkpoint's train_seeds.json (training-set "
                             "figures; refused by default)")
    parser.add_argument("--kind", choices=["linear", "mlp"], default=None,
                        help="action probe only: linear (ridge) or MLP regression from the latent to the actions "
                             "(default: linear)")
    parser.add_argument("--holdout", type=float_in_range(0.0, 1.0, lo_open=True, hi_open=True), default=0.25,
                        help="fraction of each task's episodes held out (its last ones)")
    parser.add_argument("--quantized", action="store_true",
                        help="action probe only: probe the quantised latent instead of z")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON (parent folders created)")
    deprecated_alias(parser, "--out", "--json", dest="json")


def run(args: argparse.Namespace) -> int:
    from lara_policy.common.args import write_json
    if (args.alignment or args.dynamics_check or args.invariance) and (args.kind is not None or args.quantized):
        mode = "--alignment" if args.alignment else "--dynamics-check" if args.dynamics_check else "--invariance"
        flag = "--kind" if args.kind is not None else "--quantized"
        print(f"lara probe: {flag} applies to the action probe only, not to {mode}", file=sys.stderr)
        return 2
    if bool(args.invariance) != bool(args.distractor_data):
        print("lara probe: --invariance needs --distractor-data STORE (the same episodes rendered with distractors)"
              if args.invariance else "lara probe: --distractor-data applies to --invariance only", file=sys.stderr)
        return 2
    args.kind = args.kind or "linear"
    torch.set_num_threads(args.threads)
    try:
        if args.invariance:
            from lara_policy.core.probe_invariance import DEFAULT_LIMIT, invariance
            result = invariance(args.lam, list(args.data), list(args.distractor_data), args.limit or DEFAULT_LIMIT,
                                allow_train_seeds=args.allow_train_seeds)
        elif args.dynamics_check:
            result = dynamics_check_auc(args.lam, list(args.data), args.limit or 256, args.samples,
                                        allow_train_seeds=args.allow_train_seeds)
        elif args.alignment:
            result = alignment(args.lam, list(args.data), args.holdout, allow_train_seeds=args.allow_train_seeds)
        else:
            result = probe(args.lam, list(args.data), args.kind, args.holdout, args.quantized,
                           allow_train_seeds=args.allow_train_seeds)
    except (CheckpointError, StoreError, ValueError) as exc:
        print(f"lara probe: {exc}", file=sys.stderr)
        return 2
    if args.invariance:
        from lara_policy.core.probe_invariance import format_invariance
        print(format_invariance(result))
    elif args.dynamics_check:
        print(format_dynamics_check(result))
    elif args.alignment:
        r = result
        print(f"L_LARA on {r['samples']} held-out steps ({r['variant']}): f_psi {r['l_lara']:.4f} | shuffled targets "
              f"{r['l_lara_shuffled_targets']:.4f} | tau=0 (no action input) {r['l_lara_tau0']:.4f} | best constant "
              f"{r['l_lara_constant']:.4f}\nfuture sensitivity 1-cos(z(I_t,I_t+C), z(I_t,I_t)) = "
              f"{r['future_sensitivity']:.4f}; mean |z| per token {r['latent_norm_mean']:.3f}; effective latent "
              f"dims per token {r['latent_dims']:.2f} (1 = collapsed onto a line)")
    else:
        print(f"action probe ({result['kind']}, {'z_q' if args.quantized else 'z'}): held-out R^2 = {result['r2']:.3f} "
              f"(shuffled control {result['r2_shuffled_control']:.3f}; train {result['train_samples']}, "
              f"test {result['test_samples']}); effective latent dims per token {result['latent_dims']:.2f} "
              f"(1 = collapsed onto a line)")
    if args.json:
        write_json(args.json, result)
    return 0
