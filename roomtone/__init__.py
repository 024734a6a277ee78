"""roomtone core: audio I/O and validation, errors, the processor protocol and the loudness meter.

Every job (``mastering``, ``enhance``, ``separate``) imports this package; it never imports them.
Audio inside the library is ``float32`` of shape ``(channels, samples)`` plus a ``sample_rate``.
"""

__version__ = "0.1.0"

from roomtone.errors import (  # noqa: F401
    RoomtoneError,
    InvalidAudioError,
    PresetError,
    TargetUnreachableError,
    OutputError,
)
