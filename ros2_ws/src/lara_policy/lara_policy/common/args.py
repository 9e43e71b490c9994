"""Option conventions shared by every `lara` subcommand (README, "The `lara` command"), used by
the modules that define a subcommand's arguments (each layer's own), so none of them imports the
CLI on top:
- lists: `--opt A B C` or `--opt A,B,C` (both, mixed, or the flag repeated): one flat list (ListOption);
- `--out` names the command's primary output; `--json FILE` a machine-readable summary; parent
  folders are created (write_json);
- renamed flags keep working as hidden aliases that print one deprecation line (deprecated_alias).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from lara_policy.common import fileio

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
