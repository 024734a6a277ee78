"""Equalisers: the shelving and parametric EQ and the rumble high-pass (RBJ and Butterworth biquads,
minimum phase, no delay).

Shape: audio (channels, samples) float32 in and out, same shape.
"""

import dataclasses

import numpy as np

from roomtone import filters
from roomtone.errors import PresetError
from roomtone.kernels._split import run_split
from roomtone.kernels.biquad import sos_filter
from roomtone.plugins.units import safe_freq
from roomtone.processor import Processor, check_number, clamp, field_range, param, register


@register("eq")
@dataclasses.dataclass(frozen=True)
class Equalizer(Processor):
    """Low shelf, high shelf and parametric bands (RBJ biquads, minimum phase).

    ``bands`` is a tuple of ``(freq_hz, gain_db, q)``. A 0 dB shelf or band is skipped.
    """

    low_shelf_hz: float = param(100.0, 20.0, 1000.0, "Hz")
    low_shelf_db: float = param(0.0, -12.0, 12.0, "dB")
    high_shelf_hz: float = param(8000.0, 1000.0, 20000.0, "Hz")
    high_shelf_db: float = param(0.0, -12.0, 12.0, "dB")
    bands: tuple = ()

    def __post_init__(self):
        super().__post_init__()
        for band in self.bands:
            if len(band) != 3:
                raise PresetError(f"eq.bands entries are [freq_hz, gain_db, q]; got {list(band)!r}")
            for name, value, low, high, unit in zip(("freq_hz", "gain_db", "q"), band, (20.0, -12.0, 0.1),
                                                    (20000.0, 12.0, 10.0), ("Hz", "dB", "(Q)")):
                check_number(f"eq.bands {name}", value, low, high, unit)

    @property
    def bypassed(self):
        return not self.low_shelf_db and not self.high_shelf_db and not any(gain for _, gain, _ in self.bands)

    @classmethod
    def example(cls):
        return cls(low_shelf_db=2.0, high_shelf_db=-1.5, bands=((1000.0, 3.0, 1.0),))

    def sos(self, sample_rate):
        """The cascade as SOS rows. Shape: (sections, 6)."""
        rows = []
        if self.low_shelf_db:
            rows.append(filters.shelf_sos(safe_freq(self.low_shelf_hz, sample_rate), self.low_shelf_db, sample_rate, "low"))
        if self.high_shelf_db:
            rows.append(filters.shelf_sos(safe_freq(self.high_shelf_hz, sample_rate), self.high_shelf_db, sample_rate, "high"))
        for freq_hz, gain_db, q in self.bands:
            if gain_db and freq_hz < 0.45 * sample_rate:
                rows.append(filters.peaking_sos(freq_hz, gain_db, q, sample_rate))
        return np.concatenate(rows) if rows else np.zeros((0, 6))

    def twin_params(self):
        """The JAX twin's parameters (:mod:`roomtone.plugins.twin`): the fields, ``bands`` (B, 3)."""
        return {"low_shelf_hz": self.low_shelf_hz, "low_shelf_db": self.low_shelf_db,
                "high_shelf_hz": self.high_shelf_hz, "high_shelf_db": self.high_shelf_db,
                "bands": np.asarray(self.bands, dtype=np.float32).reshape(-1, 3)}

    @classmethod
    def from_twin(cls, p):
        """The EQ of fitted twin parameters ``p`` (clamped into range, rounded)."""
        bands = tuple((clamp(f, (20.0, 20000.0), 1), clamp(g, (-12.0, 12.0), 3), clamp(q, (0.1, 10.0), 3))
                      for f, g, q in p["bands"].reshape(-1, 3))
        return cls(low_shelf_hz=clamp(p["low_shelf_hz"], field_range(cls, "low_shelf_hz"), 1),
                   low_shelf_db=clamp(p["low_shelf_db"], field_range(cls, "low_shelf_db"), 3),
                   high_shelf_hz=clamp(p["high_shelf_hz"], field_range(cls, "high_shelf_hz"), 1),
                   high_shelf_db=clamp(p["high_shelf_db"], field_range(cls, "high_shelf_db"), 3), bands=bands)

    @staticmethod
    def render_twin(p, signal, ctx):
        """The JAX render: the cascade's exact response on the FFT bins (:func:`~roomtone.plugins.twin.eq_response`)."""
        from roomtone.plugins import twin

        return twin.filtered(signal, twin.eq_response(p, ctx.sample_rate, ctx.z1, ctx.z2), ctx)

    def process(self, audio, sample_rate):
        sos = self.sos(sample_rate)
        if sos.shape[0] == 0:
            return audio.copy()
        out = np.empty(audio.shape, dtype=np.float32)
        if audio.shape[0] >= 2 and audio.shape[1] >= SPLIT_SAMPLES:  # channels over the cores (kernel without the GIL)
            run_split(_sos_rows, audio.shape[0], np.ascontiguousarray(audio), sos, out)
            return out
        return sos_filter(audio, sos, out)


SPLIT_SAMPLES = 1 << 19  # an EQ this long (12 s at 44.1 kHz) runs its channels in parallel


def _sos_rows(x, sos, out, first, last):
    sos_filter(x[first:last], sos, out[first:last])


@register("highpass")
@dataclasses.dataclass(frozen=True)
class HighPass(Processor):
    """Gentle rumble filter: 2nd-order Butterworth high-pass (12 dB/octave, -3 dB at
    ``cutoff_hz``), minimum phase: no delay."""

    cutoff_hz: float = param(75.0, 20.0, 300.0, "Hz")

    def run_in_place(self, audio, sample_rate):
        sos = filters.butterworth2_sos(safe_freq(self.cutoff_hz, sample_rate), sample_rate, "high")
        sos_filter(audio, sos, audio)
        return {"cutoff_hz": self.cutoff_hz}
