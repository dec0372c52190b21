"""The one error type of the installer."""

from videosdgx.runtime.errors import VideosDGXError


class InstallError(VideosDGXError):
    """A model file could not be planned, downloaded, verified or put in place. The message says what to do."""


class DownloadInterrupted(InstallError):
    """Ctrl-C during a download; the bytes received so far stay staged for the next run."""
