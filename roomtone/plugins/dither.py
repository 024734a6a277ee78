"""Dither: the word-length reduction to ``bits``-bit PCM with TPDF dither (+-1 LSB triangular,
the difference of two uniform LSB-wide variables; Lipshitz, Wannamaker and Vanderkooy, JAES 1992),
rounded and clipped to the code range, as the writers apply it before 16- or 24-bit output
(:func:`roomtone.audio.quantize_to_grid`). As a processor it lets a chain deliver words of a
given length (a 16-bit master written to a float file, a bit-crushed effect at low ``bits``).

Shape: audio (channels, samples) float32 in and out, same shape.
"""

import dataclasses

from roomtone.audio import quantize_to_grid
from roomtone.processor import Processor, param, register


@register("dither")
@dataclasses.dataclass(frozen=True)
class Dither(Processor):
    """TPDF dither and rounding to ``bits``-bit words; each sample moves at most 1.5 LSB
    (:func:`roomtone.audio.quantization_error_bound`). ``seed`` fixes the dither noise, so a
    render is repeatable. Samples that are exactly zero stay zero (auto-blank: digital silence
    between tracks gets no dither hiss).

    >>> import numpy as np
    >>> Dither(bits=16)(np.full((1, 4), 0.1, np.float32), 48000).shape
    (1, 4)
    """

    bits: int = param(16, 8, 24, "bits")
    seed: int = param(0, 0, 2 ** 31 - 1, "(seed)")

    def process(self, audio, sample_rate):
        out = quantize_to_grid(audio, int(self.bits), seed=int(self.seed))
        out[audio == 0.0] = 0.0  # auto-blank: digital silence stays silent (no dither hiss in the gaps)
        return out
