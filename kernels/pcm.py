"""Float to integer PCM: TPDF dither, rounding, clipping, interleaving, in one pass."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def quantize_codes(audio, bits, dither, seed, shift):
    """Integer codes of ``audio`` at ``bits`` bits, interleaved as frames.

    ``code = clip(round(x * 2^(bits-1) + d), -2^(bits-1), 2^(bits-1) - 1)`` where ``d`` is TPDF
    dither of +-1 LSB (the difference of two independent uniform variables, seeded by ``seed``)
    when ``dither`` is true, else 0. Codes are shifted left by ``shift`` bits (libsndfile reads
    int32 full scale, so 24-bit codes are written as ``code << 8``).

    Shape: audio (channels, samples) float -> (samples, channels) int32
    """
    n_ch, n = audio.shape
    scale = float(2 ** (bits - 1))
    low = -scale
    high = scale - 1.0
    inv32 = 1.0 / 4294967296.0
    # xorshift64* (Vigna 2016): one 64-bit draw gives the two independent 32-bit uniforms of TPDF
    state = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(0x2545F4914F6CDD1D)
    mask = np.uint64(0xFFFFFFFF)
    out = np.empty((n, n_ch), dtype=np.int32)
    for i in range(n):
        for c in range(n_ch):
            v = audio[c, i] * scale
            if dither:
                state ^= state >> np.uint64(12)
                state ^= state << np.uint64(25)
                state ^= state >> np.uint64(27)
                r = state * np.uint64(0x2545F4914F6CDD1D)
                v += float(r & mask) * inv32 - float(r >> np.uint64(32)) * inv32
            v = np.floor(v + 0.5)
            if v < low:
                v = low
            elif v > high:
                v = high
            out[i, c] = np.int32(v) << shift
    return out
