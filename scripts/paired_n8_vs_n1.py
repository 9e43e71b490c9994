#!/usr/bin/env python3
"""Closed-loop N=8 (dynamics check) vs N=1 on the same held-out layouts, paired per episode.

    python scripts/paired_n8_vs_n1.py --pair CKPT_NAME N1_DIR[,N1_DIR...] N8_DIR [--pair ...]

Each *_DIR is a `lara eval sim --out` folder (results.json). Episodes are matched by (task, seed)
across N=1 and N=8 of the same checkpoint. Prints per checkpoint and pooled: success N=1 / N=8,
the discordant pairs (only N=1 succeeded / only N=8), and the mean difference N8 - N1 with a 95%
bootstrap interval over checkpoints and layouts (hierarchical: checkpoints, then layouts)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def episodes(dirs: str) -> dict:
    out = {}
    for d in dirs.split(","):
        for e in json.loads((Path(d) / "results.json").read_text())["episodes"]:
            out[(e["task"], int(e["seed"]))] = bool(e["success"])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", nargs=3, action="append", required=True, metavar=("NAME", "N1_DIRS", "N8_DIRS"),
                   help="checkpoint name, N=1 result folder(s) (comma-separated), N=8 result folder(s)")
    p.add_argument("--reps", type=int, default=10000, help="bootstrap resamples")
    p.add_argument("--json", default="", help="write the figures as JSON")
    a = p.parse_args()
    rng = np.random.default_rng(0)
    diffs, rows = [], []
    for name, d1, d8 in a.pair:
        e1, e8 = episodes(d1), episodes(d8)
        keys = sorted(set(e1) & set(e8))
        if not keys:
            raise SystemExit(f"{name}: no layout in common between {d1} and {d8}")
        x1 = np.array([e1[k] for k in keys], float)
        x8 = np.array([e8[k] for k in keys], float)
        diffs.append(x8 - x1)
        rows.append({"checkpoint": name, "layouts": len(keys), "n1": x1.mean(), "n8": x8.mean(),
                     "only_n1": int(((x1 == 1) & (x8 == 0)).sum()), "only_n8": int(((x8 == 1) & (x1 == 0)).sum())})
    boot = []
    for _ in range(a.reps):
        picks = rng.integers(0, len(diffs), len(diffs))
        boot.append(np.mean([diffs[i][rng.integers(0, len(diffs[i]), len(diffs[i]))].mean() for i in picks]))
    pooled = float(np.mean([d.mean() for d in diffs]))
    lo, hi = np.percentile(boot, [2.5, 97.5])
    print("| checkpoint | layouts | N=1 | N=8 | only N=1 succeeded / only N=8 |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['checkpoint']} | {r['layouts']} | {r['n1']:.3f} | {r['n8']:.3f} | {r['only_n1']} / {r['only_n8']} |")
    print(f"\nN=8 - N=1, mean over checkpoints: {pooled:+.3f} (95% bootstrap interval {lo:+.3f} .. {hi:+.3f}, "
          f"over checkpoints and layouts)")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "diff": pooled, "ci95": [float(lo), float(hi)]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
