"""`lara eval bag`: OPEN-LOOP replay of recorded episodes through a checkpoint (an offline proxy).

    lara eval bag --policy models/lara-metaworld-mt3 episodes/ros --out runs/bag_eval --seed 0
    lara eval bag --policy CKPT robot.mcap --mapping my_robot.yaml --out runs/bag_eval_robot

Reads the bags directly (rosbags; no ROS graph, no DDS), rebuilds the policy's observation the
way policy_node does (camera image, state by the checkpoint's state_names: hand_* <- the EE pose,
goal_* <- the goal point, other names <- joints of /joint_states; through --mapping for bags not
written by the LARA recorder), and at every `--replan-steps`-th control step predicts a chunk
with `LaraPolicy.predict_chunk(seed=seed + i)` (deterministic for a fixed --seed). Each predicted
chunk is compared with what was EXECUTED over the same control ticks (the recorded Servo twists
and gripper commands, converted to the policy's action units as `lara convert` does).

Reported (results.json, results.md, plots in --out): per-dimension MAE and RMSE over whole
chunks, the first-step error, the whole-chunk error, the fraction of chunks the LAM dynamics
check flags (--num-candidates > 1), surprise over time (1 - cos between the latent predicted for
a chunk and the LAM latent of the recorded frames t and t + C, the pair the LAM was trained on;
as policy_node), and
inference latency p50/p95. The recorded live chunks (/lara/action_chunk), where present, give
a live-vs-offline difference (same observation stamp).

This is an OPEN-LOOP proxy: the policy never sees the consequences of its own actions, and the
executed actions came from whatever drove the arm (here usually the same policy's earlier
chunks, blended by command_node). Open-loop action error is known not to predict closed-loop
success well; use `lara eval sim` (or the robot) for success rates.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

PROXY_NOTE = ("OPEN-LOOP PROXY: predicted chunks are compared with the actions executed in the recording; "
              "the policy never acts, so this does not measure closed-loop success (open-loop error is known to "
              "predict it poorly).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from lara_policy.common.args import positive_float
    from lara_policy.common.errors import positive_int
    p.description = (__doc__ or "").split("\n\n")[0] + " " + PROXY_NOTE
    p.epilog = "Outputs in --out: results.json, results.md, pred_vs_exec_ep<i>.png, error_hist.png, surprise.png."
    p.add_argument("--policy", required=True, help="LARA checkpoint directory")
    p.add_argument("bags", nargs="+", metavar="BAG", help="recorder episode folders, a folder of them, or rosbag2 bags "
                   "(with --mapping)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (chunk i uses seed + i)")
    p.add_argument("--num-candidates", type=positive_int, default=1, help="> 1 runs the LAM dynamics check")
    p.add_argument("--replan-steps", type=positive_int, default=8, help="control steps between predictions (policy_node's "
                   "replan_period_steps)")
    p.add_argument("--mapping", help="topic mapping for bags not written by the LARA recorder (docs/bag_conversion.md); "
                   "its state names must be the checkpoint's")
    p.add_argument("--rate", type=positive_float, help="control rate (default: the recorded chunks' dt, else the "
                   "mapping's rate_hz, else 30 Hz); one that differs from the checkpoint's 1 / dt gets a warning line")
    p.add_argument("--ee-delta-scale-m", type=positive_float, default=None, help="recorder episodes: command_node's "
                   "ee_delta_scale_m of the recording (twist -> action units; default 0.01). With --mapping the "
                   "mapping's action.ee_delta_scale_m applies; a different value here is an error")
    p.add_argument("--no-trim", action="store_true", help="keep the idle lead-in/tail (steps with nothing executed)")
    p.add_argument("--device", default="", help="torch device (default: cuda when present, else cpu)")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for inference")
    p.add_argument("--chunks-from", metavar="EPISODE", help="score the chunks policy_node published during a "
                   "replay (an offline_eval recording: /lara/eval/action_chunk; a folder: its newest episode) "
                   "instead of predicting them here")
    p.add_argument("--no-plots", action="store_true", help="write results.json/results.md only (no PNG plots)")


def _live_chunks(bag: Path) -> list[tuple[float, np.ndarray]]:
    from lara_policy.formats.rosbag import iter_messages
    out = []
    try:
        for _, _, _, m in iter_messages(bag, ["/lara/action_chunk"]):
            t0 = int(m.header.stamp.sec) + int(m.header.stamp.nanosec) * 1e-9
            out.append((t0, np.asarray(m.actions, np.float32).reshape(int(m.horizon), int(m.action_dim))))
    except Exception:  # noqa: BLE001
        return []
    return out


def rate_warning(meta, rate: float, where: str) -> str:
    """'' or the one warning line for a replay rate (given explicitly: --rate or a mapping's
    rate_hz) that contradicts the checkpoint's training rate (1 / meta.dt): its chunks are then
    scored against executed actions of another step size. Not an error: a checkpoint trained in
    simulation (Meta-World dt 0.0125 s) is deployed by policy_node at its control_rate_hz."""
    if not getattr(meta, "dt", 0):
        return ""
    ckpt_rate = 1.0 / float(meta.dt)
    if abs(rate - ckpt_rate) <= 0.01 * ckpt_rate:
        return ""
    return (f"lara eval bag: warning: {where} {rate:g} Hz differs from the checkpoint's control rate {ckpt_rate:g} Hz "
            f"(dt {meta.dt:g} s): its chunks are scored against executed actions of {1000 / rate:.1f} ms steps, "
            f"not {1000 / ckpt_rate:.1f} ms")


def _recorded_rate(bag: Path) -> float | None:
    from lara_policy.formats.rosbag import iter_messages
    try:
        for _, _, _, m in iter_messages(bag, ["/lara/action_chunk"]):
            return 1.0 / float(m.dt) if m.dt > 0 else None
    except Exception:  # noqa: BLE001 - no chunks recorded / unreadable: the default rate
        return None
    return None


def episodes_for_policy(bags: list[Path], meta, mapping_path: str | None, rate: float | None, trim: bool,
                        ee_delta_scale_m: float | None = None, warn=None):
    """[(BagEpisode, bag path)] with the policy's camera/state names, on the control-rate grid.
    The episodes come from formats.rosbag.bag_episodes with the mapping as given: the same
    alignment, episode split (camera gaps), command_timeout_s and stream-start rule as
    `lara convert` with that mapping (and --trim-idle where trim). Rate: --rate, else the
    recorded chunks' dt (recorder episodes), else the mapping's rate_hz, else 30 Hz; an explicit
    rate that differs from the checkpoint's gives one warning line (`warn`). --ee-delta-scale-m
    that contradicts the mapping's is a ConvertError."""
    from lara_policy.formats.rosbag import (ConvertError, bag_episodes, bag_topics, expand_sources,
                                                 is_recorder_episode, load_mapping, parse_mapping, policy_mapping)
    warn = warn or (lambda line: print(line, file=sys.stderr))
    warned = set()

    def check(r: float, where: str) -> None:
        line = rate_warning(meta, r, where)
        if line and line not in warned:
            warned.add(line)
            warn(line)

    if rate is not None:
        check(rate, "--rate")
    cam = meta.cameras[0]
    cams = list(meta.cameras)
    out = []
    for bag in expand_sources(bags):
        if mapping_path:
            m = load_mapping(mapping_path)
            names = [n for n, _ in m.state]
            if names != list(meta.state_names):
                raise ConvertError(f"mapping {mapping_path}: state names {names} differ from the checkpoint's "
                                   f"{list(meta.state_names)} (same names, same order)")
            missing = [c for c in cams if c not in m.cameras]
            if missing:
                if len(cams) > 1 or len(m.cameras) != 1:
                    raise ConvertError(f"mapping {mapping_path}: no camera named {missing} (the checkpoint reads "
                                       f"{cams}; name the mapping's cameras after them)")
                m.cameras = {cam: next(iter(m.cameras.values()))}
            if rate is not None:
                m.rate_hz = rate
            elif "rate_hz" in m.source:
                check(m.rate_hz, f"the mapping's rate_hz ({mapping_path})")
            if ee_delta_scale_m is not None and m.action is not None and \
                    abs(ee_delta_scale_m - m.action.ee_delta_scale_m) > 1e-12:
                raise ConvertError(f"--ee-delta-scale-m {ee_delta_scale_m:g} contradicts the mapping's "
                                   f"action.ee_delta_scale_m {m.action.ee_delta_scale_m:g} ({mapping_path}); "
                                   "with --mapping the scale is the mapping's: set it there")
        else:
            if not is_recorder_episode(bag):
                raise ConvertError(f"{bag}: not a LARA recorder episode; give --mapping MAP.yaml")
            r = rate or _recorded_rate(bag) or 30.0
            m = parse_mapping(policy_mapping(bag_topics(bag), list(meta.state_names), cams, r,
                                             0.01 if ee_delta_scale_m is None else ee_delta_scale_m),
                              "policy mapping")
        m.action_clip = None
        eps, _ = bag_episodes(bag, m, trim_idle=trim)
        for be in eps:
            out.append((be, bag))
    return out


def recorded_chunks(path: Path) -> list[dict]:
    """Chunks (and their dynamics checks) recorded by policy_node in a bag: what `lara bringup
    offline_eval.yaml` / offline_eval.launch.py record (topics /lara/eval/*), or a live run's
    /lara/action_chunk. A folder of episodes: the newest. [{t0, actions, flagged, surprise}]"""
    from lara_policy.formats.rosbag import ConvertError, expand_sources
    from lara_policy.formats.rosbag import iter_messages
    bags = expand_sources([Path(path)])
    bag = max(bags, key=lambda b: b.stat().st_mtime)
    if bag.is_dir() and not (bag / "metadata.yaml").is_file():
        raise ConvertError(f"{bag}: nothing was recorded (no closed segment): policy_node published no chunk "
                           "during the replay (see its log for why)")
    chunks, checks = [], {}
    topics = None
    for topic, _, _, m in iter_messages(bag, ["/lara/eval/action_chunk", "/lara/eval/dynamics_check",
                                              "/lara/action_chunk", "/lara/dynamics_check"]):
        t0 = int(m.header.stamp.sec) + int(m.header.stamp.nanosec) * 1e-9
        if topics is None and topic.endswith("action_chunk"):
            topics = topic.rsplit("/", 1)[0]
        if topics is not None and not topic.startswith(topics + "/"):
            continue
        if topic.endswith("action_chunk"):
            chunks.append({"t0": t0, "actions": np.asarray(m.actions, np.float32).reshape(int(m.horizon),
                                                                                          int(m.action_dim))})
        else:
            checks[round(t0, 6)] = (not bool(m.accepted), float(m.surprise), int(m.num_candidates))
    if not chunks:
        raise ConvertError(f"{bag}: no recorded action chunks (/lara/eval/action_chunk or /lara/action_chunk)")
    for c in chunks:
        flagged, sur, n = checks.get(round(c["t0"], 6), (None, float("nan"), 1))
        c["flagged"] = flagged if n > 1 else None
        c["surprise"] = sur
    return chunks


def evaluate_bags(policy, episodes, *, seed: int = 0, num_candidates: int = 1, replan_steps: int = 8,
                  live_chunks: dict | None = None, recorded: list[dict] | None = None) -> dict:
    """Open-loop replay of [(BagEpisode, bag)] through a Policy; returns the results dict.
    With `recorded` (recorded_chunks()), the chunks policy_node published during a replay are
    scored instead of predicting here (same metrics; the chunk at observation stamp t0 is
    compared with the actions executed from the control step of t0)."""
    from lara_policy.common.policy_api import Observation
    meta = policy.meta
    cam = meta.cameras[0]
    H = int(meta.horizon)
    per_ep, all_err, first_err, lat, flags, n_checked = [], [], [], [], 0, 0
    live_diffs = []
    call = 0
    for ei, (be, bag) in enumerate(episodes):
        ep = be.episode
        if ep.actions is None:
            continue
        A = ep.actions
        D = A.shape[1]
        if D != meta.action_dim:
            raise ValueError(f"{bag}: executed actions have {D} dims, the policy {meta.action_dim} "
                             f"({meta.action_space})")
        policy.reset()
        T = ep.num_steps
        chunks, surprise = [], []
        offset = int(getattr(getattr(policy, "config", None), "offset", H))
        if recorded is not None:
            half = 0.5 / float(ep.extra.get("rate_hz", 30.0))
            steps = []
            for c in recorded:
                k = int(np.argmin(np.abs(be.times - c["t0"])))
                if abs(be.times[k] - c["t0"]) <= half:
                    steps.append((k, c))
        else:
            steps = [(k, None) for k in range(0, T, replan_steps)]
        for k, rec in steps:
            if rec is not None:
                act = rec["actions"]
                n = min(act.shape[0], T - k)
                err = act[:n] - A[k:k + n]
                all_err.append(err)
                first_err.append(err[0])
                if rec["flagged"] is not None:
                    n_checked += 1
                    flags += int(rec["flagged"])
                surprise.append({"step": k, "t": float(be.times[k] - be.times[0]), "surprise": rec["surprise"]})
                chunks.append({"step": k, "pred": act.tolist(), "n": n, "chunk_mae": float(np.mean(np.abs(err))),
                               "first_mae": float(np.mean(np.abs(err[0]))), "flagged": rec["flagged"],
                               "live_mae": None})
                continue
            obs = Observation(images={c: ep.images[c][k] for c in meta.cameras}, state=ep.state[k], instruction=ep.instruction,
                              stamp=float(be.times[k]))
            pred = policy.predict_chunk(obs, num_candidates=num_candidates, seed=seed + call)
            call += 1
            act = np.asarray(pred.actions, np.float32)
            lat.append(float(pred.info.get("latency_ms", np.nan)))
            n = min(H, T - k)
            err = act[:n] - A[k:k + n]
            all_err.append(err)
            first_err.append(err[0])
            flagged = None
            if pred.check is not None and num_candidates > 1:
                n_checked += 1
                flagged = not bool(pred.check.accepted)
                flags += int(flagged)
            latent = pred.info.get("predicted_latent")
            # the pair the LAM was trained on: this step's frame and the frame C steps later
            # (C = the checkpoint's chunk offset), against the latent predicted for this chunk
            s = float("nan")
            if latent is not None and k + offset < T and hasattr(policy, "surprise"):
                try:
                    s = float(policy.surprise(latent, ep.images[cam][k], ep.images[cam][k + offset]))
                except ValueError:
                    s = float("nan")
            surprise.append({"step": k, "t": float(be.times[k] - be.times[0]), "surprise": s})
            live = None
            if live_chunks and bag in live_chunks:
                cand = [(abs(t0 - float(be.times[k])), a) for t0, a in live_chunks[bag]]
                if cand:
                    dt_, la = min(cand, key=lambda x: x[0])
                    if dt_ < 0.5 / 30 and la.shape == act.shape:
                        live = float(np.mean(np.abs(la - act)))
                        live_diffs.append(live)
            chunks.append({"step": k, "pred": act.tolist(), "n": n, "chunk_mae": float(np.mean(np.abs(err))),
                           "first_mae": float(np.mean(np.abs(err[0]))), "flagged": flagged, "live_mae": live})
        if not chunks:
            continue
        e = np.concatenate([np.asarray(c["pred"])[:c["n"]] - A[c["step"]:c["step"] + c["n"]] for c in chunks])
        sur = [x["surprise"] for x in surprise if np.isfinite(x["surprise"])]
        per_ep.append({
            "bag": str(bag), "episode_id": ep.extra.get("episode_id", ""), "instruction": ep.instruction,
            "task": ep.task, "success": ep.success, "steps": T, "chunks": len(chunks),
            "mae": float(np.mean(np.abs(e))), "rmse": float(np.sqrt(np.mean(e ** 2))),
            "mae_per_dim": np.mean(np.abs(e), 0).tolist(),
            "first_step_mae": float(np.mean([c["first_mae"] for c in chunks])),
            "flagged": int(sum(bool(c["flagged"]) for c in chunks)),
            "surprise_mean": float(np.mean(sur)) if sur else None,
            "surprise": surprise, "executed": A.tolist(), "chunk_records": chunks,
        })
    if not per_ep:
        raise ValueError("no episode with executed actions to compare with"
                         + (" (no recorded chunk stamped inside an executed episode)" if recorded is not None else ""))
    E = np.concatenate(all_err)
    F = np.stack(first_err)
    dims = list(episodes[0][0].action_dims) or [f"a{j}" for j in range(E.shape[1])]
    lat_a = np.asarray([x for x in lat if np.isfinite(x)])
    return {
        "kind": "open-loop proxy", "note": PROXY_NOTE,
        "chunks_from": "recorded replay (policy_node)" if recorded is not None else "predicted offline",
        "policy": {"model_id": meta.model_id, "action_space": meta.action_space, "horizon": H,
                   "state_names": list(meta.state_names), "cameras": list(meta.cameras)},
        "config": {"seed": seed, "num_candidates": num_candidates, "replan_steps": replan_steps},
        "episodes": len(per_ep), "chunks": int(len(F)), "action_dims": dims,
        "mae_per_dim": dict(zip(dims, np.mean(np.abs(E), 0).tolist())),
        "rmse_per_dim": dict(zip(dims, np.sqrt(np.mean(E ** 2, 0)).tolist())),
        "first_step_mae_per_dim": dict(zip(dims, np.mean(np.abs(F), 0).tolist())),
        "chunk_mae": float(np.mean(np.abs(E))), "chunk_rmse": float(np.sqrt(np.mean(E ** 2))),
        "first_step_mae": float(np.mean(np.abs(F))), "first_step_rmse": float(np.sqrt(np.mean(F ** 2))),
        "dynamics_check": {"checked": n_checked, "flagged": flags,
                           "flagged_fraction": (flags / n_checked) if n_checked else None},
        "surprise_mean": _nanmean([x["surprise"] for ep in per_ep for x in ep["surprise"]]),
        "latency_ms": {"p50": float(np.percentile(lat_a, 50)) if lat_a.size else None,
                       "p95": float(np.percentile(lat_a, 95)) if lat_a.size else None, "n": int(lat_a.size)},
        "live_vs_offline_mae": float(np.mean(live_diffs)) if live_diffs else None,
        "live_chunks_matched": len(live_diffs),
        "per_episode": per_ep,
    }


def _nanmean(x):
    a = np.asarray([v for v in x if v is not None and np.isfinite(v)])
    return float(a.mean()) if a.size else None


def markdown(res: dict) -> str:
    dims = res["action_dims"]
    f = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    lines = [f"# lara eval bag: {res['policy']['model_id']}", "", f"**{res['note']}**", "",
             f"Chunks: {res.get('chunks_from', 'predicted offline')}.", "",
             f"{res['episodes']} episode(s), {res['chunks']} chunks (H={res['policy']['horizon']}, replan every "
             f"{res['config']['replan_steps']} steps, N={res['config']['num_candidates']}, seed "
             f"{res['config']['seed']}); errors in the policy's action units ({res['policy']['action_space']}).", "",
             "| | " + " | ".join(dims) + " | all |", "|---|" + "---|" * (len(dims) + 1),
             "| MAE (whole chunk) | " + " | ".join(f(res["mae_per_dim"][d]) for d in dims) + f" | {f(res['chunk_mae'])} |",
             "| RMSE (whole chunk) | " + " | ".join(f(res["rmse_per_dim"][d]) for d in dims) + f" | {f(res['chunk_rmse'])} |",
             "| MAE (first step) | " + " | ".join(f(res["first_step_mae_per_dim"][d]) for d in dims)
             + f" | {f(res['first_step_mae'])} |", "",
             f"- dynamics check: {res['dynamics_check']['flagged']} of {res['dynamics_check']['checked']} chunks flagged"
             + ("" if res["dynamics_check"]["flagged_fraction"] is None else
                f" ({res['dynamics_check']['flagged_fraction']:.1%})"),
             f"- surprise (mean over chunks with a frame C steps later): {f(res['surprise_mean'])}",
             f"- inference latency p50 / p95: {f(res['latency_ms']['p50'])} / {f(res['latency_ms']['p95'])} ms",
             f"- live (recorded) vs offline chunk MAE, same observation stamp: {f(res['live_vs_offline_mae'])} "
             f"({res['live_chunks_matched']} matched; differs by sampling noise and by what the live node saw)", "",
             "| episode | task | success | steps | chunks | MAE | first-step MAE | flagged | mean surprise |",
             "|---|---|---|---|---|---|---|---|---|"]
    for i, e in enumerate(res["per_episode"]):
        lines.append(f"| {i} {e['episode_id']} | {e['task']} | {e['success']} | {e['steps']} | {e['chunks']} | "
                     f"{e['mae']:.4f} | {e['first_step_mae']:.4f} | {e['flagged']} | {f(e['surprise_mean'])} |")
    return "\n".join(lines) + "\n"


def plots(res: dict, out: Path, max_episodes: int = 4) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    dims = res["action_dims"]
    files = []
    for i, e in enumerate(res["per_episode"][:max_episodes]):
        A = np.asarray(e["executed"])
        fig, axes = plt.subplots(len(dims), 1, figsize=(8, 1.8 * len(dims)), sharex=True)
        axes = np.atleast_1d(axes)
        for j, ax in enumerate(axes):
            ax.plot(np.arange(len(A)), A[:, j], "k-", lw=1.2, label="executed")
            for c in e["chunk_records"]:
                p = np.asarray(c["pred"])[:, j]
                ax.plot(c["step"] + np.arange(len(p)), p, "-", color="tab:orange", lw=0.9, alpha=0.8,
                        label="predicted (open loop)" if c is e["chunk_records"][0] else None)
            ax.set_ylabel(dims[j])
        axes[0].legend(loc="upper right", fontsize=7)
        axes[0].set_title(f"episode {i} ({e['task']}, success {e['success']}): predicted chunks vs executed "
                          "[open-loop proxy]", fontsize=8)
        axes[-1].set_xlabel("control step")
        fig.tight_layout()
        path = out / f"pred_vs_exec_ep{i}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        files.append(path.name)
    errs = np.concatenate([(np.asarray(c["pred"])[:c["n"]] - np.asarray(e["executed"])[c["step"]:c["step"] + c["n"]])
                           for e in res["per_episode"] for c in e["chunk_records"]])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for j, d in enumerate(dims):
        ax.hist(errs[:, j], bins=40, histtype="step", label=d)
    ax.set_xlabel("predicted - executed (action units)")
    ax.set_ylabel("count")
    ax.set_title("error histogram per dimension [open-loop proxy]", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "error_hist.png", dpi=90)
    plt.close(fig)
    files.append("error_hist.png")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, e in enumerate(res["per_episode"]):
        s = [(x["t"], x["surprise"]) for x in e["surprise"] if np.isfinite(x["surprise"])]
        if s:
            ax.plot(*zip(*s), "o-", ms=3, label=f"ep {i} ({'ok' if e['success'] else 'fail'})")
    ax.set_xlabel("time in episode (s)")
    ax.set_ylabel("surprise (1 - cos)")
    ax.set_title("surprise over time", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "surprise.png", dpi=90)
    plt.close(fig)
    files.append("surprise.png")
    return files


def write_outputs(res: dict, out: Path, with_plots: bool = True) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if with_plots:
        res["plots"] = plots(res, out)
    from lara_policy.common.fileio import write_atomic
    write_atomic(out / "results.md", markdown(res))
    write_atomic(out / "results.json", json.dumps(res, indent=1))     # last: its presence means complete


def summary_line(res: dict) -> str:
    return (f"{res['episodes']} episodes, {res['chunks']} chunks: chunk MAE {res['chunk_mae']:.4f}, first-step MAE "
            f"{res['first_step_mae']:.4f}; flagged {res['dynamics_check']['flagged']}/{res['dynamics_check']['checked']}")


def run(args: argparse.Namespace) -> int:
    from lara_policy.formats.rosbag import ConvertError
    t0 = time.monotonic()
    ckpt = Path(args.policy)
    if not (ckpt / "config.json").is_file():
        print(f"lara eval bag: --policy {ckpt}: not a checkpoint directory (no config.json)", file=sys.stderr)
        return 2
    if args.num_candidates < 1 or args.replan_steps < 1:
        print("lara eval bag: --num-candidates and --replan-steps must be >= 1", file=sys.stderr)
        return 2
    from lara_policy.core.policy import LaraPolicy
    try:
        policy = LaraPolicy.from_checkpoint(ckpt, device=args.device or None, threads=args.threads)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        print(f"lara eval bag: cannot load {ckpt}: {exc}", file=sys.stderr)
        return 2
    try:
        eps = episodes_for_policy([Path(b) for b in args.bags], policy.meta, args.mapping, args.rate,
                                  trim=not args.no_trim, ee_delta_scale_m=args.ee_delta_scale_m)
        live = {bag: _live_chunks(bag) for _, bag in eps}
        rec = recorded_chunks(Path(args.chunks_from)) if getattr(args, "chunks_from", None) else None
        res = evaluate_bags(policy, eps, seed=args.seed, num_candidates=args.num_candidates,
                            replan_steps=args.replan_steps, live_chunks=None if rec else live, recorded=rec)
    except (ConvertError, ValueError) as exc:
        print(f"lara eval bag: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    res["wall_s"] = time.monotonic() - t0
    res["bags"] = [str(b) for b in args.bags]
    write_outputs(res, out, with_plots=not args.no_plots)
    print(f"lara eval bag [open-loop proxy]: {res['episodes']} episodes, {res['chunks']} chunks: chunk MAE "
          f"{res['chunk_mae']:.4f}, first-step MAE {res['first_step_mae']:.4f}, per dim "
          + ", ".join(f"{d} {v:.3f}" for d, v in res["mae_per_dim"].items())
          + (f"; flagged {res['dynamics_check']['flagged']}/{res['dynamics_check']['checked']}"
             if res["dynamics_check"]["checked"] else "")
          + f"; surprise mean {res['surprise_mean'] if res['surprise_mean'] is None else round(res['surprise_mean'], 4)}"
          + (f"; latency p50/p95 {res['latency_ms']['p50']:.1f}/{res['latency_ms']['p95']:.1f} ms"
             if res["latency_ms"]["n"] else "") + f" -> {out}/results.md")
    return 0
