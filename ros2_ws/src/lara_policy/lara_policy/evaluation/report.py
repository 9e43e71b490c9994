"""Evaluation outputs: results.json, results.md, success.png and rollout GIFs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_report(res: dict, outdir: str | Path) -> dict[str, str]:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {"json": str(outdir / "results.json"), "md": str(outdir / "results.md"),
             "png": str(outdir / "success.png")}
    Path(paths["json"]).write_text(json.dumps(res, indent=2, default=_json_default))
    Path(paths["md"]).write_text(markdown_table(res))
    bar_plot(res, paths["png"])
    return paths


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def markdown_table(res: dict) -> str:
    c = res["config"]
    pol = res["policy"]
    lines = [
        f"# Meta-World closed-loop evaluation: {pol.get('label', '')}",
        "",
        f"- episodes per task: {c['episodes']} (seeds {c['seed_start']}..{c['seed_start'] + c['episodes'] - 1}), "
        f"max steps {c['max_steps']}, execute_k {c['execute_k'] or 'H'} of H={pol.get('horizon')}, "
        f"ensemble {c['ensemble']}, candidates {c['num_candidates']}, workers {c['workers']}",
        f"- mean success over tasks: **{res['mean_success']:.3f}** "
        f"(pooled 95% CI {res['mean_ci95'][0]:.3f}-{res['mean_ci95'][1]:.3f}); wall {res['wall_s']:.1f} s, "
        f"{res['steps_per_s']:.0f} env steps/s",
        "",
        "| task | success | 95% CI (Wilson) | episodes | mean length | mean length (successes) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t, v in res["per_task"].items():
        ls = v["mean_length_success"]
        lines.append(f"| {t} | {v['success_rate']:.3f} | {v['ci95'][0]:.3f}-{v['ci95'][1]:.3f} | "
                     f"{v['episodes']} | {v['mean_length']:.1f} | {'-' if ls is None else f'{ls:.1f}'} |")
    lines.append(f"| **mean** | **{res['mean_success']:.3f}** | | {res['episodes_total']} | | |")
    return "\n".join(lines) + "\n"


def bar_plot(res: dict, path: str | Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tasks = list(res["per_task"])
    rates = np.array([res["per_task"][t]["success_rate"] for t in tasks])
    lo = np.array([res["per_task"][t]["ci95"][0] for t in tasks])
    hi = np.array([res["per_task"][t]["ci95"][1] for t in tasks])
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(tasks) + 2), 3.6))
    x = np.arange(len(tasks))
    ax.bar(x, rates, color="#4c72b0", yerr=[rates - lo, hi - rates], capsize=3, ecolor="black")
    ax.axhline(res["mean_success"], color="#dd8452", ls="--", label=f"mean {res['mean_success']:.2f}")
    ax.set_xticks(x)
    ax.set_xticklabels([t.replace("-v3", "") for t in tasks], rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (95% Wilson CI)")
    ax.set_title(f"{res['policy'].get('label', '')}: {res['config']['episodes']} episodes/task", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def annotate(frame: np.ndarray, instruction: str, task: str, status: str, colour, size: int = 256) -> np.ndarray:
    import cv2
    img = cv2.resize(frame, (size, size), interpolation=cv2.INTER_NEAREST)
    bar = np.zeros((44, size, 3), np.uint8)
    cv2.putText(bar, instruction[:42], (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(bar, task, (4, 36), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (180, 180, 180), 1, cv2.LINE_AA)
    cv2.putText(bar, status, (size - 92, 36), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return np.concatenate([bar, img], axis=0)


def write_rollout_video(path: str | Path, frames: list[np.ndarray], instruction: str, task: str,
                        success: bool, first_success: int | None, dt: float, stride: int = 2) -> str:
    """GIF (or .mp4 via OpenCV) with the instruction, task and outcome drawn on every frame."""
    import imageio.v2 as imageio
    out = []
    n = len(frames)
    idx = list(range(0, n, stride))
    if idx[-1] != n - 1:
        idx.append(n - 1)
    for i in idx:
        done = first_success is not None and i >= first_success
        last = i == n - 1
        if done:
            status, col = "SUCCESS", (80, 255, 80)
        elif last and not success:
            status, col = "FAILED", (255, 80, 80)
        else:
            status, col = f"t={i}", (220, 220, 220)
        out.append(annotate(frames[i], instruction, task, status, col))
    out += [out[-1]] * 5     # hold the final frame
    path = str(path)
    if path.endswith(".mp4"):
        import cv2
        h, w = out[0].shape[:2]
        vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), max(1, round(1 / (dt * stride))), (w, h))
        for f in out:
            vw.write(f[:, :, ::-1])
        vw.release()
    else:
        imageio.mimsave(path, out, duration=1000 * dt * stride * 2, loop=0)
    return path
