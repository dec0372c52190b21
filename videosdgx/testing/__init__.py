"""Tiny random checkpoints written in the exact official key layouts, for tests and the demo mode.

Nothing here is committed as a binary: files are generated on demand, deterministically from a seed.
"""
