"""`lara`: one command-line entry point for every LARA-ROS job.

Each subcommand lives in its own module exposing
    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int
and is imported only when used, so `lara --help` and `lara doctor` stay fast
and the ROS-free commands never import rclpy.

One error path: a subcommand raises a `lara_policy.common.errors.LaraError` (or a subclass:
StoreError, CheckpointError, BringupError, ConvertError, ...) for bad input; main() prints
"lara <command>: <message>" to stderr, no traceback, and returns 2. argparse usage errors
also return 2 (message on stderr); main() returns the code instead of raising SystemExit.

Option conventions shared by every subcommand (helpers below; README, "The `lara` command"):
- lists: `--opt A B C` or `--opt A,B,C` (both, mixed, or the flag repeated): one flat list (ListOption);
- `--out` names the command's primary output (a store file, a run/results folder; its help says
  which); `--json FILE` a machine-readable summary; parent folders are created (write_json);
- `--quiet`: no progress bar; `--seed`: an RNG seed; `--seed-start`: the first layout seed;
- renamed flags keep working as hidden aliases that print one deprecation line (deprecated_alias).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from lara_policy import __version__
# the option conventions (common/args.py) are re-exported for code that imported them from here
from lara_policy.common.args import (HelpFormatter, ListOption, add_list_option, deprecated_alias,  # noqa: F401
                                     float_in_range, non_negative_float, positive_float, write_json)
from lara_policy.common.errors import LaraError

# name -> (module, one-line help). Two-word names ("bench model") are nested commands.
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("lara_policy.doctor", "check the installation: ROS 2 + DDS, lara_msgs, MuJoCo, torch, language model"),
    "demos": ("lara_policy.formats.demos", "generate Meta-World expert demonstrations / action-free video into an episode store"),
    "convert": ("lara_policy.formats.convert", "convert episodes between formats (rosbag2 bags -> episode store, ...); source format detected"),
    "train": ("lara_policy.core.train", "train: lam-pretrain | pretrain | posttrain | lam-refine (single process or torchrun)"),
    "export": ("lara_policy.core.export", "export a checkpoint's inference path (ONNX) for the onnxruntime runtime: policy + dynamics-check graphs, parity checked"),
    "probe": ("lara_policy.core.probe", "action probe: how well LAM latents predict ground-truth actions (R^2)"),
    "eval sim": ("lara_policy.evaluation.sim_eval", "closed-loop Meta-World evaluation of a policy (oracle | random | checkpoint)"),
    "eval bag": ("lara_policy.evaluation.bag_eval", "open-loop replay of recorded bags through a checkpoint: action error, dynamics-check flags, surprise, latency (an offline proxy)"),
    "experiment run": ("lara_policy.evaluation.experiment", "run a resumable grid of training + held-out evaluation runs from a YAML spec and aggregate it (bootstrap intervals, paired differences)"),
    "bench model": ("lara_policy.core.bench", "benchmark inference latency and the LARA/DiT-only training-step ratio"),
    "bench ros": ("lara_policy.ros.bench", "benchmark camera->command latency and control-tick regularity through ROS"),
    "bench recorder": ("lara_policy.ros.bench_recorder", "benchmark the recorder: camera + state at a fixed rate for "
                       "N minutes over DDS; messages lost, recorder memory, bag size"),
    "monitor ros": ("lara_policy.ros.monitor_run", "the fault monitors through the ROS graph: a jammed arm or frozen camera in "
                    "sim_node -> LAM / camera_watch_node alarm -> command_node hold, delays per episode, false alarms "
                    "(issue 25)"),
    "bringup": ("lara_policy.ros.bringup", "run a node graph (sim/real) from a lara_bringup YAML in one process"),
    "bag info": ("lara_policy.formats.rosbag.episode", "summary of a recorder episode bag (files, messages, duration, topics) as JSON"),
    "bag recover": ("lara_policy.formats.rosbag.episode", "rebuild metadata.yaml of an interrupted recorder episode from its "
                    "closed segments"),
    "bag dump": ("lara_policy.formats.rosbag.episode", "one line per message of an episode bag: time, topic, type"),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS) + 2
    lines = [
        f"lara {__version__}: LARA latent-action-aligned VLA policies on ROS 2",
        "",
        "usage: lara <command> [options]      (lara <command> --help for its options)",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}{help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def _resolve(argv: list[str]) -> tuple[str, list[str]] | None:
    """Longest command name matching the start of argv."""
    for n_words in (2, 1):
        name = " ".join(argv[:n_words])
        if len(argv) >= n_words and name in COMMANDS:
            return name, argv[n_words:]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # no command: usage on stderr, a usage error (2)
        print(_usage(), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version", "version"):
        print(f"lara {__version__}")
        return 0
    resolved = _resolve(argv)
    if resolved is None:
        group = [n for n in COMMANDS if n.startswith(argv[0] + " ")]
        if group and argv[1:2] in (["-h"], ["--help"]):   # `lara bench --help`: the group's commands
            width = max(len(n) for n in group) + 2
            print(f"usage: lara {argv[0]} <{'|'.join(n.split()[1] for n in group)}> [options]\n\ncommands:\n"
                  + "\n".join(f"  {n:<{width}}{COMMANDS[n][1]}" for n in group))
            return 0
        hint = f"; did you mean one of: {', '.join(group)}" if group else ""
        print(f"lara: unknown command '{' '.join(argv[:2])}'{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    name, rest = resolved
    module_name, help_ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"lara {name}: cannot import {module_name} ({exc}). "
              "Run scripts/setup.sh, then `source env.sh`.", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"lara {name}", description=help_, formatter_class=HelpFormatter)
    parser.set_defaults(lara_command=name)   # modules serving several commands (bag info|recover|dump)
    module.add_arguments(parser)
    try:
        args = parser.parse_args(rest)
    except SystemExit as exc:  # argparse: usage error (2, message on stderr) or --help (0)
        return exc.code if isinstance(exc.code, int) else 2
    args.lara_argv = ["lara", *name.split(), *rest]  # the exact command line, for provenance records
    try:
        return int(module.run(args) or 0)
    except LaraError as exc:  # bad input the user can fix: the message, no traceback
        print(f"lara {name}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
