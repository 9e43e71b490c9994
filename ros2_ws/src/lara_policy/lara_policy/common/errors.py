"""One base for every LARA-ROS domain error, so `lara` has one error path.

A `LaraError` means "the input (a file, a flag, a config) is wrong, and the message says which
and why": `lara` (cli.main) prints the message to stderr, without a traceback, and exits 2.
Anything else that escapes a subcommand is a bug and keeps its traceback.

The domain errors keep their historical second base (RuntimeError / ValueError), so existing
`except RuntimeError` / `except ValueError` handlers still catch them.
"""
from __future__ import annotations

import argparse


class LaraError(Exception):
    """Bad input that the user can fix; the message names the file/flag/field and why."""


def positive_int(text: str, minimum: int = 1) -> int:
    """argparse type: an integer >= 1 (a clear argparse error, exit 2, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (e.g. `lara train --steps 0`: export the init as is)."""
    return positive_int(text, minimum=0)


def int_in_range(lo: int, hi: int):
    """argparse type factory: an integer in [lo, hi]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer in [{lo}, {hi}], got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be in [{lo}, {hi}], got {value}")
        return value
    parse.__name__ = f"int in [{lo}, {hi}]"
    return parse


def positive_int_list(text: str) -> list[int]:
    """argparse type: comma-separated integers, each >= 1 (e.g. "1,2,4")."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    out = []
    for p in parts:
        try:
            out.append(positive_int(p))
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (in {text!r}; expected e.g. 1,2,4)") from None
    return out


class ConvertError(LaraError, ValueError):
    """Bad input for a conversion (`lara convert`, `lara eval bag`); the message names the bag,
    topic and/or field. Defined here so every data module can raise it without import cycles;
    `lara_policy.formats.rosbag.ConvertError` is the same class."""
