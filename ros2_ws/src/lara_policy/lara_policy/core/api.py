"""Moved to lara_policy.common.policy_api (the policy contract sits below sim and core, which both
use it). Re-exported here for code that imports it from the old place."""
from lara_policy.common.policy_api import (ChunkPrediction, DynamicsCheckResult, Observation, Policy,  # noqa: F401
                                           PolicyMeta)
