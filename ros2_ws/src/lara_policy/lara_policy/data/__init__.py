"""Data: the on-disk episode store, Meta-World demonstrations and action-free video."""
