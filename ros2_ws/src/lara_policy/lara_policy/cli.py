"""`lara`: one command-line entry point for every LARA-ROS job.

Each subcommand lives in its own module exposing
    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int
and is imported only when used, so `lara --help` and `lara doctor` stay fast
and the ROS-free commands never import rclpy.

One error path: a subcommand raises a `lara_policy.errors.LaraError` (or a subclass:
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
import re
import sys
from pathlib import Path

from lara_policy import __version__, fileio
from lara_policy.errors import LaraError

# name -> (module, one-line help). Two-word names ("bench model") are nested commands.
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("lara_policy.doctor", "check the installation: ROS 2 + DDS, lara_msgs, MuJoCo, torch, language model"),
    "demos": ("lara_policy.data.demos", "generate Meta-World expert demonstrations / action-free video into an episode store"),
    "convert": ("lara_policy.data.convert", "convert episodes between formats (rosbag2 bags -> episode store, ...); source format detected"),
    "train": ("lara_policy.core.train", "train: lam-pretrain | pretrain | posttrain | lam-refine (single process or torchrun)"),
    "probe": ("lara_policy.core.probe", "action probe: how well LAM latents predict ground-truth actions (R^2)"),
    "eval sim": ("lara_policy.evaluation.sim_eval", "closed-loop Meta-World evaluation of a policy (oracle | random | checkpoint)"),
    "eval bag": ("lara_policy.evaluation.bag_eval", "open-loop replay of recorded bags through a checkpoint: action error, dynamics-check flags, surprise, latency (an offline proxy)"),
    "experiment run": ("lara_policy.evaluation.experiment", "run a resumable grid of training + held-out evaluation runs from a YAML spec and aggregate it (bootstrap intervals, paired differences)"),
    "bench model": ("lara_policy.core.bench", "benchmark inference latency and the LARA/DiT-only training-step ratio"),
    "bench ros": ("lara_policy.ros.bench", "benchmark camera->command latency and control-tick regularity through ROS"),
    "bench recorder": ("lara_policy.ros.bench_recorder", "benchmark the recorder: camera + state at a fixed rate for "
                       "N minutes over DDS; messages lost, recorder memory, bag size"),
    "bringup": ("lara_policy.ros.bringup", "run a node graph (sim/real) from a lara_bringup YAML in one process"),
    "bag info": ("lara_policy.ros.bag_tools", "summary of a recorder episode bag (files, messages, duration, topics) as JSON"),
    "bag recover": ("lara_policy.ros.bag_tools", "rebuild metadata.yaml of an interrupted recorder episode from its "
                    "closed segments"),
    "bag dump": ("lara_policy.ros.bag_tools", "one line per message of an episode bag: time, topic, type"),
}


# ------------------------------------------------------------------------------ option conventions
_NAMES_DEFAULT = re.compile(r"\(default\b|\bdefault:", re.IGNORECASE)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown once and only where they say something (not None/''/False, not when the help
    already names the default); list defaults as A,B; multi-line descriptions (module docstrings)
    kept as written."""

    def _fill_text(self, text, width, indent):
        if "\n" in text.strip():
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action):
        help_ = action.help or ""
        d = action.default
        if ("%(default)" in help_ or _NAMES_DEFAULT.search(help_) or action.nargs == 0
                or d is None or d is argparse.SUPPRESS or d == "" or d == []):
            return help_
        if isinstance(d, (list, tuple)):
            return f"{help_} (default: {','.join(map(str, d))})"
        return super()._get_help_string(action)


class ListOption(argparse.Action):
    """A list option with one syntax everywhere: `--opt A B C`, `--opt A,B,C`, both mixed, or the
    flag repeated (the values add up). Items are split on commas, then converted by `item_type`
    (an argparse type such as positive_int) and checked against `item_choices`."""

    def __init__(self, option_strings, dest, nargs="+", item_type=str, item_choices=None, **kwargs):
        super().__init__(option_strings, dest, nargs=nargs, **kwargs)
        self.item_type, self.item_choices = item_type, item_choices

    def __call__(self, parser, namespace, values, option_string=None):
        items = []
        for raw in values if isinstance(values, list) else [values]:
            for part in str(raw).split(","):
                part = part.strip()
                if not part:
                    continue
                try:
                    value = self.item_type(part)
                except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
                    raise argparse.ArgumentError(self, f"{exc} (item {part!r})") from None
                if self.item_choices is not None and value not in self.item_choices:
                    raise argparse.ArgumentError(self, f"invalid choice {part!r} (choose from "
                                                       f"{', '.join(map(str, self.item_choices))})")
                items.append(value)
        if not items and self.nargs == "+":
            raise argparse.ArgumentError(self, "expected at least one value")
        current = getattr(namespace, self.dest, None)
        if current is None or current is self.default:   # the first use replaces the default
            current = []
        setattr(namespace, self.dest, [*current, *items])


def add_list_option(parser, *flags, help: str = "", **kwargs):  # noqa: A002 - argparse's name
    """`parser.add_argument` of a ListOption; the help says how to write the list."""
    kwargs.setdefault("default", [])
    return parser.add_argument(*flags, action=ListOption, help=f"{help} (space- or comma-separated)".strip(),
                               **kwargs)


class _DeprecatedAlias(argparse.Action):
    def __init__(self, option_strings, dest, new_flag: str = "", **kwargs):
        kwargs.setdefault("default", argparse.SUPPRESS)
        kwargs["help"] = argparse.SUPPRESS
        super().__init__(option_strings, dest, **kwargs)
        self.new_flag = new_flag

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: {option_string} is deprecated; use {self.new_flag}", file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def deprecated_alias(parser, old_flag: str, new_flag: str, dest: str, flag: bool = False, **kwargs):
    """A renamed option's old name: hidden from --help, still accepted (stores into the new option's
    `dest`), one line on stderr says the new name. `flag=True` for on/off options."""
    if flag:
        kwargs.update(nargs=0, const=True)
    return parser.add_argument(old_flag, dest=dest, action=_DeprecatedAlias, new_flag=new_flag, **kwargs)


def float_in_range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                   hi_open: bool = False):
    """argparse type factory: a finite float in [lo, hi] (open ends with lo_open / hi_open; None = unbounded)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        bad = value != value or value in (float("inf"), float("-inf"))
        if lo is not None:
            bad |= value <= lo if lo_open else value < lo
        if hi is not None:
            bad |= value >= hi if hi_open else value > hi
        if bad:
            lo_s = "-inf" if lo is None else f"{lo:g}"
            hi_s = "inf" if hi is None else f"{hi:g}"
            raise argparse.ArgumentTypeError(f"must be in {'(' if lo_open or lo is None else '['}{lo_s}, "
                                             f"{hi_s}{')' if hi_open or hi is None else ']'}, got {text}")
        return value
    parse.__name__ = "number"
    return parse


positive_float = float_in_range(0.0, None, lo_open=True)
non_negative_float = float_in_range(0.0, None)


def write_json(path: str | Path, data) -> Path:
    """`--json FILE` (and JSON `--out` files): parent folders created, written in one piece."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return fileio.write_json(path, data)


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
