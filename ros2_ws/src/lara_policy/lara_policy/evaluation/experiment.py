"""Run a grid of training + held-out evaluation runs from one YAML spec, resumably, and aggregate.

A spec (see experiments/*.yaml) names the shared data, the `lara train` and `lara eval sim`
arguments every run shares, the grid axes (every combination is one run) and per-value
overrides. Each run trains into OUT/runs/<run>/train, is evaluated into OUT/runs/<run>/eval,
and its record goes into OUT/summary.json; a re-run skips finished runs and resumes
interrupted training from its last checkpoint, so a grid can span several sittings.

    name: mt3_main                       # results/<name>/ unless `out` is given
    demos:                               # `lara demos` calls, run only when their --out is missing
      - {tasks: reach-v3, episodes: 8, seed_start: 0, out: data/x_train.hdf5}
    shared:                              # runs trained once and referenced as "@name" (a checkpoint)
      lam_video: {paradigm: lam-pretrain, data: [data/x_train.hdf5], steps: 1500}
    train: {paradigm: pretrain, data: [data/x_train.hdf5], steps: 3000}
    eval: {tasks: MT3, episodes: 30, seed_start: 100000, max_steps: 300, execute_k: 8}
    grid: {variant: [dit_only, frozen_lam, lara], seed: [0, 1, 2]}
    overrides: {"variant=frozen_lam": {lam: "@lam_video"}}    # train args for runs with that value
    baseline: "variant=dit_only"         # paired differences against the runs with this value
                                         # (or a list: one set of differences per axis=value)

Grid axes are `lara train` options (w_lara, align_block, ...) or `lara eval sim` options
prefixed `eval.` (eval.num_candidates). Argument names are the CLI's with `_` for `-`.

Optional `lara probe` steps on the trained checkpoints (each written once, skipped when its JSON
exists; runs that differ only in `eval.` axes share them):

    probes:                              # name -> `lara probe` arguments (no --lam / --json)
      action: {data: [data/held_out.hdf5]}
      invariance: {invariance: true, data: [data/clean.hdf5], distractor_data: [data/distracted.hdf5]}
    probe_shared: [lam_video]            # also probe these `shared` checkpoints

Each run's train/final is probed into OUT/runs/<run>/probe_<name>.json (its record's `probes`;
runs without a LAM, variant dit_only, are not probed),
each listed shared checkpoint into OUT/shared/<name>/probe_<probe>.json (summary's `shared_probes`).
"""
from __future__ import annotations

import argparse
import itertools
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lara_policy.common.errors import LaraError
from lara_policy.common.fileio import write_atomic, write_json
from lara_policy.evaluation import provenance

SPEC_KEYS = {"name", "out", "demos", "shared", "train", "eval", "grid", "overrides", "baseline", "eval_workers",
             "description", "probes", "probe_shared"}


class ExperimentError(LaraError, ValueError):
    """A spec that cannot run: the message names the key."""


@dataclass
class Run:
    name: str
    axes: dict
    train: dict
    eval: dict = field(default_factory=dict)

    def dirs(self, out: Path) -> tuple[Path, Path]:
        """(training dir, evaluation dir): runs that differ only in `eval.` axes share one training."""
        train_axes = {k: v for k, v in self.axes.items() if not k.startswith("eval.")}
        eval_axes = {k: v for k, v in self.axes.items() if k.startswith("eval.")}
        base = out / "runs" / (run_name(train_axes) or "run")
        return base / "train", base / ("eval__" + run_name(eval_axes) if eval_axes else "eval")


# ----------------------------------------------------------------------------------------
# Spec


def load_spec(path: str | Path) -> dict:
    import yaml
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ExperimentError(f"{path}: no such spec file") from None
    except yaml.YAMLError as exc:
        raise ExperimentError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(spec, dict):
        raise ExperimentError(f"{path}: a spec is a mapping (name, train, eval, grid, ...)")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ExperimentError(f"{path}: unknown keys {sorted(unknown)} (known: {sorted(SPEC_KEYS)})")
    for key in ("name", "train", "eval", "grid"):
        if key not in spec:
            raise ExperimentError(f"{path}: missing '{key}'")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(spec["name"])):
        raise ExperimentError(f"{path}: name '{spec['name']}' must be a plain folder name")
    grid = spec["grid"]
    if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) and v for v in grid.values()):
        raise ExperimentError(f"{path}: 'grid' maps each axis to a non-empty list of values")
    for key in spec.get("overrides") or {}:
        axis, _, value = key.partition("=")
        if axis not in grid or value not in [str(v) for v in grid[axis]]:
            raise ExperimentError(f"{path}: override '{key}' names no grid value (axis=value)")
    for base in baselines(spec):
        axis, _, value = base.partition("=")
        if axis not in grid or value not in [str(v) for v in grid[axis]]:
            raise ExperimentError(f"{path}: baseline '{base}' names no grid value (axis=value)")
    probes = spec.get("probes") or {}
    if not isinstance(probes, dict) or not all(isinstance(v, dict) and re.fullmatch(r"[A-Za-z0-9_.-]+", str(k))
                                               for k, v in probes.items()):
        raise ExperimentError(f"{path}: 'probes' maps a plain name to the `lara probe` arguments of one probe")
    for k, v in probes.items():
        if {"lam", "json", "out"} & set(v):
            raise ExperimentError(f"{path}: probes.{k}: 'lam' and 'json' are set by the runner (the checkpoint, "
                                  "the run's probe_<name>.json)")
    for name in spec.get("probe_shared") or []:
        if name not in (spec.get("shared") or {}):
            raise ExperimentError(f"{path}: probe_shared '{name}' names no entry of 'shared'")
    if spec.get("probe_shared") and not probes:
        raise ExperimentError(f"{path}: 'probe_shared' needs 'probes'")
    spec["_dir"] = str(path.resolve().parent)
    return spec


def baselines(spec: dict) -> list[str]:
    """The spec's `baseline`, one "axis=value" or a list of them, as a list."""
    base = spec.get("baseline")
    return [] if base is None else [str(b) for b in (base if isinstance(base, list) else [base])]


def run_name(axes: dict) -> str:
    return "__".join(f"{k.replace('eval.', 'e.')}-{v}" for k, v in axes.items())


def expand(spec: dict) -> list[Run]:
    axes_names = list(spec["grid"])
    runs = []
    for values in itertools.product(*(spec["grid"][a] for a in axes_names)):
        axes = dict(zip(axes_names, values))
        train, ev = dict(spec["train"]), dict(spec["eval"])
        for axis, value in axes.items():
            for key, val in ((spec.get("overrides") or {}).get(f"{axis}={value}") or {}).items():
                (ev if key.startswith("eval.") else train)[key.removeprefix("eval.")] = val
        for axis, value in axes.items():
            if axis.startswith("eval."):
                ev[axis.removeprefix("eval.")] = value
            else:
                train[axis] = value
        runs.append(Run(run_name(axes), axes, train, ev))
    return runs


def to_argv(args: dict) -> list[str]:
    """{'w_lara': 0.1, 'data': [a, b], 'quiet': True} -> ['--w-lara', '0.1', '--data', a, b, '--quiet']
    (a list becomes space-separated values, the `lara` list syntax; an empty list or False/None: no flag)"""
    argv = []
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False or value is None or (isinstance(value, list) and not value):
            continue
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


# ----------------------------------------------------------------------------------------
# Running


LARA_CMD = [sys.executable, "-m", "lara_policy.cli"]
WALL_FLUSH_S = 30.0


def _lara(argv: list[str], log: Path, wall: Path | None = None) -> None:
    """Run one `lara` command in a child process (its own torch threads, no state leaks), output
    appended to `log`; a failure raises with the log's tail. With `wall` (a run's folder) the
    child's wall time is added to wall/wall_s.json every WALL_FLUSH_S while it runs, so a sitting
    killed part-way still counts the time it spent."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"$ lara {' '.join(argv)}\n")
        f.flush()
        with subprocess.Popen([*LARA_CMD, *argv], stdout=f, stderr=subprocess.STDOUT) as proc:
            last, rc = time.perf_counter(), None
            while rc is None:
                try:
                    rc = proc.wait(timeout=WALL_FLUSH_S)
                except subprocess.TimeoutExpired:
                    pass
                except BaseException:      # Ctrl-C / SIGTERM of the runner: the child goes too
                    proc.kill()
                    raise
                now = time.perf_counter()
                if wall is not None:
                    _add_wall(wall, now - last)
                last = now
    if rc != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise ExperimentError(f"`lara {argv[0]}` failed (exit {rc}); log {log}:\n{tail}")


def _resolve_refs(args: dict, shared_dirs: dict) -> dict:
    out = {}
    for key, value in args.items():
        if isinstance(value, str) and value.startswith("@"):
            if value[1:] not in shared_dirs:
                raise ExperimentError(f"'{key}: {value}' names no entry of 'shared'")
            value = str(shared_dirs[value[1:]] / "final")
        out[key] = value
    return out


def train_run(args: dict, out: Path, log: Path, say) -> None:
    """Train into `out` unless its final checkpoint exists; resume from the last checkpoint. The
    wall time of every sitting adds up in out/wall_s.json."""
    if (out / "final" / "config.json").exists():
        return
    argv = ["train", *to_argv({**args, "out": str(out), "quiet": True})]
    provenance.write(out, args)
    latest = out / "checkpoints" / "latest.json"
    if latest.exists():
        say(f"resuming from {json.loads(latest.read_text())['path']}")
        argv.append("--resume")
    _lara(argv, log, wall=out)


def probe_path(base: Path, name: str) -> Path:
    return base / f"probe_{name}.json"


def probe_argv(args: dict, checkpoint: Path, json_path: Path) -> list[str]:
    return ["probe", *to_argv({**args, "lam": str(checkpoint), "json": str(json_path)})]


def has_lam(checkpoint: Path) -> bool:
    """Whether a checkpoint carries a LAM to probe (a dit_only VLA does not)."""
    from lara_policy.core.configuration import ModelConfig
    return ModelConfig.from_dict(json.loads((checkpoint / "config.json").read_text())["model"]).has_lam


def run_probes(spec: dict, checkpoint: Path, base: Path, log: Path, say) -> dict:
    """The spec's probes on `checkpoint`, each into base/probe_<name>.json unless it exists;
    nothing for a checkpoint without a LAM."""
    if not has_lam(checkpoint):
        return {}
    for name, args in (spec.get("probes") or {}).items():
        path = probe_path(base, name)
        if not path.exists():
            say(f"probe {name}")
            _lara(probe_argv(args, checkpoint, path), log)
    return read_probes(spec, base)


def read_probes(spec: dict, base: Path) -> dict:
    return {name: json.loads(probe_path(base, name).read_text()) for name in (spec.get("probes") or {})
            if probe_path(base, name).exists()}


def _wall(d: Path) -> float:
    p = d / "wall_s.json"
    return float(json.loads(p.read_text())["wall_s"]) if p.exists() else 0.0


def _add_wall(d: Path, seconds: float) -> None:
    d.mkdir(parents=True, exist_ok=True)
    write_json(d / "wall_s.json", {"wall_s": _wall(d) + seconds})


def run_experiment(spec: dict, out: Path | None = None, only: str = "", workers: int | None = None,
                   dry_run: bool = False, say=print) -> list[dict]:
    """Train, evaluate and probe every run of `spec` (matching `only`) that has not finished;
    returns the records of all finished runs (empty when this sitting ran nothing)."""
    out = Path(out or spec.get("out") or Path("results") / spec["name"])
    runs = expand(spec)
    if only:
        runs = [r for r in runs if re.search(only, r.name)]
    shared_dirs = {name: out / "shared" / name for name in (spec.get("shared") or {})}
    if dry_run:
        for name in shared_dirs:
            say(f"shared {name}: lara train {' '.join(to_argv(spec['shared'][name]))} --out {shared_dirs[name]}")
        for r in runs:
            say(f"{r.name}: lara train {' '.join(to_argv(_resolve_refs(r.train, shared_dirs)))}")
        for name in spec.get("probe_shared") or []:
            for p, args in spec["probes"].items():
                say(f"shared {name}: lara {' '.join(probe_argv(args, shared_dirs[name] / 'final', probe_path(shared_dirs[name], p)))}")
        for p, args in (spec.get("probes") or {}).items():
            say(f"every run with a LAM: lara {' '.join(probe_argv(args, Path('runs/<run>/train/final'), Path(f'runs/<run>/probe_{p}.json')))}")
        return []
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "spec.json", {k: v for k, v in spec.items() if k != "_dir"})
    for i, d in enumerate(spec.get("demos") or []):
        if "out" not in d:
            raise ExperimentError(f"demos[{i}] needs 'out'")
        if not Path(d["out"]).exists():
            say(f"demos[{i}]: generating {d['out']}")
            _lara(["demos", *to_argv(d)], out / "logs" / f"demos_{i}.log")
    for name, args in (spec.get("shared") or {}).items():
        say(f"shared {name}: training" if not (shared_dirs[name] / "final").exists() else f"shared {name}: done")
        train_run(_resolve_refs(args, shared_dirs), shared_dirs[name], out / "logs" / f"shared_{name}.log", say)
        if name in (spec.get("probe_shared") or []):
            run_probes(spec, shared_dirs[name] / "final", shared_dirs[name], out / "logs" / f"shared_{name}.log",
                       lambda m: say(f"shared {name}: {m}"))
    records = []
    for k, r in enumerate(runs, 1):
        train_dir, eval_dir = r.dirs(out)
        prefix = f"[{k}/{len(runs)}] {r.name}"
        if not (eval_dir / "results.json").exists():
            train_args = _resolve_refs(r.train, shared_dirs)
            if not (train_dir / "final" / "config.json").exists():
                say(f"{prefix}: training")
            train_run(train_args, train_dir, train_dir.parent / "train.log", lambda m: say(f"{prefix}: {m}"))
            say(f"{prefix}: evaluating")
            ev = {**r.eval, "policy": str(train_dir / "final"), "out": str(eval_dir),
                  "train_store": list(train_args.get("data") or []), "quiet": True,
                  "workers": workers or spec.get("eval_workers") or r.eval.get("workers") or 1}
            ev.setdefault("videos", 0)
            _lara(["eval", "sim", *to_argv(ev)], eval_dir.parent / f"{eval_dir.name}.log", wall=eval_dir)
        else:
            say(f"{prefix}: done (skipped)")
        if spec.get("probes"):
            run_probes(spec, train_dir / "final", train_dir.parent, train_dir.parent / "probe.log",
                       lambda m: say(f"{prefix}: {m}"))
        # every finished run of the spec, not only this sitting's `--only` subset: two runner
        # processes filling two cores each leave a complete summary
        records = finished_records(spec, out)
        write_summary(spec, out, records)
    return records


def finished_records(spec: dict, out: Path) -> list[dict]:
    """The records of every run of the spec whose evaluation has finished, in grid order."""
    return [run_record(r, out, spec) for r in expand(spec) if (r.dirs(out)[1] / "results.json").exists()]


def run_record(r: Run, out: Path, spec: dict | None = None) -> dict:
    train_dir, eval_dir = r.dirs(out)
    res = json.loads((eval_dir / "results.json").read_text())
    cfg = json.loads((train_dir / "train_config.json").read_text())
    return {"run": r.name, "variant": cfg["variant"], "seed": cfg["seed"], "axes": r.axes,
            "mean_success": res["mean_success"],
            "per_task": {t: {"success_rate": v["success_rate"], "successes": v["successes"], "episodes": v["episodes"]}
                         for t, v in res["per_task"].items()},
            "episodes": [[e["task"], e["seed"], bool(e["success"])] for e in res["episodes"]],
            "steps": cfg["steps"], "train_wall_s": round(_wall(train_dir), 1),
            "eval_wall_s": round(_wall(eval_dir), 1), "checkpoint_id": res["policy"].get("model_id", ""),
            "trained_on": provenance.fingerprint(provenance.read(train_dir)),
            "checkpoint": str(train_dir / "final"), "eval": res["config"],
            **({"probes": read_probes(spec, train_dir.parent)} if spec and spec.get("probes") else {})}


# ----------------------------------------------------------------------------------------
# Aggregation


def success_matrix(records: list[dict]) -> tuple[np.ndarray, list]:
    """(runs, layouts) 0/1 over the layouts (task, eval seed) every run shares, in one order."""
    common = None
    for rec in records:
        keys = {(t, s) for t, s, _ in rec["episodes"]}
        common = keys if common is None else common & keys
    layouts = sorted(common or [])
    rows = []
    for rec in records:
        by = {(t, s): ok for t, s, ok in rec["episodes"]}
        rows.append([float(by[key]) for key in layouts])
    return np.asarray(rows, dtype=float).reshape(len(records), len(layouts)), layouts


def hierarchical_bootstrap(matrix: np.ndarray, reps: int = 5000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a (training seeds, layouts) matrix and its 95% interval, resampling training seeds
    and layouts (the two sources of variance) independently with replacement."""
    rng = np.random.default_rng(seed)
    n_s, n_l = matrix.shape
    if n_s == 0 or n_l == 0:
        return float("nan"), float("nan"), float("nan")
    si = rng.integers(0, n_s, (reps, n_s))
    li = rng.integers(0, n_l, (reps, n_l))
    means = np.array([matrix[si[b]][:, li[b]].mean() for b in range(reps)])
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(matrix.mean()), float(lo), float(hi)


def group_key(rec: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in rec["axes"].items() if k != "seed") or "all"


def aggregate(spec: dict, records: list[dict]) -> dict:
    groups: dict[str, list[dict]] = {}
    for rec in records:
        groups.setdefault(group_key(rec), []).append(rec)
    table = {}
    for name, recs in groups.items():
        m, layouts = success_matrix(recs)
        mean, lo, hi = hierarchical_bootstrap(m)
        tasks = sorted({t for rec in recs for t in rec["per_task"]})
        table[name] = {"runs": len(recs), "seeds": [r["seed"] for r in recs], "layouts": len(layouts),
                       "mean": mean, "ci95": [lo, hi], "per_seed": [float(x) for x in m.mean(1)],
                       "per_task": {t: float(np.mean([r["per_task"][t]["success_rate"] for r in recs
                                                      if t in r["per_task"]])) for t in tasks},
                       "train_wall_s": float(sum(r["train_wall_s"] for r in recs))}
    diffs = {}
    for base in baselines(spec):
        axis, _, value = base.partition("=")
        for name, recs in groups.items():
            other = {k: v for k, v in recs[0]["axes"].items() if k not in ("seed", axis)}
            if str(recs[0]["axes"].get(axis)) == value:
                continue
            base_recs = [r for r in records if str(r["axes"].get(axis)) == value
                         and {k: v for k, v in r["axes"].items() if k not in ("seed", axis)} == other]
            by_seed = {r["seed"]: r for r in base_recs}
            pairs = [(r, by_seed[r["seed"]]) for r in recs if r["seed"] in by_seed]
            if not pairs:
                continue
            m, _ = success_matrix([p for pair in pairs for p in pair])
            d = m[0::2] - m[1::2]                     # paired by training seed and by layout
            mean, lo, hi = hierarchical_bootstrap(d)
            diffs[f"{name} - {base}"] = {"pairs": len(pairs), "mean": mean, "ci95": [lo, hi],
                                         "per_seed": [float(x) for x in d.mean(1)],
                                         "mixed_seeds": provenance.mixed_seeds(pairs)}
    return {"groups": table, "paired_differences": diffs,
            "ci_method": "hierarchical bootstrap over training seeds and evaluation layouts, 5000 resamples, 95%"}


def write_summary(spec: dict, out: Path, records: list[dict]) -> dict:
    agg = aggregate(spec, records)
    summary = {"experiment": spec["name"], "runs": records, **agg}
    if spec.get("probe_shared"):
        summary["shared_probes"] = {name: read_probes(spec, out / "shared" / name) for name in spec["probe_shared"]}
    write_json(out / "summary.json", summary)
    write_atomic(out / "results.md", markdown(spec, summary))
    try:
        plot(summary, out / "success.png")
    except Exception as exc:          # a plot is a convenience; the numbers are in summary.json
        print(f"lara experiment: plot skipped ({exc})", file=sys.stderr)
    return summary


def markdown(spec: dict, summary: dict) -> str:
    groups = summary["groups"]
    tasks = sorted({t for g in groups.values() for t in g["per_task"]})
    lines = [f"# Experiment {spec['name']}", "", spec.get("description", "").strip(), "",
             f"Success on held-out layouts; 95% intervals: {summary['ci_method']}.", "",
             "| group | runs (seeds) | mean success | 95% CI | per seed | " + " | ".join(tasks) + " |",
             "|---|---|---:|---|---|" + "---:|" * len(tasks)]
    for name, g in groups.items():
        lines.append(f"| {name} | {g['runs']} ({', '.join(map(str, g['seeds']))}) | {g['mean']:.3f} | "
                     f"{g['ci95'][0]:.3f}-{g['ci95'][1]:.3f} | {', '.join(f'{x:.2f}' for x in g['per_seed'])} | "
                     + " | ".join(f"{g['per_task'].get(t, float('nan')):.2f}" for t in tasks) + " |")
    if summary["paired_differences"]:
        lines += ["", "| paired difference | pairs | mean | 95% CI | per seed |", "|---|---:|---:|---|---|"]
        for name, d in summary["paired_differences"].items():
            lines.append(f"| {name} | {d['pairs']} | {d['mean']:+.3f} | {d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f} | "
                         f"{', '.join(f'{x:+.2f}' for x in d['per_seed'])} |")
        lines += provenance.mixed_note(summary["paired_differences"])
    lines += ["", "| run | checkpoint id | steps | train wall s | eval wall s | mean success | trained on |",
              "|---|---|---:|---:|---:|---:|---|"]
    for r in summary["runs"]:
        lines.append(f"| {r['run']} | {r['checkpoint_id']} | {r['steps']} | {r['train_wall_s']:.0f} | "
                     f"{r['eval_wall_s']:.0f} | {r['mean_success']:.3f} | {r.get('trained_on') or '?'} |")
    rows = list(probe_results(summary))
    if rows:
        lines += probe_group_table(rows)
        lines += ["", "| checkpoint | probe | figures (the whole result: probe_<name>.json) |", "|---|---|---|"]
        lines += [f"| {name} | {p} | {probe_figures(r)} |" for name, _, p, r in rows]
    return "\n".join(lines) + "\n"


def probe_results(summary: dict):
    """(checkpoint, group, probe, result) for every probe result of a summary: the shared
    checkpoints first (their own group), then every run (grouped by all axes but the seed)."""
    for name, probes in (summary.get("shared_probes") or {}).items():
        for p, r in probes.items():
            yield name, f"shared {name}", p, r
    for run in summary["runs"]:
        for p, r in (run.get("probes") or {}).items():
            yield run["run"], group_key(run), p, r


def probe_kind(r: dict) -> str:
    """Which `lara probe` mode wrote a result: invariance | action | alignment | other."""
    if "overall" in r and "ratio" in r["overall"]:
        return "invariance"
    return "action" if "r2" in r else "alignment" if "l_lara" in r else "other"


def probe_headline(r: dict) -> tuple[str, float] | None:
    """(what, value) of one probe result: invariance ratio, action-probe R^2 or L_LARA."""
    kind = probe_kind(r)
    if kind == "invariance":
        return "invariance ratio (lower: more invariant)", float(r["overall"]["ratio"])
    if kind == "action":
        return "R^2", float(r["r2"])
    if kind == "alignment":
        return "L_LARA", float(r["l_lara"])
    return None


def probe_group_table(rows: list[tuple[str, str, str, dict]]) -> list[str]:
    """One row per group of probe_results, one column per probe: its headline figure (the
    mean over the group's seeds, then the per-seed values)."""
    names = list(dict.fromkeys(p for _, _, p, _ in rows))
    cells: dict[str, dict[str, list[float]]] = {}
    whats: dict[str, str] = {}
    for _, group, p, r in rows:
        if (h := probe_headline(r)) is not None:
            whats[p] = h[0]
            cells.setdefault(group, {}).setdefault(p, []).append(h[1])
    lines = ["", "LAM probes, headline figure per probe (" + "; ".join(f"{p}: {whats.get(p, '?')}" for p in names)
             + "); groups: mean over seeds [per seed]:", "",
             "| checkpoint / group | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for row, per in cells.items():
        vals = [per.get(p) for p in names]
        lines.append(f"| {row} | " + " | ".join(
            "" if not v else (f"{v[0]:.3f}" if len(v) == 1 else
                              f"{np.mean(v):.3f} [{', '.join(f'{x:.3f}' for x in v)}]") for v in vals) + " |")
    return lines


def probe_figures(r: dict) -> str:
    """The headline figures of one `lara probe` result, whatever its mode."""
    kind = probe_kind(r)
    if kind == "invariance":
        o = r["overall"]
        return (f"invariance ratio {o['ratio']:.3f} (L2 {o['ratio_l2']:.3f}); codes identical "
                f"{o['codes_identical_same']:.3f} vs {o['codes_identical_different']:.3f} different; "
                f"{r['steps']} transitions")
    if kind == "action":
        return (f"R^2 {r['r2']:.3f} ({r['kind']}{', z_q' if r.get('quantized') else ''}; shuffled "
                f"{r['r2_shuffled_control']:.3f}); latent dims {r['latent_dims']:.2f}; {r['test_samples']} test")
    if kind == "alignment":
        return (f"L_LARA {r['l_lara']:.4f} (shuffled {r['l_lara_shuffled_targets']:.4f}, constant "
                f"{r['l_lara_constant']:.4f})")
    return "see the JSON"


def plot(summary: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups = summary["groups"]
    names = list(groups)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(names), 3.6))
    for i, name in enumerate(names):
        g = groups[name]
        ax.bar(i, g["mean"], color="#8fb3d9", width=0.6)
        ax.errorbar(i, g["mean"], yerr=[[g["mean"] - g["ci95"][0]], [g["ci95"][1] - g["mean"]]], color="k",
                    capsize=5)
        ax.scatter(np.full(len(g["per_seed"]), i) + np.linspace(-0.15, 0.15, len(g["per_seed"])), g["per_seed"],
                   color="#1f4e79", zorder=3, s=14)
    ax.set_xticks(range(len(names)), [n.replace(",", "\n") for n in names], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out success")
    ax.set_title(f"{summary['experiment']}: mean, 95% CI, per-seed points", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------
# CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (__doc__ or "").split("\n\n")[0]
    p.epilog = "Outputs in OUT (default results/<name>): summary.json, results.md, success.png, runs/<run>/."
    p.add_argument("spec", help="experiment spec (YAML); see experiments/ and docs/RESULTS.md")
    p.add_argument("--out", default="", help="results directory (default: the spec's 'out' or results/<name>)")
    p.add_argument("--only", default="", help="regular expression: run only the runs whose name matches")
    from lara_policy.common.errors import positive_int
    p.add_argument("--workers", type=positive_int, default=None,
                   help="evaluation worker processes (default: spec's eval_workers or 1)")
    p.add_argument("--dry-run", action="store_true", help="print the runs and their train commands; run nothing")
    p.add_argument("--report", action="store_true", help="only re-aggregate finished runs into summary/results/plot")


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    say = (lambda m: print(f"lara experiment: {m}", file=sys.stderr, flush=True))
    if args.report:
        out = Path(args.out or spec.get("out") or Path("results") / spec["name"])
        records = finished_records(spec, out)
        if not records:
            raise ExperimentError(f"{out}: no finished runs to report")
        write_summary(spec, out, records)
        print(out / "results.md")
        return 0
    records = run_experiment(spec, Path(args.out) if args.out else None, args.only, args.workers, args.dry_run, say)
    if records:
        print(Path(args.out or spec.get("out") or Path("results") / spec["name"]) / "results.md")
    return 0

