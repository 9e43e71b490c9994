#!/usr/bin/env python3
"""Does a checkpoint's vision encoder know where the object is?

Renders push-v3 (or another task) at reset for many layout seeds, reads the object's true xy
from the simulator, encodes each image with the checkpoint's FROZEN vision encoder, and fits a
ridge regression from the features to the object xy on one set of seeds and scores it (R^2) on
held-out seeds. Features: the vision tokens (flattened), and where the encoder has them, the
spatial-softmax keypoints alone. A policy cannot push a puck its encoder cannot place.

It also measures what the policy's first chunk at reset DEPENDS on (same noise seed): the mean
absolute change of the first 8 actions when the image is swapped for another layout's (same
state: only the object moved), when the instruction is swapped for another task's, and when
the goal in the state is swapped; each relative to the spread of the chunks across layouts.
Near 0 for the image means the policy ignores what it sees.

    python scripts/probe_vision.py --policy models/lara-metaworld-mt3 [--task push-v3] \
        [--train-seeds 300] [--test-seeds 100] [--out probe.json]

Seeds start at 200000 (disjoint from the project's demo, video and evaluation seeds).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch


def ridge_r2(x_train, y_train, x_test, y_test, alpha: float) -> float:
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    xa, xb = (x_train - mu) / sd, (x_test - mu) / sd
    xa = np.hstack([xa, np.ones((len(xa), 1))])
    xb = np.hstack([xb, np.ones((len(xb), 1))])
    w = np.linalg.solve(xa.T @ xa + alpha * np.eye(xa.shape[1]), xa.T @ y_train)
    pred = xb @ w
    return float(1 - ((pred - y_test) ** 2).sum() / ((y_test - y_test.mean(0)) ** 2).sum())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--policy", required=True, help="VLA checkpoint directory")
    ap.add_argument("--task", default="push-v3")
    ap.add_argument("--train-seeds", type=int, default=300)
    ap.add_argument("--test-seeds", type=int, default=100)
    ap.add_argument("--seed-start", type=int, default=200000)
    ap.add_argument("--alpha", type=float, default=10.0, help="ridge penalty (features are standardised)")
    ap.add_argument("--out", default="", help="write the figures as JSON here")
    args = ap.parse_args(argv)

    from lara_policy.core.checkpoint import CheckpointError
    from lara_policy.core.policy import LaraPolicy
    from lara_policy.sim.metaworld_env import MetaWorldEnv
    try:
        policy = LaraPolicy.from_checkpoint(args.policy)
    except (CheckpointError, FileNotFoundError) as exc:
        print(f"probe_vision: {exc}", file=sys.stderr)
        return 2
    cfg = policy.config.vla
    encoder = policy.model.observation_encoder.vision
    n = args.train_seeds + args.test_seeds
    images, states, xy = [], [], []
    with MetaWorldEnv(args.task, cameras=cfg.cameras[:1], image_size=cfg.image_size) as env:
        for seed in range(args.seed_start, args.seed_start + n):
            obs = env.reset(seed=seed)
            images.append(obs.images[cfg.cameras[0]])
            states.append(obs.state)
            xy.append(obs.raw[4:6])                  # the object's xy (Meta-World obs layout)
        env_phrasings = list(env.phrasings)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    feats, kps = [], []
    with torch.no_grad():
        for i in range(0, n, 64):
            if getattr(encoder, "keypoints", 0) > 0:
                tok, kp = encoder(x[i:i + 64], with_keypoints=True)
                kps.append(kp.numpy())
            else:
                tok = encoder(x[i:i + 64])
            feats.append(tok.flatten(1).numpy())
    y = np.asarray(xy, np.float64)
    tr, te = slice(0, args.train_seeds), slice(args.train_seeds, n)
    result = {"policy": str(args.policy), "task": args.task, "train_seeds": args.train_seeds,
              "test_seeds": args.test_seeds, "token_grid": int(round(encoder.num_tokens ** 0.5))}
    f = np.concatenate(feats)
    result["r2_tokens"] = ridge_r2(f[tr], y[tr], f[te], y[te], args.alpha)
    if kps:
        k = np.concatenate(kps)
        result["r2_keypoints"] = ridge_r2(k[tr], y[tr], k[te], y[te], args.alpha)
        result["r2_tokens_and_keypoints"] = ridge_r2(np.hstack([f, k])[tr], y[tr], np.hstack([f, k])[te], y[te],
                                                     args.alpha)
    shuffled = np.random.default_rng(0).permutation(args.train_seeds)
    result["r2_tokens_shuffled_control"] = ridge_r2(f[tr], y[tr][shuffled], f[te], y[te], args.alpha)
    # sensitivity of the first chunk at reset to the image, the instruction and the goal
    import json as _json
    ins_all = _json.loads((Path(args.policy) / "meta.json").read_text())["instructions"]
    own = [i for i in ins_all if i in env_phrasings] or ins_all[:1]
    other = [i for i in ins_all if i not in env_phrasings]
    from lara_policy.common.policy_api import Observation
    cam = cfg.cameras[0]
    test = list(range(args.train_seeds, n))[:50]

    def chunk(i, image_of=None, instruction=None, goal_of=None):
        state = states[i].copy()
        if goal_of is not None:
            state[-3:] = states[goal_of][-3:]
        obs = Observation(images={cam: images[i if image_of is None else image_of]}, state=state,
                          instruction=instruction or own[0])
        return policy.predict_chunk(obs, seed=0).actions[:8]

    base = np.stack([chunk(i) for i in test])
    spread = float(np.abs(base - base.mean(0)).mean())
    swap = test[1:] + test[:1]
    result["chunk_spread_across_layouts"] = spread
    result["sensitivity_image"] = float(np.abs(np.stack([chunk(i, image_of=j) for i, j in zip(test, swap)])
                                               - base).mean()) / spread
    result["sensitivity_goal"] = float(np.abs(np.stack([chunk(i, goal_of=j) for i, j in zip(test, swap)])
                                              - base).mean()) / spread
    if other:
        result["sensitivity_instruction"] = float(np.abs(np.stack([chunk(i, instruction=other[0]) for i in test])
                                                         - base).mean()) / spread
        result["other_instruction"] = other[0]
    for key, value in result.items():
        print(f"{key:>28}: {value:.3f}" if isinstance(value, float) else f"{key:>28}: {value}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
