"""Stand-in for comfy.utils.ProgressBar: records updates and, like the real hook, checks for interrupts."""

from . import model_management

updates: list[tuple[object, int, int]] = []


class ProgressBar:
    def __init__(self, total, node_id=None):
        self.total, self.current, self.node_id = total, 0, node_id

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        updates.append((self.node_id, self.current, self.total))
        model_management.throw_exception_if_processing_interrupted()

    def update(self, value):
        self.update_absolute(self.current + value)
