"""The one error type of the installer."""

from videosdgx.runtime.errors import VideosDGXError


class InstallError(VideosDGXError):
    """A model file could not be planned, downloaded, verified or put in place. The message says what to do."""
