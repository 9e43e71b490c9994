"""LeRobotDataset v3.0 in and out (lara_policy.formats.lerobot).

LeRobot itself cannot be installed beside this project's torch (it pins torch < 2.8), so the
written layout is checked here against the published v3.0 format with an independent reader
(plain pyarrow + PyAV, none of formats/lerobot's code), and the reader is checked on a dataset laid
out the way LeRobot's own writer lays it out (episodes encoded one by one and concatenated into
shared mp4 files, several data/video files and chunks, two cameras, tasks as text, list columns,
the older pandas tasks index, extra columns, no lara sidecar)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "core"))
sys.path.insert(0, str(Path(__file__).parent))
from synthetic import draw, make_episode, make_store, tiny_model_config  # noqa: E402

from lara_policy.formats.lerobot import (LeRobotError, LeRobotV3Source, read_lerobot,  # noqa: E402
                                         write_lerobot)
from lara_policy.formats.sources import open_episode_source  # noqa: E402
from lara_policy.formats.store import Episode, EpisodeStore, StoreMeta  # noqa: E402

# Measured on these synthetic episodes (sharp saturated squares, 32-40 px, AV1 crf 30 yuv420p):
# 28.9-33.4 dB per episode; the thresholds leave ~2 dB of margin.
MIN_EPISODE_PSNR = 27.0
MIN_MEAN_PSNR = 30.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """Two cameras, step_success on every episode, seeds recorded: what `lara demos` writes."""
    path = tmp_path_factory.mktemp("lr") / "demos.hdf5"
    make_store(path, episodes=6, steps=30, size=40, cameras=("corner4", "gripperPOV"), seed=3)
    with EpisodeStore(path, "a") as s:
        for name in s._names:            # add per-step success the way lara demos stores it
            g = s._f["episodes"][name]
            t = int(g.attrs["num_steps"])
            g.create_dataset("step_success", data=np.arange(t) >= t - 5)
        s.record_seeds({"move-right": [1, 2, 3]})
    return path


@pytest.fixture(scope="module")
def written(store, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("lr") / "v3"
    # tiny file limits and 2 files per chunk: several data files, video files and chunk folders
    summary = write_lerobot(store, out, data_files_size_in_mb=0.002, video_files_size_in_mb=0.004, chunks_size=2)
    return out, summary


# ------------------------------------------------------------------------------------------
# An independent reader of the v3.0 layout (pyarrow + PyAV only)


def independent_read(root: Path) -> dict:
    """Check a directory against the LeRobot v3.0 format description and return, per episode,
    its data rows and its decoded frames per video key."""
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    for k in ("robot_type", "total_episodes", "total_frames", "total_tasks", "chunks_size",
              "data_files_size_in_mb", "video_files_size_in_mb", "fps", "splits", "data_path",
              "video_path", "features"):
        assert k in info, k
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    assert isinstance(info["fps"], int)
    feats = info["features"]
    for k, dt in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                  ("index", "int64"), ("task_index", "int64")):
        assert feats[k]["dtype"] == dt and feats[k]["shape"] == [1]
    videos = [k for k, f in feats.items() if f["dtype"] == "video"]
    for k in videos:
        f = feats[k]
        assert k.startswith("observation.images.") and f["names"] == ["height", "width", "channels"]
        assert len(f["shape"]) == 3 and f["shape"][2] == 3
        for key in ("video.height", "video.width", "video.codec", "video.pix_fmt", "video.is_depth_map",
                    "video.fps", "video.channels", "has_audio"):
            assert key in f["info"], key
        assert (f["info"]["video.height"], f["info"]["video.width"]) == tuple(f["shape"][:2])
        assert f["info"]["video.fps"] == info["fps"]

    # tasks: text as the (unnamed) pandas index, stored as __index_level_0__ as LeRobot's
    # DataFrame({"task_index": ...}, index=tasks).to_parquet writes it; task_index column
    tt = pq.read_table(root / "meta/tasks.parquet")
    pandas_meta = json.loads(tt.schema.metadata[b"pandas"])
    assert pandas_meta["index_columns"] == ["__index_level_0__"]
    tasks = dict(zip(tt.column("task_index").to_pylist(), tt.column("__index_level_0__").to_pylist()))
    assert sorted(tasks) == list(range(info["total_tasks"]))

    # episodes metadata
    ep_files = sorted((root / "meta/episodes").glob("chunk-*/file-*.parquet"))
    eps = pa.concat_tables([pq.read_table(f) for f in ep_files]).to_pylist()
    assert [e["episode_index"] for e in eps] == list(range(info["total_episodes"]))
    data_feats = [k for k, f in feats.items() if f["dtype"] != "video"]
    for e in eps:
        for col in ("tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
                    "dataset_to_index", "meta/episodes/chunk_index", "meta/episodes/file_index"):
            assert col in e, col
        for k in videos:
            for col in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
                assert f"videos/{k}/{col}" in e
        for k in list(feats):                       # per-episode stats of every feature
            for s in ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"):
                assert f"stats/{k}/{s}" in e, (k, s)
        for k in videos:
            assert np.asarray(e[f"stats/{k}/mean"]).shape == (3, 1, 1)
        assert e["stats/observation.state/mean"].__len__() == feats["observation.state"]["shape"][0]
    stats = json.loads((root / "meta/stats.json").read_text())
    assert set(stats) == set(feats)
    assert stats["index"]["count"] == [info["total_frames"]]

    # data files: exactly the non-video features, with LeRobot's arrow types
    data_paths = sorted(root.glob("data/chunk-*/file-*.parquet"))
    rows = pa.concat_tables([pq.read_table(p) for p in data_paths])
    assert set(rows.column_names) == set(data_feats)
    for k in data_feats:
        f, typ = feats[k], rows.schema.field(k).type
        arrow = {"float32": pa.float32(), "int64": pa.int64(), "bool": pa.bool_()}[f["dtype"]]
        if f["shape"] == [1]:
            assert typ == arrow, (k, typ)
        else:                                   # datasets' Sequence(length=n): a fixed-size list
            assert pa.types.is_fixed_size_list(typ) and typ.list_size == f["shape"][0] and typ.value_type == arrow
    index = rows.column("index").to_numpy()
    assert np.array_equal(index, np.arange(info["total_frames"]))
    assert len(rows) == info["total_frames"] == sum(e["length"] for e in eps)

    out = {}
    fps = info["fps"]
    for e in eps:
        path = root / info["data_path"].format(chunk_index=e["data/chunk_index"], file_index=e["data/file_index"])
        t = pq.read_table(path)
        sel = t.filter(pa.compute.equal(t.column("episode_index"), e["episode_index"]))
        assert len(sel) == e["length"]
        assert sel.column("index").to_pylist() == list(range(e["dataset_from_index"], e["dataset_to_index"]))
        fi = sel.column("frame_index").to_numpy()
        assert np.array_equal(fi, np.arange(e["length"]))
        np.testing.assert_allclose(sel.column("timestamp").to_numpy(), fi / fps, atol=1e-6)
        assert set(sel.column("task_index").to_pylist()) == {i for i, s in tasks.items() if s == e["tasks"][0]}
        frames = {}
        for k in videos:
            vpath = root / info["video_path"].format(video_key=k, chunk_index=e[f"videos/{k}/chunk_index"],
                                                     file_index=e[f"videos/{k}/file_index"])
            lo, hi = e[f"videos/{k}/from_timestamp"], e[f"videos/{k}/to_timestamp"]
            assert hi - lo == pytest.approx(e["length"] / fps)
            with av.open(str(vpath)) as c:
                s = c.streams.video[0]
                assert s.codec_context.name in ("libdav1d", "av1", "libaom-av1", "h264", "hevc")
                assert s.pix_fmt == "yuv420p" and int(s.base_rate) == fps
                got = [(float(fr.pts * fr.time_base), fr.to_ndarray(format="rgb24")) for fr in c.decode(s)]
            want = lo + fi / fps
            sel_frames = []
            for w in want:
                j = int(np.argmin([abs(tt_ - w) for tt_, _ in got]))
                assert abs(got[j][0] - w) < 1 / fps - 1e-4
                sel_frames.append(got[j][1])
            frames[k] = np.stack(sel_frames)
        out[e["episode_index"]] = {"rows": sel, "frames": frames, "tasks": e["tasks"]}
    return {"info": info, "episodes": out, "tasks": tasks, "data_files": data_paths,
            "video_files": sorted(root.glob("videos/*/chunk-*/file-*.mp4"))}


# ------------------------------------------------------------------------------------------


def test_written_layout_matches_v3_format(store, written):
    root, summary = written
    r = independent_read(root)
    assert r["info"]["total_episodes"] == 6 and r["info"]["total_frames"] == 180
    assert r["info"]["fps"] == 80                                   # dt 0.0125 s
    feats = r["info"]["features"]
    assert feats["observation.state"]["shape"] == [7] and feats["action"]["shape"] == [4]
    assert feats["observation.state"]["names"][:3] == ["hand_x", "hand_y", "hand_z"]
    assert feats["observation.images.corner4"]["shape"] == [40, 40, 3]
    assert feats["next.success"]["dtype"] == "bool"
    # several files and chunk folders, as LeRobot splits by size
    assert len(r["data_files"]) == summary["data_files"] >= 3
    assert len({p.parent.name for p in r["data_files"]}) >= 2
    assert len(r["video_files"]) == summary["video_files"] >= 4
    with EpisodeStore(store) as s:
        for i in range(len(s)):
            ep = s.episode(i)
            got = r["episodes"][i]
            assert got["tasks"] == [ep.instruction]
            np.testing.assert_array_equal(np.stack(got["rows"].column("observation.state").to_pylist()), ep.state)
            np.testing.assert_array_equal(np.stack(got["rows"].column("action").to_pylist()), ep.actions)
            np.testing.assert_array_equal(got["rows"].column("next.success").to_numpy(zero_copy_only=False),
                                          ep.step_success)
            for cam in s.meta.cameras:
                assert psnr(got["frames"][f"observation.images.{cam}"], ep.images[cam]) > MIN_EPISODE_PSNR


def test_round_trip_store_v3_store(store, written, tmp_path):
    root, _ = written
    back = tmp_path / "back.hdf5"
    summary = read_lerobot(root, back)
    assert summary["episodes"] == 6 and summary["frames"] == 180
    psnrs = []
    with EpisodeStore(store) as a, EpisodeStore(back) as b:
        assert (b.meta.env, b.meta.action_space, b.meta.action_dim, b.meta.state_dim, b.meta.cameras,
                tuple(b.meta.image_size), b.meta.dt, b.meta.state_names, b.meta.phrasings) == \
               (a.meta.env, a.meta.action_space, a.meta.action_dim, a.meta.state_dim, a.meta.cameras,
                tuple(a.meta.image_size), a.meta.dt, a.meta.state_names, a.meta.phrasings)
        assert b.meta.extra["seeds"] == a.meta.extra["seeds"]
        assert b.used_seeds() == a.used_seeds()
        assert len(a) == len(b)
        for i in range(len(a)):
            x, y = a.episode(i), b.episode(i)
            assert x.num_steps == y.num_steps                      # episode boundaries
            np.testing.assert_array_equal(x.state, y.state)
            np.testing.assert_array_equal(x.actions, y.actions)
            np.testing.assert_array_equal(x.step_success, y.step_success)
            assert (x.instruction, x.task, x.seed, x.success, x.source, x.extra) == \
                   (y.instruction, y.task, y.seed, y.success, y.source, y.extra)
            for cam in a.meta.cameras:
                assert y.images[cam].shape == x.images[cam].shape and y.images[cam].dtype == np.uint8
                psnrs.append(psnr(x.images[cam], y.images[cam]))
    print(f"round-trip PSNR per episode/camera: min {min(psnrs):.2f} mean {np.mean(psnrs):.2f} dB")
    assert min(psnrs) > MIN_EPISODE_PSNR and np.mean(psnrs) > MIN_MEAN_PSNR


def test_reader_feeds_training_data_like_the_store(store, written):
    from lara_policy.core.processing import ChunkDataset
    root, _ = written
    a = ChunkDataset([str(store)], image_size=32, horizon=8, offset=8)
    b = ChunkDataset([str(root)], image_size=32, horizon=8, offset=8)
    assert a.info == b.info and a.instructions == b.instructions
    for k in ("states", "actions", "has_action", "ep_end", "instruction_id"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert psnr(a.images.numpy(), b.images.numpy()) > MIN_MEAN_PSNR
    with open_episode_source(root) as src:
        assert isinstance(src, LeRobotV3Source) and len(src) == 6
        assert src.summary()["steps"] == 180


def test_frames_are_time_aligned(tmp_path):
    """Every frame comes back at its own step: frames made distinct per step (background level),
    episodes sharing video files, several files."""
    rng = np.random.default_rng(1)
    meta = StoreMeta(env="synthetic-square", action_space="ee_delta_xyz_gripper", action_dim=4, state_dim=7,
                     cameras=["corner4"], image_size=(32, 32), dt=0.1)
    refs = []
    with EpisodeStore.create(tmp_path / "s.hdf5", meta) as s:
        for i in range(4):
            ep = make_episode(rng, "move-right", 12 + i, 32, False, ["corner4"])
            k = np.arange(ep.num_steps)[:, None, None, None]
            ep.images["corner4"] = np.clip(ep.images["corner4"].astype(int) - 100 + 40 + 14 * k, 0, 255).astype(np.uint8)
            refs.append(ep.images["corner4"].astype(np.float64))
            s.append(ep)
    write_lerobot(tmp_path / "s.hdf5", tmp_path / "v3", video_files_size_in_mb=0.003)
    assert len(list((tmp_path / "v3/videos").rglob("*.mp4"))) >= 2
    with LeRobotV3Source(tmp_path / "v3") as src:
        for ep, ref in zip(src, refs):
            got = ep.images["corner4"].astype(np.float64)
            mse = ((got[:, None] - ref[None]) ** 2).mean(axis=(2, 3, 4))
            np.testing.assert_array_equal(mse.argmin(1), np.arange(len(ref)))


def test_action_free_store_has_no_action_column(tmp_path):
    make_store(tmp_path / "video.hdf5", episodes=3, steps=12, size=32, action_free=True, seed=5)
    write_lerobot(tmp_path / "video.hdf5", tmp_path / "v3")
    info = json.loads((tmp_path / "v3/meta/info.json").read_text())
    assert "action" not in info["features"] and "next.success" not in info["features"]
    assert "action" not in pq.read_schema(tmp_path / "v3/data/chunk-000/file-000.parquet").names
    read_lerobot(tmp_path / "v3", tmp_path / "back.hdf5")
    with EpisodeStore(tmp_path / "back.hdf5") as s:
        assert s.summary()["action_free"] == 3
        assert all(ep.actions is None and ep.source == "video" for ep in s)


def test_mixed_store_restores_action_free_episodes(tmp_path):
    rng = np.random.default_rng(0)
    meta = StoreMeta(env="synthetic-square", action_space="ee_delta_xyz_gripper", action_dim=4, state_dim=7,
                     cameras=["corner4"], image_size=(32, 32), dt=0.05)
    with EpisodeStore.create(tmp_path / "mixed.hdf5", meta) as s:
        s.append(make_episode(rng, "move-right", 10, 32, False, ["corner4"]))
        s.append(make_episode(rng, "move-down", 8, 32, True, ["corner4"]))
    write_lerobot(tmp_path / "mixed.hdf5", tmp_path / "v3")
    rows = pq.read_table(tmp_path / "v3/data/chunk-000/file-000.parquet")
    assert np.abs(np.stack(rows.column("action").to_pylist()[10:])).sum() == 0      # zero-filled
    with LeRobotV3Source(tmp_path / "v3") as src:
        assert src.meta.dt == 0.05 and json.loads((tmp_path / "v3/meta/info.json").read_text())["fps"] == 20
        eps = list(src)
    assert eps[0].actions is not None and eps[1].actions is None


# ------------------------------------------------------------------------------------------
# A dataset laid out the way LeRobot writes one (built here with pyarrow + PyAV)


def _encode(path: Path, frames: np.ndarray, fps: int) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("h264", rate=fps, options={"g": "2", "crf": "18"})
        s.height, s.width, s.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _concat(parts: list[Path], out: Path) -> None:
    """Stream-copy several mp4 files into one (the ffmpeg concat demuxer), as LeRobot appends
    each new episode's video to the current file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lst = parts[0].parent / (out.stem + ".ffconcat")
    lst.write_text("ffconcat version 1.0\n" + "".join(f"file '{p.resolve()}'\n" for p in parts))
    with av.open(str(lst), format="concat", options={"safe": "0"}) as src, av.open(str(out), "w") as dst:
        ins = src.streams.video[0]
        o = dst.add_stream_from_template(ins)
        for pkt in src.demux(ins):
            if pkt.dts is None:
                continue
            pkt.stream = o
            dst.mux(pkt)
    lst.unlink()


def _duration(path: Path) -> float:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return float(s.duration * s.time_base)


def make_lerobot_like(root: Path, n_eps: int = 5, fps: int = 10, hw=(32, 48)) -> list[dict]:
    """Episodes 0-2 in data/video file chunk-000/file-000, 3-4 in chunk-001/file-000 (chunks_size=1);
    cameras `top` and `wrist`; list<float> state/action columns; extra next.reward / next.done
    columns; two episode-metadata files; tasks.parquet with the unnamed pandas index; no stats,
    no lara sidecar."""
    rng = np.random.default_rng(7)
    tasks = ["pick up the red block", "open the drawer"]
    tmp = root / "tmp"
    tmp.mkdir(parents=True)
    truth, ep_rows, data_tables = [], [], {0: [], 1: []}
    parts = {cam: {0: [], 1: []} for cam in ("top", "wrist")}
    index = 0
    for e in range(n_eps):
        t = int(rng.integers(9, 15))
        ti = e % 2
        file = 0 if e < 3 else 1
        pos = rng.uniform(0.1, 0.6, 2)
        imgs = {"top": [], "wrist": []}
        for k in range(t):
            p = pos + 0.02 * k
            big = draw(p[0], p[1], max(hw), background=60 + 12 * k)[: hw[0], : hw[1]]   # every frame differs
            imgs["top"].append(big)
            imgs["wrist"].append(np.ascontiguousarray(big[::-1, ::-1]))
        imgs = {c: np.stack(v) for c, v in imgs.items()}
        state = rng.normal(size=(t, 6)).astype(np.float32)
        action = rng.normal(size=(t, 6)).astype(np.float32)
        truth.append({"images": imgs, "state": state, "action": action, "task": tasks[ti], "length": t})
        data_tables[file].append(pa.table({
            "observation.state": pa.array(state.tolist(), pa.list_(pa.float32())),
            "action": pa.array(action.tolist(), pa.list_(pa.float32())),
            "next.reward": pa.array(np.zeros(t, np.float32)),
            "next.done": pa.array(np.arange(t) == t - 1),
            "timestamp": pa.array((np.arange(t) / fps).astype(np.float32)),
            "frame_index": pa.array(np.arange(t, dtype=np.int64)),
            "episode_index": pa.array(np.full(t, e, np.int64)),
            "index": pa.array(np.arange(index, index + t, dtype=np.int64)),
            "task_index": pa.array(np.full(t, ti, np.int64)),
        }))
        row = {"episode_index": e, "tasks": [tasks[ti]], "length": t, "data/chunk_index": file,
               "data/file_index": 0, "dataset_from_index": index, "dataset_to_index": index + t}
        for cam in ("top", "wrist"):
            part = tmp / f"{cam}_{e}.mp4"
            _encode(part, imgs[cam], fps)
            prior = sum(_duration(p) for p in parts[cam][file])
            parts[cam][file].append(part)
            key = f"observation.images.{cam}"
            row.update({f"videos/{key}/chunk_index": file, f"videos/{key}/file_index": 0,
                        f"videos/{key}/from_timestamp": prior, f"videos/{key}/to_timestamp": prior + _duration(part)})
        row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": int(e >= 2)})
        ep_rows.append(row)
        index += t
    for file, tables in data_tables.items():
        path = root / f"data/chunk-{file:03d}/file-000.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(pa.concat_tables(tables), path)
        for cam in ("top", "wrist"):
            _concat(parts[cam][file], root / f"videos/observation.images.{cam}/chunk-{file:03d}/file-000.mp4")
    for f in (0, 1):
        path = root / f"meta/episodes/chunk-000/file-{f:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist([r for r in ep_rows if r["meta/episodes/file_index"] == f]), path)
    pq.write_table(pa.table({"task_index": pa.array([0, 1], pa.int64()), "__index_level_0__": tasks}),
                   root / "meta/tasks.parquet")
    vid = {"dtype": "video", "shape": [hw[0], hw[1], 3], "names": ["height", "width", "channels"],
           "info": {"video.fps": fps, "video.codec": "h264", "video.pix_fmt": "yuv420p"}}
    motors = [f"joint{i}" for i in range(6)]
    info = {"codebase_version": "v3.0", "robot_type": "so100", "total_episodes": n_eps, "total_frames": index,
            "total_tasks": 2, "chunks_size": 1, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200,
            "fps": fps, "splits": {"train": f"0:{n_eps}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": {"observation.state": {"dtype": "float32", "shape": [6], "names": {"motors": motors}},
                         "action": {"dtype": "float32", "shape": [6], "names": {"motors": motors}},
                         "observation.images.top": vid, "observation.images.wrist": vid,
                         "next.reward": {"dtype": "float32", "shape": [1], "names": None},
                         "next.done": {"dtype": "bool", "shape": [1], "names": None},
                         "timestamp": {"dtype": "float32", "shape": [1], "names": None},
                         **{k: {"dtype": "int64", "shape": [1], "names": None}
                            for k in ("frame_index", "episode_index", "index", "task_index")}}}
    (root / "meta/info.json").write_text(json.dumps(info))
    for p in tmp.iterdir():
        p.unlink()
    tmp.rmdir()
    return truth


def test_reads_a_dataset_laid_out_like_lerobots(tmp_path):
    root = tmp_path / "so100_pick"
    truth = make_lerobot_like(root)
    with LeRobotV3Source(root) as src:
        m = src.meta
        assert m.cameras == ["top", "wrist"] and tuple(m.image_size) == (32, 48)
        assert m.state_names == [f"joint{i}" for i in range(6)] and m.action_dim == 6
        assert m.dt == pytest.approx(0.1) and m.env == "so100"
        assert len(src) == 5
        psnrs = []
        for i, ep in enumerate(src):
            want = truth[i]
            assert ep.num_steps == want["length"] and ep.instruction == want["task"] == ep.task
            np.testing.assert_array_equal(ep.state, want["state"])
            np.testing.assert_array_equal(ep.actions, want["action"])
            assert ep.seed == -1 and ep.source == "lerobot"
            for cam in ("top", "wrist"):
                got, ref = ep.images[cam].astype(np.float64), want["images"][cam].astype(np.float64)
                assert got.shape == ref.shape
                psnrs.append(psnr(got, ref))
                # every decoded frame is nearest to the frame of the same time step (no shift
                # across episode boundaries in the shared files, no off-by-one)
                mse = ((got[:, None] - ref[None]) ** 2).mean(axis=(2, 3, 4))
                np.testing.assert_array_equal(mse.argmin(1), np.arange(len(ref)))
        assert src.summary()["per_task"] == {"pick up the red block": 3, "open the drawer": 2}
    # measured 30.0-31.9 dB (h264 crf 18, yuv420p, 32x48 saturated squares)
    assert min(psnrs) > 28.0, psnrs
    read_lerobot(root, tmp_path / "so100.hdf5")
    with EpisodeStore(tmp_path / "so100.hdf5") as s:
        assert len(s) == 5 and s.meta.phrasings["open the drawer"] == ["open the drawer"]


def test_bad_input_names_the_file(tmp_path, store, written):
    with pytest.raises(LeRobotError, match="meta/info.json"):
        LeRobotV3Source(tmp_path)
    root, _ = written
    copy = tmp_path / "copy"
    import shutil
    shutil.copytree(root, copy)
    info = json.loads((copy / "meta/info.json").read_text())
    (copy / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    with pytest.raises(LeRobotError, match="v2.1"):
        LeRobotV3Source(copy)
    (copy / "meta/info.json").write_text(json.dumps(info))
    victim = sorted(copy.glob("videos/observation.images.corner4/chunk-*/file-*.mp4"))[-1]
    victim.unlink()
    with LeRobotV3Source(copy) as src, pytest.raises(LeRobotError, match=victim.name):
        list(src)
    with pytest.raises(LeRobotError, match="exists"):
        write_lerobot(store, root)


def test_lara_train_from_a_v3_directory(written, tmp_path, capsys):
    from lara_policy.cli import main
    root, _ = written
    m = tiny_model_config()
    rc = main(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--steps", "5", "--batch-size", "8",
               "--threads", "1", "--no-progress", "--image-size", str(m.vla.image_size), "--width", str(m.vla.width),
               "--depth", "3", "--lam-image-size", str(m.lam.image_size), "--horizon", "8"])
    assert rc in (0, None)
    final = tmp_path / "run" / "final"
    assert (final / "model.safetensors").is_file()
    seeds = json.loads((final / "train_seeds.json").read_text())
    assert {1, 2, 3} <= set(seeds["move-right"])            # the store's recorded seeds survive v3


def test_episode_api_matches_store(store, written):
    root, _ = written
    with EpisodeStore(store) as a, LeRobotV3Source(root) as b:
        assert a.tasks() == b.tasks() and a.summary() == b.summary()
        assert a.episode_attrs(2) == b.episode_attrs(2)
        assert isinstance(b.episode(0), Episode)


# ------------------------------------------------------------------------------------------
# lara convert


def test_lara_convert_both_ways(store, tmp_path, capsys):
    from lara_policy.cli import main
    assert main(["convert", str(store), "--to", "lerobot", "--out", str(tmp_path / "v3")]) == 0
    assert main(["convert", str(tmp_path / "v3"), "--out", str(tmp_path / "back.hdf5")]) == 0
    out = capsys.readouterr().out
    assert "lara-hdf5 -> lerobot" in out and "lerobot -> lara-hdf5" in out
    with EpisodeStore(store) as a, EpisodeStore(tmp_path / "back.hdf5") as b:
        assert len(a) == len(b) and a.meta.phrasings == b.meta.phrasings
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x.actions, y.actions)
            assert x.instruction == y.instruction
    # bad input: exit 2, the file named on stderr, no traceback
    (tmp_path / "old/meta").mkdir(parents=True)
    (tmp_path / "old/meta/info.json").write_text(json.dumps({"codebase_version": "v2.1", "fps": 10}))
    assert main(["convert", str(tmp_path / "old"), "--out", str(tmp_path / "x.hdf5")]) == 2
    err = capsys.readouterr().err
    assert "old/meta/info.json" in err and "v2.1" in err and "Traceback" not in err
    assert main(["convert", str(store), "--to", "lerobot", "--out", str(tmp_path / "v3")]) == 2
    assert "exists" in capsys.readouterr().err


def test_bag_to_v3(tmp_path):
    pytest.importorskip("rosbags")
    pytest.importorskip("lara_msgs.msg")
    from bagmaker import recorder_episode

    from lara_policy.cli import main
    rec = tmp_path / "rec"
    for i in range(2):
        recorder_episode(rec, f"episode_{i}", steps=20, seed=i, t0=1000.0 + 100 * i)
    assert main(["convert", str(rec), "--out", str(tmp_path / "direct.hdf5")]) == 0
    assert main(["convert", str(rec), "--to", "lerobot", "--out", str(tmp_path / "v3")]) == 0
    independent_read(tmp_path / "v3")
    with EpisodeStore(tmp_path / "direct.hdf5") as a, LeRobotV3Source(tmp_path / "v3") as b:
        assert a.meta.cameras == b.meta.cameras and a.meta.dt == pytest.approx(b.meta.dt)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x.state, y.state)
            np.testing.assert_array_equal(x.actions, y.actions)
            assert x.instruction == y.instruction and x.num_steps == y.num_steps
            cam = a.meta.cameras[0]
            assert psnr(x.images[cam], y.images[cam]) > MIN_EPISODE_PSNR
