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

    Shape: v, out (samples,) float32 or float64 (the sum and its ring are float64; a float32
    ``out`` is rounded towards zero)
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
        m = s / length
        out[i] = m
        if out[i] > m:  # a narrower ``out`` rounds towards zero: never above the exact mean
            out[i] = np.nextafter(out[i], out[i] * 0)
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
def _smooth(gain, lookahead):
    """The two backward box filters (lengths summing to ``lookahead``), in place. Returns ``gain``."""
    first = lookahead // 2
    second = lookahead - first
    if first < 1 or gain.shape[0] == 0:
        return gain
    # Samples before the start are taken equal to the first: a peak in the first look-ahead window
    # is then limited as fully as any other.
    box_mean_backward(gain, first, np.float64(gain[0]), gain)
    return box_mean_backward(gain, second, np.float64(gain[0]), gain)


@njit(cache=True, nogil=True)
def limiter_gain_held(held_peak, pre_gain, ceiling, lookahead, release_coef):
    """:func:`limiter_gain` from ``held_peak = sliding_max_forward(peak, lookahead)``.

    The hold does not depend on ``pre_gain`` (``min(1, c / (g * p))`` is monotonic in ``p``), so a
    caller searching for the gain that meets a loudness target may compute it once (or let
    :func:`limiter_gain_peak` hold as it goes, with no held copy at all).
    Shape: held_peak (samples,) float32 or float64 -> (samples,) float32.
    """
    n = held_peak.shape[0]
    gain = np.empty(n, dtype=np.float32)
    state = 1.0
    for i in range(n):
        state = _release(pre_gain * np.float64(held_peak[i]), ceiling, state, release_coef)
        gain[i] = _down32(state)
    return _smooth(gain, lookahead)


@njit(cache=True, nogil=True)
def limiter_gain_peak(peak, pre_gain, ceiling, lookahead, release_coef):
    """:func:`limiter_gain_held` of ``sliding_max_forward(peak[None], lookahead)``, the hold taken
    as it goes: a monotonic queue of the window's candidate maxima (Lemire 2006), a ring of
    ``lookahead + 1`` indices, so no held copy of the detector is made. The same curve, bit for bit.
    Shape: peak (samples,) float32 -> (samples,) float32.
    """
    n = peak.shape[0]
    length = max(lookahead, 1)
    gain = np.empty(n, dtype=np.float32)
    cap = length + 1
    ring = np.empty(cap, dtype=np.int64)  # indices, their peaks falling from front to back
    head = 0
    tail = 0
    pushed = 0  # samples offered to the queue so far
    state = 1.0
    for i in range(n):
        stop = min(n, i + length)  # the window is peak[i : i + length]
        while pushed < stop:
            v = peak[pushed]
            while tail > head and peak[ring[(tail - 1) % cap]] <= v:
                tail -= 1
            ring[tail % cap] = pushed
            tail += 1
            pushed += 1
        while ring[head % cap] < i:
            head += 1
        state = _release(pre_gain * np.float64(peak[ring[head % cap]]), ceiling, state, release_coef)
        gain[i] = _down32(state)
    return _smooth(gain, lookahead)


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
