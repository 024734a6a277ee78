"""Block energies for BS.1770-4 / EBU Tech 3341 metering."""

import numpy as np
from numba import njit


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
        t = s + e[i]
        if abs(s) >= abs(e[i]):
            comp += (s - t) + e[i]
        else:
            comp += (e[i] - t) + s
        s = t
    out[0] = (s + comp) / window
    for k in range(1, count):
        start = (k - 1) * hop
        for j in range(hop):
            add = e[start + window + j]
            sub = -e[start + j]
            for v in (add, sub):
                t = s + v
                if abs(s) >= abs(v):
                    comp += (s - t) + v
                else:
                    comp += (v - t) + s
                s = t
        m = (s + comp) / window
        out[k] = m if m > 0.0 else 0.0
    return out
