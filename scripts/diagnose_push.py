#!/usr/bin/env python3
"""The cheap diagnostics of docs/model.md "Why push failed": one checkpoint on one task under
several execution settings, on held-out layouts and on its own training layouts (overfitting).
Resumable: settings whose results file exists are skipped.

    python scripts/diagnose_push.py --policy PATH --out runs/diag_push [--task push-v3] [--episodes 30]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SETTINGS = {   # name -> evaluate() keyword arguments
    "execute_k8": {"execute_k": 8},
    "execute_k4": {"execute_k": 4},
    "execute_k1": {"execute_k": 1},
    "ensemble": {"ensemble": True},
    "train_layouts_k8": {"execute_k": 8, "seed_start": 0, "train_seeds": None},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--policy", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--task", default="push-v3")
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated subset of " + ",".join(SETTINGS))
    args = ap.parse_args(argv)
    from lara_policy.evaluation.harness import evaluate
    from lara_policy.evaluation.policies import CheckpointPolicyFactory, checkpoint_train_seeds
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    held_out = checkpoint_train_seeds(args.policy)
    for name in args.settings.split(","):
        path = out / f"{name}.json"
        if path.exists():
            continue
        kw = {"train_seeds": held_out, **SETTINGS[name]}
        r = evaluate(CheckpointPolicyFactory(args.policy), [args.task], args.episodes, max_steps=args.max_steps,
                     progress=False, **kw)
        t = r["per_task"][args.task]
        row = {"setting": name, "success": t["success_rate"], "ci95": t["ci95"], "episodes": t["episodes"],
               "mean_length": t["mean_length"], "seeds": [min(t["seeds"]), max(t["seeds"])]}
        path.write_text(json.dumps(row, indent=2))
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
