"""Oversampled peak detection (BS.1770-4 Annex 2: polyphase FIR interpolation, then |.| and max)."""

import numpy as np
from numba import njit

from roomtone.kernels._split import run_split

BLOCK = 8192  # samples per work item: small buffers, both cores busy even for mono


@njit(cache=True, nogil=True)
def padded_window(x, c, first, length):
    """``out[j] = x[c, first + j]`` for ``j < length`` as float64, zero where that falls outside
    the signal: a block kernel's input with the neighbours its filter reaches into.
    Shape: (length,) float64."""
    n = x.shape[1]
    out = np.zeros(length)
    for j in range(max(0, -first), min(length, n - first)):
        out[j] = x[c, first + j]
    return out


@njit(cache=True, nogil=True)
def padded_window_gain(x, gain, c, first, length):
    """:func:`padded_window` of ``x * gain`` (``gain``: a per-sample factor, shape (samples,), or
    empty for none), each product rounded to float32 first, as ``x * gain`` in float32 numpy
    (or the PCM quantizer's input) holds it. Shape: (length,) float64."""
    if gain.shape[0] == 0:
        return padded_window(x, c, first, length)
    n = x.shape[1]
    out = np.zeros(length)
    for j in range(max(0, -first), min(length, n - first)):
        out[j] = np.float32(x[c, first + j] * gain[first + j])
    return out


@njit(cache=True, nogil=True)
def _reversed_taps(phases):
    """Branches with their taps reversed, so the inner product walks memory forwards (SIMD)."""
    n_ph, n_tap = phases.shape
    rev = np.empty((n_ph, n_tap), dtype=np.float64)
    for p in range(n_ph):
        for t in range(n_tap):
            rev[p, t] = phases[p, n_tap - 1 - t]
    return rev


@njit(cache=True, fastmath=True, nogil=True, inline="always")
def _branch_abs(rev, xp, i, p):
    """|interpolated point p| at loop index i: branch p of ``rev`` over window xp[i+1 .. i+T]
    (which holds x[i-T+1 .. i], newest last)."""
    acc = 0.0
    for t in range(rev.shape[1]):
        acc += rev[p, t] * xp[i + 1 + t]
    return abs(acc)


METER_BLOCK = 1024  # loop indices per work item of the meter: small, so that quiet blocks are skipped


@njit(cache=True, fastmath=True, nogil=True)
def _true_peak_blocks(x, gain, rev, n_blocks, scale, floor, best, first, last):
    """Work items ``[first, last)`` of :func:`true_peak_per_channel` of ``x * gain`` (``gain``
    empty for none): item ``job`` is channel
    ``c = job // n_blocks``, loop indices ``[b * METER_BLOCK, (b + 1) * METER_BLOCK)`` with
    ``b = job % n_blocks``; its maximum goes to ``best[c, b]``. A block whose window peak ``m``
    satisfies ``m * scale < floor[c]`` (``scale`` bounding the interpolator's gain, ``floor[c]`` a
    value the channel's maximum reaches) cannot raise that maximum: it keeps ``m`` uncomputed."""
    n = x.shape[1]
    n_ph, n_tap = rev.shape
    n_loop = n + n_tap - 1
    for job in range(first, last):
        c = job // n_blocks
        i0 = (job % n_blocks) * METER_BLOCK
        i1 = min(n_loop, i0 + METER_BLOCK)
        xb = padded_window_gain(x, gain, c, i0 - n_tap + 1, max(0, i1 - i0) + n_tap)
        m = 0.0
        for j in range(xb.shape[0]):
            a = abs(xb[j])
            if a > m:
                m = a
        if m * scale < floor[c]:
            best[c, job % n_blocks] = m
            continue
        for p in range(n_ph):  # branch by branch: about 10 % faster than point by point, same maximum
            for i in range(i0, i1):
                a = _branch_abs(rev, xb, i - i0 - 1, p)
                if a > m:
                    m = a
        best[c, job % n_blocks] = m


def true_peak_per_channel(x, phases, gain=None):
    """Largest absolute value of each channel, sampled and P-times interpolated, of ``x`` or, with
    ``gain`` (float32, shape (samples,): a per-sample factor such as a limiter's gain curve), of
    ``(x * gain)`` rounded to float32, without building it.

    ``phases[p, t]`` is tap ``t`` of polyphase branch ``p`` of a P-times interpolator (the meter
    uses a 49-tap filter in 4 branches, BS.1770-4 Annex 2's order). Work is split over channels and
    blocks of :data:`METER_BLOCK` loop indices, one share per core. An interpolated point is at most
    ``S = max_p sum_t |phases[p, t]|`` times the largest ``|x|`` in its window, so a block whose
    sample peak times ``S`` (and a margin of 1e-6 for rounding) stays under the channel's sample
    peak (itself part of the maximum) is skipped: the result is the same maximum, bit for bit, as
    computing every point. Shape: x (channels, samples) -> (channels,) float64.
    """
    n_ch, n = x.shape
    rev = _reversed_taps(phases)
    n_loop = n + rev.shape[1] - 1
    n_blocks = max(1, (n_loop + METER_BLOCK - 1) // METER_BLOCK)
    best = np.zeros((n_ch, n_blocks))
    scale = interpolator_gain_bound(phases)
    floor = np.zeros(n_ch)  # each channel's sample peak
    if gain is None:
        gain = np.zeros(0, dtype=np.float32)
        if n:
            floor = np.maximum(x.max(axis=1), -x.min(axis=1)).astype(np.float64)
    else:
        for start in range(0, n, 1 << 16):  # in chunks: no whole-signal product
            piece = x[:, start:start + (1 << 16)] * gain[start:start + (1 << 16)]
            floor = np.maximum(floor, np.abs(piece).max(axis=1))
    run_split(_true_peak_blocks, n_ch * n_blocks, x, gain, rev, n_blocks, scale, np.ascontiguousarray(floor), best)
    return best.max(axis=1)


def interpolator_gain_bound(phases):
    """``max_p sum_t |phases[p, t]|`` (and a margin of 1e-6 for rounding): no interpolated point
    exceeds this times the largest ``|x|`` in its window, so an error of at most ``e`` per sample
    moves the true peak by at most this times ``e``."""
    return float(np.abs(phases).sum(axis=1).max(initial=0.0)) * (1.0 + 1e-6)


@njit(cache=True, nogil=True)
def _offsets(n_ph, n_tap):
    """Point ``p`` computed at loop index ``i`` is credited to sample ``i + offset[p]``: the nearest
    to its time ``i - delay + p / P``, ``delay = (P*T - 1) / (2P)`` (linear-phase prototype)."""
    delay = (n_ph * n_tap - 1) / (2.0 * n_ph)
    offset = np.empty(n_ph, dtype=np.int64)
    for p in range(n_ph):
        offset[p] = int(np.floor(-delay + p / n_ph + 0.5))
    return offset


@njit(cache=True, nogil=True)
def _offset_range(offset):
    """``(offset.min(), offset.max())`` of a non-empty int64 array, as a plain loop (numba's array
    reductions cost about 0.4 s of first-run compilation)."""
    low = offset[0]
    high = offset[0]
    for p in range(1, offset.shape[0]):
        low = min(low, offset[p])
        high = max(high, offset[p])
    return low, high


@njit(cache=True, fastmath=True, nogil=True)
def _channel_peaks(x, c, rev, offset, refine, k0, k1, dest, base):
    """Oversampled peaks of channel ``c`` for samples ``[k0, k1)`` into ``dest[k - base]``
    (overwritten): every point credited to those samples, plus the neighbours the parabola needs,
    so the result does not depend on where the range starts or ends."""
    n = x.shape[1]
    n_ph, n_tap = rev.shape
    low_off, high_off = _offset_range(offset)
    n_loop = n + n_tap - 1  # loop index i covers the window x[i - T + 1 .. i]
    for k in range(k0, k1):
        dest[k - base] = abs(x[c, k])
    # loop indices whose points land in [k0, k1), one more on each side for the parabola; the
    # first and last samples also take the points the clamping moves onto them
    i_lo = max(0, (k0 - high_off if k0 > 0 else 0) - 1)
    i_hi = min(n_loop, (k1 - low_off if k1 < n else n_loop) + 1)
    xb = padded_window(x, c, i_lo - n_tap + 1, i_hi - i_lo + n_tap)
    prev2 = 0.0
    prev1 = 0.0
    prev1_k = 0
    for i in range(i_lo, i_hi):
        for p in range(n_ph):
            a = _branch_abs(rev, xb, i - i_lo - 1, p)
            k = i + offset[p]
            if k < 0:
                k = 0
            elif k >= n:
                k = n - 1
            if k0 <= k < k1 and a > dest[k - base]:
                dest[k - base] = a
            if refine and prev1 > prev2 and prev1 >= a:
                denom = prev2 - 2.0 * prev1 + a
                if denom < 0.0 and k0 <= prev1_k < k1:
                    vertex = prev1 - (prev2 - a) * (prev2 - a) / (8.0 * denom)
                    if vertex > dest[prev1_k - base]:
                        dest[prev1_k - base] = vertex
            prev2 = prev1
            prev1 = a
            prev1_k = k


@njit(cache=True, fastmath=True, nogil=True)
def _peak_blocks(x, rev, offset, refine, out, first, last):
    """Work items ``[first, last)`` of :func:`oversampled_peaks`: item ``job`` is channel
    ``job // n_blocks``, output samples ``[b * BLOCK, (b + 1) * BLOCK)`` with ``b = job % n_blocks``."""
    n = x.shape[1]
    n_blocks = (n + BLOCK - 1) // BLOCK
    for job in range(first, last):
        c = job // n_blocks
        k0 = (job % n_blocks) * BLOCK
        _channel_peaks(x, c, rev, offset, refine, k0, min(n, k0 + BLOCK), out[c], 0)


def oversampled_peaks(x, phases, refine):
    """Per input sample, the largest absolute value of the signal interpolated around it.

    Interpolated point ``p`` computed at input index ``i`` lies at time ``i - delay + p / P`` with
    ``delay = (P*T - 1) / (2P)`` (a linear-phase prototype of ``P * T`` taps) and is credited to the
    nearest input sample. The raw ``|x[c, n]|`` is always included.

    With ``refine``, a parabola through each local maximum of the interpolated magnitude and its two
    neighbours adds its vertex, so a 4x detector tracks a much finer grid (the limiter uses this; the
    meter stays the standard's 4x).

    Work is split over channels and blocks of :data:`BLOCK` output samples, one share per core (no
    whole-signal copies): a block computes every interpolated point credited to its samples, plus
    the neighbours the parabola needs, and writes only its own samples.

    Shape:
        x: (channels, samples) float32 or float64
        phases: (P, T) float64
        returns: (channels, samples) float32
    """
    n_ch, n = x.shape
    out = np.zeros((n_ch, n), dtype=np.float32)
    if n == 0:
        return out
    n_ph, n_tap = phases.shape
    run_split(_peak_blocks, n_ch * ((n + BLOCK - 1) // BLOCK), x, _reversed_taps(phases), _offsets(n_ph, n_tap),
              bool(refine), out)
    return out


@njit(cache=True, fastmath=True, nogil=True)
def _peak_pieces(x, rev, offset, refine, out, piece_start, piece_stop, first, last):
    """Pieces ``[first, last)`` of :func:`oversampled_peak_runs`: piece ``j`` covers samples
    ``[piece_start[j], piece_stop[j])``, the maximum over channels written into ``out``."""
    n_ch = x.shape[0]
    for j in range(first, last):
        k0 = piece_start[j]
        k1 = piece_stop[j]
        row = np.empty(k1 - k0, dtype=np.float32)
        for c in range(n_ch):
            _channel_peaks(x, c, rev, offset, refine, k0, k1, row, k0)
            for k in range(k0, k1):
                if c == 0 or row[k - k0] > out[k]:
                    out[k] = row[k - k0]


def oversampled_peak_runs(x, phases, refine, out, run_starts, run_stops):
    """``oversampled_peaks(x, phases, refine).max(axis=0)`` on the sample runs
    ``[run_starts[r], run_stops[r])`` only (disjoint), written into ``out``; each run is split into
    pieces of at most :data:`BLOCK`, one share of the pieces per core. Lets a caller compute the
    exact detector only where a cheaper bound says it may matter. Returns ``out``.

    Shape: x (channels, samples); out (samples,) float32; run_starts, run_stops (runs,) int64.
    """
    n_ph, n_tap = phases.shape
    starts = np.asarray(run_starts, dtype=np.int64)
    stops = np.asarray(run_stops, dtype=np.int64)
    # pieces of at most BLOCK samples, so one long run still keeps every core busy
    counts = np.maximum((stops - starts + BLOCK - 1) // BLOCK, 0)
    first_piece = np.cumsum(counts) - counts
    index = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(first_piece, counts)
    piece_start = np.repeat(starts, counts) + index * BLOCK
    piece_stop = np.minimum(piece_start + BLOCK, np.repeat(stops, counts))
    run_split(_peak_pieces, piece_start.shape[0], x, _reversed_taps(phases), _offsets(n_ph, n_tap), bool(refine),
              out, piece_start, piece_stop)
    return out


@njit(cache=True, nogil=True)
def block_peak_bounds(x, phases, block):
    """For each block of ``block`` samples, a number no smaller than any value
    :func:`oversampled_peaks` (with ``refine``) gives its samples, however large, from the sample
    peak around it: an interpolated point is at most ``S = max_p sum_t |phases[p, t]|`` times the
    largest ``|x|`` in its window, a parabola's vertex at most 9/8 of the point it refines. The
    window reach covers the filter length, the credit offsets and the parabola's neighbours.

    Shape: x (channels, samples) -> (ceil(samples / block),) float64
    """
    n_ch, n = x.shape
    n_ph, n_tap = phases.shape
    offset = _offsets(n_ph, n_tap)
    low_off, high_off = _offset_range(offset)
    reach = n_tap + max(abs(low_off), abs(high_off)) + 2
    scale = 0.0
    for p in range(n_ph):
        total = 0.0
        for t in range(n_tap):
            total += abs(phases[p, t])
        scale = max(scale, total)
    scale = max(scale, 1.0) * 1.125 * (1.0 + 1e-6)  # and a hair for rounding
    n_blocks = (n + block - 1) // block
    sample_max = np.zeros(n_blocks)  # max |x| within each block
    for b in range(n_blocks):
        m = 0.0
        for c in range(n_ch):
            for k in range(b * block, min(n, (b + 1) * block)):
                v = abs(x[c, k])
                if v > m:
                    m = v
        sample_max[b] = m
    out = np.empty(n_blocks)
    spread = (reach + block - 1) // block  # neighbouring blocks the reach touches
    for b in range(n_blocks):
        m = 0.0
        for d in range(max(0, b - spread), min(n_blocks, b + spread + 1)):
            if sample_max[d] > m:
                m = sample_max[d]
        out[b] = m * scale
    return out
