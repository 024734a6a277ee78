"""Second-order-section (biquad) cascades, transposed direct form II, float64 state."""

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def sos_filter(x, sos):
    """Filter every channel of ``x`` through the cascade ``sos``.

    Channels run in parallel; within a channel all sections advance together sample by sample, so
    their independent recurrences overlap in the CPU pipeline.

    Shape:
        x: (channels, samples) float32 or float64
        sos: (sections, 6) float64 rows ``b0 b1 b2 a0 a1 a2`` with ``a0 == 1``
        returns: (channels, samples) float64
    """
    n_ch, n = x.shape
    n_sec = sos.shape[0]
    y = np.empty((n_ch, n), dtype=np.float64)
    for c in prange(n_ch):
        z1 = np.zeros(n_sec)
        z2 = np.zeros(n_sec)
        for i in range(n):
            v = np.float64(x[c, i])
            for s in range(n_sec):
                out = sos[s, 0] * v + z1[s]
                z1[s] = sos[s, 1] * v - sos[s, 4] * out + z2[s]
                z2[s] = sos[s, 2] * v - sos[s, 5] * out
                v = out
            y[c, i] = v
    return y


@njit(cache=True, parallel=True)
def sos_power(x, sos, weights):
    """``sum_c weights[c] * sos_filter(x, sos)[c]**2`` without keeping the filtered channels.

    Used for K-weighted power (BS.1770-4 eq. 1-2). Shape: x (channels, samples) -> (samples,) float64
    """
    n_ch, n = x.shape
    n_sec = sos.shape[0]
    per_channel = np.zeros((n_ch, n), dtype=np.float64)
    for c in prange(n_ch):
        g = weights[c]
        if g == 0.0:
            continue
        z1 = np.zeros(n_sec)
        z2 = np.zeros(n_sec)
        for i in range(n):
            v = np.float64(x[c, i])
            for s in range(n_sec):
                out = sos[s, 0] * v + z1[s]
                z1[s] = sos[s, 1] * v - sos[s, 4] * out + z2[s]
                z2[s] = sos[s, 2] * v - sos[s, 5] * out
                v = out
            per_channel[c, i] = g * v * v
    e = np.zeros(n, dtype=np.float64)
    for c in range(n_ch):
        for i in range(n):
            e[i] += per_channel[c, i]
    return e
