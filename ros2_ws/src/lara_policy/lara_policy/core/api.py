"""Moved to lara_policy.common.policy_api (the policy contract sits below sim and core, which both
use it); this alias goes in the next release."""
from lara_policy.common.moved import alias

alias(__name__, "lara_policy.common.policy_api")
