"""Gain: a static gain.

Shape: audio (channels, samples) float32 in and out, same shape.
"""

import dataclasses

import numpy as np

from roomtone.plugins.units import db_to_gain
from roomtone.processor import Processor, clamp, field_range, param, register


@register("gain")
@dataclasses.dataclass(frozen=True)
class Gain(Processor):
    """Static gain."""

    gain_db: float = param(0.0, -60.0, 60.0, "dB")

    @property
    def bypassed(self):
        return self.gain_db == 0.0

    @classmethod
    def example(cls):
        return cls(gain_db=-3.0)

    def twin_params(self):
        """The JAX twin's parameters (:mod:`roomtone.plugins.twin`)."""
        return {"gain_db": self.gain_db}

    @classmethod
    def from_twin(cls, p):
        """The gain of a fitted twin parameter (clamped into range, rounded)."""
        return cls(gain_db=clamp(p["gain_db"], field_range(cls, "gain_db"), 3))

    @staticmethod
    def render_twin(p, signal, ctx):
        """The JAX render: the same product."""
        return signal * 10.0 ** (p["gain_db"] / 20.0)

    def process(self, audio, sample_rate):
        return audio * np.float32(db_to_gain(self.gain_db))
