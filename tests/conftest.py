"""Shared test fixtures. The suite opts in to JAX's persistent compilation cache as the commands do
(:func:`roomtone.startup.use_compilation_cache`, before JAX is imported): the library itself sets
no JAX option, and the model tests would otherwise compile everything again in every run."""

import pytest

from roomtone.startup import use_compilation_cache

use_compilation_cache()


@pytest.fixture
def no_matplotlib(monkeypatch):
    """Make every ``import matplotlib...`` fail, as on a machine without the ``plot`` extra."""
    import builtins

    real_import = builtins.__import__

    def without_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_matplotlib)
