"""Aliases for modules that moved: the old name imports the new module itself (same object, so
every name and monkeypatch agrees) and says once where it went."""
from __future__ import annotations

import importlib
import sys
import warnings


def alias(old: str, new: str) -> None:
    warnings.warn(f"{old} moved to {new}; the old name goes in the next release", FutureWarning, stacklevel=3)
    sys.modules[old] = importlib.import_module(new)
