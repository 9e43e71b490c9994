"""Train samples/s with a frozen pretrained backbone, frozen features cached vs computed every step
(docs/model.md, "Training at scale"). Same run, same batches, one CPU thread; a synthetic store
(the tests' moving square) of `--episodes` x `--steps-per-episode` frames, `--cameras` cameras.

    OMP_NUM_THREADS=1 python scripts/bench_feature_cache.py [--image-size 128] [--cameras 2] [--steps 40]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--steps-per-episode", type=int, default=50)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--vision-train", default="frozen")
    a = ap.parse_args()
    from synthetic import make_store
    from lara_policy.cli import main as lara
    cams = ("corner4", "gripperPOV", "corner2", "corner3")[:a.cameras]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="lara_fc_") as tmp:
        store = make_store(Path(tmp) / "s.hdf5", episodes=a.episodes, steps=a.steps_per_episode, size=a.image_size,
                           cameras=cams)
        for mode in ("off", "auto", "off", "auto"):       # interleaved, twice: drift on a shared machine shows
            out = Path(tmp) / f"run_{mode}"
            t0 = time.perf_counter()
            rc = lara(["train", "--data", str(store), "--out", str(out), "--steps", str(a.steps), "--variant", "dit_only",
                       "--vision-backbone", "efficientnet_lite0", "--vision-train", a.vision_train,
                       "--image-size", str(a.image_size), "--aug-shift", "0", "--batch-size", str(a.batch_size),
                       "--threads", "1", "--quiet", "--save-every", "0", "--log-every", "10",
                       "--feature-cache", mode])
            wall = time.perf_counter() - t0
            if rc != 0:
                return rc
            log = list(csv.DictReader(open(out / "metrics.csv")))
            sps = [float(r["samples_per_s"]) for r in log[1:]]           # the first window includes warm-up
            meta = next((json.loads(p.read_text()) for p in (out / "feature_cache").glob("*.json")), None) \
                if (out / "feature_cache").exists() else None
            rows.setdefault(mode, []).append({"samples_per_s": sum(sps) / len(sps), "wall_s": wall,
                                              "cache_build_s": meta["seconds"] if meta else 0.0})
            import shutil
            shutil.rmtree(out)
    frames = a.episodes * a.steps_per_episode
    print(f"\n{frames} frames x {a.cameras} cameras at {a.image_size} px, efficientnet_lite0 {a.vision_train}, "
          f"dit_only, batch {a.batch_size}, 1 thread")
    for mode, label in (("off", "features every step"), ("auto", "cached features")):
        r = rows[mode]
        sps = ", ".join(f"{x['samples_per_s']:.1f}" for x in r)
        wall = ", ".join(f"{x['wall_s']:.0f}" for x in r)
        build = ", ".join(f"{x['cache_build_s']:.0f}" for x in r)
        print(f"  {label:22s} samples/s {sps}; wall {wall} s; cache build {build} s")
    ratio = [c["samples_per_s"] / o["samples_per_s"] for c, o in zip(rows["auto"], rows["off"])]
    print("  ratio cached / uncached: " + ", ".join(f"{x:.2f}" for x in ratio))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
