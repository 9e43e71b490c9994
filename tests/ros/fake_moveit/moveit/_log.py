"""Event log of the FAKE moveit_py: one JSON object per line in $FAKE_MOVEIT_LOG (wall time, pid)."""
import json
import os
import threading
import time

_lock = threading.Lock()


def event(name: str, **fields) -> None:
    path = os.environ.get("FAKE_MOVEIT_LOG")
    if not path:
        return
    rec = {"event": name, "t": time.time(), "pid": os.getpid(), **fields}
    with _lock, open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
        f.flush()
