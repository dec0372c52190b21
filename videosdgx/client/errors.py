"""Exit codes of a headless run and the exceptions that carry them."""

from enum import IntEnum

from videosdgx.runtime.errors import VideosDGXError


class ExitCode(IntEnum):
    """Process exit status of `videosdgx run`."""

    SUCCESS = 0
    VALIDATION = 2
    EXECUTION = 3
    INTERRUPTED = 4
    UNREACHABLE = 5
    TIMEOUT = 6
    USAGE = 64


class ClientError(VideosDGXError):
    """A headless run that could not finish; `exit_code` is what the CLI returns."""

    exit_code = ExitCode.EXECUTION


class UsageError(ClientError):
    """A workflow file, override or option the client cannot use."""

    exit_code = ExitCode.USAGE


class ServerUnreachableError(ClientError):
    """The server did not answer after every retry."""

    exit_code = ExitCode.UNREACHABLE


class PromptValidationError(ClientError):
    """The server rejected the prompt (HTTP 400); the message lists each node's errors."""

    exit_code = ExitCode.VALIDATION


class ExecutionFailedError(ClientError):
    """A node raised while the prompt ran, or the server answered something unusable."""

    exit_code = ExitCode.EXECUTION


class UnsafeOutputPathError(ExecutionFailedError):
    """The server named an output file that would land outside the output folder."""


class RunInterruptedError(ClientError):
    """The prompt was interrupted, by the user (Ctrl-C) or on the server."""

    exit_code = ExitCode.INTERRUPTED


class RunTimeoutError(ClientError):
    """No event arrived for too long, or the whole run took too long."""

    exit_code = ExitCode.TIMEOUT
