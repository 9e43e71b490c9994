"""Simulation: Meta-World v3 as a LARA robot (env wrapper, task phrasings, distractors)."""
