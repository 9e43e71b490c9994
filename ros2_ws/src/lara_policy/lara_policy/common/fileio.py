"""Files written in one piece, one way for the whole package.

A reader, or a second process writing the same file (two `lara experiment run` sittings on one
spec, the recorder rewriting a bag's metadata), sees the old file or the new one, never half of
one; a failed write (disk full) leaves the old file and no temp file behind.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


class staged_output:
    """`with staged_output(dst, overwrite) as tmp:` write a file or a folder at `tmp` (a hidden
    per-process sibling of dst); on success it is renamed to `dst` (an existing dst, allowed by
    `overwrite`, is replaced only then), on any failure `tmp` is removed and dst is untouched.
    So no command leaves half an output at dst, and a failed rerun keeps the previous result."""

    def __init__(self, dst: str | Path, overwrite: bool = False):
        self.dst = Path(dst)
        self.overwrite = overwrite
        self.tmp = temp_path(self.dst)

    def __enter__(self) -> Path:
        if self.dst.exists() and not self.overwrite:
            raise FileExistsError(f"{self.dst} exists")
        self.dst.parent.mkdir(parents=True, exist_ok=True)
        _remove(self.tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            _remove(self.tmp)
            return
        if not self.tmp.exists():
            return
        if self.dst.exists() and (self.dst.is_dir() and not self.dst.is_symlink()):
            old = self.dst.with_name(f".{self.dst.name}.{os.getpid()}.old")
            _remove(old)
            os.replace(self.dst, old)
            os.replace(self.tmp, self.dst)
            _remove(old)
        else:
            os.replace(self.tmp, self.dst)


def _remove(path: Path) -> None:
    import shutil
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
