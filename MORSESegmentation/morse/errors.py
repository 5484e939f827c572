"""Errors that reach a user. Each message says what was wrong and what to do about it.

The command line prints ``error: <message>`` and exits with status 2 for any :class:`MorseError`; the Slicer module
shows the message in a dialog. Anything else escaping the engine is a bug.
"""


class MorseError(Exception):
    """Base class of every error the engine reports to a user."""


class ConfigError(MorseError):
    """A configuration file or value is invalid."""


class InputError(MorseError):
    """An input image cannot be segmented as given (unreadable, wrong dimensionality, bad values...)."""


class ModelPackError(MorseError):
    """A model pack is missing, corrupted, from an unsupported schema, or does not match the input."""


class DataError(MorseError):
    """Sample or training data could not be fetched, verified or read."""


class OutputError(MorseError):
    """Outputs cannot be written where asked (exists without --overwrite, not writable...)."""


class CancelledError(MorseError):
    """The user cancelled a running job."""

    def __init__(self, message: str = "cancelled by the user; nothing was written"):
        super().__init__(message)
