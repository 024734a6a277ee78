"""The master job: ``master(audio, sample_rate, preset=..., platform=...)`` returns the mastered
audio and a report; ``master_file(in_path, out_path, ...)`` does the same for files.

The two are imported on first use (they load numba), so ``roomtone.mastering.cli`` can start decoding the
input before paying for that import.
"""

__all__ = ["master", "master_file"]


def __getattr__(name):
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("roomtone.mastering.api"), name)
    raise AttributeError(f"module 'roomtone.mastering' has no attribute {name!r}")
