"""A protocol-faithful fake ComfyUI server for client tests (stdlib only)."""

from fake_comfy.server import Binary, Call, Drop, FakeComfy, Pause, Raw, Scenario, Text

__all__ = ["Binary", "Call", "Drop", "FakeComfy", "Pause", "Raw", "Scenario", "Text"]
