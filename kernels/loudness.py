"""Block energies for BS.1770-4 / EBU Tech 3341 metering."""

import numpy as np
from numba import njit

from roomtone.kernels.biquad import pack_sections, section_pass2


@njit(cache=True, nogil=True)
def _add(s, comp, v):
    """Neumaier-compensated ``s + v``: returns the new sum and compensation."""
    t = s + v
    if abs(s) >= abs(v):
        comp += (s - t) + v
    else:
        comp += (v - t) + s
    return t, comp


@njit(cache=True, nogil=True)
def window_means(e, window, hop):
    """Mean of ``e`` over every complete window ``[k*hop, k*hop + window)``.

    A running sum with Neumaier compensation, so ``hop == 1`` (a reading at every sample, as
    EBU Tech 3341 test 13 needs) costs O(samples) and keeps full precision after loud passages.

    Shape:
        e: (samples,) float64
        returns: (max(0, (samples - window) // hop + 1),) float64
    """
    n = e.shape[0]
    if n < window:
        return np.zeros(0, dtype=np.float64)
    count = (n - window) // hop + 1
    out = np.empty(count, dtype=np.float64)
    s = 0.0
    comp = 0.0
    for i in range(window):
        s, comp = _add(s, comp, e[i])
    out[0] = (s + comp) / window
    for k in range(1, count):
        start = (k - 1) * hop
        for j in range(hop):
            s, comp = _add(s, comp, e[start + window + j])
            s, comp = _add(s, comp, -e[start + j])
        m = (s + comp) / window
        out[k] = m if m > 0.0 else 0.0
    return out


SPAN = 256  # samples filtered per block, section by section


@njit(cache=True, nogil=True)
def _block_energy(x, gain, has_gain, q0, m, co, n_sec, weights, z, rows, e):
    """``e[j] = sum_c weights[c] * (K * (gain x_c))[q0 + j]^2`` for ``j < m``: the block is copied
    into ``rows`` (float64, channels padded to pairs) and filtered section by section, two channels
    per loop (:func:`roomtone.kernels.biquad.section_pass2`); row ``r``'s section ``s`` keeps its state at
    ``z[(r * n_sec + s) * 2]``."""
    n_ch = x.shape[0]
    for c in range(n_ch):
        for j in range(m):
            if has_gain:  # the product in the signal's precision, as the built signal holds it
                rows[c, j] = np.float64(x[c, q0 + j] * gain[q0 + j])
            else:
                rows[c, j] = np.float64(x[c, q0 + j])
    for r in range(0, rows.shape[0], 2):
        for s in range(n_sec):
            section_pass2(rows[r], rows[r + 1], m, co, s * 5, z, (r * n_sec + s) * 2, ((r + 1) * n_sec + s) * 2)
    for j in range(m):
        e[j] = 0.0
    for c in range(n_ch):
        w = weights[c]
        if w == 0.0:
            continue
        for j in range(m):
            v = rows[c, j]
            e[j] += w * v * v


@njit(cache=True, nogil=True)
def _block_filter(sos, n_ch):
    """What :func:`_block_energy` needs for ``n_ch`` channels through ``sos``: the packed
    coefficients, the block rows (channels padded to pairs: an odd count gets a silent partner) and
    the zeroed section states. Returns ``(co, rows, z)``."""
    rows = np.zeros((n_ch + n_ch % 2, SPAN))
    return pack_sections(sos), rows, np.zeros(rows.shape[0] * sos.shape[0] * 2 + 1)


@njit(cache=True, nogil=True)
def weighted_power(x, sos, weights):
    """``z[n] = sum_c weights[c] * (K * x_c)[n]^2`` at every sample (BS.1770-4 eqs. 1-2), for
    readings :func:`loudness_pass` does not reduce (e.g. momentary loudness at every sample).

    Shape: x (channels, samples) float32 or float64, sos (sections, 6), weights (channels,) ->
    (samples,) float64
    """
    n_ch, n = x.shape
    n_sec = sos.shape[0]
    co, rows, z = _block_filter(sos, n_ch)
    out = np.empty(n)
    no_gain = np.zeros(0)
    for q0 in range(0, n, SPAN):
        m = min(SPAN, n - q0)
        _block_energy(x, no_gain, False, q0, m, co, n_sec, weights, z, rows, out[q0:q0 + m])
    return out


@njit(cache=True, nogil=True)
def loudness_pass(x, sos, weights, gain, window_m, window_s, hop, every_sample=True):
    """K-weighting, channel weighting and two sliding-window energies in one pass, without keeping
    the per-sample power (BS.1770-4 eqs. 1-2; EBU Tech 3341 momentary and short-term windows).

    ``z[n] = sum_c weights[c] * (K * (gain * x_c))[n]^2``, with ``K`` the cascade ``sos`` and ``gain``
    a per-sample factor (e.g. a limiter's gain curve, so a loudness search need not build the
    limited signal) or empty for none. For each window length ``w`` in ``(window_m, window_s)``:
    the mean of ``z`` over every complete window ``[k*hop, k*hop + w)`` (gating blocks, short-term at
    10 Hz), and the largest mean over the complete windows starting at every sample (Tech 3341 max
    momentary / short-term, test 13). Running sums are Neumaier-compensated, the history of ``z``
    is a ring of ``max(window_m, window_s)`` samples.

    With ``every_sample=False`` (both windows whole multiples of ``hop``) only the hop-aligned
    blocks are made, from per-hop sums, and both maxima are -1.0: the integrated loudness alone, at
    the cost of the filtering.

    Shape:
        x: (channels, samples) float32 or float64; sos: (sections, 6); weights: (channels,)
        gain: (samples,) or (0,), float32 for float32 ``x`` (the product is rounded as a float32
            signal of it would be)
        returns: (blocks_m, blocks_s, max_m, max_s): (max(0, (samples - w) // hop + 1),) float64 each,
            and the two maxima (-1.0 where no window is complete)
    """
    n_ch, n = x.shape
    n_sec = sos.shape[0]
    has_gain = gain.shape[0] == n and n > 0
    co, rows, z = _block_filter(sos, n_ch)
    e = np.empty(SPAN)
    windows = (window_m, window_s)
    ring_len = max(window_m, window_s, 1)
    ring = np.zeros(ring_len)
    blocks_m = np.empty(max(0, (n - window_m) // hop + 1) if n >= window_m else 0)
    blocks_s = np.empty(max(0, (n - window_s) // hop + 1) if n >= window_s else 0)
    sums = np.zeros(2)
    comps = np.zeros(2)
    maxima = np.full(2, -1.0)
    countdown = np.zeros(2, dtype=np.int64)  # samples until the next hop-aligned window completes
    written = np.zeros(2, dtype=np.int64)
    if not every_sample and window_m % hop == 0 and window_s % hop == 0:
        bins = np.zeros(n // hop + 1)
        for b in range(bins.shape[0]):
            bin_stop = min(n, (b + 1) * hop)
            for q0 in range(b * hop, bin_stop, SPAN):  # blocks never straddle a bin
                m = min(SPAN, bin_stop - q0)
                _block_energy(x, gain, has_gain, q0, m, co, n_sec, weights, z, rows, e)
                total = 0.0
                for j in range(m):
                    total += e[j]
                bins[b] += total
        for blocks, length in ((blocks_m, window_m), (blocks_s, window_s)):
            per = length // hop
            for k in range(blocks.shape[0]):
                total = 0.0
                for j in range(per):
                    total += bins[k + j]
                blocks[k] = total / length
        return blocks_m, blocks_s, -1.0, -1.0
    slot = 0  # ring index of sample i; sample i - w sits at (slot - w) mod ring_len
    for i in range(n):
        if i % SPAN == 0:
            _block_energy(x, gain, has_gain, i, min(SPAN, n - i), co, n_sec, weights, z, rows, e)
        energy = e[i % SPAN]
        for k in range(2):
            length = windows[k]
            s, comp = _add(sums[k], comps[k], energy)
            if i >= length:
                old = slot - length
                if old < 0:
                    old += ring_len
                s, comp = _add(s, comp, -ring[old])
            sums[k] = s
            comps[k] = comp
            if i >= length - 1:
                mean = (s + comp) / length
                if mean < 0.0:
                    mean = 0.0
                if mean > maxima[k]:
                    maxima[k] = mean
                if countdown[k] == 0:
                    if k == 0:
                        blocks_m[written[k]] = mean
                    else:
                        blocks_s[written[k]] = mean
                    written[k] += 1
                    countdown[k] = hop
                countdown[k] -= 1
        ring[slot] = energy
        slot += 1
        if slot == ring_len:
            slot = 0
    return blocks_m, blocks_s, maxima[0], maxima[1]
