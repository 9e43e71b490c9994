"""`lara eval sim`: closed-loop Meta-World evaluation of a policy.

    lara eval sim --policy oracle --tasks reach-v3,push-v3,drawer-close-v3 --episodes 50 --out runs/oracle
    lara eval sim --policy random --tasks MT10 --episodes 20 --max-steps 200 --out runs/random
    lara eval sim --policy runs/lara/ckpt --tasks MT3 --episodes 50 --execute-k 8 \\
        --train-store data/mt3_train.hdf5 --workers 2 --videos 3 --out runs/lara_eval

Writes into --out: results.json (mean_success, per_task {success_rate, ci95, episodes, ...},
per-episode records), results.md (table), success.png (bar plot with 95% Wilson
intervals) and videos/*.gif (rollouts with instruction and outcome drawn on them).
Evaluation seeds start at --seed-start (default 100000) and must not overlap the seeds
recorded by --train-store or a checkpoint's train_seeds.json (the run is refused).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lara_policy.errors import int_in_range, non_negative_int, positive_int
from lara_policy.evaluation.harness import DEFAULT_EVAL_SEED_START, SeedOverlapError, evaluate


def add_arguments(p: argparse.ArgumentParser) -> None:
    from lara_policy.common.args import add_list_option, deprecated_alias, non_negative_float
    p.description = __doc__
    p.epilog = "Outputs: results.json, results.md, success.png, videos/ in --out."
    p.add_argument("--policy", required=True,
                   help="what to evaluate (required): oracle (Meta-World scripted expert) | random | "
                        "PATH of a LARA checkpoint")
    add_list_option(p, "--tasks", default=["MT3"], metavar="TASK", help="tasks and/or suites (MT3, MT10, MT50)")
    p.add_argument("--episodes", type=positive_int, default=50, help="episodes per task")
    p.add_argument("--seed-start", type=int, default=DEFAULT_EVAL_SEED_START,
                   help="first evaluation layout seed (episode i uses seed-start + i)")
    p.add_argument("--max-steps", type=int_in_range(1, 500), default=500, help="step budget per episode (<= 500)")
    p.add_argument("--execute-k", type=positive_int, default=None,
                   help="execute the first k of the H predicted actions, then replan (default: all H)")
    p.add_argument("--ensemble", action="store_true",
                   help="temporal ensembling: query every step, average overlapping chunks")
    p.add_argument("--ensemble-decay", type=non_negative_float, default=0.01, help="m in exp(-m * age) ensemble weights")
    p.add_argument("--num-candidates", type=positive_int, default=1,
                   help="candidates per chunk passed to predict_chunk (N > 1 runs the LAM dynamics check)")
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes (spawn)")
    p.add_argument("--videos", type=non_negative_int, default=2, help="rollout GIFs to write (first episodes, across tasks)")
    add_list_option(p, "--train-store", metavar="STORE",
                    help="training episode store(s) whose seeds evaluation must avoid")
    p.add_argument("--image-size", type=positive_int, default=None, help="override the policy's image size (square)")
    p.add_argument("--distractors", default="none",
                   help="visual distractors during evaluation (pixels only): none | low | medium | high | 0..1, "
                        "optionally :EFFECT[,EFFECT] for only those effects (lighting, colour, jitter, "
                        "objects), e.g. high:lighting")
    p.add_argument("--seed", dest="random_seed", type=int, default=0,
                   help="RNG seed of the random policy (layouts: --seed-start)")
    deprecated_alias(p, "--random-seed", "--seed", dest="random_seed", type=int)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created): results.json, results.md, "
                   "success.png, videos/")
    p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch",
                   help="inference runtime of a checkpoint policy: onnxruntime runs the graphs of `lara export` "
                        "(CKPT/onnx, exported on the fly when absent)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from lara_policy.evaluation.policies import (CheckpointPolicyFactory, checkpoint_train_seeds,
                                                 policy_factory_from_spec)
    from lara_policy.sim.distractors import DistractorConfig
    from lara_policy.sim.metaworld_env import UnknownTaskError, resolve_tasks
    try:
        tasks = resolve_tasks(args.tasks)
        factory = policy_factory_from_spec(args.policy, seed=args.random_seed, runtime=args.runtime)
        train_seeds = None
        if isinstance(factory, CheckpointPolicyFactory):
            train_seeds = checkpoint_train_seeds(factory.path)
        from lara_policy.evaluation.harness import merge_seeds, train_seeds_from_store
        for st in args.train_store:
            train_seeds = merge_seeds(train_seeds, train_seeds_from_store(st))
        res = evaluate(factory, tasks, args.episodes, seed_start=args.seed_start, max_steps=args.max_steps,
                       execute_k=args.execute_k, ensemble=args.ensemble, ensemble_decay=args.ensemble_decay,
                       num_candidates=args.num_candidates, workers=args.workers, videos=args.videos,
                       out=args.out, train_seeds=train_seeds, image_size=args.image_size,
                       distractors=DistractorConfig.parse(args.distractors), progress=not args.quiet,
                       label=args.policy if args.policy in ("oracle", "random") else "/".join(Path(args.policy).resolve().parts[-2:]))
    except (SeedOverlapError, UnknownTaskError, FileNotFoundError, ValueError) as exc:
        print(f"lara eval sim: {exc}", file=sys.stderr)
        return 2
    print((Path(args.out) / "results.md").read_text())
    print(f"wrote {args.out}/results.json, results.md, success.png"
          + (", videos/" if args.videos else ""))
    return 0
