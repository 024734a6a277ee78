"""Soft saturation, 2x oversampled so the harmonics it makes above Nyquist are filtered, not folded."""

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def tanh_saturate_2x(x, h, drive, mix):
    """``(1 - mix) * x + mix * tanh(drive * x) / drive`` evaluated at twice the sample rate.

    ``h`` must be an odd-length half-band low-pass (cutoff at the original Nyquist, unit DC gain,
    zero at every even offset from the centre but the centre itself, as
    :func:`roomtone.filters.halfband_lowpass` makes): the kernel skips the taps a half-band filter
    has at zero. It interpolates (gain 2 on the zero-stuffed signal) and decimates; the two delays of
    ``(len(h) - 1) / 2`` up-rate samples add to a whole number of input samples, removed here, so the
    output is aligned with the input.

    Shape: x (channels, samples) float32/float64 -> (channels, samples) float64
    """
    n_ch, n = x.shape
    taps = h.shape[0]
    delay_up = taps - 1  # two filters of (taps - 1) / 2 each, in up-rate samples
    n_up = 2 * n + delay_up
    out = np.empty((n_ch, n), dtype=np.float64)
    center = (taps - 1) // 2
    # A half-band filter is zero at every other tap except the centre: keep the non-zero ones.
    side = np.nonzero(h)[0]
    side = side[side != center]
    for c in prange(n_ch):
        pad = taps
        xp = np.zeros(n + 2 * pad, dtype=np.float64)
        for k in range(n):
            xp[k + pad] = x[c, k]
        sat = np.empty(n_up, dtype=np.float64)
        for m in range(n_up):
            # interpolated v[m] = sum_j h[j] u[m - j] with u[2k] = 2 x[k], zero at odd indices
            acc = 0.0
            if (m - center) & 1 == 0:
                acc = h[center] * xp[((m - center) >> 1) + pad]
            else:
                for j in side:
                    acc += h[j] * xp[((m - j) >> 1) + pad]
            v = 2.0 * drive * acc
            sat[m] = np.tanh(v) / drive
        for k in range(n):
            m = 2 * k + delay_up
            acc = h[center] * sat[m - center]
            for j in side:
                acc += h[j] * sat[m - j]
            out[c, k] = (1.0 - mix) * x[c, k] + mix * acc
    return out
