"""Not a test: run with LeRobot's own venv (LeRobot cannot share this project's venv), e.g.
    python3 -m venv /tmp/lrvenv && /tmp/lrvenv/bin/pip install lerobot==0.4.4
    /tmp/lrvenv/bin/python tests/data/lerobot_schema_probe.py
It writes a tiny dataset with LeRobot's own writer (the features test_lerobot_schema.py writes
with ours: 4-d state and action, one 32x32 video camera `front`, next.success) and dumps the
column types and schema metadata of its data, episodes and tasks parquet files to
/tmp/lrcheck/lerobot_schema.json; tests/data/lerobot_0.4.4_schema.json is that output."""
import json, sys, shutil
from pathlib import Path
import numpy as np
import pyarrow.parquet as pq
from lerobot.datasets.lerobot_dataset import LeRobotDataset
import lerobot
root = Path("/tmp/lrcheck/ds")
shutil.rmtree(root, ignore_errors=True)
features = {
    "observation.state": {"dtype": "float32", "shape": (4,), "names": ["a", "b", "c", "d"]},
    "action": {"dtype": "float32", "shape": (4,), "names": ["dx", "dy", "dz", "g"]},
    "observation.images.front": {"dtype": "video", "shape": (32, 32, 3), "names": ["height", "width", "channels"]},
    "next.success": {"dtype": "bool", "shape": (1,), "names": None},
}
ds = LeRobotDataset.create("local/check", fps=15, root=root, features=features, use_videos=True)
rng = np.random.default_rng(0)
for e in range(2):
    for k in range(12):
        ds.add_frame({"observation.state": rng.normal(size=4).astype(np.float32),
                      "action": rng.normal(size=4).astype(np.float32),
                      "observation.images.front": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
                      "next.success": np.array([k > 9]), "task": f"task {e}"})
    ds.save_episode()
ds.finalize()
out = {"lerobot": lerobot.__version__ if hasattr(lerobot, "__version__") else "0.4.4"}
for name, p in [("data", next(root.glob("data/*/*.parquet"))), ("episodes", next(root.glob("meta/episodes/*/*.parquet"))),
                ("tasks", root / "meta/tasks.parquet")]:
    sch = pq.read_schema(p)
    out[name] = {"columns": {f.name: str(f.type) for f in sch},
                 "metadata": {k.decode(): v.decode() for k, v in (sch.metadata or {}).items()}}
json.dump(out, open("/tmp/lrcheck/lerobot_schema.json", "w"), indent=1)
print("ok")
