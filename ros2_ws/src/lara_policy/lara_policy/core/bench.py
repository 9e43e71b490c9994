"""`lara bench model`: inference latency (N=1 and N=8 candidates, dynamics check on) through
LaraPolicy, and the joint (lara) / dit_only training-step time ratio, measured side by side
(interleaved rounds) in one run on the default config.

Targets on the 2-core development CPU (DESIGN.md quality bars): N=1 p50 <= 25 ms, N=8 p50
<= 60 ms, train-step ratio <= 1.3. Figures are reported whether met or not.
"""
from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lara_policy.common.policy_api import Observation
from lara_policy.common.errors import positive_int
from lara_policy.core.checkpoint import save_checkpoint
from lara_policy.core.configuration import ModelConfig
from lara_policy.core.modeling import LaraModel, count_parameters
from lara_policy.core.policy import RUNTIMES, LaraPolicy
from lara_policy.core.processing import NormStats, TextEmbedder

TARGETS = {"infer_p50_ms_n1": 25.0, "infer_p50_ms_n8": 60.0, "train_step_ratio": 1.3}
INSTRUCTION = "push the puck to the goal"


def _percentiles(samples: list[float]) -> tuple[float, float]:
    a = np.asarray(samples)
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


def bench_inference(config: ModelConfig, repeats: int, threads: int, real_text: bool,
                    runtimes: tuple[str, ...] = ("torch",)) -> dict:
    """p50/p95 of LaraPolicy.predict_chunk at N=1 and N=8 per runtime, the runtimes' calls
    interleaved (alternating order) so load from other processes hits them alike."""
    torch.manual_seed(0)
    model = LaraModel(config)
    v = config.vla
    stats = NormStats([0.0] * v.action_dim, [0.5] * v.action_dim, [0.0] * v.state_dim, [1.0] * v.state_dim)
    if real_text:
        text = TextEmbedder.get().embed([INSTRUCTION], v.text_tokens)
    else:
        text = (np.random.default_rng(0).normal(size=(1, v.text_tokens, v.text_dim)).astype(np.float32),
                np.ones((1, v.text_tokens), bool))
    config.null_effect_threshold = 1e-3
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "bench"
        save_checkpoint(ckpt, model, config, stats=stats, instructions=[INSTRUCTION], text=text)
        if any(r != "torch" for r in runtimes):     # one export for every onnxruntime variant
            from lara_policy.core.export import export_onnx
            export_onnx(ckpt, ckpt / "onnx", quantize="int8" if "onnxruntime-int8" in runtimes else "")
        policies = {r: LaraPolicy.from_checkpoint(ckpt, device="cpu", threads=threads, runtime=r) for r in runtimes}
    rng = np.random.default_rng(0)
    obs = Observation(images={c: rng.integers(0, 255, (v.image_size, v.image_size, 3), dtype=np.uint8)
                              for c in v.cameras},
                      state=rng.normal(size=v.state_dim).astype(np.float32), instruction=INSTRUCTION)
    out: dict = {"runtimes": {r: {} for r in runtimes}}
    for n in (1, 8):
        for i in range(5):
            for policy in policies.values():
                policy.predict_chunk(obs, num_candidates=n, seed=i)
        times: dict[str, list[float]] = {r: [] for r in runtimes}
        for i in range(repeats):
            for r in (runtimes if i % 2 == 0 else runtimes[::-1]):
                t0 = time.perf_counter()
                policies[r].predict_chunk(obs, num_candidates=n, seed=i)
                times[r].append((time.perf_counter() - t0) * 1000)
        for r in runtimes:
            out["runtimes"][r][f"n{n}_p50_ms"], out["runtimes"][r][f"n{n}_p95_ms"] = _percentiles(times[r])
    first = out["runtimes"][runtimes[0]]
    for n in (1, 8):   # the headline figures: the first runtime (torch unless only onnxruntime is asked)
        out[f"infer_p50_ms_n{n}"], out[f"infer_p95_ms_n{n}"] = first[f"n{n}_p50_ms"], first[f"n{n}_p95_ms"]
    if "torch" in runtimes:     # p50 ratios, torch / runtime, from the same interleaved run
        t = out["runtimes"]["torch"]
        out["speedup_vs_torch"] = {r: {f"n{n}": t[f"n{n}_p50_ms"] / out["runtimes"][r][f"n{n}_p50_ms"] for n in (1, 8)}
                                   for r in runtimes if r != "torch"}
    return out


def _synthetic_store(path: Path, config: ModelConfig, episodes: int = 16, steps: int = 60) -> Path:
    """Random-walk squares at the model's image size: enough to time real batch assembly."""
    from lara_policy.formats.store import Episode, EpisodeStore, StoreMeta
    v, size = config.vla, config.vla.image_size
    meta = StoreMeta(env="bench", action_space=config.action_space, action_dim=v.action_dim, state_dim=v.state_dim,
                     cameras=list(v.cameras), image_size=(size, size), dt=config.dt)
    rng = np.random.default_rng(0)
    with EpisodeStore.create(path, meta, overwrite=True) as store:
        for e in range(episodes):
            images = rng.integers(0, 255, (steps, size, size, 3), dtype=np.uint8)
            store.append(Episode(images={c: images for c in v.cameras},
                                 state=rng.normal(size=(steps, v.state_dim)).astype(np.float32),
                                 actions=rng.uniform(-1, 1, (steps, v.action_dim)).astype(np.float32),
                                 instruction=INSTRUCTION, task="bench", seed=e, success=True), compression=None)
    return path


def bench_training(config: ModelConfig, batch_size: int, rounds: int, steps_per_round: int) -> dict:
    """Median time of `lara train`'s own step (lara_policy.core.train.train_step: batch assembly
    from the in-memory dataset with augmentation, forward, backward, clipping, AdamW, codebook
    maintenance, EMA) per variant, on a synthetic store with the default action-free share.
    Steps of the two variants alternate, so load from other processes hits both alike."""
    from lara_policy.core.configuration import TrainConfig
    from lara_policy.core.processing import ChunkDataset
    from lara_policy.core.optim import make_optimizer, module_groups
    from lara_policy.core.train import train_step
    from lara_policy.core.train_data import global_batch_plan, make_batch
    v = config.vla
    with tempfile.TemporaryDirectory() as tmp:
        data = ChunkDataset([str(_synthetic_store(Path(tmp) / "bench.hdf5", config))],
                            [str(_synthetic_store(Path(tmp) / "video.hdf5", config, episodes=8))],
                            image_size=v.image_size, horizon=v.horizon, offset=config.offset)
    rng = np.random.default_rng(0)
    data.attach_text(rng.normal(size=(1, v.text_tokens, v.text_dim)).astype(np.float32), np.ones((1, v.text_tokens), bool))
    stats = data.fit_stats()
    tcfg = TrainConfig(batch_size=batch_size, steps=10_000)
    setups = {}
    for variant in ("lara", "dit_only"):
        torch.manual_seed(0)
        cfg = ModelConfig.from_dict({**config.to_dict(), "variant": variant})
        model = LaraModel(cfg).train()
        params = list(model.parameters())
        opt = make_optimizer(params, tcfg)
        ema = copy.deepcopy(model).eval().requires_grad_(False)
        setups[variant] = (model, opt, [], module_groups(model), ema)

    def step(variant, k):
        model, opt, _, groups, ema = setups[variant]
        plan = global_batch_plan(k, tcfg, len(data), v.horizon, v.action_dim, data.has_action > 0)
        batch = make_batch(data, stats, plan, tcfg, 0, 1, torch.device("cpu"))
        train_step(model, model, opt, groups, ema, batch, tcfg, variant, False, k)

    for k in range(3):
        for variant in setups:
            step(variant, k)
    for k in range(rounds * steps_per_round):
        order = ("lara", "dit_only") if k % 2 == 0 else ("dit_only", "lara")
        for variant in order:
            t0 = time.perf_counter()
            step(variant, k)
            setups[variant][2].append((time.perf_counter() - t0) * 1000)
    lara_ms = float(np.median(setups["lara"][2]))
    dit_ms = float(np.median(setups["dit_only"][2]))
    pair = np.asarray(setups["lara"][2]) / np.asarray(setups["dit_only"][2])
    return {"train_step_ms_lara": lara_ms, "train_step_ms_dit_only": dit_ms, "train_step_ratio": lara_ms / dit_ms,
            "train_step_ratio_min": float(min(setups["lara"][2]) / min(setups["dit_only"][2])),
            "train_step_ratio_pairs_p50": float(np.median(pair)),
            "train_samples_per_s_lara": batch_size * 1000 / lara_ms,
            "train_samples_per_s_dit_only": batch_size * 1000 / dit_ms}


# vision presets compared side by side (--vision): the default and the pretrained two-camera policy
VISION_PRESETS = {
    "conv": {},                                                  # the default: conv, one camera, 64 px
    "lite0": {"vision_backbone": "efficientnet_lite0", "vision_train": "frozen", "image_size": 128,
              "cameras": ["corner4", "gripperPOV"], "vision_weights": ""},   # random init: timing only
}


def vision_config(preset: str) -> ModelConfig:
    config = ModelConfig(name=f"bench-{preset}")
    for k, v in VISION_PRESETS[preset].items():
        setattr(config.vla, k, list(v) if isinstance(v, list) else v)
    return config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lara_policy.common.args import add_list_option, deprecated_alias
    parser.add_argument("--json", default="", metavar="FILE", help="also write the figures as JSON (parent folders "
                        "created)")
    deprecated_alias(parser, "--out", "--json", dest="json")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed (default: report only)")
    parser.add_argument("--repeats", type=positive_int, default=100, help="timed inference calls per N")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads for inference (LaraPolicy default)")
    parser.add_argument("--train-threads", type=positive_int, default=2,
                        help="torch threads for the training steps (2 = `lara train`'s default)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="training batch for the step-time ratio")
    parser.add_argument("--rounds", type=positive_int, default=6, help="training rounds (x steps-per-round alternating steps)")
    parser.add_argument("--steps-per-round", type=positive_int, default=5,
                        help="training steps per variant in each round (lara and dit_only alternate)")
    parser.add_argument("--fake-text", action="store_true", help="skip loading MiniLM (random text tokens)")
    add_list_option(parser, "--vision", metavar="PRESET", item_choices=tuple(VISION_PRESETS), default=["conv"],
                    help="vision presets timed one after the other (inference N=1/N=8 per runtime, train "
                         "samples/s): conv (the default model) | lite0 (efficientnet_lite0 frozen, 128 px, corner4 + "
                         "gripperPOV; random weights, same cost; its train step computes the frozen features, "
                         "which `lara train --feature-cache` caches: scripts/bench_feature_cache.py). The headline "
                         "figures and targets are the first preset's")
    add_list_option(parser, "--runtime", metavar="RUNTIME", item_choices=RUNTIMES, default=list(RUNTIMES),
                    help="inference runtimes timed side by side (onnxruntime: the model exported to ONNX, "
                         "`lara export`; onnxruntime-int8: its int8 policy graph, `--quantize int8`)")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    presets = list(dict.fromkeys(args.vision))
    config = vision_config(presets[0])
    torch.manual_seed(0)
    model = LaraModel(config)
    result: dict = {
        "device": "cpu", "threads": args.threads, "cpus": os.cpu_count(), "loadavg_start": list(os.getloadavg()),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""), "train_threads": args.train_threads, "torch": torch.__version__,
        "params_vla": count_parameters(model.observation_encoder) + count_parameters(model.action_head),
        "params_lam": count_parameters(model.lam), "params_total": count_parameters(model),
        "config": {"image_size": config.vla.image_size, "horizon": config.vla.horizon, "width": config.vla.width,
                   "depth": config.vla.depth, "euler_steps": config.vla.euler_steps,
                   "lam_image_size": config.lam.image_size, "batch_size": args.batch_size},
    }
    runtimes = tuple(dict.fromkeys(args.runtime))
    result["vision"] = {}
    for i, preset in enumerate(presets):
        cfg = vision_config(preset)
        torch.set_num_threads(args.threads)
        fig = bench_inference(cfg, args.repeats, args.threads, not args.fake_text, runtimes)
        torch.set_num_threads(args.train_threads)
        fig.update(bench_training(cfg, args.batch_size, args.rounds, args.steps_per_round))
        fig["params_total"] = count_parameters(LaraModel(cfg))
        result["vision"][preset] = {"settings": VISION_PRESETS[preset], **fig}
        if i == 0:
            result.update(fig)
    result["loadavg_after"] = list(os.getloadavg())
    result["targets"] = TARGETS
    result["met"] = {k: result[k] <= t for k, t in TARGETS.items()}
    rows = [("inference N=1 p50 / p95 ms", f"{result['infer_p50_ms_n1']:.1f} / {result['infer_p95_ms_n1']:.1f}", "<= 25"),
            ("inference N=8 p50 / p95 ms (check on)", f"{result['infer_p50_ms_n8']:.1f} / {result['infer_p95_ms_n8']:.1f}", "<= 60"),
            *[(f"  {r}: N=1 / N=8 p50 ms", f"{v['n1_p50_ms']:.1f} / {v['n8_p50_ms']:.1f}", "")
              for r, v in result["runtimes"].items()],
            *[(f"  {r} speed-up vs torch N=1 / N=8", f"{v['n1']:.2f}x / {v['n8']:.2f}x", ">= 2x")
              for r, v in result.get("speedup_vs_torch", {}).items()],
            ("train step lara / dit_only ms", f"{result['train_step_ms_lara']:.0f} / {result['train_step_ms_dit_only']:.0f}", ""),
            ("train step ratio lara/dit_only (p50)", f"{result['train_step_ratio']:.2f}", "<= 1.3"),
            ("  (ratio of min step times)", f"{result['train_step_ratio_min']:.2f}", ""),
            ("train samples/s lara / dit_only", f"{result['train_samples_per_s_lara']:.0f} / "
                                                f"{result['train_samples_per_s_dit_only']:.0f}", ">= 550 dit_only"),
            ("params VLA / LAM", f"{result['params_vla']:,} / {result['params_lam']:,}", "")]
    if len(result["vision"]) > 1:
        for preset, f in result["vision"].items():
            for r, v in f["runtimes"].items():
                rows.append((f"vision {preset}: {r} N=1 / N=8 p50 ms", f"{v['n1_p50_ms']:.1f} / {v['n8_p50_ms']:.1f}", ""))
            rows.append((f"vision {preset}: train samples/s lara / dit_only",
                         f"{f['train_samples_per_s_lara']:.0f} / {f['train_samples_per_s_dit_only']:.0f}", ""))
    print(f"lara bench model (inference threads={args.threads}, training threads={args.train_threads}, "
          f"batch={args.batch_size})")
    for name, value, target in rows:
        print(f"  {name:<46}{value:>16}  {target}")
    print("  targets met: " + ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in result["met"].items()))
    if args.json:
        from lara_policy.common.args import write_json
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 1 if args.check and not all(result["met"].values()) else 0
