"""Peak memory of a short `lara train` on a store and on the same store written 10x over
(docs/model.md, "Training at scale"): in memory (--workers 0) vs the lazy loader (--workers N).

    python scripts/train_rss.py --store data/mt3_train.hdf5 [--copies 10] [--workers 1] [--steps 30]

The 10x store is written to a temporary folder with the project's own EpisodeStore (every episode
appended `copies` times) and deleted afterwards. Memory is sampled every 0.1 s over the process
tree of the run (main process + DataLoader workers): peak summed RSS and peak summed PSS (PSS
splits pages shared between the forked processes, so it does not count them twice)."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in open(f"/proc/{p}/task/{t}/children").read().split()]
        except OSError:
            pass
    return out


def mem_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def run(cmd: list[str]) -> dict:
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak_rss = peak_pss = 0
    while proc.poll() is None:
        rss = pss = 0
        for p in tree(proc.pid):
            r, s = mem_kb(p)
            rss, pss = rss + r, pss + s
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.1)
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{out[-3000:]}")
    return {"peak_rss_mib": round(peak_rss / 1024), "peak_pss_mib": round(peak_pss / 1024),
            "seconds": round(time.time() - t0, 1)}


def write_copies(src: str, dst: Path, copies: int) -> dict:
    from lara_policy.formats.store import EpisodeStore, StoreMeta
    with EpisodeStore(src) as s:
        meta = StoreMeta(**{**s.meta.__dict__})
        with EpisodeStore.create(dst, meta, overwrite=True) as out:
            for _ in range(copies):
                for i in range(len(s)):
                    out.append(s.episode(i))
        return {"episodes": len(s) * copies}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="data/mt3_train.hdf5")
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lara_rss_") as tmp:
        big = Path(tmp) / f"x{a.copies}.hdf5"
        t0 = time.time()
        write_copies(a.store, big, a.copies)
        print(f"wrote {big} ({big.stat().st_size / 2**20:.0f} MiB, {time.time() - t0:.0f} s); "
              f"{a.store}: {Path(a.store).stat().st_size / 2**20:.0f} MiB", flush=True)
        for store, label in ((a.store, "1x"), (str(big), f"{a.copies}x")):
            for workers in (0, a.workers):
                cmd = [sys.executable, "-m", "lara_policy.cli", "train", "--data", store, "--out", f"{tmp}/run",
                       "--steps", str(a.steps), "--variant", "dit_only", "--threads", "1", "--quiet",
                       "--save-every", "0", "--workers", str(workers)]
                r = {"store": label, "workers": workers, **run(cmd)}
                rows.append(r)
                print(json.dumps(r), flush=True)
    print(f"\n| store | --workers | peak RSS (MiB, all processes) | peak PSS (MiB) | wall s |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['store']} | {r['workers']} | {r['peak_rss_mib']} | {r['peak_pss_mib']} | {r['seconds']} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
