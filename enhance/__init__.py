"""The enhance job (voice clean-up): ``enhance(audio, sample_rate, preset=...)`` returns the cleaned
audio and a report; ``enhance_file(in_path, out_path, ...)`` does the same for files. Denoisers are
registered in :mod:`roomtone.enhance.denoisers`.

The two are imported on first use (they load numba), so the CLI starts quickly.
"""

__all__ = ["enhance", "enhance_file"]


def __getattr__(name):
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("roomtone.enhance.api"), name)
    raise AttributeError(f"module 'roomtone.enhance' has no attribute {name!r}")
