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


@njit(cache=True, nogil=True, inline="always")
def _release(held_level, ceiling, state, release_coef):
    """One sample of the limiter's gain computer: the gain ``held_level`` (the held, pre-gained
    peak) requires, reached at once when it is lower than ``state`` and released towards it
    otherwise. Returns the new state."""
    h = ceiling / held_level if held_level > ceiling else 1.0
    if h <= state:
        return h
    return h + (state - h) * release_coef


@njit(cache=True, nogil=True, inline="always")
def _down32(v):
    """``v`` as float32, rounded towards zero (a gain stored in float32 never exceeds the one
    computed, so the limiter's guarantee survives the narrowing)."""
    f = np.float32(v)
    if f > v:
        f = np.nextafter(f, np.float32(0.0))
    return f


@njit(cache=True, nogil=True)
def _smoother(lookahead):
    """State of the two backward box filters (lengths ``lookahead // 2`` and the rest):
    ``(ring1, ring2, sums, positions)``; empty rings when ``lookahead < 2`` (no smoothing)."""
    first = lookahead // 2
    if first < 1:
        return np.zeros(0), np.zeros(0), np.zeros(2), np.zeros(2, dtype=np.int64)
    return np.zeros(first), np.zeros(lookahead - first), np.zeros(2), np.zeros(2, dtype=np.int64)


@njit(cache=True, nogil=True, inline="always")
def _smooth_sample(i, r, ring1, ring2, sums, pos):
    """Release value ``r`` of sample ``i`` through both box filters (:func:`box_mean_backward`
    twice, the same float64 arithmetic, fused into one pass). Samples before the start are taken
    equal to the first: a peak in the first look-ahead window is then limited as fully as any
    other. Returns the smoothed gain."""
    n1 = ring1.shape[0]
    if n1 == 0:
        return r
    n2 = ring2.shape[0]
    if i == 0:
        for k in range(n1):
            ring1[k] = r
        for k in range(n2):
            ring2[k] = r
        sums[0] = r * n1
        sums[1] = r * n2
    p = pos[0]
    s = sums[0] + r
    s -= ring1[p]
    ring1[p] = r
    pos[0] = p + 1 if p + 1 < n1 else 0
    sums[0] = s
    m = s / n1
    p = pos[1]
    s = sums[1] + m
    s -= ring2[p]
    ring2[p] = m
    pos[1] = p + 1 if p + 1 < n2 else 0
    sums[1] = s
    return s / n2


@njit(cache=True, nogil=True)
def limiter_gain_held(held_peak, pre_gain, ceiling, lookahead, release_coef):
    """:func:`limiter_gain` from ``held_peak = sliding_max_forward(peak, lookahead)``.

    The hold does not depend on ``pre_gain`` (``min(1, c / (g * p))`` is monotonic in ``p``), so a
    caller searching for the gain that meets a loudness target may compute it once (or let
    :func:`limiter_gain_peak` hold as it goes, with no held copy at all).
    Shape: held_peak (samples,) float32 or float64 -> (samples,) float32 (computed in float64,
    rounded towards zero).
    """
    n = held_peak.shape[0]
    gain = np.empty(n, dtype=np.float32)
    ring1, ring2, sums, pos = _smoother(lookahead)
    state = 1.0
    for i in range(n):
        state = _release(pre_gain * np.float64(held_peak[i]), ceiling, state, release_coef)
        gain[i] = _down32(_smooth_sample(i, state, ring1, ring2, sums, pos))
    return gain


@njit(cache=True, nogil=True)
def limiter_gain_peak(peak, pre_gain, ceiling, lookahead, release_coef):
    """:func:`limiter_gain_held` of ``sliding_max_forward(peak[None], lookahead)``, the hold taken
    as it goes (van Herk / Gil-Werman as in :func:`sliding_max_forward`: a block's suffix maxima in
    one block of scratch, the next block's prefix maximum as a running value), so no held copy of
    the detector is made. The same curve, bit for bit.
    Shape: peak (samples,) float32, non-negative (detector magnitudes) -> (samples,) float32.
    """
    n = peak.shape[0]
    length = max(lookahead, 1)
    gain = np.empty(n, dtype=np.float32)
    suffix = np.empty(length, dtype=peak.dtype)
    ring1, ring2, sums, pos = _smoother(lookahead)
    state = 1.0
    for start in range(0, n, length):
        end = min(n, start + length)
        run = peak[end - 1]
        for j in range(end - 1, start - 1, -1):
            if peak[j] > run:
                run = peak[j]
            suffix[j - start] = run
        prefix = peak[start] * 0  # the window of start + k also holds peak[end : end + k]; peaks are >= 0
        for k in range(end - start):
            held = suffix[k]
            if k > 0 and end + k - 1 < n:
                if peak[end + k - 1] > prefix:
                    prefix = peak[end + k - 1]
            if prefix > held:
                held = prefix
            state = _release(pre_gain * np.float64(held), ceiling, state, release_coef)
            gain[start + k] = _down32(_smooth_sample(start + k, state, ring1, ring2, sums, pos))
    return gain


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
        returns: (samples,) float32 in (0, 1] (the box filters sum in float64)
    """
    return limiter_gain_held(sliding_max_forward(peak, lookahead), pre_gain, ceiling, lookahead, release_coef)
