"""How far the int8 policy graph (runtime onnxruntime-int8) is from the fp32 graph on real
observations: MT3 held-out layouts, frames along the scripted expert's trajectory (steps 0, 15,
30, 45), N=8 candidates with the same noise in both graphs.

    python scripts/int8_vs_fp32.py --policy models/lara-metaworld-mt3 --onnx DIR --json results/bench/int8_vs_fp32_mt3.json

DIR: `lara export CKPT --to onnx --quantize int8 --out DIR`. Reports, in normalised action units,
the mean and max |int8 - fp32| over all candidates, the mean spread between the fp32 candidates
(how far another noise draw moves a chunk), their ratio, and how often the dynamics check
(latent consensus) picks the same candidate.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from lara_policy.core.policy import LaraPolicy, latent_consensus
from lara_policy.sim.metaworld_env import MetaWorldEnv

TASKS = ("reach-v3", "push-v3", "drawer-close-v3")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default="models/lara-metaworld-mt3")
    ap.add_argument("--onnx", required=True, help="export folder with policy.int8.onnx")
    ap.add_argument("--layouts", type=int, default=10, help="held-out layouts per task (seeds 100000+)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    fp32 = LaraPolicy.from_checkpoint(args.policy, device="cpu", runtime="onnxruntime", onnx_dir=args.onnx)
    int8 = LaraPolicy.from_checkpoint(args.policy, device="cpu", runtime="onnxruntime-int8", onnx_dir=args.onnx)
    v = fp32.config.vla
    errors, spreads, same, cases = [], [], 0, 0
    for task in TASKS:
        env = MetaWorldEnv(task, cameras=v.cameras, image_size=v.image_size)
        for layout in range(args.layouts):
            obs = env.reset(seed=100000 + layout)
            for step in range(46):
                if step % 15 == 0:
                    with torch.inference_mode():
                        inputs = fp32._observation_tensors(obs)
                    g = torch.Generator().manual_seed(cases)
                    noise = torch.randn(8, v.horizon, v.action_dim, generator=g)
                    a32, z32 = fp32.onnx.sample(*inputs, noise)
                    a8, z8 = int8.onnx.sample(*inputs, noise)
                    errors.append((a8 - a32).abs().numpy())
                    spreads.append(float((a32 - a32.mean(0, keepdim=True)).abs().mean()))
                    same += int(latent_consensus(z32).argmax()) == int(latent_consensus(z8).argmax())
                    cases += 1
                obs, done, _ = env.step(env.expert_action(obs))
                if done:
                    break
        env.close()
    err = np.stack(errors)
    out = {"policy": args.policy, "tasks": list(TASKS), "layouts_per_task": args.layouts, "observations": cases,
           "candidates": 8, "actions_mean_abs": float(err.mean()), "actions_p99_abs": float(np.percentile(err, 99)),
           "actions_max_abs": float(err.max()), "candidate_spread_mean_abs": float(np.mean(spreads)),
           "relative_to_spread": float(err.mean() / np.mean(spreads)), "same_choice": same / cases,
           "max_abs_per_dim": err.max(axis=(0, 1, 2)).tolist(),
           "candidates_off_by_over_0.1": int((err.max(axis=(2, 3)) > 0.1).sum()), "candidates_total": int(err.shape[0] * 8)}
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
