"""Shared runtime: devices, memory, checkpoint files, weight formats, attention."""
