"""Shared helpers at the bottom of the layers (README, "Architecture"): option conventions and
the policy contract. Imports nothing of lara_policy above it."""
