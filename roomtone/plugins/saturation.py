"""Saturation: a soft (tanh-like) curve at 2x oversampling, blended with the dry signal.

Shape: audio (channels, samples) float32 in and out, same shape.
"""

import dataclasses

from roomtone import filters
from roomtone.kernels.saturation import tanh_saturate_2x
from roomtone.plugins.units import db_to_gain
from roomtone.processor import Processor, clamp, field_range, param, register


@register("saturation")
@dataclasses.dataclass(frozen=True)
class Saturation(Processor):
    """Soft (tanh) saturation at 2x oversampling, unity small-signal gain, blended by ``mix``.

    ``drive_db`` is the gain into the curve (the output is scaled back by the same amount).
    """

    drive_db: float = param(0.0, 0.0, 24.0, "dB")
    mix: float = param(1.0, 0.0, 1.0, "fraction")

    @property
    def bypassed(self):
        return self.mix == 0.0  # drive_db = 0 still runs the curve at unity drive

    @classmethod
    def example(cls):
        return cls(drive_db=6.0, mix=0.5)

    def twin_params(self):
        """The JAX twin's parameters (:mod:`roomtone.plugins.twin`)."""
        return {"drive_db": self.drive_db, "mix": self.mix}

    @classmethod
    def from_twin(cls, p):
        """The saturation of fitted twin parameters ``p`` (clamped into range, rounded)."""
        return cls(drive_db=clamp(p["drive_db"], field_range(cls, "drive_db"), 3), mix=clamp(p["mix"], field_range(cls, "mix")))

    @staticmethod
    def render_twin(p, signal, ctx):
        """The JAX render: the kernel's curve at 2x (:func:`~roomtone.plugins.twin.saturate`)."""
        from roomtone.plugins import twin

        return twin.saturate(signal, p, ctx.n_fft)

    def process(self, audio, sample_rate):
        # Drive relative to the working level: full scale maps to tanh(drive).
        drive = db_to_gain(self.drive_db)
        return tanh_saturate_2x(audio, filters.halfband_lowpass(), drive, float(self.mix))
