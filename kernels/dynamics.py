"""The look-ahead true-peak limiter's gain computer (the compressor's is in :mod:`kernels.multiband`)."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def sliding_min_forward(v, length):
    """``out[n] = min(v[n : n + length])`` (the window is clipped at the end), by a monotonic deque.

    Shape: v (samples,) float64 -> (samples,) float64
    """
    n = v.shape[0]
    length = max(length, 1)
    out = np.empty(n, dtype=np.float64)
    dq = np.empty(n, dtype=np.int64)  # indices with increasing values
    head = 0
    tail = 0
    nxt = 0  # next index to push
    for i in range(n):
        stop = min(n, i + length)
        while nxt < stop:
            while tail > head and v[dq[tail - 1]] >= v[nxt]:
                tail -= 1
            dq[tail] = nxt
            tail += 1
            nxt += 1
        while dq[head] < i:
            head += 1
        out[i] = v[dq[head]]
    return out


@njit(cache=True, nogil=True)
def box_mean_backward(v, length, initial):
    """``out[n] = mean(v[n - length + 1 : n + 1])`` with ``v[k < 0] = initial``.

    Shape: v (samples,) float64 -> (samples,) float64
    """
    n = v.shape[0]
    length = max(length, 1)
    out = np.empty(n, dtype=np.float64)
    s = initial * length
    for i in range(n):
        s += v[i]
        old = v[i - length] if i >= length else initial
        s -= old
        out[i] = s / length
    return out


@njit(cache=True, nogil=True)
def sliding_max_forward(v, length):
    """``out[n] = max(v[n : n + length])`` (the window is clipped at the end).

    Shape: v (samples,) float64 -> (samples,) float64
    """
    return -sliding_min_forward(-v, length)


@njit(cache=True, nogil=True)
def limiter_gain_held(held_peak, pre_gain, ceiling, lookahead, release_coef):
    """:func:`limiter_gain` from ``held_peak = sliding_max_forward(peak, lookahead)``.

    The hold does not depend on ``pre_gain`` (``min(1, c / (g * p))`` is monotonic in ``p``), so a
    caller searching for the gain that meets a loudness target computes it once.
    """
    n = held_peak.shape[0]
    rel = np.empty(n, dtype=np.float64)
    state = 1.0
    for i in range(n):
        level = pre_gain * held_peak[i]
        h = ceiling / level if level > ceiling else 1.0
        if h <= state:
            state = h
        else:
            state = h + (state - h) * release_coef
        rel[i] = state
    first = lookahead // 2
    second = lookahead - first
    if first < 1 or n == 0:
        return rel
    # Samples before the start are taken equal to the first: a peak in the first look-ahead window
    # is then limited as fully as any other.
    smoothed = box_mean_backward(rel, first, rel[0])
    return box_mean_backward(smoothed, second, smoothed[0])


@njit(cache=True, nogil=True)
def limiter_gain(peak, pre_gain, ceiling, lookahead, release_coef):
    """Gain curve of a look-ahead peak limiter, offline (no latency: the look-ahead is non-causal).

    ``required[n] = min(1, ceiling / (pre_gain * peak[n]))`` is held back over the ``lookahead``
    samples before each peak (a forward sliding minimum), released towards the held value with the
    one-pole coefficient ``release_coef`` (per sample, in the linear gain domain) and smoothed by two
    backward box filters whose lengths sum to ``lookahead``. The hold covers the smoothing support,
    so ``gain[n] <= required[n]`` at every sample: no sample of the detector exceeds the ceiling.

    Shape:
        peak: (samples,) float64, the detector (e.g. oversampled peaks, max over channels)
        returns: (samples,) float64 in (0, 1]
    """
    return limiter_gain_held(sliding_max_forward(peak, lookahead), pre_gain, ceiling, lookahead, release_coef)
