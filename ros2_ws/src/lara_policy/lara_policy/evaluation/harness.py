"""Closed-loop Meta-World evaluation of any lara_policy.common.policy_api.Policy.

    from lara_policy.evaluation.harness import evaluate
    from lara_policy.evaluation.policies import OracleFactory
    res = evaluate(OracleFactory(), ["reach-v3", "push-v3"], episodes=50, out="runs/eval")
    res["mean_success"], res["per_task"]["push-v3"]["ci95"]

`policy_factory` is a zero-argument callable returning a Policy; with workers > 1 it
must be picklable (a top-level function, functools.partial or a dataclass like the
factories in lara_policy.evaluation.policies), since workers are spawned.

Seeds: episode i of every task uses layout seed `seed_start + i` (default 100000+;
`lara demos` trains on 0+). Seeds a training store or a checkpoint recorded per task are
refused (SeedOverlapError names them).

Chunk execution: with `execute_k=k` the policy is queried, the first k of its H actions
run open-loop, then it is queried again (k=None: all H). With `ensemble=True` the
policy is queried every step and all chunks that cover the current step are averaged
with weights exp(-m * age_rank), oldest first (ACT's temporal ensembling, m =
`ensemble_decay`).

An episode succeeds when Meta-World reports success at any step within `max_steps`;
the episode ends at the first success.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from lara_policy.evaluation.stats import wilson_interval

DEFAULT_EVAL_SEED_START = 100_000
VIDEO_CAMERA = "corner4"


from lara_policy.common.errors import LaraError  # noqa: E402  (one error base for the CLI)


class SeedOverlapError(LaraError, ValueError):
    """Evaluation seeds overlap seeds used for training."""


@dataclass
class EvalConfig:
    tasks: list[str]
    episodes: int = 10
    seed_start: int = DEFAULT_EVAL_SEED_START
    max_steps: int = 500
    execute_k: int | None = None
    ensemble: bool = False
    ensemble_decay: float = 0.01
    num_candidates: int = 1
    videos: int = 0
    video_size: int = 128
    image_size: tuple[int, int] | None = None     # override the policy's image size
    cameras: tuple[str, ...] | None = None        # override the policy's cameras
    distractors: object = None
    delay_steps: int | None = None                # injected inference delay (env steps; evaluation/chunking.py)
    rtc: bool = False                             # real-time chunking: guide each chunk by the executing one
    fault: object = None                          # sim.faults.FaultSpec (none: no fault)
    monitor: object = None                        # evaluation.monitoring.MonitorSpec (None: no monitors)


# -- chunk execution ------------------------------------------------------------------------
class ChunkExecutor:
    """Turns predict_chunk() into one action per env step (replan every k / ensembling)."""

    def __init__(self, policy, execute_k: int | None = None, ensemble: bool = False,
                 ensemble_decay: float = 0.01, num_candidates: int = 1):
        self.policy = policy
        self.h = h = int(policy.meta.horizon)
        if execute_k is not None and not 1 <= execute_k <= h:
            raise ValueError(f"execute_k={execute_k} must be in [1, horizon={h}]")
        self.k = h if execute_k is None else int(execute_k)
        self.ensemble = ensemble
        self.decay = float(ensemble_decay)
        self.num_candidates = int(num_candidates)
        self.listener = None            # called as listener(step, obs, prediction) after each prediction
        self.reset(0)

    def reset(self, episode_seed: int) -> None:
        self._queue: deque = deque()
        self._chunks: list[tuple[int, np.ndarray]] = []
        self._t = 0
        self._seed = int(episode_seed)
        self.calls = 0
        self.latencies_ms: list[float] = []
        self.rejected = 0

    def _predict(self, obs, step: int, **predict_kwargs) -> np.ndarray:
        """One predict_chunk (timed, seeded per episode and call, shown to the listener) -> (H, 4)."""
        t0 = time.perf_counter()
        pred = self.policy.predict_chunk(obs, num_candidates=self.num_candidates,
                                         seed=(self._seed * 7919 + self.calls) % (2 ** 31), **predict_kwargs)
        self.latencies_ms.append((time.perf_counter() - t0) * 1e3)
        if self.listener is not None:
            self.listener(step, obs, pred)
        self.calls += 1
        if pred.check is not None and not pred.check.accepted:
            self.rejected += 1
        a = np.asarray(pred.actions, dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != 4 or not 1 <= a.shape[0] <= self.h:
            raise ValueError(f"policy returned actions of shape {a.shape}; expected (H, 4) with H <= {self.h}")
        if not np.all(np.isfinite(a)):
            raise ValueError("policy returned NaN/inf actions")
        return a

    def act(self, obs) -> np.ndarray:
        t = self._t
        self._t += 1
        if not self.ensemble:
            if not self._queue:
                self._queue.extend(self._predict(obs, t)[: self.k])
            return self._queue.popleft()
        chunk = self._predict(obs, t)
        self._chunks.append((t, chunk))
        self._chunks = [(t0, c) for t0, c in self._chunks if t - t0 < len(c)]
        acts = np.stack([c[t - t0] for t0, c in self._chunks])           # oldest first
        w = np.exp(-self.decay * np.arange(len(acts)))
        return (w[:, None] * acts).sum(0) / w.sum()


# -- one episode ------------------------------------------------------------------------------
_WORKER: dict = {}


def _env_for(task: str, cams: tuple[str, ...], size: tuple[int, int], max_steps: int, distractors):
    from lara_policy.sim.metaworld_env import MetaWorldEnv
    key = (task, cams, size, max_steps, repr(distractors))
    envs = _WORKER.setdefault("envs", {})
    if key not in envs:
        envs[key] = MetaWorldEnv(task, cameras=cams, image_size=size, distractors=distractors,
                                 max_steps=max_steps)
    return envs[key]


def _policy(factory):
    if _WORKER.get("factory") is not factory:
        _WORKER["factory"] = factory
        _WORKER["policy"] = factory()
    return _WORKER["policy"]


def run_episode(policy, task: str, seed: int, cfg: EvalConfig, video_path: str | None = None) -> dict:
    meta = policy.meta
    if int(meta.action_dim) != 4:
        raise ValueError(f"policy action_dim {meta.action_dim} != 4 (Meta-World ee_delta_xyz_gripper)")
    cams = tuple(cfg.cameras if cfg.cameras is not None else meta.cameras)
    size = tuple(cfg.image_size or meta.image_size or (128, 128))
    if not cams:
        size = (cfg.video_size, cfg.video_size)
    env = _env_for(task, cams, size, cfg.max_steps, cfg.distractors)
    if cfg.fault is not None and cfg.fault.kind != "none":
        from lara_policy.sim.faults import FaultyEnv
        env = FaultyEnv(env, cfg.fault)
    if cfg.delay_steps is not None or cfg.rtc:
        from lara_policy.evaluation.chunking import DelayedChunkExecutor
        ex = DelayedChunkExecutor(policy, cfg.execute_k, cfg.delay_steps or 0, cfg.rtc, cfg.num_candidates)
    else:
        ex = ChunkExecutor(policy, cfg.execute_k, cfg.ensemble, cfg.ensemble_decay, cfg.num_candidates)
    monitors = None
    if cfg.monitor is not None:
        from lara_policy.evaluation.monitoring import EpisodeMonitors
        monitors = EpisodeMonitors(policy, env.action_scale, cfg.monitor)
        ex.listener = monitors.on_prediction
    t0 = time.perf_counter()
    policy.reset()
    ex.reset(seed)
    obs = env.reset(seed=seed)
    frames = []

    def grab():
        if video_path is not None:
            img = obs.images.get(VIDEO_CAMERA)
            frames.append(img if img is not None else env.render_images([VIDEO_CAMERA])[VIDEO_CAMERA])

    grab()
    success = False
    first = None
    onset = getattr(env, "onset", None)
    while env.steps < cfg.max_steps:
        a = ex.act(obs)
        obs, ok, _ = env.step(a, render=bool(cams))
        grab()
        if monitors is not None:
            monitors.on_step(env.steps, obs, a)
        if ok and first is None:
            success, first = True, env.steps
        if onset is None or env.steps < onset:
            # a fault not yet started never will: the episode ends on success (with a monitor's
            # normal_steps, not before that step: normal operation goes on after a success)
            if success and (cfg.monitor is None or env.steps >= cfg.monitor.normal_steps):
                break
        elif cfg.monitor is not None and env.steps >= onset + cfg.monitor.post_onset_steps:
            break
    wall = time.perf_counter() - t0
    if video_path is not None and frames:
        from lara_policy.evaluation.report import write_rollout_video
        write_rollout_video(video_path, frames, obs.instruction, task, success, first, env.dt)
    lat = np.asarray(ex.latencies_ms) if ex.latencies_ms else np.zeros(1)
    return {"task": task, "seed": int(seed), "success": bool(success), "length": int(env.steps),
            "instruction": obs.instruction, "wall_s": wall, "policy_calls": ex.calls,
            "latency_ms_p50": float(np.percentile(lat, 50)), "check_rejected": ex.rejected,
            "video": video_path,
            **(ex.chunking_record() if hasattr(ex, "chunking_record") else {}),
            **({"fault": cfg.fault.kind, "fault_onset": onset,
                "fault_reached": onset is not None and env.steps >= onset} if cfg.fault is not None else {}),
            **({"monitor": monitors.record()} if monitors is not None else {})}


def _job(factory, task, seed, cfg, video_path):
    return run_episode(_policy(factory), task, seed, cfg, video_path)


def _init_worker() -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        import torch
        torch.set_num_threads(1)
    except Exception:
        pass


# -- seeds --------------------------------------------------------------------------------------
def check_seed_overlap(tasks: Iterable[str], seeds: Iterable[int],
                       train_seeds: dict[str, set[int]] | None, source: str = "training") -> None:
    if not train_seeds:
        return
    seeds = set(int(s) for s in seeds)
    bad = {}
    for t in tasks:
        common = seeds & set(train_seeds.get(t, ()))
        if common:
            bad[t] = sorted(common)
    if bad:
        from lara_policy.formats.store import seed_ranges
        desc = "; ".join(f"{t}: {len(v)} seeds ({seed_ranges(v)})" for t, v in bad.items())
        raise SeedOverlapError(f"evaluation seeds overlap the {source} seeds -> {desc}. "
                               f"Choose a --seed-start past the training range.")


def train_seeds_from_store(path: str | Path) -> dict[str, set[int]]:
    from lara_policy.formats.store import EpisodeStore
    with EpisodeStore(path) as s:
        return s.used_seeds()


def merge_seeds(*dicts: dict | None) -> dict[str, set[int]]:
    """Union of {task: seeds} mappings (None entries skipped)."""
    out: dict[str, set[int]] = {}
    for d in dicts:
        for t, v in (d or {}).items():
            out.setdefault(t, set()).update(v)
    return out


# -- the harness ------------------------------------------------------------------------------
def evaluate(policy_factory: Callable, tasks, episodes: int = 10, *, seed_start: int = DEFAULT_EVAL_SEED_START,
             max_steps: int = 500, execute_k: int | None = None, ensemble: bool = False,
             ensemble_decay: float = 0.01, num_candidates: int = 1, workers: int = 1, videos: int = 0,
             out: str | Path | None = None, train_seeds: dict[str, set[int]] | None = None,
             train_store: str | Path | None = None, image_size=None, cameras=None, distractors=None,
             progress: bool = True, label: str | None = None, fault=None, monitor=None,
             delay_steps: int | None = None, rtc: bool = False) -> dict:
    """Evaluate a policy closed-loop on Meta-World; returns the results dict (and writes
    results.json, results.md, success.png, videos/ into `out` when given).

    Returns {"mean_success", "mean_ci95", "per_task": {task: {success_rate, ci95, episodes,
    successes, mean_length, mean_length_success, seeds}}, "episodes": [...], "wall_s",
    "config", "policy"}.
    """
    from lara_policy.sim.metaworld_env import resolve_tasks
    tasks = resolve_tasks(tasks)
    if episodes < 1:
        raise ValueError("episodes must be >= 1")
    if workers < 1:
        raise ValueError("workers must be >= 1")
    if seed_start < 0:
        raise ValueError("seed_start must be >= 0")
    seeds = list(range(seed_start, seed_start + episodes))
    recorded = merge_seeds(train_seeds, train_seeds_from_store(train_store) if train_store else None)
    check_seed_overlap(tasks, seeds, recorded)
    if image_size is not None and isinstance(image_size, int):
        image_size = (image_size, image_size)
    cfg = EvalConfig(tasks=tasks, episodes=episodes, seed_start=seed_start, max_steps=max_steps,
                     execute_k=execute_k, ensemble=ensemble, ensemble_decay=ensemble_decay,
                     num_candidates=num_candidates, videos=videos,
                     image_size=tuple(image_size) if image_size else None,
                     cameras=tuple(cameras) if cameras is not None else None, distractors=distractors,
                     fault=fault, monitor=monitor,
                     delay_steps=None if delay_steps is None else int(delay_steps), rtc=bool(rtc))
    outdir = Path(out) if out is not None else None
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
        if videos:
            (outdir / "videos").mkdir(exist_ok=True)
    # jobs: episode-major so the first `videos` jobs cover different tasks
    jobs = []
    for i, s in enumerate(seeds):
        for t in tasks:
            vid = None
            if outdir is not None and len([j for j in jobs if j[2]]) < videos:
                vid = str(outdir / "videos" / f"{t}_seed{s}.gif")
            jobs.append((t, s, vid))
    # the policy in this process (meta; also runs the jobs when workers == 1)
    policy = policy_factory()
    meta = policy.meta
    if execute_k is not None and not 1 <= execute_k <= meta.horizon:
        raise ValueError(f"--execute-k {execute_k} must be in [1, horizon={meta.horizon}]")
    if abs(float(meta.dt) - 0.0125) > 1e-6:
        print(f"warning: policy dt {meta.dt} s != Meta-World step 0.0125 s; actions are applied per env step",
              file=sys.stderr)
    from tqdm import tqdm
    bar = tqdm(total=len(jobs), desc="eval", unit="ep", disable=not progress, file=sys.stderr)
    results = []
    t0 = time.perf_counter()
    n_ok = 0

    def done(r):
        nonlocal n_ok
        results.append(r)
        n_ok += int(r["success"])
        bar.update(1)
        bar.set_postfix(success=f"{n_ok / len(results):.2f}")

    if workers == 1:
        _WORKER.clear()
        _WORKER["factory"], _WORKER["policy"] = policy_factory, policy
        for t, s, vid in jobs:
            done(run_episode(policy, t, s, cfg, vid))
    else:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
            pending = list(jobs)
            futs = set()
            while pending or futs:
                while pending and len(futs) < 2 * workers:
                    t, s, vid = pending.pop(0)
                    futs.add(pool.submit(_job, policy_factory, t, s, cfg, vid))
                fin, futs = wait(futs, return_when=FIRST_COMPLETED)
                for f in fin:
                    done(f.result())
    bar.close()
    wall = time.perf_counter() - t0
    res = summarise(results, tasks, wall, cfg, meta, workers, label)
    if outdir is not None:
        from lara_policy.evaluation.report import write_report
        write_report(res, outdir)
    return res


def _chunking_summary(results: list[dict]) -> dict:
    from lara_policy.evaluation.chunking import summarise_chunking
    return summarise_chunking(results)


def _monitor_summary(results: list[dict]) -> dict:
    from lara_policy.evaluation.monitoring import summarise_monitor
    return summarise_monitor(results, dt=0.0125)     # Meta-World's control step


def summarise(results: list[dict], tasks: list[str], wall: float, cfg: EvalConfig, meta, workers: int,
              label: str | None = None) -> dict:
    per_task = {}
    for t in tasks:
        rs = sorted([r for r in results if r["task"] == t], key=lambda r: r["seed"])
        n = len(rs)
        k = sum(r["success"] for r in rs)
        lo, hi = wilson_interval(k, n)
        lens = [r["length"] for r in rs]
        lens_ok = [r["length"] for r in rs if r["success"]]
        per_task[t] = {"success_rate": k / n if n else float("nan"), "ci95": [lo, hi], "episodes": n,
                       "successes": int(k), "mean_length": float(np.mean(lens)) if lens else float("nan"),
                       "mean_length_success": float(np.mean(lens_ok)) if lens_ok else None,
                       "seeds": [rs[0]["seed"], rs[-1]["seed"]] if rs else [],
                       "wall_s": float(sum(r["wall_s"] for r in rs))}
    rates = [v["success_rate"] for v in per_task.values()]
    total_n = sum(v["episodes"] for v in per_task.values())
    total_k = sum(v["successes"] for v in per_task.values())
    steps = sum(r["length"] for r in results)
    lat = [r["latency_ms_p50"] for r in results]
    return {
        "mean_success": float(np.mean(rates)),
        "mean_ci95": list(wilson_interval(total_k, total_n)),
        "per_task": per_task,
        "episodes_total": total_n,
        "wall_s": wall,
        "env_steps": steps,
        "steps_per_s": steps / max(wall, 1e-9),
        "policy_latency_ms_p50": float(np.median(lat)) if lat else None,
        "policy": {"label": label or meta.model_id, **{k: (list(v) if isinstance(v, tuple) else v)
                                                       for k, v in asdict(meta).items()}},
        "config": {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()
                      if k != "distractors"}, "distractors": repr(cfg.distractors), "workers": workers},
        **({"monitor": _monitor_summary(results)} if cfg.monitor is not None else {}),
        **({"chunking": _chunking_summary(results)} if cfg.delay_steps is not None or cfg.rtc else {}),
        "episodes": sorted(results, key=lambda r: (r["task"], r["seed"])),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "ci_method": "Wilson score interval, 95%",
    }

