#!/usr/bin/env python
"""Issue 26: the alignment's strength along training, from the lara_strength grid's metrics.

For every run with a `grad_ratio_lara_act` column (||w_LARA grad L_LARA|| / ||grad L_ACT|| on the
VLA weights both reach) prints a markdown table of the ratio and of L_LARA at a few steps (mean
over the seeds run so far) and draws results/lara_strength/grad_ratio.png (ratio and L_LARA vs
step, one line per arm, log scale).

    python scripts/strength_report.py [results/lara_strength]
"""
from __future__ import annotations

import argparse
import csv
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

STEPS = (100, 300, 1000, 2000)


runs_by_path: dict[Path, dict[int, tuple[float, float]]] = {}   # metrics.csv -> its rows (read_runs)


def read_runs(root: Path) -> dict[str, list[dict[int, tuple[float, float]]]]:
    """arm -> per seed {step: (grad ratio, L_LARA)} over the logged steps."""
    arms: dict[str, list[dict[int, tuple[float, float]]]] = defaultdict(list)
    for csv_path in sorted(root.glob("runs/*/train/metrics.csv")):
        m = re.match(r"seed-(\d+)__name-(.+)", csv_path.parts[-3])
        if not m:
            continue
        rows = {}
        with open(csv_path) as f:
            for r in csv.DictReader(f):
                if r.get("grad_ratio_lara_act"):
                    rows[int(r["step"])] = (float(r["grad_ratio_lara_act"]), float(r["loss_lara"] or "nan"))
        if rows:
            arms[m.group(2)].append(rows)
            runs_by_path[csv_path] = rows
    return arms


def nearest(rows: dict[int, tuple[float, float]], step: int) -> tuple[float, float]:
    k = min(rows, key=lambda s: abs(s - step))
    return rows[k] if abs(k - step) <= 100 else (float("nan"), float("nan"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", nargs="?", default="results/lara_strength")
    args = p.parse_args()
    root = Path(args.root)
    arms = read_runs(root)
    if not arms:
        print(f"no runs with grad_ratio_lara_act under {root}/runs")
        return 1
    head = "| arm | seeds | " + " | ".join(f"ratio @{s}" for s in STEPS) + " | " + \
        " | ".join(f"L_LARA @{s}" for s in STEPS) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(STEPS))]
    for arm in sorted(arms):
        vals = np.array([[nearest(rows, s) for s in STEPS] for rows in arms[arm]])   # (seeds, steps, 2)
        mean = np.nanmean(vals, axis=0)
        lines.append(f"| {arm} | {len(arms[arm])} | " + " | ".join(f"{v:.4f}" for v in mean[:, 0]) + " | "
                     + " | ".join(f"{v:.4f}" for v in mean[:, 1]) + " |")
    print("\n".join(lines))
    # per run: does the pull the alignment keeps up go with the run's success?
    lines = ["", "| run | ratio, mean over steps 1000-2000 | L_LARA @2000 | success |", "|---|---:|---:|---:|"]
    for run, rows in sorted(runs_by_path.items()):
        late = [v[0] for k, v in rows.items() if 1000 <= k <= 2000]
        res = run.parent.parent / "eval" / "results.json"
        success = f"{json.loads(res.read_text())['mean_success']:.2f}" if res.exists() else ""
        lines.append(f"| {run.parts[-3]} | {np.mean(late):.3f} | {nearest(rows, 2000)[1]:.4f} | {success} |")
    print("\n".join(lines))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for arm in sorted(arms):
        for i, rows in enumerate(arms[arm]):
            steps = sorted(rows)
            kw = {"label": arm} if i == 0 else {}
            color = f"C{sorted(arms).index(arm)}"
            a1.plot(steps, [rows[s][0] for s in steps], color=color, alpha=0.8, **kw)
            a2.plot(steps, [rows[s][1] for s in steps], color=color, alpha=0.8, **kw)
    a1.set(yscale="log", xlabel="step", ylabel="||w grad L_LARA|| / ||grad L_ACT|| (VLA)",
           title="the alignment's pull on the VLA")
    a2.set(yscale="log", xlabel="step", ylabel="L_LARA (unweighted)", title="alignment loss")
    a1.legend(fontsize=8)
    fig.tight_layout()
    out = root / "grad_ratio.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
