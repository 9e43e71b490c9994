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

Fault monitors (issue 25; evaluation/monitoring.py): `--fault frozen-arm|frozen-camera|
object-teleport` injects the fault at a seeded random step of each episode (sim/faults.py);
`--monitor` runs the LAM monitor and the detectors without a LAM (hand motion, camera motion) in
every episode and adds results.json `monitor: {lam|lam_stall|hand|camera: {detection_rate, detection_delay_s_p50, false_alarms_per_min,
...}}`. The LAM monitor's threshold comes from the checkpoint's monitor.json, written by
`--monitor --calibrate-monitor` on fault-free held-out layouts (use other seeds than the ones
you then evaluate on).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lara_policy.common.errors import int_in_range, non_negative_int, positive_int, positive_int_list
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
    p.add_argument("--runtime", choices=("torch", "onnxruntime", "onnxruntime-int8"), default="torch",
                   help="inference runtime of a checkpoint policy: onnxruntime runs the graphs of `lara export` "
                        "(CKPT/onnx, exported on the fly when absent); onnxruntime-int8 its int8 policy graph "
                        "(`lara export --quantize int8`)")
    p.add_argument("--delay-ms", type=non_negative_float, default=None,
                   help="inject this inference delay: the executing chunk keeps running while the next one is "
                        "computed (rounded to env steps of 12.5 ms; evaluation/chunking.py); also reports the "
                        "jumps between consecutive actions at chunk hand-overs (0 included)")
    p.add_argument("--rtc", action="store_true",
                   help="real-time chunking: sample each chunk guided toward what the executing one still does "
                        "(torch runtime)")
    p.add_argument("--fault", default="none", choices=("none", "frozen-arm", "frozen-camera", "object-teleport"),
                   help="inject this fault from a seeded random step of each episode (sim/faults.py)")
    p.add_argument("--fault-onset", type=positive_int_list, default=[24, 56], metavar="MIN,MAX",
                   help="the fault's onset step is uniform in [MIN, MAX] (80 steps = 1 s)")
    p.add_argument("--monitor", action="store_true",
                   help="run the LAM fault monitor and the detectors without a LAM (hand motion, camera "
                        "motion); results.json gets `monitor`")
    p.add_argument("--monitor-threshold", type=float, default=None,
                   help="LAM monitor surprise threshold (default: the checkpoint's monitor.json)")
    p.add_argument("--monitor-debounce", type=positive_int, default=2,
                   help="consecutive chunks over the threshold that raise an alarm")
    p.add_argument("--monitor-normal-steps", type=int, default=0, metavar="STEPS",
                   help="with --monitor: success does not end an episode before this step, so normal operation "
                        "(false alarms) is measured over longer episodes, as a robot keeps running (0: end on success)")
    p.add_argument("--calibrate-monitor", action="store_true",
                   help="with --monitor and no fault: set the threshold from these episodes' surprises (quantile "
                        "--monitor-quantile x 1.1) and write monitor.json into the checkpoint and --out")
    p.add_argument("--monitor-quantile", type=float, default=0.0,
                   help="--calibrate-monitor: threshold = this quantile of single surprises x 1.1; 0 (default): the "
                        "lowest threshold at which no calibration episode raises a debounced alarm, x 1.05")
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
        fault, monitor = _fault_and_monitor(args, factory)
        res = evaluate(factory, tasks, args.episodes, seed_start=args.seed_start, max_steps=args.max_steps,
                       execute_k=args.execute_k, ensemble=args.ensemble, ensemble_decay=args.ensemble_decay,
                       num_candidates=args.num_candidates, workers=args.workers, videos=args.videos,
                       out=args.out, train_seeds=train_seeds, image_size=args.image_size,
                       distractors=DistractorConfig.parse(args.distractors), progress=not args.quiet,
                       fault=fault, monitor=monitor, delay_steps=None if args.delay_ms is None else int(round(args.delay_ms / 12.5)), rtc=args.rtc,
                       label=args.policy if args.policy in ("oracle", "random") else "/".join(Path(args.policy).resolve().parts[-2:]))
    except (SeedOverlapError, UnknownTaskError, FileNotFoundError, ValueError) as exc:
        print(f"lara eval sim: {exc}", file=sys.stderr)
        return 2
    print((Path(args.out) / "results.md").read_text())
    if "chunking" in res:
        c = res["chunking"]
        fmt = lambda v: "-" if v is None else f"{v:.4f}"   # noqa: E731
        print(f"chunk hand-over ({'RTC' if c['rtc'] else 'no RTC'}, delay {c['delay_steps']} steps, every "
              f"{c['execute_s']} steps): boundary jump mean {fmt(c['boundary_jump_mean'])} max "
              f"{fmt(c['boundary_jump_max'])} (inside chunks {fmt(c['inner_jump_mean'])}); starved steps "
              f"{c['starved_steps']}")
    if args.calibrate_monitor:
        _calibrate(args, factory, res)
    elif "monitor" in res:
        for det, m in res["monitor"].items():
            rate, delay = m["detection_rate"], m["detection_delay_s_p50"]
            print(f"monitor {det}: detected {m['detected']}/{m['fault_episodes']} fault episodes"
                  + (f" ({rate:.2f}), p50 delay {delay:.2f} s" if rate is not None and delay is not None else "")
                  + f"; {m['false_alarms']} false alarms in {m['normal_minutes']:.1f} min of normal operation")
    print(f"wrote {args.out}/results.json, results.md, success.png"
          + (", videos/" if args.videos else ""))
    return 0


def _fault_and_monitor(args, factory):
    from lara_policy.evaluation.monitoring import MonitorSpec, resolve_threshold
    from lara_policy.evaluation.policies import CheckpointPolicyFactory
    from lara_policy.sim.faults import FaultSpec
    lo, hi = (list(args.fault_onset) + [args.fault_onset[-1]])[:2]
    fault = FaultSpec(args.fault, lo, hi) if args.fault != "none" else None
    if not args.monitor:
        if args.calibrate_monitor:
            raise ValueError("--calibrate-monitor needs --monitor")
        return fault, None
    if args.calibrate_monitor:
        if fault is not None:
            raise ValueError("--calibrate-monitor calibrates on normal episodes: drop --fault")
        return None, MonitorSpec(float("inf"), args.monitor_debounce, hand_threshold=float("inf"),
                                 stall_threshold=float("inf"), camera_threshold=float("inf"),
                                 normal_steps=args.monitor_normal_steps)
    ckpt = factory.path if isinstance(factory, CheckpointPolicyFactory) else None
    spec = MonitorSpec(args.monitor_threshold, args.monitor_debounce, normal_steps=args.monitor_normal_steps)
    return fault, resolve_threshold(spec, ckpt)


def _calibrate(args, factory, res) -> None:
    from lara_policy.core.monitor import (CameraMotionMonitor, MonitorConfig, calibrate_debounce, calibrate_debounced,
                                          calibrate_threshold)
    from lara_policy.evaluation.policies import CheckpointPolicyFactory
    seqs = [r.get("monitor", {}).get("lam", {}).get("surprises", []) for r in res["episodes"]]
    surprises = [s for seq in seqs for s in seq]
    if args.monitor_quantile > 0:     # a quantile of single surprises (x 1.1)
        threshold, how = calibrate_threshold(surprises, args.monitor_quantile), f"quantile {args.monitor_quantile} x 1.1"
    else:                             # the lowest threshold without a debounced alarm on these episodes (x 1.05)
        threshold, how = calibrate_debounced(seqs, args.monitor_debounce), "debounced, no alarm on calibration x 1.05"
    # the detectors without a LAM and the LAM stall score calibrated the same way on the same
    # episodes: a fair comparison (the hand's shortfall and the camera's stillness are at most 1)
    def same_way(detector: str, key: str, upper: float | None = None) -> float | None:
        seqs = [r.get("monitor", {}).get(detector, {}).get(key, []) for r in res["episodes"]]
        try:
            return calibrate_debounced(seqs, args.monitor_debounce, upper=upper)
        except ValueError:            # no episode had `debounce` judged windows: keep the default
            return None
    hand_seqs = [r.get("monitor", {}).get("hand", {}).get("scores", []) for r in res["episodes"]]
    hand, stall = same_way("hand", "scores", upper=1.0), same_way("lam_stall", "surprises")
    camera = same_way("camera", "scores", upper=1.0)
    camera_debounce = None
    if camera is not None:              # calibration only ever makes it stricter (CameraMotionMonitor) ...
        camera = max(camera, CameraMotionMonitor.DEFAULT_THRESHOLD)
        # ... and, its threshold set by physics, the data choose its debounce (at most the shared one)
        camera_debounce = calibrate_debounce([r.get("monitor", {}).get("camera", {}).get("scores", [])
                                              for r in res["episodes"]], camera, args.monitor_debounce)
    minutes = sum(r["length"] for r in res["episodes"]) * 0.0125 / 60.0      # Meta-World's control step
    cfg = MonitorConfig(threshold, args.monitor_debounce, args.monitor_quantile,
                        {"tasks": sorted(res["per_task"]), "episodes": res["episodes_total"], "surprises": len(surprises),
                         "seed_start": args.seed_start, "surprise_p50": float(sorted(surprises)[len(surprises) // 2]),
                         "surprise_max": float(max(surprises)), "method": how, "normal_minutes": round(minutes, 2),
                         "normal_steps": args.monitor_normal_steps,
                         "hand_scores": sum(len(q) for q in hand_seqs)}, hand_threshold=hand,
                        stall_threshold=stall, camera_threshold=camera, camera_debounce=camera_debounce)
    cfg.save(args.out)
    if isinstance(factory, CheckpointPolicyFactory):
        cfg.save(factory.path)
    print(f"monitor threshold {cfg.threshold:.4f} ({how}; {len(surprises)} surprises, debounce {cfg.debounce}); "
          f"hand-motion detector threshold {'-' if hand is None else f'{hand:.4f}'}, LAM stall score threshold "
          f"{'-' if stall is None else f'{stall:.4f}'}, camera-motion detector threshold "
          f"{'-' if camera is None else f'{camera:.4f} (debounce {camera_debounce})'} (same method); "
          f"wrote monitor.json into {args.out}" + (f" and {factory.path}" if isinstance(factory, CheckpointPolicyFactory)
                                                  else ""))
