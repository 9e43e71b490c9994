"""`lara convert SRC... --out DST [--to FORMAT]`: one command for every episode format.

The source format is detected (`detect(path)`); the target is `--to`, else the format whose
extension DST has (`.hdf5` -> the LARA episode store). Readers and writers meet in one
interchange: a `StoreMeta` plus an iterator of `Episode`s (lara_policy.formats.store).

Formats (the registry `FORMATS`, checked in registration order):
    rosbag2     read   rosbag2 bags (MCAP or sqlite3): this project's recorder episodes (no mapping
                       needed; a folder of episodes converts each), or any bag through --mapping
                       (docs/bag_conversion.md); lara_policy.formats.rosbag
    lara-hdf5   read/write   the LARA episode store (docs/episode_store.md); reading one and writing
                       another re-applies --action-free / --trim-idle

    lerobot     read/write   LeRobotDataset v3.0 folders (docs/lerobot_v3.md); lara_policy.formats.lerobot

Adding a format is one registration at the end of this module, e.g.

    register(Format("lerobot", detect=lerobot.detect, read=_read_lerobot, write=_write_lerobot,
                    help="LeRobotDataset v3.0 folder"))

with
    detect(path: Path) -> bool
    read(sources: list[Path], args: argparse.Namespace) -> tuple[StoreMeta, Iterator[Episode]]
    write(dst: Path, meta: StoreMeta, episodes: Iterable[Episode], args) -> dict   (a summary)
Either of read/write may be None. `args` carries the common options (action_free, trim_idle,
rate, overwrite, mapping, instruction, ...). Raise ConvertError (or StoreError) for bad input:
`lara convert` prints it and exits 2.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from lara_policy.formats.rosbag import ConvertError, idle_mask, trim_range
from lara_policy.formats.store import Episode, EpisodeStore, StoreError, StoreMeta
from lara_policy.formats import lerobot


@dataclass
class Format:
    name: str
    detect: Callable[[Path], bool]
    read: Callable | None = None          # (sources, args) -> (StoreMeta, Iterator[Episode])
    write: Callable | None = None         # (dst, meta, episodes, args) -> dict
    extensions: tuple[str, ...] = ()      # DST suffixes that select this format as the target
    help: str = ""


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    FORMATS[fmt.name] = fmt
    return fmt


def detect(path: str | Path) -> str:
    """The name of the first registered format whose detect() accepts path; ConvertError if none."""
    p = Path(path)
    if not p.exists():
        raise ConvertError(f"{p}: no such file or folder")
    for fmt in FORMATS.values():
        if fmt.read is not None and fmt.detect(p):
            return fmt.name
    raise ConvertError(f"{p}: format not recognised (readable formats: "
                       f"{', '.join(n for n, f in FORMATS.items() if f.read)})")


def target_format(dst: Path, to: str | None) -> str:
    if to:
        if to not in FORMATS or FORMATS[to].write is None:
            raise ConvertError(f"--to {to}: not a writable format (writable: "
                               f"{', '.join(n for n, f in FORMATS.items() if f.write)})")
        return to
    for fmt in FORMATS.values():
        if fmt.write is not None and any(str(dst).endswith(e) for e in fmt.extensions):
            return fmt.name
    raise ConvertError(f"--out {dst}: cannot tell the target format from the name; give --to "
                       f"({', '.join(n for n, f in FORMATS.items() if f.write)})")


def postprocess(meta: StoreMeta, episodes: Iterable[Episode], action_free: bool, trim_idle: bool,
                idle_eps: float = 1e-3) -> tuple[StoreMeta, Iterator[Episode]]:
    """Format-independent --action-free / --trim-idle for readers that do not apply them."""
    if action_free:      # action_dim / action_space stay (as `lara demos --action-free` writes them)
        meta.extra = {**meta.extra, "action_free": True}

    def gen():
        for ep in episodes:
            if action_free:
                ep.actions = None
            if trim_idle:
                cam = next(iter(ep.images))
                lo, hi = trim_range(idle_mask(ep.actions, ep.images[cam], idle_eps,
                                              has_gripper=meta.action_space.endswith("gripper")))
                if hi - lo < 2:
                    continue
                ep = Episode({n: v[lo:hi] for n, v in ep.images.items()}, ep.state[lo:hi],
                             None if ep.actions is None else ep.actions[lo:hi], ep.instruction, ep.task,
                             ep.seed, ep.success, ep.source,
                             None if ep.step_success is None else ep.step_success[lo:hi], ep.extra)
            yield ep
    return meta, gen()


# ------------------------------------------------------------------------------ built-in formats
def _read_rosbag(sources: list[Path], args) -> tuple[StoreMeta, Iterator[Episode]]:
    from lara_policy.formats.rosbag import convert_bags, load_mapping
    mapping = load_mapping(args.mapping) if getattr(args, "mapping", None) else None
    scale = getattr(args, "ee_delta_scale_m", None)
    if mapping is not None and scale is not None and mapping.action is not None \
            and abs(scale - mapping.action.ee_delta_scale_m) > 1e-12:
        raise ConvertError(f"--ee-delta-scale-m {scale:g} contradicts the mapping's action.ee_delta_scale_m "
                           f"{mapping.action.ee_delta_scale_m:g} ({args.mapping}); with --mapping the scale is the "
                           "mapping's: set it there")
    return convert_bags(sources, mapping, action_free=args.action_free, rate_hz=args.rate,
                        trim_idle=args.trim_idle, instruction=getattr(args, "instruction", "") or "",
                        camera_name=getattr(args, "camera_name", "corner4"),
                        ee_delta_scale_m=0.01 if scale is None else scale,
                        log=lambda m: print(m, file=sys.stderr))


def _detect_hdf5(p: Path) -> bool:
    if not p.is_file() or p.suffix not in (".hdf5", ".h5"):
        return False
    try:
        with EpisodeStore(p):
            return True
    except StoreError:
        return False


def read_concatenated(sources: list[Path], open_source, error: type[Exception], args
                      ) -> tuple[StoreMeta, Iterator[Episode]]:
    """Episodes of several sources of one format, in order, as one stream. `open_source(path)`
    is a context manager with `.meta` that iterates episodes; sources must agree on cameras,
    state/action sizes and image size (else `error` naming the file); phrasings are merged."""
    if getattr(args, "mapping", None):
        raise error("--mapping applies to rosbag2 sources only")
    with open_source(sources[0]) as first:
        meta = first.meta

    def gen() -> Iterator[Episode]:
        for src in sources:
            with open_source(src) as s:
                m = s.meta
                if (m.cameras, m.state_dim, m.action_dim, tuple(m.image_size)) != \
                        (meta.cameras, meta.state_dim, meta.action_dim, tuple(meta.image_size)):
                    raise error(f"{src}: cameras/state/action/image size differ from {sources[0]}")
                for task, texts in m.phrasings.items():
                    merged = meta.phrasings.setdefault(task, [])
                    merged.extend(t for t in texts if t not in merged)
                yield from s
    return postprocess(meta, gen(), getattr(args, "action_free", False), getattr(args, "trim_idle", False))


def _read_hdf5(sources: list[Path], args) -> tuple[StoreMeta, Iterator[Episode]]:
    return read_concatenated(sources, EpisodeStore, ConvertError, args)


def _write_hdf5(dst: Path, meta: StoreMeta, episodes: Iterable[Episode], args) -> dict:
    """The store is written under a temporary name and renamed to dst at the end: a conversion
    that fails part-way leaves nothing at dst (and keeps a store it would have replaced)."""
    from lara_policy.common.fileio import staged_output
    n = 0
    phrasings: dict[str, set] = {t: set(v) for t, v in meta.phrasings.items()}
    if dst.exists() and not args.overwrite:
        raise ConvertError(f"{dst} exists; pass --overwrite to replace it")
    with staged_output(dst, overwrite=True) as tmp:
        store = EpisodeStore.create(tmp, meta)
        try:
            for ep in episodes:
                store.append(ep)
                phrasings.setdefault(ep.task, set()).add(ep.instruction)
                n += 1
            store.set_phrasings({t: sorted(v) for t, v in phrasings.items()})
            summary = store.summary()
        finally:
            store.close()
        if n == 0:
            raise ConvertError("no episode to write (all empty after alignment / trimming)")
    return summary


def _rosbag_detect(p: Path) -> bool:
    from lara_policy.formats.rosbag import is_rosbag
    return is_rosbag(p)


register(Format("rosbag2", detect=_rosbag_detect, read=_read_rosbag,
                help="rosbag2 MCAP/sqlite3: recorder episodes (no mapping needed) or any bag with --mapping"))
register(Format("lara-hdf5", detect=_detect_hdf5, read=_read_hdf5, write=_write_hdf5,
                extensions=(".hdf5", ".h5"), help="LARA episode store (HDF5)"))
def _read_lerobot(sources: list[Path], args) -> tuple[StoreMeta, Iterator[Episode]]:
    """One or more v3 folders -> (StoreMeta, episodes); --action-free / --trim-idle applied."""
    return read_concatenated(sources, lerobot.LeRobotV3Source, lerobot.LeRobotError, args)


def _write_lerobot(dst: Path, meta: StoreMeta, episodes: Iterable[Episode], args) -> dict:
    """`lara convert SRC --to lerobot --out DIR`: LeRobot's default encoding (AV1, crf 30)."""
    summary = lerobot.write_episodes(dst, meta, episodes, overwrite=getattr(args, "overwrite", False),
                                     source=" ".join(str(s) for s in getattr(args, "sources", [])))
    return {**summary, "steps": summary["frames"]}


register(Format("lerobot", detect=lerobot.detect, read=_read_lerobot, write=_write_lerobot,
                help="LeRobotDataset v3.0 folder: parquet + mp4 (docs/lerobot_v3.md); write with --to lerobot"))


# ------------------------------------------------------------------------------ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lara_policy.common.args import positive_float
    parser.description = (
        "Convert episodes between formats; the source format is detected. Formats: "
        + "; ".join(f"{n} ({f.help})" for n, f in FORMATS.items())
        + ". A bag recorded by this project's recorder needs no mapping; any other rosbag2 bag needs "
        "--mapping MAP.yaml (docs/bag_conversion.md). Exit 2 on bad input, naming the bag/topic/field.")
    parser.add_argument("sources", nargs="+", metavar="SRC", help="bags / episode folders / stores to convert "
                        "(a folder of recorder episodes converts every episode)")
    parser.add_argument("--out", required=True, metavar="DST", help="output: an episode store file (.hdf5) or, with "
                        "--to lerobot, a dataset folder; parent folders created")
    parser.add_argument("--to", metavar="FORMAT", help="target format (default: from DST's extension)")
    parser.add_argument("--mapping", metavar="MAP.yaml", help="topic mapping for bags not written by the "
                        "LARA recorder (docs/bag_conversion.md)")
    parser.add_argument("--action-free", action="store_true", help="keep frames (and state) only: video-like data")
    parser.add_argument("--rate", type=positive_float, metavar="HZ", help="control rate the samples are aligned to "
                        "(default: the mapping's rate_hz, 30)")
    parser.add_argument("--trim-idle", action="store_true", help="drop idle lead-in and tail (no motion "
                        "commanded; for action-free data: frames that do not change)")
    parser.add_argument("--instruction", default="", help="fixed instruction text (overrides the mapping)")
    parser.add_argument("--camera-name", default="corner4", help="camera name for recorder episodes "
                        "(must match the checkpoint's camera to train from it)")
    parser.add_argument("--ee-delta-scale-m", type=positive_float, default=None, help="recorder episodes: metres per "
                        "action unit per step, as command_node's ee_delta_scale_m (twist -> action; default 0.01). "
                        "With --mapping the mapping's action.ee_delta_scale_m applies; a different value here is "
                        "an error")
    parser.add_argument("--print-mapping", action="store_true", help="print the mapping used for the first "
                        "source as YAML, then convert")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DST")


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    try:
        srcs = [Path(s) for s in args.sources]
        names = {detect(s) for s in srcs}
        if len(names) > 1:
            raise ConvertError(f"sources mix formats ({', '.join(sorted(names))}); convert them separately")
        src_fmt = names.pop()
        dst = Path(args.out)
        dst_fmt = target_format(dst, args.to)
        if dst.exists() and not args.overwrite:
            raise ConvertError(f"{dst} exists; pass --overwrite to replace it")
        if args.print_mapping:
            _print_mapping(srcs[0], args)
        meta, episodes = FORMATS[src_fmt].read(srcs, args)
        summary = FORMATS[dst_fmt].write(dst, meta, episodes, args)
    except (ConvertError, StoreError) as exc:
        print(f"lara convert: {exc}", file=sys.stderr)
        return 2
    print(f"lara convert: {src_fmt} -> {dst_fmt} {dst}: {summary.get('episodes', '?')} episode(s), "
          f"{summary.get('steps', '?')} steps, {meta.action_dim} action dims ({meta.action_space})"
          f"{', ACTION-FREE (no actions stored)' if meta.extra.get('action_free') else ''}, state "
          f"{meta.state_names}, cameras {meta.cameras} {list(meta.image_size)}, dt {meta.dt:.4f} s "
          f"({time.monotonic() - t0:.1f} s)")
    return 0


def _print_mapping(src: Path, args) -> None:
    from lara_policy.formats.rosbag import (bag_topics, expand_sources, is_recorder_episode,
                                                 recorder_mapping)
    from lara_policy.formats.rosbag import dump_yaml
    if args.mapping:
        print(Path(args.mapping).read_text())
        return
    bag = expand_sources([src])[0]
    if is_recorder_episode(bag):
        print(f"# built-in mapping for recorder episode {bag}\n"
              + dump_yaml(recorder_mapping(bag_topics(bag), args.camera_name, args.rate or 30.0,
                                           args.ee_delta_scale_m or 0.01)))
