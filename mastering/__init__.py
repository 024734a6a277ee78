"""The master job: ``master(audio, sample_rate, preset=..., platform=...)`` returns the mastered
audio and a report; ``master_file(in_path, out_path, ...)`` does the same for files;
``master_album(tracks, ...)`` and ``analyse_album(sources, ...)`` master tracks as one album
(:mod:`roomtone.mastering.album`).

They are imported on first use (they load numba), so ``roomtone.mastering.cli`` can start decoding the
input before paying for that import.
"""

_HOMES = {"master": "api", "master_file": "api", "master_album": "album", "analyse_album": "album"}
__all__ = list(_HOMES)


def __getattr__(name):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"roomtone.mastering.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'roomtone.mastering' has no attribute {name!r}")
