"""lara_policy.common.fileio: the one atomic write the package uses (checkpoints, experiment summaries,
`--json` files, the recorder's bag metadata)."""
import errno
import json
import os
import subprocess
import sys
import textwrap

import pytest

from lara_policy.common import fileio


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a.json"
    fileio.write_json(p, {"x": 1})
    fileio.write_json(p, {"x": 2})
    assert json.loads(p.read_text()) == {"x": 2}
    fileio.write_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.json", "b.bin"]


def test_failed_write_keeps_the_old_file_and_removes_its_temp(tmp_path, monkeypatch):
    """A full disk at fsync: the old content stands, no temp file is left, the error propagates."""
    p = tmp_path / "episode_meta.json"
    p.write_text('{"state": "recording"}')

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        fileio.write_json(p, {"state": "failed"})
    assert p.read_text() == '{"state": "recording"}'
    assert [f.name for f in tmp_path.iterdir()] == ["episode_meta.json"]


WRITER = textwrap.dedent("""
    import sys
    from lara_policy.common.fileio import write_json
    for i in range(300):
        write_json(sys.argv[1], {"writer": sys.argv[2], "i": i, "pad": "x" * 20000})
""")


def test_two_processes_writing_one_file_never_fail_or_tear(tmp_path):
    """Two `lara experiment run` sittings rewrite one summary.json: each has its own temp file, so
    neither writer's rename fails under the other, and a reader only ever sees whole files."""
    p = tmp_path / "summary.json"
    fileio.write_json(p, {"writer": "start", "i": -1, "pad": ""})
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(p), w], stderr=subprocess.PIPE, text=True)
               for w in ("a", "b")]
    reads = 0
    while any(w.poll() is None for w in writers):
        data = json.loads(p.read_text())          # a torn file would raise here
        assert data["writer"] in ("start", "a", "b")
        reads += 1
    errors = [w.stderr.read() for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    assert json.loads(p.read_text())["i"] == 299
    assert reads > 0
    assert sorted(f.name for f in tmp_path.iterdir()) == ["summary.json"]
    assert fileio.temp_path(p).parent == p.parent and fileio.temp_path(p).name.endswith(f".{os.getpid()}.tmp")
