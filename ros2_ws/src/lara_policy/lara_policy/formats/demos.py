"""`lara demos`: Meta-World v3 expert demonstrations and action-free video -> episode store.

Demonstrations: Meta-World's scripted expert runs each (task, seed); its actions are
clipped to [-1, 1]; an episode stops `--post-success-steps` steps after the first
success; unsuccessful episodes are discarded (counted and reported) and, with
`--fill` (default), the next unused seed is tried until `--episodes` successes or
`--max-attempts` tries per task. Every seed tried is recorded in the store
(extra["seeds"]) so evaluation can refuse to reuse them.

Action-free video (`--action-free`): the same generator with the actions dropped
(source="video"), optionally with spurious visual change (`--distractors low|medium|
high|<0..1>`: lighting, colour shift, camera jitter, moving distractor objects).

Examples:
    lara demos --tasks reach-v3,push-v3 --episodes 40 --image-size 64 --out data/train.hdf5
    lara demos --tasks MT10 --episodes 100 --cameras corner4,gripperPOV --workers 2 --out data/mt10.hdf5
    lara demos --tasks button-press-v3 --episodes 20 --action-free --distractors medium --out data/video.hdf5
    lara demos --bench --tasks MT3 --episodes 6 --image-size 128   # frames/s on 1 and 2 workers
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lara_policy.formats.store import Episode, EpisodeStore, StoreMeta
from lara_policy.common.errors import int_in_range, non_negative_int, positive_int

DEFAULT_TRAIN_SEED_START = 0


@dataclass
class GenConfig:
    tasks: list[str]
    episodes: int = 10                     # successful episodes wanted per task
    cameras: tuple[str, ...] = ("corner4",)
    image_size: tuple[int, int] = (128, 128)
    seed_start: int = DEFAULT_TRAIN_SEED_START
    max_steps: int = 500
    post_success_steps: int = 5
    fill: bool = True                      # replace failed seeds with new ones
    max_attempts: int | None = None        # per task; default 2 * episodes + 5
    action_free: bool = False
    distractors: object = None             # DistractorConfig.parse spec
    workers: int = 1
    keep_failed: bool = False              # store failed episodes too (success=False)
    extra: dict = field(default_factory=dict)


# -- one episode (runs in a worker) -------------------------------------------------------
_ENVS: dict = {}


def _get_env(task: str, cfg: GenConfig):
    from lara_policy.sim.metaworld_env import MetaWorldEnv
    key = (task, cfg.cameras, cfg.image_size, json.dumps(_dis_dict(cfg), sort_keys=True), cfg.max_steps)
    env = _ENVS.get(key)
    if env is None:
        env = MetaWorldEnv(task, cameras=cfg.cameras, image_size=cfg.image_size,
                           distractors=cfg.distractors, max_steps=cfg.max_steps)
        _ENVS[key] = env
    return env


def _dis_dict(cfg: GenConfig):
    from lara_policy.sim.distractors import DistractorConfig
    d = DistractorConfig.parse(cfg.distractors)
    return None if d is None else d.to_dict()


def rollout_expert(env, seed: int, post_success_steps: int = 5, keep_actions: bool = True) -> Episode:
    """Run the scripted expert on env from reset(seed); returns an Episode (success set)."""
    obs = env.reset(seed=seed)
    imgs: dict[str, list] = {c: [] for c in env.cameras}
    states, actions, step_success = [], [], []
    first_success = None
    while env.steps < env.max_steps:
        a = env.expert_action(obs)
        for c in env.cameras:
            imgs[c].append(obs.images[c])
        states.append(obs.state)
        actions.append(a)
        obs, success, _info = env.step(a)
        step_success.append(success)
        if success and first_success is None:
            first_success = env.steps
        if first_success is not None and env.steps - first_success >= post_success_steps:
            break
    ok = first_success is not None
    extra = {"first_success_step": first_success, "max_steps": env.max_steps,
             "distractors": None if env.distractors is None else env.distractors.to_dict()}
    return Episode(
        images={c: np.stack(v) for c, v in imgs.items()}, state=np.stack(states).astype(np.float32),
        actions=np.stack(actions).astype(np.float32) if keep_actions else None,
        instruction=obs.instruction, task=env.task, seed=int(seed), success=ok,
        source="expert" if keep_actions else "video",
        step_success=np.asarray(step_success, dtype=bool), extra=extra)


def _work(task: str, seed: int, cfg: GenConfig) -> tuple[str, int, Episode | None, bool, int]:
    env = _get_env(task, cfg)
    ep = rollout_expert(env, seed, cfg.post_success_steps, keep_actions=not cfg.action_free)
    keep = ep.success or cfg.keep_failed
    return task, seed, (ep if keep else None), ep.success, ep.num_steps


def _init_worker() -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")


# -- the generator ------------------------------------------------------------------------
def store_meta(cfg: GenConfig) -> StoreMeta:
    from lara_policy.sim import metaworld_env as mw
    return StoreMeta(
        env=mw.ENV_NAME, action_space=mw.ACTION_SPACE, action_dim=mw.ACTION_DIM,
        state_dim=mw.STATE_DIM, cameras=list(cfg.cameras), image_size=tuple(cfg.image_size),
        dt=0.0125, state_names=list(mw.STATE_NAMES),
        phrasings={t: list(mw.TASK_PHRASINGS[t]) for t in cfg.tasks},
        created_by="lara demos",
        extra={"action_free": cfg.action_free, "distractors": _dis_dict(cfg),
               "action_scale": 0.01, "seed_start": cfg.seed_start, "max_steps": cfg.max_steps,
               "post_success_steps": cfg.post_success_steps, "seeds": {}, "failed": {}, **cfg.extra})


def generate(cfg: GenConfig, out: str | Path, overwrite: bool = False, progress: bool = True,
             compression: str | None = "lzf") -> dict:
    """Generate episodes into a new store at `out`; returns a stats dict. The store is written
    under a temporary name and renamed to `out` when complete: a run that fails or is
    interrupted leaves no half-written store at `out` (and an existing one, with --overwrite,
    stays until the new one is complete)."""
    from lara_policy.common.fileio import staged_output
    from lara_policy.sim.metaworld_env import resolve_tasks
    cfg.tasks = resolve_tasks(cfg.tasks)
    if cfg.episodes < 1:
        raise ValueError("episodes per task must be >= 1")
    if cfg.workers < 1:
        raise ValueError("workers must be >= 1")
    if Path(out).exists() and not overwrite:
        EpisodeStore.create(out, store_meta(cfg), overwrite=False)      # the usual "exists" StoreError
    with staged_output(out, overwrite=True) as tmp:
        res = _generate(cfg, tmp, compression, progress)
    return {**res, "out": str(out)}


def _generate(cfg: GenConfig, out: Path, compression: str | None, progress: bool) -> dict:
    max_att = cfg.max_attempts or (2 * cfg.episodes + 5 if cfg.fill else cfg.episodes)
    store = EpisodeStore.create(out, store_meta(cfg))
    # per-task scheduling state
    next_seed = {t: cfg.seed_start for t in cfg.tasks}
    tried = {t: [] for t in cfg.tasks}
    succ = {t: 0 for t in cfg.tasks}
    failed = {t: 0 for t in cfg.tasks}
    inflight = {t: 0 for t in cfg.tasks}
    frames = 0
    t0 = time.perf_counter()

    def next_job():
        for t in cfg.tasks:
            want = cfg.episodes - succ[t] - inflight[t]
            if want > 0 and len(tried[t]) < max_att:
                s = next_seed[t]
                next_seed[t] += 1
                tried[t].append(s)
                inflight[t] += 1
                return t, s
        return None

    try:
        from tqdm import tqdm
        bar = tqdm(total=cfg.episodes * len(cfg.tasks), desc="demos" if not cfg.action_free else "video",
                   unit="ep", disable=not progress, file=sys.stderr)

        def handle(res):
            nonlocal frames
            task, seed, ep, ok, n = res
            inflight[task] -= 1
            frames += n
            if ok:
                succ[task] += 1
                bar.update(1)
            else:
                failed[task] += 1
            if ep is not None:
                store.append(ep, compression=compression)
            bar.set_postfix(fps=f"{frames / max(time.perf_counter() - t0, 1e-9):.0f}",
                            failed=sum(failed.values()))

        if cfg.workers == 1:
            while (job := next_job()) is not None:
                handle(_work(job[0], job[1], cfg))
        else:
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(cfg.workers, mp_context=ctx, initializer=_init_worker) as pool:
                futs = set()
                while True:
                    while len(futs) < 2 * cfg.workers and (job := next_job()) is not None:
                        futs.add(pool.submit(_work, job[0], job[1], cfg))
                    if not futs:
                        break
                    done, futs = wait(futs, return_when=FIRST_COMPLETED)
                    for f in done:
                        handle(f.result())
        bar.close()
    finally:
        store.record_seeds(tried)
        store.update_extra(failed=failed)
        n_eps = len(store)
        store.close()
    wall = time.perf_counter() - t0
    short = {t: cfg.episodes - succ[t] for t in cfg.tasks if succ[t] < cfg.episodes}
    return {"out": str(out), "episodes": n_eps, "successes": succ, "failed": failed,
            "short": short, "frames": frames, "wall_s": wall, "frames_per_s": frames / max(wall, 1e-9),
            "workers": cfg.workers, "image_size": list(cfg.image_size), "cameras": list(cfg.cameras),
            "seeds": {t: [min(v), max(v)] if v else [] for t, v in tried.items()}}


# -- CLI -----------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    from lara_policy.common.args import add_list_option
    p.description = (__doc__ or "").split("\n\n")[0] + (
        " Writes the LARA episode store (HDF5; schema in docs/episode_store.md).")
    add_list_option(p, "--tasks", default=["MT3"], metavar="TASK",
                    help="task names (with or without -v3) and/or suites MT3, MT10, MT50")
    p.add_argument("--episodes", type=positive_int, default=10, help="successful episodes per task")
    add_list_option(p, "--image-size", item_type=positive_int, default=[128], metavar="PX",
                    help="image size: one number (square) or H W")
    add_list_option(p, "--cameras", default=["corner4"], metavar="CAMERA",
                    help="cameras: corner4 (flipped upright), gripperPOV, corner, corner2, corner3, topview, "
                         "behindGripper")
    p.add_argument("--seed-start", type=int, default=DEFAULT_TRAIN_SEED_START,
                   help="first layout seed; seeds seed-start, seed-start+1, ... are used per task "
                        "(keep evaluation seeds, default 100000+, disjoint)")
    p.add_argument("--max-steps", type=int_in_range(1, 500), default=500, help="step budget per episode (Meta-World max 500)")
    p.add_argument("--post-success-steps", type=non_negative_int, default=5, help="steps recorded after the first success")
    p.add_argument("--no-fill", dest="fill", action="store_false",
                   help="do not replace failed expert episodes by new seeds")
    p.add_argument("--max-attempts", type=positive_int, default=None,
                   help="max seeds tried per task (default 2*episodes+5 with fill)")
    p.add_argument("--keep-failed", action="store_true", help="also store unsuccessful episodes (success=False)")
    p.add_argument("--action-free", action="store_true",
                   help="action-free video: drop actions, mark episodes source=video")
    p.add_argument("--distractors", default="none",
                   help="spurious visual change: none | low | medium | high | a strength in [0, 1] "
                        "(lighting, colour, camera jitter, moving objects; pixels only)")
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes (spawn)")
    p.add_argument("--compression", default="lzf", choices=["lzf", "gzip", "none"],
                   help="HDF5 compression of the images (lzf: fast; gzip: smaller, slower)")
    p.add_argument("--out", default=None, metavar="STORE.hdf5", help="the episode store to write (a file; parent "
                   "folders created); required unless --bench")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--bench", action="store_true",
                   help="benchmark: generate --episodes per task with 1 and 2 workers (temp stores), report "
                        "frames/s and the projected time for 1000 demos (--json FILE: the figures as JSON)")
    add_list_option(p, "--bench-workers", item_type=positive_int, default=[1, 2], metavar="N",
                    help="worker counts for --bench (e.g. 1 2 4)")
    p.add_argument("--json", metavar="FILE", help="also write the summary (with --bench: the figures) as JSON")


def _config_from_args(args) -> GenConfig:
    from lara_policy.sim.distractors import DistractorConfig
    from lara_policy.sim.metaworld_env import resolve_tasks
    size = args.image_size
    if len(size) == 1:
        size = [size[0], size[0]]
    if len(size) != 2:
        raise ValueError("--image-size takes one or two numbers")
    cams = tuple(args.cameras)
    return GenConfig(tasks=resolve_tasks(args.tasks), episodes=args.episodes, cameras=cams,
                     image_size=(int(size[0]), int(size[1])), seed_start=args.seed_start,
                     max_steps=args.max_steps, post_success_steps=args.post_success_steps,
                     fill=args.fill, max_attempts=args.max_attempts, action_free=args.action_free,
                     distractors=DistractorConfig.parse(args.distractors), workers=args.workers,
                     keep_failed=args.keep_failed, extra={"command": " ".join(getattr(args, "lara_argv", None)
                                                         or ["lara", "demos", *sys.argv[2:]])})


def bench(cfg: GenConfig, worker_counts=(1, 2), progress: bool = True, compression: str | None = "lzf") -> dict:
    """frames/s of demo generation per worker count (same compression as a real run);
    projection for 1000 demos. `cfg` is not changed."""
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for w in worker_counts:
            st = generate(replace(cfg, workers=w), Path(d) / f"bench_w{w}.hdf5", overwrite=True,
                          progress=progress, compression=compression)
            eps = sum(st["successes"].values())
            frames_per_ep = st["frames"] / max(eps + sum(st["failed"].values()), 1)
            sec_per_demo = st["wall_s"] / max(eps, 1)
            rows.append({"workers": w, "episodes": eps, "failed": sum(st["failed"].values()),
                         "frames": st["frames"], "wall_s": round(st["wall_s"], 2),
                         "frames_per_s": round(st["frames_per_s"], 1),
                         "frames_per_episode": round(frames_per_ep, 1),
                         "projected_1000_demos_min": round(1000 * sec_per_demo / 60, 1)})
    return {"tasks": cfg.tasks, "image_size": list(cfg.image_size), "cameras": list(cfg.cameras),
            "episodes_per_task": cfg.episodes, "compression": compression or "none", "rows": rows,
            "note": "wall time includes worker start-up and HDF5 writing; CPU shared with other jobs"}


def run(args: argparse.Namespace) -> int:
    from lara_policy.common.args import write_json
    try:
        cfg = _config_from_args(args)
    except (ValueError, TypeError) as exc:
        print(f"lara demos: {exc}", file=sys.stderr)
        return 2
    if args.compression == "none":
        args.compression = None
    if args.bench:
        res = bench(cfg, args.bench_workers, progress=not args.quiet, compression=args.compression)
        print(f"demo generation benchmark: {len(cfg.tasks)} tasks x {cfg.episodes} episodes, "
              f"{cfg.image_size[0]}x{cfg.image_size[1]} px, cameras {','.join(cfg.cameras)}")
        print(f"{'workers':>8} {'episodes':>8} {'frames':>7} {'wall_s':>7} {'frames/s':>9} {'1000 demos (min)':>17}")
        for r in res["rows"]:
            print(f"{r['workers']:>8} {r['episodes']:>8} {r['frames']:>7} {r['wall_s']:>7} "
                  f"{r['frames_per_s']:>9} {r['projected_1000_demos_min']:>17}")
        json_path = args.json
        if args.out and not json_path:   # the old spelling: --bench --out FILE.json
            print("lara demos: --bench --out FILE is deprecated; use --bench --json FILE", file=sys.stderr)
            json_path = args.out
        if json_path:
            write_json(json_path, res)
            print(f"wrote {json_path}")
        return 0
    if not args.out:
        print("lara demos: --out is required (the episode store to write)", file=sys.stderr)
        return 2
    existed = Path(args.out).exists()
    try:
        st = generate(cfg, args.out, overwrite=args.overwrite, progress=not args.quiet,
                      compression=args.compression)
    except Exception as exc:  # StoreError, bad camera, ...
        if not existed and Path(args.out).exists():
            Path(args.out).unlink()   # no half-written store left behind (it would block the next run)
        print(f"lara demos: {exc}", file=sys.stderr)
        return 2
    if args.json:
        write_json(args.json, st)
    kind = "action-free video episodes" if cfg.action_free else "expert demonstrations"
    print(f"wrote {st['episodes']} {kind} to {st['out']} in {st['wall_s']:.1f} s "
          f"({st['frames']} frames, {st['frames_per_s']:.0f} frames/s, {cfg.workers} worker(s))")
    print(f"failed expert episodes (discarded): {sum(st['failed'].values())} "
          + json.dumps({t: n for t, n in st['failed'].items() if n}))
    for t, lo_hi in st["seeds"].items():
        print(f"  {t}: {st['successes'][t]} episodes, seeds {lo_hi[0]}..{lo_hi[1]}")
    if st["short"]:
        print(f"WARNING: fewer successful episodes than asked for: {st['short']} "
              f"(raise --max-attempts)", file=sys.stderr)
        return 1
    return 0
