"""Moved to lara_policy.common.fileio (2026-12); this alias goes in the next release."""
from lara_policy.common.moved import alias

alias(__name__, "lara_policy.common.fileio")
