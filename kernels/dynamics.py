"""Gain computers: the look-ahead true-peak limiter and the feed-forward compressor."""

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


@njit(cache=True, nogil=True)
def compressor_gain_db(x, threshold_db, ratio, knee_db, attack_coef, release_coef):
    """Feed-forward compressor gain in dB (<= 0), channels linked, smoothed in the log domain.

    Static curve (soft knee of width ``knee_db`` around ``threshold_db``), then a branching one-pole
    smoother: ``attack_coef`` while the reduction grows, ``release_coef`` while it shrinks
    (Giannoulis, Massberg & Reiss, JAES 2012, "smooth decoupled" detector).
    Below the knee the static curve is 0 dB, decided on the linear peak without a logarithm, and a
    release tail within 1e-9 dB of 0 is set to exactly 0 dB (so the gain stage can skip the exp).

    Shape:
        x: (channels, samples) float64
        returns: (samples,) float64 gain in dB
    """
    n_ch, n = x.shape
    out = np.empty(n, dtype=np.float64)
    slope = 1.0 - 1.0 / ratio
    half = knee_db / 2.0
    knee_start = 10.0 ** ((threshold_db - half) / 20.0)
    db_per_ln = 20.0 / np.log(10.0)
    state = 0.0
    for i in range(n):
        a = 0.0
        for c in range(n_ch):
            v = abs(x[c, i])
            if v > a:
                a = v
        target = 0.0
        if a > knee_start:
            over = db_per_ln * np.log(a) - threshold_db
            if knee_db > 0.0 and over <= half:
                target = -slope * (over + half) * (over + half) / (2.0 * knee_db)
            else:
                target = -slope * over
        if target < state:
            state = target + (state - target) * attack_coef
        else:
            state = target + (state - target) * release_coef
            if state > -1e-9:
                state = 0.0
        out[i] = state
    return out


@njit(cache=True, nogil=True)
def compress_into(out, band, threshold_db, ratio, knee_db, attack_coef, release_coef, makeup_db):
    """``out += band * 10**((compressor_gain_db(band, ...) + makeup_db) / 20)``, in place, fused.

    Shape: out, band (channels, samples) float64.
    """
    gain_db = compressor_gain_db(band, threshold_db, ratio, knee_db, attack_coef, release_coef)
    n_ch, n = band.shape
    ln_per_db = np.log(10.0) / 20.0
    makeup = 10.0 ** (makeup_db / 20.0)
    for i in range(n):
        d = gain_db[i]
        g = makeup if d == 0.0 else makeup * np.exp(d * ln_per_db)
        for c in range(n_ch):
            out[c, i] += band[c, i] * g
