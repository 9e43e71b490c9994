"""Moved to lara_policy.formats.lerobot (a package now); this alias goes in the next release."""
from lara_policy.common.moved import alias

alias(__name__, "lara_policy.formats.lerobot")
