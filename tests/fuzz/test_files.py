"""File fault injection (issue 13): damaged checkpoints, episode stores and bags.

Every generated case takes a VALID file set made by this project's own writers (the shipped
checkpoint, EpisodeStore.create/append, the recorder's segment writer), damages it (cut, flipped
bytes, garbage, deleted files, foreign content, NaN actions, wrong shapes) and loads it with the
real readers. A case passes when the reader raises a LaraError whose message names the damaged
file or its folder, or, for damage that can be harmless (a flipped pixel, an edited JSON value, a
dropped 'actions' dataset = an action-free episode), loads the data. Any other exception, an error
that names neither, or damage that must be detected (a cut weights file or store, NaN actions,
wrong shapes, a deleted file) loading silently, is a failure. A sample per target also goes
through the real `lara` CLI: exit 2, the path on stderr, no traceback.

CI sample: CI_CASES per target, fixed seed. Full counts: `python -m pytest tests/fuzz -m fuzz`."""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from lara_policy import cli  # noqa: E402
from lara_policy.common.errors import LaraError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "lara-metaworld-mt3"

CI_CASES = {"checkpoint": 10, "store": 40, "bag": 15}
FULL_CASES = {"checkpoint": 400, "store": 1000, "bag": 500}


def _settings(n: int):
    return settings(max_examples=n, derandomize=True, database=None, deadline=None, print_blob=False,
                    suppress_health_check=list(HealthCheck))


def _variants(target: str):
    """(CI-sized test, full-count test marked `fuzz`) for one target function."""
    def make(n, mark):
        def test(fuzz_record, base_files):
            _run(target, n, fuzz_record, base_files)
        test.__name__ = f"test_{target}_{'full' if mark else 'sample'}"
        return pytest.mark.fuzz(test) if mark else test
    return make(CI_CASES[target], False), make(FULL_CASES[target], True)


# ---------------------------------------------------------------------------------------- damage
def _cut(path: Path, frac: float) -> str:
    data = path.read_bytes()
    k = int(len(data) * frac)
    path.write_bytes(data[:k])
    return f"cut {path.name} at {k}/{len(data)}"


def _flip(path: Path, positions: list[float], header_only: bool = False) -> str:
    data = bytearray(path.read_bytes())
    if not data:
        return f"flip {path.name} (empty)"
    span = min(len(data), 4096) if header_only else len(data)
    idx = sorted({int(p * (span - 1)) for p in positions})
    for i in idx:
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return f"flip {path.name} bytes {idx[:6]}{'...' if len(idx) > 6 else ''}"


def _garbage(path: Path, blob: bytes) -> str:
    path.write_bytes(blob)
    return f"garbage {path.name} ({len(blob)} bytes)"


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True)
                           | st.text(max_size=8), lambda c: st.lists(c, max_size=3)
                           | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=6)


def _json_edit(path: Path, draw) -> str:
    """Replace / delete one key at some depth of a JSON file, or change a number's value."""
    obj = json.loads(path.read_text())
    node, trail = obj, []
    while isinstance(node, dict) and node:
        key = draw(st.sampled_from(sorted(node)))
        trail.append(key)
        if not isinstance(node[key], dict) or draw(st.booleans()):
            break
        node = node[key]
    if not trail:
        return f"json {path.name} unchanged"
    how = draw(st.sampled_from(["delete", "replace", "scale"]))
    if how == "scale" and not (isinstance(node[trail[-1]], (int, float)) and not isinstance(node[trail[-1]], bool)):
        how = "replace"      # only numbers scale
    if how == "delete":
        del node[trail[-1]]
    elif how == "scale":
        node[trail[-1]] = type(node[trail[-1]])(node[trail[-1]] * draw(st.sampled_from([0, -1, 2, 3])))
    else:
        node[trail[-1]] = draw(JSON_VALUES)
    path.write_text(json.dumps(obj))
    return f"json {path.name} {how} {'.'.join(map(str, trail))}"


# ------------------------------------------------------------------------------------ base files
@pytest.fixture(scope="module")
def base_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz_base")
    return {"root": d, "store": _make_store(d / "store.hdf5"), "bag": _make_bag(d / "bags")}


def _make_store(path: Path) -> Path:
    from lara_policy.formats.store import Episode, EpisodeStore, StoreMeta
    meta = StoreMeta(env="metaworld", action_space="ee_delta_xyz_gripper", action_dim=4, state_dim=7,
                     cameras=["corner4"], image_size=(16, 16), dt=1 / 80,
                     state_names=[f"s{i}" for i in range(7)], phrasings={"reach-v3": ["reach the goal"]},
                     created_by="tests/fuzz", extra={})
    rng = np.random.default_rng(0)
    with EpisodeStore.create(path, meta) as s:
        for i in range(3):
            t = 6 + i
            s.append(Episode(images={"corner4": rng.integers(0, 255, (t, 16, 16, 3), dtype=np.uint8)},
                             state=rng.normal(size=(t, 7)).astype(np.float32),
                             actions=rng.uniform(-1, 1, (t, 4)).astype(np.float32),
                             instruction="reach the goal", task="reach-v3", seed=i, success=True,
                             source="fuzz"), compression=None)
    return path


def _make_bag(out: Path) -> Path | None:
    try:
        sys.path.insert(0, str(REPO / "tests" / "data"))
        from bagmaker import recorder_episode
    except ImportError:          # rclpy / lara_msgs missing: the bag target skips
        return None
    return recorder_episode(out, steps=12, flush_every=10, image_size=16)


# ----------------------------------------------------------------------------------------- targets
def _names_path(msg: str, *paths: Path) -> bool:
    return any(str(p) in msg for p in paths)


def _damage_checkpoint(d: Path, draw) -> str:
    files = ["model.safetensors", "config.json", "stats.json", "meta.json", "text.safetensors"]
    f = d / draw(st.sampled_from(files))
    op = draw(st.sampled_from(["cut", "flip", "flip_header", "garbage", "delete", "json"]))
    if op == "cut":           # a cut weights file can never load
        return _cut(f, draw(st.floats(0, 0.999))), f.name == "model.safetensors"
    if op in ("flip", "flip_header"):
        if f.name == "model.safetensors" and op == "flip" and draw(st.booleans()):
            # a flip in the tensor data is only detectable through meta.json's sha256: drop it too
            m = json.loads((d / "meta.json").read_text())
            m.pop("sha256", None)
            (d / "meta.json").write_text(json.dumps(m))
        return _flip(f, draw(st.lists(st.floats(0, 1), min_size=1, max_size=8)),
                     header_only=op == "flip_header"), False
    if op == "garbage":
        return _garbage(f, draw(st.binary(max_size=256))), f.name != "text.safetensors"
    if op == "delete":       # only text.safetensors is optional (instructions then embed on first use)
        f.unlink()
        return f"delete {f.name}", f.name != "text.safetensors"
    if f.suffix != ".json":
        f = d / "config.json"
    return _json_edit(f, draw), False


def _load_checkpoint(d: Path) -> None:
    from lara_policy.core.policy import LaraPolicy
    LaraPolicy.from_checkpoint(d, device="cpu")


def _damage_store(p: Path, draw) -> str:
    import h5py
    op = draw(st.sampled_from(["cut", "flip", "garbage", "foreign", "nan_actions", "wrong_shape",
                               "drop_dataset", "attr"]))
    if op == "cut":
        return _cut(p, draw(st.floats(0, 0.999))), True
    if op == "flip":
        return _flip(p, draw(st.lists(st.floats(0, 1), min_size=1, max_size=16))), False
    if op == "garbage":
        return _garbage(p, draw(st.binary(max_size=512))), True
    if op == "foreign":          # an HDF5 file of someone else's (maybe pretending to be ours)
        p.unlink()
        with h5py.File(p, "w") as f:
            if draw(st.booleans()):
                f.attrs["format"] = "lara-episodes"
                f.attrs["version"] = draw(st.integers(-1, 3))
            for k in draw(st.lists(st.sampled_from(["episodes", "data", "obs", "actions"]), max_size=3, unique=True)):
                f.create_dataset(k, data=np.zeros(draw(st.integers(0, 4))))
        return "foreign hdf5", True
    with h5py.File(p, "r+") as f:
        eps = sorted(f["episodes"])
        g = f["episodes"][draw(st.sampled_from(eps))]
        if op == "nan_actions":
            a = g["actions"][()]
            a[draw(st.integers(0, a.shape[0] - 1)), draw(st.integers(0, a.shape[1] - 1))] = \
                draw(st.sampled_from([np.nan, np.inf, -np.inf]))
            g["actions"][...] = a
            return f"non-finite action in {g.name}", True
        if op == "wrong_shape":
            key = draw(st.sampled_from(["actions", "state", "obs/corner4"]))
            shape = list(g[key].shape)
            shape[draw(st.integers(0, len(shape) - 1))] += draw(st.sampled_from([-1, 1, 2]))
            del g[key]
            g.create_dataset(key, data=np.zeros([max(s, 0) for s in shape], np.float32 if key != "obs/corner4"
                                                else np.uint8))
            return f"{g.name}/{key} shape {shape}", True
        if op == "drop_dataset":
            key = draw(st.sampled_from(["actions", "state", "obs/corner4", "obs"]))
            del g[key]       # without 'actions' the episode reads as action-free (allowed)
            return f"delete {g.name}/{key}", key != "actions"
        # attr: damage a store- or episode-level attribute
        holder = draw(st.sampled_from([f, g]))
        key = draw(st.sampled_from(sorted(holder.attrs)))
        val = draw(st.sampled_from(["", "{", "[1,2", -1, 10**9, "nan"]))
        holder.attrs[key] = val
        return f"attr {holder.name}.{key} = {val!r}", False


def _load_store(p: Path) -> None:
    from lara_policy.formats.store import EpisodeStore
    with EpisodeStore(p) as s:
        for _ in s:
            pass


def _damage_bag(d: Path, draw) -> str:
    mcaps = sorted(d.glob("*.mcap"))
    op = draw(st.sampled_from(["cut", "flip", "garbage", "delete_mcap", "delete_meta", "meta_garbage", "meta_json"]))
    f = draw(st.sampled_from(mcaps))
    if op == "cut":
        return _cut(f, draw(st.floats(0, 0.999))), True
    if op == "flip":
        return _flip(f, draw(st.lists(st.floats(0, 1), min_size=1, max_size=8))), False
    if op == "garbage":
        return _garbage(f, draw(st.binary(max_size=256))), True
    if op == "delete_mcap":
        f.unlink()
        return f"delete {f.name}", True
    if op == "delete_meta":
        (d / "metadata.yaml").unlink()
        return "delete metadata.yaml", True
    if op == "meta_garbage":
        return _garbage(d / "metadata.yaml", draw(st.binary(max_size=128))), False
    return _garbage(d / "episode_meta.json", draw(st.binary(max_size=64))), False


def _load_bag(d: Path) -> None:
    from lara_policy.formats.rosbag import expand_sources
    from lara_policy.formats.rosbag import bag_info, iter_messages
    expand_sources([d])
    bag_info(d)
    for _ in iter_messages(d):
        pass


TARGETS = {
    "checkpoint": (lambda base: base["root"], _damage_checkpoint, _load_checkpoint),
    "store": (lambda base: base["store"], _damage_store, _load_store),
    "bag": (lambda base: base["bag"], _damage_bag, _load_bag),
}


def _fresh_copy(target: str, base, parent: Path | None = None) -> tuple[Path, Path]:
    tmp = Path(tempfile.mkdtemp(prefix=f"fuzz_{target}_", dir=parent))
    if target == "checkpoint":
        dst = tmp / "ckpt"
        shutil.copytree(SHIPPED, dst, ignore=shutil.ignore_patterns("card", "README.md"))
    elif target == "store":
        dst = tmp / "store.hdf5"
        shutil.copy(base["store"], dst)
    else:
        dst = tmp / base["bag"].name
        shutil.copytree(base["bag"], dst)
    return tmp, dst


def _run(target: str, n: int, rec, base) -> None:
    if target == "bag" and base["bag"] is None:
        pytest.skip("rclpy/lara_msgs not importable: no recorder bag to damage")
    _, damage, load = TARGETS[target]

    @_settings(n)
    @given(st.data())
    def prop(data):
        tmp, dst = _fresh_copy(target, base)
        try:
            case, must_fail = damage(dst, data.draw)
            try:
                load(dst)
            except LaraError as exc:
                if _names_path(str(exc), dst):
                    rec.ok()
                else:
                    rec.fail(case, f"{type(exc).__name__} does not name {dst}: {exc}")
            except Exception as exc:  # noqa: BLE001 - the point of the fuzzer
                rec.fail(case, f"{type(exc).__name__}: {str(exc)[:200]}")
            else:                    # loaded: fine for harmless damage, a silent loss otherwise
                if must_fail:
                    rec.fail(case, "loaded without an error")
                else:
                    rec.ok()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    prop()
    rec.check()


test_checkpoint_sample, test_checkpoint_full = _variants("checkpoint")
test_store_sample, test_store_full = _variants("store")
test_bag_sample, test_bag_full = _variants("bag")


# ------------------------------------------------------------------------- through the real CLI
def _cli(argv, capsys) -> tuple[int, str]:
    rc = cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    return rc, cap.err


def test_cli_on_damaged_files(base_files, tmp_path, capsys):
    """One damaged file of each kind through the command a user would run: exit 2, path on stderr."""
    tmp, ck = _fresh_copy("checkpoint", base_files, tmp_path)      # under tmp_path: cleaned up by pytest
    _cut(ck / "model.safetensors", 0.3)
    rc, err = _cli(["eval", "sim", "--policy", ck, "--tasks", "reach", "--episodes", "1", "--quiet",
                    "--out", tmp_path / "e"], capsys)
    assert rc == 2 and str(ck / "model.safetensors") in err
    (ck / "config.json").write_text("{not json")
    rc, err = _cli(["probe", "--lam", ck, "--data", base_files["store"], "--allow-train-seeds"], capsys)
    assert rc == 2 and str(ck / "config.json") in err
    shutil.rmtree(tmp)

    tmp, store = _fresh_copy("store", base_files, tmp_path)
    import h5py
    with h5py.File(store, "r+") as f:
        g = f["episodes"][sorted(f["episodes"])[1]]
        a = g["actions"][()]
        a[2, 1] = np.nan
        g["actions"][...] = a
    rc, err = _cli(["train", "--data", store, "--steps", "1", "--out", tmp_path / "run"], capsys)
    assert rc == 2 and str(store) in err and "NaN" in err and "ep_000001" in err
    _cut(store, 0.5)
    rc, err = _cli(["train", "--data", store, "--steps", "1", "--out", tmp_path / "run"], capsys)
    assert rc == 2 and str(store) in err
    shutil.rmtree(tmp)

    if base_files["bag"] is not None:
        from lara_policy.formats.rosbag import episode as bag_tools
        tmp, bag = _fresh_copy("bag", base_files, tmp_path)
        _cut(sorted(bag.glob("*.mcap"))[0], 0.5)
        rc, err = _cli(["convert", bag, "--out", tmp_path / "b.hdf5"], capsys)
        assert rc == 2 and str(bag) in err
        assert bag_tools.main(["dump", str(bag)]) == 2
        err = capsys.readouterr().err
        assert str(bag) in err and "Traceback" not in err
        (bag / "metadata.yaml").unlink()
        assert bag_tools.main(["info", str(bag)]) == 2
        err = capsys.readouterr().err
        assert str(bag / "metadata.yaml") in err and "Traceback" not in err
        shutil.rmtree(tmp)


# ------------------------------------------------------------------------- mapping text (issue 21)
def _mapping_case(n: int, tmp_path, capsys) -> None:
    """The lab mapping (tests/data/bagmaker.LAB_MAPPING) with YAML-significant characters
    inserted, spans deleted or lines duplicated, through `lara convert` on the lab bag: exit 0, or
    exit 2 with exactly ONE line on stderr, `lara convert: ...`, no traceback, nothing at --out."""
    pytest.importorskip("rosbags")
    pytest.importorskip("cv2")
    sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
    from bagmaker import LAB_MAPPING, lab_bag
    bag, _ = lab_bag(tmp_path / "lab", episodes=1, frames=8)
    text = LAB_MAPPING
    bad = []

    @_settings(n)
    @given(st.data())
    def prop(data):
        t = text
        for _ in range(data.draw(st.integers(1, 3))):
            op = data.draw(st.sampled_from(["insert", "delete", "dup"]))
            i = data.draw(st.integers(0, len(t)))
            if op == "insert":
                t = t[:i] + data.draw(st.sampled_from(list("[]{}:,#-'\"\t\n &*!|>%@`"))) + t[i:]
            elif op == "delete":
                t = t[:i] + t[i + data.draw(st.integers(1, 12)):]
            else:
                lines = t.splitlines(True)
                k = data.draw(st.integers(0, max(len(lines) - 1, 0)))
                t = "".join(lines[:k + 1] + lines[k:k + 1] + lines[k + 1:])
        mp, out = tmp_path / "m.yaml", tmp_path / "o.hdf5"
        mp.write_text(t)
        out.unlink(missing_ok=True)
        try:
            rc = cli.main(["convert", str(bag), "--mapping", str(mp), "--out", str(out)])
        except Exception as exc:  # noqa: BLE001 - the point of the fuzzer
            bad.append((t, f"raised {type(exc).__name__}: {exc}"))
            return
        err = capsys.readouterr().err.strip()
        if rc == 0:
            return
        if rc != 2 or len(err.splitlines()) != 1 or not err.startswith("lara convert: ") or out.exists():
            bad.append((t, f"rc {rc}: {err[:300]}"))

    prop()
    assert not bad, f"{len(bad)} bad case(s); first: {bad[0][1]!r} for mapping:\n{bad[0][0]}"


def test_mapping_text_sample(tmp_path, capsys):
    _mapping_case(25, tmp_path, capsys)


@pytest.mark.fuzz
def test_mapping_text_full(tmp_path, capsys):
    _mapping_case(500, tmp_path, capsys)
