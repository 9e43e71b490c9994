#!/usr/bin/env python
"""Issue 25, where each fault detector wins: detection rate against false alarms over the whole
range of thresholds, from the scores `lara eval sim --monitor` records per episode (not only at
the calibrated operating point).

For each detector (lam: surprise, lam_stall, hand: shortfall, camera: stillness) and threshold t, with the same
debounce as the run: false alarms per 10 min = debounced alarms in the fault-free run (`none`)
and before the onset of fault episodes, over their minutes; detected = fault episodes with a
debounced alarm at or after the onset. Prints, per fault, the detection rate each detector
reaches at a false-alarm budget (0, <= 1 per 10 min, <= 1 per min) and draws one curve per
detector and fault into OUT/curves.png.

    python scripts/monitor_curves.py results/monitor/lara-metaworld-mt3/curves [--debounce 3]

`--at MONITOR_JSON` also scores every detector at that monitor.json's thresholds (lam:
threshold, lam_stall: stall_threshold, hand: hand_threshold, camera: camera_threshold with
its camera_debounce) from
the recorded scores, without running an episode again: detection rate, p50 delay and false
alarms per 10 min into OUT/operating_point.md (a recalibrated monitor.json judged on the same
episodes).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

DT = 0.0125          # Meta-World's control step
KEYS = {"lam": "surprises", "lam_stall": "surprises", "hand": "scores", "camera": "scores"}
FAULTS = ("frozen-arm", "frozen-camera", "object-teleport")


def alarm_steps(steps, scores, t: float, debounce: int) -> list[int]:
    out, run = [], 0
    for s, v in zip(steps, scores):
        run = run + 1 if v > t else 0
        if run >= debounce:
            out.append(s)
            run = 0
    return out


def load(out: Path, name: str) -> list[dict]:
    f = out / name / "results.json"
    return json.loads(f.read_text())["episodes"] if f.exists() else []


def curve(normal: list[dict], faults: list[dict], det: str, thresholds, debounce: int):
    """(false alarms per 10 min, detection rate) per threshold."""
    fa, rate = [], []
    minutes = (sum(e["length"] for e in normal)
               + sum((e["fault_onset"] - 1) if e.get("fault_reached") else e["length"] for e in faults)) * DT / 60
    reached = [e for e in faults if e.get("fault_reached")]
    for t in thresholds:
        n_fa, n_det = 0, 0
        for e in normal + faults:
            m = e["monitor"].get(det)
            if not m or "steps" not in m:
                continue
            alarms = alarm_steps(m["steps"], m[KEYS[det]], t, debounce)
            onset = e.get("fault_onset") if e.get("fault_reached") else None
            n_fa += sum(1 for a in alarms if onset is None or a < onset)
            if onset is not None and any(a >= onset for a in alarms):
                n_det += 1
        fa.append(10 * n_fa / minutes if minutes else float("nan"))
        rate.append(n_det / len(reached) if reached else float("nan"))
    return np.array(fa), np.array(rate)


THRESHOLD_KEYS = {"lam": "threshold", "lam_stall": "stall_threshold", "hand": "hand_threshold",
                  "camera": "camera_threshold"}


def operating_point(out: Path, normal: list[dict], monitor_json: Path, debounce: int) -> str:
    """Every detector at the thresholds of one monitor.json, re-scored from the recorded scores."""
    cfg = json.loads(monitor_json.read_text())
    lines = [f"At the thresholds of {monitor_json} (debounce {debounce}), from the recorded scores:", "",
             "| fault | detector | threshold | debounce | detected | rate | p50 delay s | false alarms per 10 min |",
             "|---|---|---|---|---|---|---|---|"]
    for fault in FAULTS:
        faults = load(out, fault)
        reached = [e for e in faults if e.get("fault_reached")]
        for det, key in THRESHOLD_KEYS.items():
            t = cfg.get(key)
            if t is None or not any(det in e["monitor"] for e in normal):
                continue
            db = (cfg.get("camera_debounce") or debounce) if det == "camera" else debounce
            fa, rate = curve(normal, faults, det, [t], db)
            delays = []
            for e in reached:
                m = e["monitor"].get(det)
                after = [a for a in alarm_steps(m["steps"], m[KEYS[det]], t, db) if a >= e["fault_onset"]] \
                    if m else []
                if after:
                    delays.append((after[0] - e["fault_onset"]) * DT)
            p50 = f"{np.median(delays):.2f}" if delays else "-"
            lines.append(f"| {fault} | {det} | {t:.4f} | {db} | {len(delays)}/{len(reached)} | {rate[0]:.2f} | {p50} | "
                         f"{fa[0]:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="a monitor_eval.sh output folder (none/, frozen-arm/, ...)")
    p.add_argument("--debounce", type=int, default=3)
    p.add_argument("--at", type=Path, default=None, metavar="MONITOR_JSON",
                   help="also score each detector at this monitor.json's thresholds (OUT/operating_point.md)")
    args = p.parse_args()
    out = Path(args.out)
    normal = load(out, "none")
    if not normal or "steps" not in next(iter(normal[0]["monitor"].values())):
        print(f"{out}/none/results.json has no per-score steps (recorded since 2026-12-07): re-run the evaluation")
        return 1
    dets = sorted({d for e in normal for d in e["monitor"]})
    budgets = (("0", 0.0), ("<= 1 / 10 min", 1.0), ("<= 1 / min", 10.0))
    lines = ["| fault | detector | " + " | ".join(f"detected at {b} false alarms" for b, _ in budgets) + " |",
             "|---|---|" + "---|" * len(budgets)]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(FAULTS), figsize=(4.2 * len(FAULTS), 3.8), sharey=True)
    for ax, fault in zip(axes, FAULTS):
        faults = load(out, fault)
        if not faults:
            continue
        for i, det in enumerate(dets):
            vals = np.concatenate([e["monitor"][det][KEYS[det]] for e in normal + faults if det in e["monitor"]])
            thresholds = np.unique(np.quantile(vals, np.linspace(0, 1, 400)))[::-1]
            fa, rate = curve(normal, faults, det, thresholds, args.debounce)
            best = [float(np.nanmax(rate[fa <= b], initial=0.0)) for _, b in budgets]
            lines.append(f"| {fault} | {det} | " + " | ".join(f"{v:.2f}" for v in best) + " |")
            ax.plot(np.maximum(fa, 0.01), rate, label=det, color=f"C{i}")
        ax.set(xscale="log", xlabel="false alarms per 10 min (normal operation)", title=fault)
        ax.axvline(1.0, color="grey", lw=0.8, ls="--")
        ax.axhline(0.9, color="grey", lw=0.8, ls=":")
    axes[0].set_ylabel("fault episodes detected")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    table = "\n".join(lines)
    (out / "curves.md").write_text(f"Debounce {args.debounce}; `python scripts/monitor_curves.py {out}`\n\n{table}\n")
    print(table)
    print(f"wrote {out}/curves.png, curves.md")
    if args.at is not None:
        text = operating_point(out, normal, args.at, args.debounce)
        (out / "operating_point.md").write_text(text)
        print(text + f"wrote {out}/operating_point.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
