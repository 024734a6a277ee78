"""The processor protocol: every processor is a frozen dataclass of parameters with units in
their names, called as ``processor(audio, sample_rate)``; a :class:`Chain` is a list of them and is
itself callable. Parameters carry their range and unit as field metadata, so construction, preset
loading and ``repr`` all speak the same language.

A processor reports its delay, :meth:`Processor.latency_samples` (a chain, the sum), so a job can
compensate a model's look-ahead, and what it did through one hook, :meth:`Processor.run` (audio
and a JSON-ready ``info``), which in-place processors implement as :meth:`Processor.run_in_place`.
The processors themselves are the library :mod:`roomtone.plugins`. A processor backed by model weights keeps only their name or path
as a field; the loaded model lives in :func:`cached_resource`, outside the dataclass, so the
processor stays hashable, comparable and serialisable as preset data.

Shape: ``audio`` (channels, samples) float32 in, the same shape and dtype out.
"""

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import MutableSequence

import numpy as np

from roomtone.audio import validate_audio
from roomtone.errors import PresetError

PROCESSORS = {}


def param(default, low, high, unit):
    """A dataclass field with an inclusive range and a unit, checked by :class:`Processor`."""
    return dataclasses.field(default=default, metadata={"range": (low, high), "unit": unit})


def register(kind):
    """Class decorator: make a processor constructible from preset data under ``kind``.

    Two different classes under one ``kind`` are an error (``ValueError``), not a silent
    replacement; re-registering the same class (a module reloaded) is allowed.
    """

    def wrap(cls):
        known = PROCESSORS.get(kind)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"processor kind {kind!r} is already registered by {known.__module__}.{known.__qualname__}; "
                             f"{cls.__module__}.{cls.__qualname__} needs another kind")
        cls.kind = kind
        PROCESSORS[kind] = cls
        return cls

    return wrap


_RESOURCES = OrderedDict()  # (loader, key) -> loaded object, least recently used first
_RESOURCES_LOCK = threading.Lock()
MAX_RESOURCES = 8


def cached_resource(loader, key):
    """``loader(key)``, loaded once and kept for later calls (the :data:`MAX_RESOURCES` most
    recently used are kept). For processors backed by model weights: the dataclass field is the
    weights' name or path (``key``), the loaded model lives here. ``loader`` must be a module-level
    function (it is part of the cache key)."""
    slot = (loader, key)
    with _RESOURCES_LOCK:
        if slot in _RESOURCES:
            _RESOURCES.move_to_end(slot)
            return _RESOURCES[slot]
    value = loader(key)  # outside the lock: loading may be slow; a race loads twice, keeps one
    with _RESOURCES_LOCK:
        value = _RESOURCES.setdefault(slot, value)
        _RESOURCES.move_to_end(slot)
        while len(_RESOURCES) > MAX_RESOURCES:
            _RESOURCES.popitem(last=False)
    return value


def clear_resources():
    """Forget every cached resource (frees loaded models)."""
    with _RESOURCES_LOCK:
        _RESOURCES.clear()


def check_number(where, value, low, high, unit):
    """Raise :class:`PresetError` unless ``value`` is a number (not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise PresetError(f"{where} must be a number in {unit}; got {value!r}")
    if not (low <= value <= high):
        raise PresetError(f"{where}={value:g} {unit} is outside {low:g}..{high:g} {unit}")


def clamp(value, field_range, digits=4):
    """``value`` (a number or 0-d array) clamped into ``field_range`` ``(low, high)`` and rounded to
    ``digits`` decimals: a fitted parameter made valid preset data."""
    low, high = field_range
    return round(min(max(float(value), low), high), digits)


def field_range(cls, name):
    """The ``(low, high)`` range of ``cls``'s parameter ``name`` (see :func:`param`)."""
    return cls.__dataclass_fields__[name].metadata["range"]


@dataclasses.dataclass(frozen=True)
class Processor:
    """Base of all processors. Subclasses implement :meth:`process` on validated float32 audio."""

    kind = "processor"

    def __post_init__(self):
        for field in dataclasses.fields(self):
            meta = field.metadata
            if "range" in meta:
                check_number(f"{self.kind}.{field.name}", getattr(self, field.name), *meta["range"], meta["unit"])

    @property
    def bypassed(self):
        """True when these parameters leave any signal unchanged (e.g. 0 dB gain, width 1)."""
        return False

    def latency_samples(self, sample_rate):
        """Samples by which the output lags the input at ``sample_rate`` (0: aligned). A job
        trims this many samples from the start (and pads the end) to keep the output aligned."""
        return 0

    @classmethod
    def example(cls):
        """An instance with parameters that do something (not bypassed), for contract tests and
        documentation; the defaults unless a subclass says otherwise."""
        return cls()

    def __call__(self, audio, sample_rate):
        audio = validate_audio(audio, sample_rate)
        if audio.shape[1] == 0 or self.bypassed:
            return audio.copy()
        out = self.process(audio, int(sample_rate))
        return np.ascontiguousarray(out, dtype=np.float32)

    def render(self, audio, sample_rate):
        """:meth:`process` on audio the caller has validated already (a job validates its input
        once, and every processor keeps finite audio finite): no second check, no copy for a
        bypassed processor (``audio`` itself comes back). Returns C-contiguous float32::

            signal = validate_audio(audio, sample_rate)
            out = Gain(gain_db=-6.0).render(signal, sample_rate)
        """
        if self.bypassed:
            return audio
        return np.ascontiguousarray(self.process(audio, sample_rate), dtype=np.float32)

    def process(self, audio, sample_rate):
        """The output for validated float32 ``audio`` (a new array). A processor implements this
        or :meth:`run_in_place` (this default runs that on a copy)."""
        return self.run(audio, sample_rate)[0]

    def run(self, audio, sample_rate):
        """``(audio_out, info)``: the output (a new array; ``audio`` is left alone) and what the
        processor did, a JSON-ready dict for a job's report (the hum found, the clicks repaired,
        the deepest reduction; empty for a processor with nothing to say). The protocol's one
        reporting hook: a job reports every stage through it."""
        out = np.array(audio, dtype=np.float32, order="C", copy=True)
        return out, self.run_in_place(out, sample_rate)

    def measure(self, audio, sample_rate):
        """What the processor does to ``audio``, in numbers a report can show, computed apart from
        its render (a job may run it in another thread while the render goes on, for ``--explain``):
        a dict, empty by default (the multiband compressor gives ``reduction_db``, its mean gain
        reduction per band). A job asks only processors that override it."""
        return {}

    def run_in_place(self, audio, sample_rate):
        """Write the output over ``audio`` (validated, C-contiguous, writeable float32
        (channels, samples)) and return ``info`` (see :meth:`run`). Processors that can work
        through a signal with a scratch that does not grow with its length implement this; for
        the others the output of :meth:`process` is copied over."""
        if type(self).process is Processor.process:
            raise NotImplementedError(f"{type(self).__name__} implements neither process nor run_in_place")
        audio[...] = self.process(audio, sample_rate)
        return {}

    def to_dict(self):
        """Preset data: ``{"kind": ..., <parameter>: <value>}`` (tuples become lists)."""
        out = {"kind": self.kind}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
            out[field.name] = value
        return out

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`PresetError` naming the key."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in data.items():
            if key == "kind":
                continue
            if key not in names:
                raise PresetError(f"{cls.kind}: unknown parameter {key!r}; known: {', '.join(sorted(names))}")
            if isinstance(value, list):
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            kwargs[key] = value
        return cls(**kwargs)


def processor_from_dict(data):
    """Build any registered processor from ``{"kind": ..., ...}``."""
    kind = data.get("kind")
    if kind not in PROCESSORS:
        raise PresetError(f"unknown processor kind {kind!r}; known: {', '.join(sorted(PROCESSORS))}")
    return PROCESSORS[kind].from_dict(data)


class Chain(MutableSequence):
    """An ordered list of processors, callable like one: ``Chain([eq, comp])(audio, sample_rate)``."""

    def __init__(self, processors=()):
        self._items = list(processors)

    def __getitem__(self, index):
        return self._items[index]

    def __setitem__(self, index, value):
        self._items[index] = value

    def __delitem__(self, index):
        del self._items[index]

    def __len__(self):
        return len(self._items)

    def insert(self, index, value):
        self._items.insert(index, value)

    def __eq__(self, other):
        return isinstance(other, Chain) and self._items == other._items

    def __repr__(self):
        return f"Chain({self._items!r})"

    def latency_samples(self, sample_rate):
        """The chain's delay: the sum of its processors' :meth:`Processor.latency_samples`."""
        return sum(int(p.latency_samples(sample_rate)) for p in self._items if not p.bypassed)

    def __call__(self, audio, sample_rate):
        """Run every processor in order."""
        audio = validate_audio(audio, sample_rate)
        for processor in self._items:
            audio = processor(audio, sample_rate)
        return audio

    def render(self, audio, sample_rate):
        """Every processor's :meth:`Processor.render` in order: the chain on audio the caller has
        validated already (no check per stage). Returns C-contiguous float32 (``audio`` itself when
        every processor is bypassed)."""
        for processor in self._items:
            audio = processor.render(audio, sample_rate)
        return audio

    def to_dicts(self):
        return [p.to_dict() for p in self._items]

    @classmethod
    def from_dicts(cls, items):
        return cls(processor_from_dict(item) for item in items)

    @classmethod
    def from_toml(cls, path):
        """The chain of a TOML file's ``[[chain]]`` tables (each ``kind = "..."`` and that
        processor's parameters, as in the presets), any job's processors alike; a bad file or item
        is a :class:`PresetError` naming the file and the item::

            # chain.toml
            [[chain]]
            kind = "highpass"
            cutoff_hz = 80.0

            [[chain]]
            kind = "compressor"
            threshold_db = -24.0
            ratio = 3.0

            Chain.from_toml("chain.toml")(audio, sample_rate)
        """
        import roomtone.plugins  # noqa: F401 - registers every processor kind
        from roomtone.preset_data import parse_chain, read_toml

        data = read_toml(path)
        if "chain" not in data:
            raise PresetError(f"{path}: no [[chain]] tables")
        return parse_chain(str(path), data["chain"])
