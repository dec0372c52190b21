"""Headless client for a running ComfyUI server: submit a workflow, follow it, download its outputs."""

from videosdgx.client.convert import is_api_format, to_api
from videosdgx.client.errors import ClientError, ExitCode
from videosdgx.client.overrides import Overrides
from videosdgx.client.runner import RunResult, RunSettings, run_workflow
from videosdgx.client.transport import DEFAULT_SERVER, RetryPolicy

__all__ = [
    "DEFAULT_SERVER", "ClientError", "ExitCode", "Overrides", "RetryPolicy", "RunResult", "RunSettings",
    "is_api_format", "run_workflow", "to_api",
]
