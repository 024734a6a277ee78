"""Soft saturation, 2x oversampled so the harmonics it makes above Nyquist are filtered, not folded."""

import numpy as np
from numba import njit

from roomtone.kernels._split import run_split
from roomtone.kernels.truepeak import padded_window


@njit(cache=True, fastmath=True, nogil=True)
def soft_clip(v):
    """The saturation curve: the [7/6] Pade approximant of tanh, clipped to [-1, 1].

    ``v (135135 + 17325 v^2 + 378 v^4 + v^6) / (135135 + 62370 v^2 + 3150 v^4 + 28 v^6)``: odd,
    monotonic, unit slope at 0, within 1e-4 of tanh everywhere (2e-6 for |v| < 3), and no exp, so
    the oversampled loop vectorizes.
    """
    v2 = v * v
    num = v * (135135.0 + v2 * (17325.0 + v2 * (378.0 + v2)))
    den = 135135.0 + v2 * (62370.0 + v2 * (3150.0 + 28.0 * v2))
    return min(1.0, max(-1.0, num / den))


BLOCK = 4096  # output samples per work item: small buffers (cache-resident), both cores busy even for mono


@njit(cache=True, fastmath=True, nogil=True)
def _saturate_blocks(x, h_even_rev, h_center, drive, mix, out, first, last):
    """Work items ``[first, last)`` of :func:`tanh_saturate_2x`: item ``job`` is channel
    ``job // n_blocks``, output samples ``[b * BLOCK, (b + 1) * BLOCK)`` with ``b = job % n_blocks``."""
    n = x.shape[1]
    n_even = h_even_rev.shape[0]
    center = n_even - 1
    n_blocks = (n + BLOCK - 1) // BLOCK
    for job in range(first, last):
        c = job // n_blocks
        k0 = (job % n_blocks) * BLOCK
        m = min(BLOCK, n - k0)
        xb = padded_window(x, c, k0 - center, m + 2 * center)  # xb[j] = x[c, k0 - center + j]
        even = np.empty(m + center)  # even[u] = e[k0 + u]
        for u in range(m + center):
            acc = 0.0
            for r in range(n_even):
                acc += h_even_rev[r] * xb[u + r]
            even[u] = soft_clip(2.0 * drive * acc) / drive
        for j in range(m):
            v = xb[j + center]
            acc = h_center * soft_clip(2.0 * drive * h_center * v) / drive
            for r in range(n_even):
                acc += h_even_rev[r] * even[j + r]
            out[c, k0 + j] = (1.0 - mix) * v + mix * acc


def tanh_saturate_2x(x, h, drive, mix):
    """``(1 - mix) * x + mix * soft_clip(drive * x) / drive`` evaluated at twice the sample rate
    (``soft_clip`` is tanh to 1e-4).

    ``h`` must be an odd-length half-band low-pass of length ``4 r + 3`` (cutoff at the original
    Nyquist, unit DC gain, zero at every even offset from the centre but the centre itself, as
    :func:`roomtone.filters.halfband_lowpass` makes): the kernel skips the taps a half-band filter
    has at zero. It interpolates (gain 2 on the zero-stuffed signal) and decimates; the two delays of
    ``(len(h) - 1) / 2`` up-rate samples add to a whole number of input samples, removed here, so the
    output is aligned with the input.

    With ``c = (len(h) - 1) / 2`` (odd) and ``he[r] = h[2 c - 2 r]``, the saturated up-rate signal is
    ``e[q] = sat(2 sum_r he[r] x[q - c + r])`` at even points and ``o[k] = sat(2 h[c] x[k])`` at odd
    ones, and ``out[k] = h[c] o[k] + sum_r he[r] e[k + r]`` (r = 0..c). The signal is cut into
    blocks of :data:`BLOCK` outputs, each with the ``c`` neighbours it needs on either side, one share
    of the channels and blocks per core; nothing longer than a block is allocated.

    Shape: x (channels, samples) float32/float64 -> (channels, samples) float32
    """
    n_ch, n = x.shape
    h = np.asarray(h, dtype=np.float64)
    center = (h.shape[0] - 1) // 2
    h_even_rev = np.ascontiguousarray(h[0:2 * center + 1:2][::-1])  # he[r] = h[2 center - 2 r]
    out = np.empty((n_ch, n), dtype=np.float32)
    run_split(_saturate_blocks, n_ch * ((n + BLOCK - 1) // BLOCK), x, h_even_rev, float(h[center]), float(drive),
              float(mix), out)
    return out
