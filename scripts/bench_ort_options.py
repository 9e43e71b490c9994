"""onnxruntime variants of the policy graph, interleaved in one run (issue 24): the graph traced from
the eager module (what `lara export` wrote before core/export_graph.py, opset 17) against the
current export under session options (optimisation level, spinning, execution mode) and int8.

    OMP_NUM_THREADS=1 python scripts/bench_ort_options.py --policy models/lara-metaworld-mt3 \\
        --json results/bench/ort_options.json

Times the policy graph alone (session.run, one thread), p50 per variant and its ratio against
the eager-traced graph, at N=1 and N=8. The machine is shared: only the in-run ratios compare.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from lara_policy.core.export import POLICY_INPUTS, PolicyGraph, _example, export_onnx
from lara_policy.core.policy import LaraPolicy

LEVELS = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}


def session(path: Path, level="all", spin=True, parallel=False):
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    so.graph_optimization_level = LEVELS[level]
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default="models/lara-metaworld-mt3")
    ap.add_argument("--repeats", type=int, default=200, help="timed calls per variant at N=1 (N=8: 2/5 of it)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lara-ort-options-"))
    policy = LaraPolicy.from_checkpoint(args.policy, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(PolicyGraph(policy.model), _example(policy, 2), str(tmp / "eager_traced.onnx"),
                          input_names=POLICY_INPUTS, output_names=["actions", "pred_latent"], opset_version=17,
                          dynamo=False, dynamic_axes={"noise": {0: "n"}, "actions": {0: "n"}, "pred_latent": {0: "n"}})
    export_onnx(args.policy, tmp / "export", quantize="int8")
    new, int8 = tmp / "export" / "policy.onnx", tmp / "export" / "policy.int8.onnx"
    variants = {"eager_traced_graph": session(tmp / "eager_traced.onnx"),
                "export_graph_spinning_on": session(new), "export_graph": session(new, spin=False),
                "export_graph_level_extended": session(new, "extended", spin=False),
                "export_graph_level_basic": session(new, "basic", spin=False),
                "export_graph_parallel_mode": session(new, spin=False, parallel=True),
                "export_graph_int8": session(int8, spin=False)}
    result = {"policy": args.policy, "onnxruntime": ort.__version__, "threads": 1,
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""), "loadavg_start": list(os.getloadavg()),
              "p50_ms": {}, "ratio_vs_eager_traced": {}}
    for n, reps in ((1, args.repeats), (8, max(20, args.repeats * 2 // 5))):
        feed = {k: v.numpy() for k, v in zip(POLICY_INPUTS, _example(policy, n))}
        for s in variants.values():
            for _ in range(5):
                s.run(None, feed)
        times = {k: [] for k in variants}
        keys = list(variants)
        for r in range(reps):
            for k in (keys if r % 2 == 0 else keys[::-1]):
                t0 = time.perf_counter()
                variants[k].run(None, feed)
                times[k].append((time.perf_counter() - t0) * 1e3)
        p50 = {k: float(np.median(v)) for k, v in times.items()}
        result["p50_ms"][f"n{n}"] = p50
        result["ratio_vs_eager_traced"][f"n{n}"] = {k: p50["eager_traced_graph"] / v for k, v in p50.items()}
        for k in keys:
            print(f"N={n} {k:30s} p50 {p50[k]:7.2f} ms  {p50['eager_traced_graph'] / p50[k]:.2f}x")
    result["loadavg_end"] = list(os.getloadavg())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
