"""The look-ahead true-peak limiter's gain computer (the compressor's is in :mod:`roomtone.kernels.multiband`).

Whole-file curves, but no whole-file scratch: the sliding maximum keeps one window of block maxima,
the box filters a ring of their own length, and the gain curve is filtered in place.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _channel_max(v, j):
    m = v[0, j]
    for c in range(1, v.shape[0]):
        if v[c, j] > m:
            m = v[c, j]
    return m


@njit(cache=True, nogil=True)
def sliding_max_forward(v, length):
    """``out[n] = max(v[:, n : n + length])``: the maximum over every channel and the next
    ``length`` samples (the window is clipped at the end).

    van Herk / Gil-Werman: cut the signal into blocks of ``length``; a window starting at offset
    ``k`` of a block is the block's suffix from ``k`` joined with the next block's prefix up to
    ``k - 1``, so each output costs two running maxima and one comparison, whatever the window, with
    one block of scratch.

    Shape: v (channels, samples) -> (samples,), same dtype (exact: only comparisons)
    """
    n = v.shape[1]
    length = max(length, 1)
    out = np.empty(n, dtype=v.dtype)
    suffix = np.empty(length, dtype=v.dtype)
    for start in range(0, n, length):
        end = min(n, start + length)
        run = _channel_max(v, end - 1)
        for j in range(end - 1, start - 1, -1):
            m = _channel_max(v, j)
            if m > run:
                run = m
            suffix[j - start] = run
        out[start] = suffix[0]
        if end - start < length:  # the last block: every window is clipped at the end
            for k in range(1, end - start):
                out[start + k] = suffix[k]
            continue
        run = suffix[0]  # (typed placeholder: replaced by the next block's first value)
        first = True
        for k in range(1, length):
            j = end + k - 1
            if j < n:
                m = _channel_max(v, j)
                if first or m > run:
                    run = m
                    first = False
            out[start + k] = suffix[k] if first or suffix[k] >= run else run
    return out


@njit(cache=True, nogil=True)
def box_mean_backward(v, length, initial, out):
    """``out[n] = mean(v[n - length + 1 : n + 1])`` with ``v[k < 0] = initial``; ``out`` may be ``v``
    (in place: the window's inputs are kept in a ring of ``length``). Returns ``out``.

    Shape: v, out (samples,) float64
    """
    n = v.shape[0]
    length = max(length, 1)
    ring = np.full(length, initial)
    pos = 0
    s = initial * length
    for i in range(n):
        x = v[i]
        s += x
        s -= ring[pos]
        ring[pos] = x
        pos += 1
        if pos == length:
            pos = 0
        out[i] = s / length
    return out


@njit(cache=True, nogil=True)
def limiter_gain_held(held_peak, pre_gain, ceiling, lookahead, release_coef):
    """:func:`limiter_gain` from ``held_peak = sliding_max_forward(peak, lookahead)``.

    The hold does not depend on ``pre_gain`` (``min(1, c / (g * p))`` is monotonic in ``p``), so a
    caller searching for the gain that meets a loudness target computes it once.
    Shape: held_peak (samples,) float32 or float64 -> (samples,) float64.
    """
    n = held_peak.shape[0]
    gain = np.empty(n, dtype=np.float64)
    state = 1.0
    for i in range(n):
        level = pre_gain * np.float64(held_peak[i])
        h = ceiling / level if level > ceiling else 1.0
        if h <= state:
            state = h
        else:
            state = h + (state - h) * release_coef
        gain[i] = state
    first = lookahead // 2
    second = lookahead - first
    if first < 1 or n == 0:
        return gain
    # Samples before the start are taken equal to the first: a peak in the first look-ahead window
    # is then limited as fully as any other.
    box_mean_backward(gain, first, gain[0], gain)
    return box_mean_backward(gain, second, gain[0], gain)


@njit(cache=True, nogil=True)
def limiter_gain(peak, pre_gain, ceiling, lookahead, release_coef):
    """Gain curve of a look-ahead peak limiter, offline (no latency: the look-ahead is non-causal).

    ``required[n] = min(1, ceiling / (pre_gain * peak[n]))`` is held back over the ``lookahead``
    samples before each peak (a forward sliding minimum), released towards the held value with the
    one-pole coefficient ``release_coef`` (per sample, in the linear gain domain) and smoothed by two
    backward box filters whose lengths sum to ``lookahead``. The hold covers the smoothing support,
    so ``gain[n] <= required[n]`` at every sample: no sample of the detector exceeds the ceiling.

    Shape:
        peak: (channels, samples) float32 or float64, the detector (e.g. oversampled peaks); the
            channels are linked (their maximum is limited)
        returns: (samples,) float64 in (0, 1]
    """
    return limiter_gain_held(sliding_max_forward(peak, lookahead), pre_gain, ceiling, lookahead, release_coef)
