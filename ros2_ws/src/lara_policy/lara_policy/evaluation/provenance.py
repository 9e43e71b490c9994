"""Where a grid's run was trained: the data it read (content digest of each store) and the machine.

A grid runs over several sessions, and each may be on a new machine that regenerates the data
from the same seeds. Training is deterministic on one machine but not across machines (the
rendered frames or the CPU's float kernels differ; results/lara_strength/MACHINES.md), so runs
paired by seed are truly paired only when they read the same bytes on the same kind of machine.
`lara experiment` writes train/provenance.json before a run trains and names the fingerprint of
each run in results.md, so a mixed pairing is visible instead of silent.
"""
from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

from lara_policy.common.fileio import file_sha256, write_json

FILE = "provenance.json"


def _digest(path: Path) -> str:
    """The content digest of an episode store (its file bytes change with HDF5's object times);
    other files (a LeRobot folder is skipped by the caller) by their bytes."""
    from lara_policy.formats.store import EpisodeStore, StoreError  # noqa: PLC0415
    try:
        with EpisodeStore(path) as store:
            return store.content_digest()
    except StoreError:
        return file_sha256(path)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _stores(args: dict) -> list[str]:
    out = []
    for key in ("data", "video"):
        value = args.get(key) or []
        out += [value] if isinstance(value, str) else [str(v) for v in value]
    return out


def describe(args: dict) -> dict:
    """The data (path -> content sha256) a `lara train` with these arguments reads, and this machine."""
    import torch  # noqa: PLC0415  (the version is part of the fingerprint)
    data = {p: _digest(Path(p)) for p in _stores(args) if Path(p).is_file()}
    return {"data": data, "cpu": _cpu(), "torch": torch.__version__}


def fingerprint(record: dict | None) -> str:
    """A short name for (data, cpu, torch): runs with the same one read the same bytes on the same
    kind of machine; '' when the run predates provenance.json."""
    if not record:
        return ""
    blob = json.dumps({k: record.get(k) for k in ("data", "cpu", "torch")}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:8]


def write(train_dir: Path, args: dict) -> None:
    """train_dir/provenance.json, once (a resumed run keeps its first record)."""
    if not (train_dir / FILE).exists():
        train_dir.mkdir(parents=True, exist_ok=True)
        write_json(train_dir / FILE, describe(args))


def read(train_dir: Path) -> dict | None:
    path = train_dir / FILE
    return json.loads(path.read_text()) if path.exists() else None


def mixed_seeds(pairs: list[tuple[dict, dict]]) -> list[int]:
    """Seeds of (run, baseline run) records not known to share data and machine kind."""
    return [a["seed"] for a, b in pairs if not a.get("trained_on") or a.get("trained_on") != b.get("trained_on")]


def mixed_note(diffs: dict) -> list[str]:
    """results.md lines naming the looser pairs of each paired difference (none: no lines)."""
    mixed = {n: d["mixed_seeds"] for n, d in diffs.items() if d.get("mixed_seeds")}
    if not mixed:
        return []
    return ["", "Pairs not known to share data bytes and machine kind (trained elsewhere, or before provenance.json "
            "was written), so their seed pairing is looser: "
            + "; ".join(f"{n}: seed {', '.join(map(str, v))}" for n, v in mixed.items()) + "."]
