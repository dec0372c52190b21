"""The checks every bad-input table shares: run an entry point in-process under a deadline, then judge it.

`Tried.judge` raises an AssertionError whose message starts with the outcome class the INTEGRATION.md table counts:
TRACEBACK (an exception reached the user), HANG (no answer within the deadline), UNSAFE (a file was written outside
the allowed folders), SILENT (wrong exit code: accepted, or refused under another code), MESSAGE (the message does not
name the cause), LOST (a finished result was not kept).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def files_under(root: Path) -> set[Path]:
    """Every file and symlink below `root`."""
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@dataclass
class Tried:
    """What one bad input did: exit code, escaped exception, text shown, time taken."""

    code: int | None = None
    error: BaseException | None = None
    text: str = ""
    seconds: float = 0.0
    hung: bool = False
    new_files: set[Path] = field(default_factory=set)

    def judge(self, code: int, words: tuple[str, ...], allowed: tuple[Path, ...] = ()) -> None:
        if self.hung:
            raise AssertionError(f"HANG: no answer after {self.seconds:.1f} s")
        if self.error is not None:
            raise AssertionError(f"TRACEBACK: {type(self.error).__name__}: {self.error}")
        outside = sorted(str(p) for p in self.new_files if not any(p.is_relative_to(a) for a in allowed))
        if outside:
            raise AssertionError(f"UNSAFE: wrote {outside}")
        if self.code != code:
            raise AssertionError(f"SILENT: exit code {self.code}, expected {code}; shown: {self.text[-400:]!r}")
        missing = [w for w in words if w.lower() not in self.text.lower()]
        if missing:
            raise AssertionError(f"MESSAGE: {missing} not in {self.text[-600:]!r}")
        if "Traceback (most recent call last)" in self.text:
            raise AssertionError("TRACEBACK: a Python traceback was printed")


def warm_up() -> None:
    """Import what the commands need (torch included) before any timed call, so that a slow import under load is
    never taken for a hang."""
    from videosdgx.cli import build_parser

    build_parser()


def attempt(entry: Callable[[], int], root: Path, caplog: pytest.LogCaptureFixture,
            capsys: pytest.CaptureFixture, deadline: float = 20.0,
            unblock: Callable[[], None] | None = None) -> Tried:
    """Call `entry()` in a thread; collect its exit code or escaped exception, its log and output, new files."""
    before = files_under(root)
    tried = Tried()
    caplog.set_level(logging.INFO)

    def body() -> None:
        try:
            tried.code = entry()
        except SystemExit as exc:
            tried.code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # noqa: BLE001 - anything escaping is what the table counts
            tried.error = exc

    started = time.monotonic()
    worker = threading.Thread(target=body, daemon=True)
    worker.start()
    worker.join(deadline)
    tried.seconds = time.monotonic() - started
    if worker.is_alive():
        tried.hung = True
        if unblock is not None:
            unblock()
            worker.join(5)
    captured = capsys.readouterr()
    tried.text = "\n".join([*(r.getMessage() for r in caplog.records), captured.out, captured.err])
    tried.new_files = files_under(root) - before
    return tried
