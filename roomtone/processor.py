"""The processor protocol: every processor is a frozen dataclass of parameters with units in
their names, called as ``processor(audio, sample_rate)``; a :class:`Chain` is a list of them and is
itself callable. Parameters carry their range and unit as field metadata, so construction, preset
loading and ``repr`` all speak the same language.

Shape: ``audio`` (channels, samples) float32 in, the same shape and dtype out.
"""

import dataclasses
from collections.abc import MutableSequence

import numpy as np

from roomtone.audio import validate_audio
from roomtone.errors import PresetError

PROCESSORS = {}


def param(default, low, high, unit):
    """A dataclass field with an inclusive range and a unit, checked by :class:`Processor`."""
    return dataclasses.field(default=default, metadata={"range": (low, high), "unit": unit})


def register(kind):
    """Class decorator: make a processor constructible from preset data under ``kind``."""

    def wrap(cls):
        cls.kind = kind
        PROCESSORS[kind] = cls
        return cls

    return wrap


def check_number(where, value, low, high, unit):
    """Raise :class:`PresetError` unless ``value`` is a number (not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise PresetError(f"{where} must be a number in {unit}; got {value!r}")
    if not (low <= value <= high):
        raise PresetError(f"{where}={value:g} {unit} is outside {low:g}..{high:g} {unit}")


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

    def __call__(self, audio, sample_rate):
        audio = validate_audio(audio, sample_rate)
        if audio.shape[1] == 0 or self.bypassed:
            return audio.copy()
        out = self.process(audio, int(sample_rate))
        return np.ascontiguousarray(out, dtype=np.float32)

    def process(self, audio, sample_rate):  # pragma: no cover - interface
        raise NotImplementedError

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

    def __call__(self, audio, sample_rate):
        """Run every processor in order."""
        audio = validate_audio(audio, sample_rate)
        for processor in self._items:
            audio = processor(audio, sample_rate)
        return audio

    def to_dicts(self):
        return [p.to_dict() for p in self._items]

    @classmethod
    def from_dicts(cls, items):
        return cls(processor_from_dict(item) for item in items)
