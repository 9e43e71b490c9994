"""Closed-loop evaluation: the Meta-World harness (`evaluate`), oracle/random policies, statistics."""
from lara_policy.evaluation.stats import wilson_interval  # noqa: F401
