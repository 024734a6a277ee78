"""Float to integer PCM: TPDF dither, rounding, clipping, interleaving, in one pass."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _quantize(v, scale, low, high, dither, state):
    """``clip(round(v * scale + d), low, high)`` with TPDF dither ``d`` of +-1 LSB from the xorshift64*
    state (Vigna 2016: one 64-bit draw gives the two independent 32-bit uniforms). Returns
    ``(code as float, new state)``."""
    v = v * scale
    if dither:
        state ^= state >> np.uint64(12)
        state ^= state << np.uint64(25)
        state ^= state >> np.uint64(27)
        r = state * np.uint64(0x2545F4914F6CDD1D)
        inv32 = 1.0 / 4294967296.0
        v += float(r & np.uint64(0xFFFFFFFF)) * inv32 - float(r >> np.uint64(32)) * inv32
    v = np.floor(v + 0.5)
    if v < low:
        v = low
    elif v > high:
        v = high
    return v, state


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
    state = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(0x2545F4914F6CDD1D)
    out = np.empty((n, n_ch), dtype=np.int32)
    for i in range(n):
        for c in range(n_ch):
            v, state = _quantize(audio[c, i], scale, -scale, scale - 1.0, dither, state)
            out[i, c] = np.int32(v) << shift
    return out


@njit(cache=True, nogil=True)
def quantize_grid(audio, bits, dither, seed, gain, out):
    """:func:`quantize_codes` (same dither sequence) of ``audio * gain`` as float32
    ``code / 2^(bits-1)``: the samples a ``bits``-bit file holds, exactly representable. ``gain`` is
    a per-sample factor (e.g. the limiter's curve: applied and quantized in one pass) or empty.

    The product is rounded to float32 before quantizing, as ``(audio * gain).astype(float32)`` would.
    The samples go to ``out``, which may be ``audio`` itself (each sample is read before it is
    written). Returns ``out``.
    Shape: audio (channels, samples), gain (samples,) or (0,) float32, out (channels, samples) float32.
    """
    n_ch, n = audio.shape
    has_gain = gain.shape[0] == n and n > 0
    scale = float(2 ** (bits - 1))
    inv = 1.0 / scale
    state = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(0x2545F4914F6CDD1D)
    for i in range(n):
        g = np.float32(gain[i]) if has_gain else np.float32(1.0)
        for c in range(n_ch):
            x = np.float32(audio[c, i] * g) if has_gain else audio[c, i]
            v, state = _quantize(x, scale, -scale, scale - 1.0, dither, state)
            out[c, i] = v * inv
    return out
