"""Running median along the last axis, for the separate job's harmonic/percussive split (median
filtering of a magnitude spectrogram across time and across frequency, Fitzgerald 2010).

numpy in, numpy out, no validation: ``x`` C-contiguous float32 ``(rows, n)``, ``width`` odd and
positive. The window is centred; past either end the edge value is repeated ("nearest"), so the
output has the input's shape. A sorted window slides along each row (one deletion and one insertion
per step, ``O(n * width)`` per row), instead of sorting every window. Oracle:
``tests/test_separate_dsp.py``.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def median_rows(x, width, out):
    """``out[r, i] = median(x[r, clamp(i - h) .. clamp(i + h)])`` with ``h = width // 2`` and
    indices clamped to ``[0, n - 1]``. Shape: x, out (rows, n) float32; returns ``out``."""
    rows, n = x.shape
    h = width // 2
    window = np.empty(width, np.float32)
    for r in range(rows):
        if n == 0:
            continue
        # the first window, sorted by insertion
        for j in range(width):
            k = min(max(j - h, 0), n - 1)
            value = x[r, k]
            p = j
            while p > 0 and window[p - 1] > value:
                window[p] = window[p - 1]
                p -= 1
            window[p] = value
        out[r, 0] = window[h]
        for i in range(1, n):
            leaving = x[r, min(max(i - 1 - h, 0), n - 1)]
            entering = x[r, min(i + h, n - 1)]
            # find the leaving value (binary search for its first occurrence)
            lo, hi = 0, width - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if window[mid] < leaving:
                    lo = mid + 1
                else:
                    hi = mid
            p = lo
            # slide the entering value into the gap, keeping the window sorted
            while p > 0 and window[p - 1] > entering:
                window[p] = window[p - 1]
                p -= 1
            while p < width - 1 and window[p + 1] < entering:
                window[p] = window[p + 1]
                p += 1
            window[p] = entering
            out[r, i] = window[h]
    return out


def median_filter_rows(x, width):
    """Running median of ``width`` (odd) samples along the last axis of C-contiguous float32
    ``(rows, n)`` ``x``; a new array of its shape."""
    return median_rows(x, int(width), np.empty(x.shape, np.float32))
