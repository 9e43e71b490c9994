"""`lara export CKPT --to onnx --out DIR`: the inference path of a checkpoint as ONNX graphs, and
the onnxruntime session that runs them in LaraPolicy (`runtime="onnxruntime"`).

Two graphs, so N = 1 pays nothing for the dynamics check:
    policy.onnx  (images, state, text, text_mask, noise) -> (actions, pred_latent)
                 observation encoder, the whole Euler loop of the flow (K steps unrolled) and
                 f_psi at the aligned DiT block; N candidates = the batch of `noise` (dynamic).
                 Traced from core/export_graph.py InferenceGraph: the same function as the eager
                 sampler with its weights rearranged so the graph does each piece of work once
                 (1.8-2x faster than tracing the eager module on the development CPU).
                 Actions are normalised (the policy un-normalises); pred_latent is (N, M, d_z)
                 (a checkpoint without a LAM returns (N, 1, 1) zeros).
    check.onnx   (image_t, pred_latent) -> (effect, plausibility)   (checkpoints with a LAM)
                 the LAM dynamics check of N candidates (core/modeling.py dynamics_check).
`--quantize int8` adds policy.int8.onnx: the policy graph with its MatMul/Gemm weights quantised
to int8 (onnxruntime dynamic quantisation, per output channel; activations quantised at run time),
run by `runtime onnxruntime-int8`. It is not the same function: export.json records its error
against the fp32 graph (normalised actions, relative to the spread between candidates, and how
often the dynamics check picks the same candidate), and `lara eval sim` measures its success.
export.json names the checkpoint's model_id and weights hash: a policy refuses graphs exported
from other weights. Surprise (once per executed chunk, off the control path) stays in torch.

Execution providers: CUDA and TensorRT when onnxruntime offers them, else CPU; one intra-op thread
by default (a small shared CPU; see LaraPolicy.from_checkpoint), no spinning of idle pool threads.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lara_policy.common.errors import LaraError
from lara_policy.common.fileio import file_sha256

OPSET = 20          # Gelu is one op from opset 20 (~10% of the N=1 time in opset 17's decomposition)
PRECISIONS = {"fp32": "policy.onnx", "int8": "policy.int8.onnx"}
POLICY_INPUTS = ["images", "state", "text", "text_mask", "noise"]


class ExportError(LaraError, RuntimeError):
    """An export that cannot be made or used (the message names the folder and what to do)."""


class PolicyGraph(nn.Module):
    """The sampling path of LaraModel as one traceable module (see the module docstring)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.steps = model.config.vla.euler_steps
        self.has_lam = model.config.has_lam
        self.eval()     # torch.onnx.export restores the wrapper's mode on exit: train() would reach the model

    def forward(self, images, state, text, text_mask, noise):
        actions, hidden = self.model.sample(images, state, text, text_mask, noise, self.steps)
        if self.has_lam:
            return actions, self.model.project(hidden)
        return actions, hidden.new_zeros(hidden.shape[0], 1, 1)


class CheckGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, image_t, pred_latent):
        return self.model.check_scores(image_t, pred_latent)


def weights_hash(checkpoint: Path) -> str:
    return file_sha256(checkpoint / "model.safetensors")


def _example(policy, n: int):
    v = policy.config.vla
    size = v.image_size
    g = torch.Generator().manual_seed(0)
    images = torch.rand(1, len(v.cameras), 3, size, size, generator=g)
    state = torch.randn(1, v.state_dim, generator=g)
    text = torch.randn(1, v.text_tokens, v.text_dim, generator=g)
    mask = torch.ones(1, v.text_tokens, dtype=torch.bool)
    noise = torch.randn(n, v.horizon, v.action_dim, generator=g)
    return images, state, text, mask, noise


def export_onnx(checkpoint: str | Path, out: str | Path, quantize: str = "") -> dict:
    """Write policy.onnx (+ check.onnx, + policy.int8.onnx with quantize="int8") and export.json
    into `out`; returns export.json's content with the parity of the exported graphs against the
    eager model on a random observation (and the int8 graph's error against the fp32 graph)."""
    import warnings

    from lara_policy.core.export_graph import InferenceGraph
    from lara_policy.core.policy import LaraPolicy
    if quantize not in ("", "int8"):
        raise ExportError(f"--quantize must be int8, got {quantize!r}")
    checkpoint, out = Path(checkpoint), Path(out)
    policy = LaraPolicy.from_checkpoint(checkpoint, device="cpu")
    model = policy.model.eval()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    example = _example(policy, 2)        # N > 1 while tracing: the candidate axis stays dynamic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(InferenceGraph(model), example, str(out / "policy.onnx"), input_names=POLICY_INPUTS,
                          output_names=["actions", "pred_latent"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"noise": {0: "n"}, "actions": {0: "n"}, "pred_latent": {0: "n"}})
        if policy.config.has_lam:
            with torch.no_grad():
                _, z = PolicyGraph(model)(*example)
            torch.onnx.export(CheckGraph(model), (example[0][:, 0], z), str(out / "check.onnx"),
                              input_names=["image_t", "pred_latent"], output_names=["effect", "plausibility"],
                              opset_version=OPSET, dynamo=False,
                              dynamic_axes={"pred_latent": {0: "n"}, "effect": {0: "n"}, "plausibility": {0: "n"}})
    info = {"format": "onnx", "opset": OPSET, "model_id": policy.meta.model_id,
            "weights_sha256": weights_hash(checkpoint), "euler_steps": policy.config.vla.euler_steps,
            "graphs": ["policy.onnx"] + (["check.onnx"] if policy.config.has_lam else []),
            "export_s": round(time.perf_counter() - t0, 2), "torch": torch.__version__}
    if model.training:
        raise ExportError("the export left the model in training mode")   # parity would compare another model
    fp32 = OnnxSession(out, expect=None)
    info["parity"] = parity(policy, fp32)
    for stale in (out / PRECISIONS["int8"],):        # a re-export never keeps int8 graphs of other weights
        stale.unlink(missing_ok=True)
    if quantize == "int8":
        from lara_policy.core.export_int8 import int8_error, quantize_policy
        quantize_policy(out / "policy.onnx", out / PRECISIONS["int8"])
        info["graphs"].append(PRECISIONS["int8"])
        info["int8"] = int8_error(policy, fp32, OnnxSession(out, expect=None, precision="int8"))
    (out / "export.json").write_text(json.dumps(info, indent=2))
    return info


@torch.no_grad()
def parity(policy, session: "OnnxSession", n_values=(1, 8)) -> dict:
    """Largest |difference| of normalised actions (and latents, check scores) between the eager
    model and the ONNX graphs on one random observation, per N."""
    model = policy.model
    result = {}
    for n in n_values:
        images, state, text, mask, noise = _example(policy, n)
        a_t, z_t = PolicyGraph(model)(images, state, text, mask, noise)
        a_o, z_o = session.sample(images, state, text, mask, noise)
        r = {"actions_max_abs": float((a_t - a_o).abs().max()), "latent_max_abs": float((z_t - z_o).abs().max())}
        if session.has_check and n > 1:
            e_t, p_t = model.check_scores(images[:, 0], z_t)
            e_o, p_o = session.check(images[:, 0], z_t)
            r["effect_max_abs"] = float((e_t - e_o).abs().max())
            r["plausibility_max_abs"] = float((p_t - p_o).abs().max())
        result[f"n{n}"] = r
    return result


def providers(device: str = "") -> list[str]:
    import onnxruntime as ort
    available = ort.get_available_providers()
    wanted = ["CPUExecutionProvider"]
    if device != "cpu":
        wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available] + wanted
    return wanted


class OnnxSession:
    """onnxruntime sessions of an export folder; torch tensors in and out (CPU). precision "int8":
    the quantised policy graph (policy.int8.onnx); the dynamics check stays fp32 (check.onnx)."""

    def __init__(self, folder: str | Path, expect: dict | None, threads: int = 1, device: str = "",
                 precision: str = "fp32"):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ExportError("runtime onnxruntime needs the onnxruntime package (requirements-python.txt); "
                              "run scripts/setup.sh") from exc
        folder = Path(folder)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if not (folder / "policy.onnx").exists():
            raise ExportError(f"{folder} holds no policy.onnx: export it with `lara export CKPT --to onnx --out {folder}`")
        graph = folder / PRECISIONS[precision]
        if not graph.exists():
            raise ExportError(f"{folder} holds no {graph.name} (runtime onnxruntime-{precision}): export it with "
                              f"`lara export CKPT --to onnx --quantize {precision} --out {folder}`")
        if expect is not None:
            info = json.loads((folder / "export.json").read_text()) if (folder / "export.json").exists() else {}
            if info.get("weights_sha256") != expect["weights_sha256"]:
                raise ExportError(f"{folder} was exported from other weights (model_id {info.get('model_id')!r}, "
                                  f"this checkpoint {expect['model_id']!r}): export again with `lara export`")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = max(1, threads), 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")   # idle threads leave the core
        self.precision = precision
        self.providers = providers(device)
        self.policy = ort.InferenceSession(str(graph), opts, providers=self.providers)
        self.has_check = (folder / "check.onnx").exists()
        self.check_session = (ort.InferenceSession(str(folder / "check.onnx"), opts, providers=self.providers)
                              if self.has_check else None)

    def sample(self, images, state, text, text_mask, noise) -> tuple[torch.Tensor, torch.Tensor]:
        feed = dict(zip(POLICY_INPUTS, (images, state, text, text_mask, noise)))
        a, z = self.policy.run(None, {k: v.cpu().numpy() for k, v in feed.items()})
        return torch.from_numpy(a), torch.from_numpy(z)

    def check(self, image_t, pred_latent) -> tuple[torch.Tensor, torch.Tensor]:
        e, p = self.check_session.run(None, {"image_t": image_t.cpu().numpy(),
                                             "pred_latent": pred_latent.cpu().numpy().astype(np.float32)})
        return torch.from_numpy(e), torch.from_numpy(p)


def session_for(checkpoint: str | Path, folder: str | Path | None = None, threads: int = 1,
                device: str = "", precision: str = "fp32") -> OnnxSession:
    """The onnxruntime session of a checkpoint: `folder` (default CKPT/onnx) when it holds an export
    of these weights, else a fresh export into a temporary folder (a few seconds, said on stderr).
    A folder that lacks the graphs of `precision` is an error (the message says how to export them)."""
    checkpoint = Path(checkpoint)
    expect = {"weights_sha256": weights_hash(checkpoint),
              "model_id": json.loads((checkpoint / "meta.json").read_text()).get("model_id", "")}
    folder = Path(folder) if folder else checkpoint / "onnx"
    quantize = "" if precision == "fp32" else f" --quantize {precision}"
    if not (folder / "policy.onnx").exists():
        if folder != checkpoint / "onnx":
            raise ExportError(f"{folder} holds no policy.onnx: export it with `lara export {checkpoint} --to onnx"
                              f"{quantize} --out {folder}`")
        folder = Path(tempfile.mkdtemp(prefix="lara-onnx-"))
        print(f"lara: no ONNX export beside {checkpoint}; exporting into {folder} "
              f"(`lara export {checkpoint} --to onnx{quantize} --out {checkpoint / 'onnx'}` keeps one)", file=sys.stderr)
        export_onnx(checkpoint, folder, quantize=quantize.split()[-1] if quantize else "")
    return OnnxSession(folder, expect, threads=threads, device=device, precision=precision)


# ----------------------------------------------------------------------------------------
# CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint directory (a VLA checkpoint)")
    parser.add_argument("--to", choices=["onnx"], default="onnx", help="export format")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (created): policy.onnx, check.onnx, export.json")
    parser.add_argument("--quantize", choices=["int8"], default="",
                        help="also write policy.int8.onnx (MatMul/Gemm weights in int8, dynamic quantisation) for "
                             "runtime onnxruntime-int8; its error against fp32 goes into export.json")


def run(args: argparse.Namespace) -> int:
    from lara_policy.core.checkpoint import CheckpointError
    ckpt = Path(args.checkpoint)
    if not (ckpt / "model.safetensors").exists():
        raise ExportError(f"{ckpt} is not a checkpoint directory (no model.safetensors)")
    try:
        info = export_onnx(ckpt, args.out, quantize=args.quantize)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from exc
    worst = max(v["actions_max_abs"] for v in info["parity"].values())
    print(f"exported {info['model_id']} to {args.out}: {', '.join(info['graphs'])} (opset {OPSET}, "
          f"{info['export_s']:.1f} s); parity with PyTorch: max |d action| {worst:.2e} (normalised)")
    if "int8" in info:
        q = info["int8"]
        print(f"int8 vs fp32 graph ({q['observations']} observations, N={q['candidates']}): mean |d action| "
              f"{q['actions_mean_abs']:.4f} (normalised; {q['relative_to_spread']:.3f} of the spread between "
              f"candidates), same candidate chosen {q['same_choice']:.0%}")
    return 0
