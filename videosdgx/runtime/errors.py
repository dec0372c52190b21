"""Exceptions raised by the engine. Every message says what went wrong and what to do about it."""


class VideosDGXError(Exception):
    """Base class of every error the engine raises on purpose."""


class CheckpointError(VideosDGXError):
    """A model file is missing, truncated, corrupt or in an unknown format."""


class WrongComponentError(CheckpointError):
    """A valid model file was given to a loader that expects a different model or component."""


class InsufficientMemoryError(VideosDGXError):
    """A job needs more device or host memory than is free."""


class ConfigurationError(VideosDGXError):
    """A user-supplied setting (size, frame count, option) cannot be used."""
