"""The LAM refinement loop's two measuring steps (scripts/refine_loop.sh runs the whole loop).

    python -m lara_policy.ros.refine_loop record --episodes 20 --faults 4 --out runs/loop/bags
    python -m lara_policy.ros.refine_loop surprise --policy CKPT --episodes-json runs/loop/bags/episodes.json \\
        --split heldout --out runs/loop/surprise_before.json

`record`: K episodes of a Meta-World task through the ROS graph of lara_bringup/config/sim.yaml
(sim_node, policy_node, command_node, recorder_node over DDS in one process, as `lara bringup`),
every episode recorded as a bag. In `--faults` of them (spread over the run) a fault is injected
into the SIMULATED WORLD: from control step `--fault-step` on, the arm is jammed for `--fault-s`
seconds (sim_node ignores every command: frames keep coming, the arm does not move), then it is
released and the episode goes on. `episodes.json` lists every bag with its fault window (ROS
time) and a train / held-out split: fault episodes are always held out (their recorded actions
did not move the arm, so they are no training data).

`surprise`: open-loop replay of the held-out episodes through a checkpoint (`lara eval bag`'s
code, fixed seed); each chunk's surprise (1 - cos between the latent the policy predicted for
the previous chunk and the LAM latent of the transition observed since) is labelled positive
when that transition overlaps a jam, and set apart when it overlaps a halt of command_node's own
(a stale-chunk / stale-observation fault from /lara/safety_status: the arm held still there too).
Reports the AUC of surprise separating jammed transitions from normal ones (armed throughout),
jammed + halted from normal ("halt AUC"), and per episode by the episode's mean surprise.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np


def auc(pos: list[float], neg: list[float]) -> float | None:
    """Mann-Whitney AUC: P(score of a positive > score of a negative), ties count half."""
    pos = [p for p in pos if np.isfinite(p)]
    neg = [n for n in neg if np.isfinite(n)]
    if not pos or not neg:
        return None
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def safety_states(bag: Path) -> tuple[np.ndarray, np.ndarray]:
    """(times s, armed-and-moving flags) of command_node's /lara/safety_status in a bag."""
    from lara_policy.formats.rosbag import iter_messages
    t, ok = [], []
    try:
        for _, _, _, m in iter_messages(bag, ["/lara/safety_status"]):
            t.append(int(m.header.stamp.sec) + int(m.header.stamp.nanosec) * 1e-9)
            ok.append(m.state == "armed")
    except Exception:  # noqa: BLE001 - no status recorded: nothing is known to be halted
        pass
    order = np.argsort(t)
    return np.asarray(t)[order], np.asarray(ok, bool)[order]


def halted_fraction(st_t: np.ndarray, st_ok: np.ndarray, a: float, b: float, samples: int = 9) -> float:
    """Fraction of (a, b] during which command_node was not armed (faulted: zero motion)."""
    if st_t.size == 0:
        return 0.0
    x = np.linspace(a, b, samples)[1:]
    i = np.searchsorted(st_t, x, side="right") - 1
    return float(np.mean(np.where(i >= 0, ~st_ok[np.maximum(i, 0)], False)))


def record(args) -> int:
    import rclpy

    from lara_policy.ros.bringup import Graph, build_overrides, resolve_config
    from lara_policy.ros.params import load_params_yaml
    cfg_path = resolve_config("sim.yaml")
    config = load_params_yaml(cfg_path)
    ns = argparse.Namespace(task=args.task, checkpoint=args.checkpoint, num_candidates=None, device=None,
                            record_dir=args.out)
    overrides = build_overrides(config, ns)
    if args.control_rate:
        # a slower control rate keeps a slow (loaded) CPU's inference inside the chunk budget;
        # the chunk-age limit is relaxed with it (simulation only)
        for node in ("sim_node", "policy_node", "command_node"):
            overrides.setdefault(node, {})["control_rate_hz"] = float(args.control_rate)
        overrides["command_node"].update({"max_chunk_age_s": float(args.max_chunk_age),
                                          "max_observation_age_s": max(0.3, 3.0 / float(args.control_rate))})
    fault_idx = set(np.linspace(1, args.episodes - 1, args.faults).round().astype(int).tolist()) if args.faults else set()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rclpy.init()
    graph, records = None, []
    try:
        graph = Graph(config, overrides=overrides)
        sim = graph.nodes["sim_node"]
        for i in range(args.episodes):
            fault = i in fault_idx
            window: dict = {}
            stop = threading.Event()

            ep_before = sim.episode

            def jam(window=window, stop=stop, ep_before=ep_before):
                while not stop.is_set() and (sim.episode == ep_before or sim.steps < args.fault_step):
                    time.sleep(0.005)
                if stop.is_set():
                    return
                saved = sim.command_timeout_s
                sim.command_timeout_s = -1.0          # every command is stale: the arm holds still
                window["t_start_ns"] = sim.get_clock().now().nanoseconds
                window["step"] = int(sim.steps)
                stop.wait(args.fault_s)
                sim.command_timeout_s = saved
                window["t_end_ns"] = sim.get_clock().now().nanoseconds

            th = threading.Thread(target=jam, daemon=True) if fault else None
            if th:
                th.start()
            r = graph.run_episode(i + 1, sim.get_parameter("task").value, args.seed + i, max_steps=args.max_steps)
            stop.set()
            if th:
                th.join(timeout=args.fault_s + 5)
            rec = {"index": i, "bag": r.bag_path, "seed": r.seed, "success": r.success, "steps": r.steps,
                   "instruction": r.instruction, "fault": fault, "fault_window": window if fault else None}
            records.append(rec)
            print(f"episode {i + 1}/{args.episodes} seed {r.seed}: {'SUCCESS' if r.success else 'failure'} in "
                  f"{r.steps} steps" + (f", arm jammed at step {window.get('step')} for {args.fault_s:.1f} s"
                                        if fault else "") + f" bag: {r.bag_path}", flush=True)
    finally:
        if graph is not None:
            graph.close()
        if rclpy.ok():
            rclpy.shutdown()
    normal = [r for r in records if not r["fault"]]
    n_held = max(1, int(round(len(normal) * args.heldout)))
    for r in records:
        r["split"] = "heldout" if r["fault"] or r in normal[-n_held:] else "train"
    (out / "episodes.json").write_text(json.dumps({"task": args.task, "fault_s": args.fault_s,
                                                   "fault_step": args.fault_step, "episodes": records}, indent=1))
    for split in ("train", "heldout"):
        (out / f"{split}_normal.txt").write_text("\n".join(r["bag"] for r in records
                                                           if r["split"] == split and not r["fault"]) + "\n")
    (out / "heldout_all.txt").write_text("\n".join(r["bag"] for r in records if r["split"] == "heldout") + "\n")
    print(f"refine_loop record: {len(records)} episodes ({sum(r['fault'] for r in records)} jammed), "
          f"{sum(r['success'] for r in records)} successes -> {out / 'episodes.json'}")
    return 0


def surprise(args) -> int:
    from lara_policy.core.policy import LaraPolicy
    from lara_policy.evaluation.bag_eval import episodes_for_policy, evaluate_bags
    info = json.loads(Path(args.episodes_json).read_text())
    eps_info = [r for r in info["episodes"] if args.split == "all" or r["split"] == args.split]
    policy = LaraPolicy.from_checkpoint(args.policy, device=args.device or None, threads=args.threads)
    pos, neg, halted, ep_scores = [], [], [], []
    per_episode = []
    for r in eps_info:
        eps = episodes_for_policy([Path(r["bag"])], policy.meta, None, None, trim=True)
        res = evaluate_bags(policy, eps, seed=args.seed, replan_steps=args.replan_steps)
        e = res["per_episode"][0]
        t0 = eps[0][0].times[0]
        win = r.get("fault_window") or {}
        st_t, st_ok = safety_states(Path(r["bag"]))
        s_all, s_pos = [], []
        prev_t = None
        for x in e["surprise"]:
            t_abs = t0 + x["t"]
            if prev_t is not None and np.isfinite(x["surprise"]):
                jammed = bool(win) and prev_t < win["t_end_ns"] * 1e-9 and t_abs > win["t_start_ns"] * 1e-9
                # command_node's own halts (stale chunk / observation faults: the arm held still
                # while the policy expected motion) are neither a jam nor a normal transition
                frac = halted_fraction(st_t, st_ok, prev_t, t_abs)
                if jammed:
                    pos.append(x["surprise"])
                    s_pos.append(x["surprise"])
                elif frac > 0:
                    halted.append(x["surprise"])
                elif not r["fault"]:
                    neg.append(x["surprise"])
                s_all.append(x["surprise"])
            prev_t = t_abs
        score = float(np.mean(s_all)) if s_all else float("nan")
        ep_scores.append((r["fault"], score))
        per_episode.append({"bag": r["bag"], "fault": r["fault"], "mean_surprise": score,
                            "mean_surprise_jammed": float(np.mean(s_pos)) if s_pos else None,
                            "chunk_mae": res["chunk_mae"]})
    out = {"policy": str(args.policy), "split": args.split, "seed": args.seed,
           "chunk_auc": auc(pos, neg), "chunks_jammed": len(pos), "chunks_normal": len(neg),
           "chunks_safety_halted": len(halted),
           "halt_auc": auc(pos + halted, neg),
           "episode_auc": auc([s for f, s in ep_scores if f], [s for f, s in ep_scores if not f]),
           "mean_surprise_jammed": float(np.mean(pos)) if pos else None,
           "mean_surprise_normal": float(np.mean(neg)) if neg else None,
           "mean_surprise_safety_halted": float(np.mean(halted)) if halted else None,
           "per_episode": per_episode}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"refine_loop surprise: {args.policy}: chunk AUC {out['chunk_auc']} ({len(pos)} jammed vs {len(neg)} normal "
          f"transitions; {len(halted)} others overlapped a command_node halt), halt AUC {out['halt_auc']}, episode "
          f"AUC {out['episode_auc']}, mean surprise jammed {out['mean_surprise_jammed']} / normal "
          f"{out['mean_surprise_normal']} / command_node halted {out['mean_surprise_safety_halted']}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lara_policy.ros.refine_loop", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="K episodes through the ROS graph, some with a jammed arm, recorded")
    r.add_argument("--task", default="reach-v3")
    r.add_argument("--episodes", type=int, default=20)
    r.add_argument("--faults", type=int, default=4, help="episodes with a jammed arm (always held out)")
    r.add_argument("--fault-step", type=int, default=20, help="control step the jam starts at")
    r.add_argument("--fault-s", type=float, default=2.5, help="seconds the arm stays jammed")
    r.add_argument("--heldout", type=float, default=0.4, help="fraction of the normal episodes held out")
    r.add_argument("--seed", type=int, default=3000, help="first layout seed")
    r.add_argument("--max-steps", type=int, default=150)
    r.add_argument("--checkpoint", default="models/lara-metaworld-mt3")
    r.add_argument("--control-rate", type=float, default=0.0, help="control rate of sim/policy/command (Hz; 0 = "
                   "the config's 30): lower it on a slow CPU so chunks arrive in time")
    r.add_argument("--max-chunk-age", type=float, default=3.0, help="command_node max_chunk_age_s with --control-rate")
    r.add_argument("--out", required=True)
    s = sub.add_parser("surprise", help="surprise AUC (jammed vs normal transitions) of a checkpoint on recorded bags")
    s.add_argument("--policy", required=True)
    s.add_argument("--episodes-json", required=True)
    s.add_argument("--split", default="heldout", choices=["heldout", "train", "all"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--replan-steps", type=int, default=8)
    s.add_argument("--device", default="")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    return record(a) if a.cmd == "record" else surprise(a)


if __name__ == "__main__":
    sys.exit(main())
