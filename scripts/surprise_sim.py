"""Surprise in simulation: does it rank a FROZEN arm above an executed chunk? (issue 9)

    python scripts/surprise_sim.py --policy models/lara-metaworld-mt3 \
        --tasks reach-v3,push-v3,drawer-close-v3 --episodes 10 --seed-start 92000 --out /tmp/surprise_sim.json

Held-out Meta-World layouts (seeds refused if in the checkpoint's train_seeds.json). In each
episode the scripted expert drives; windows of C steps alternate between executed (the
expert's actions) and frozen (the expert's gripper command, zero xyz motion: the arm is held
where it is), with `--gap` expert steps between windows. At a window's first frame the policy
predicts a chunk (N=1) and its latent f_psi(h); surprise = 1 - cos(z(I_t, I_{t+C}), f_psi(h))
with the frames the LAM was trained on. A second surprise uses f_psi(h) of the chunk the
expert INTENDED over the window (its actions before freezing; h from the DiT at the last
Euler step's flow time, as `lara probe --dynamics-check` scores chunks): the policy's own
sample is then replaced by the expert's plan. Reports ROC-AUC(frozen > executed) for both,
all windows and those whose executed window moved the hand >= 1 cm.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", required=True, help="joint (VLA + LAM) checkpoint directory")
    p.add_argument("--tasks", default="reach-v3,push-v3,drawer-close-v3")
    p.add_argument("--episodes", type=int, default=10, help="per task")
    p.add_argument("--seed-start", type=int, default=92000)
    p.add_argument("--gap", type=int, default=8, help="expert steps between two windows")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--out", default="")
    args = p.parse_args(argv)

    import torch
    torch.set_num_threads(1)
    from lara_policy.core.checkpoint import load_train_seeds
    from lara_policy.core.policy import LaraPolicy
    from lara_policy.core.probe import _condition, roc_auc
    from lara_policy.sim.metaworld_env import MetaWorldEnv, resolve_tasks

    tasks = resolve_tasks(args.tasks)
    seeds = range(args.seed_start, args.seed_start + args.episodes)
    trained = load_train_seeds(args.policy) or {}
    bad = {t: sorted(set(seeds) & trained.get(t, set())) for t in tasks}
    if any(bad.values()):
        print(f"surprise_sim: seeds overlap {args.policy}'s train_seeds.json: {bad}; pick another --seed-start",
              file=sys.stderr)
        return 2
    policy = LaraPolicy.from_checkpoint(args.policy, device="cpu")
    c = policy.config.offset
    cam = policy.meta.cameras[0]
    model, v = policy.model, policy.config.vla
    tau = (v.euler_steps - 1) / v.euler_steps
    g = torch.Generator().manual_seed(0)

    @torch.no_grad()
    def latent_of(obs, actions):
        """f_psi(h) for a given physical chunk, h as at the last Euler step of sampling."""
        images, state, text, mask = policy._observation_tensors(obs)
        cond, cmask, extra = _condition(model, {"images": images, "state": state, "text": text, "text_mask": mask})
        a = (torch.from_numpy(np.asarray(actions, np.float32))[None] - policy._action_mean) / policy._action_std
        x = tau * a + (1 - tau) * torch.randn(a.shape, generator=g)
        _, hidden = model.velocity(x, torch.full((1,), tau), cond, cmask, *extra)
        return model.project(hidden)[0].numpy()

    rows = []
    for task in tasks:
        env = MetaWorldEnv(task, cameras=policy.meta.cameras, image_size=policy.meta.image_size[0],
                           max_steps=args.max_steps)
        for seed in seeds:
            obs = env.reset(seed)
            frozen = False
            while env.steps + c + args.gap < args.max_steps:
                pred = policy.predict_chunk(obs, num_candidates=1, seed=env.steps)
                obs_t, img_t, hand_t = obs, obs.images[cam], np.asarray(obs.state[:3], np.float64)
                intended = []
                for k in range(c):
                    a = env.expert_action()
                    intended.append(a.copy())
                    if frozen:
                        a[:3] = 0.0
                    obs, _, _ = env.step(a, render=k == c - 1)
                s = policy.surprise(pred.info["predicted_latent"], img_t, obs.images[cam])
                s_plan = policy.surprise(latent_of(obs_t, np.stack(intended)[:v.horizon]), img_t, obs.images[cam])
                moved = float(np.linalg.norm(np.asarray(obs.state[:3], np.float64) - hand_t))
                rows.append({"task": task, "seed": seed, "step": env.steps - c, "frozen": frozen,
                             "surprise": float(s), "surprise_expert_plan": float(s_plan), "hand_moved_m": moved})
                for k in range(args.gap):
                    obs, _, _ = env.step(env.expert_action(), render=k == args.gap - 1)
                frozen = not frozen
        env.close()
    pe = np.array([r["surprise_expert_plan"] for r in rows if not r["frozen"]])
    pf = np.array([r["surprise_expert_plan"] for r in rows if r["frozen"]])
    pe_moving = np.array([r["surprise_expert_plan"] for r in rows if not r["frozen"] and r["hand_moved_m"] >= 0.01])
    ex = np.array([r["surprise"] for r in rows if not r["frozen"]])
    fr = np.array([r["surprise"] for r in rows if r["frozen"]])
    ex_moving = np.array([r["surprise"] for r in rows if not r["frozen"] and r["hand_moved_m"] >= 0.01])
    out = {"policy": args.policy, "tasks": tasks, "episodes_per_task": args.episodes, "seed_start": args.seed_start,
           "chunk_offset": c, "windows_executed": int(len(ex)), "windows_frozen": int(len(fr)),
           "auc_frozen_vs_executed": roc_auc(fr, ex),
           "auc_frozen_vs_executed_moving": roc_auc(fr, ex_moving) if len(ex_moving) else None,
           "executed_moving": int(len(ex_moving)),
           "expert_plan": {"auc_frozen_vs_executed": roc_auc(pf, pe),
                           "auc_frozen_vs_executed_moving": roc_auc(pf, pe_moving) if len(pe_moving) else None,
                           "mean_surprise": {"executed": float(pe.mean()), "frozen": float(pf.mean())}},
           "mean_surprise": {"executed": float(ex.mean()), "frozen": float(fr.mean()),
                             "executed_moving": float(ex_moving.mean()) if len(ex_moving) else None},
           "per_task": {t: roc_auc([r["surprise"] for r in rows if r["task"] == t and r["frozen"]],
                                   [r["surprise"] for r in rows if r["task"] == t and not r["frozen"]])
                        for t in tasks},
           "windows": rows}
    print(f"surprise, frozen arm vs executed chunk ({len(fr)} vs {len(ex)} windows of C={c} steps): ROC-AUC "
          f"{out['auc_frozen_vs_executed']:.3f} (executed windows that moved the hand >= 1 cm: "
          f"{out['auc_frozen_vs_executed_moving']}, n={len(ex_moving)}); mean surprise executed "
          f"{ex.mean():.3f}, frozen {fr.mean():.3f}; per task " +
          ", ".join(f"{t} {v:.2f}" for t, v in out["per_task"].items()) +
          f"\nwith f_psi of the expert's intended chunk instead of the policy's sample: ROC-AUC "
          f"{out['expert_plan']['auc_frozen_vs_executed']:.3f} (moving {out['expert_plan']['auc_frozen_vs_executed_moving']}); "
          f"mean surprise executed {pe.mean():.3f}, frozen {pf.mean():.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
