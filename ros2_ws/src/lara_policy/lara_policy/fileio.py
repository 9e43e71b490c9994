"""Files written in one piece, one way for the whole package.

A reader, or a second process writing the same file (two `lara experiment run` sittings on one
spec, the recorder rewriting a bag's metadata), sees the old file or the new one, never half of
one; a failed write (disk full) leaves the old file and no temp file behind.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def temp_path(path: str | Path) -> Path:
    """Where `write_atomic` stages `path`: hidden, in the same folder (so os.replace is atomic)
    and per process (so two writers of one file never share, or replace, each other's temp)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write `data` to a temp file, fsync it, then rename it over `path`."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return path


def write_json(path: str | Path, data, **dumps_kwargs) -> Path:
    """`data` as indented JSON, written atomically (parent folders must exist)."""
    return write_atomic(path, json.dumps(data, indent=2, **dumps_kwargs))
