"""Fundamental frequency by YIN (de Cheveigné and Kawahara, JASA 111(4), 2002), frame by frame,
for the mix job's refined loudness (a stable f0 picks the band the loudness is measured in).

numpy in, numpy out, no validation: ``x`` C-contiguous float64 ``(n,)`` (mono, at a low analysis
rate: the mix job decimates to 11.025 kHz), ``frame`` the integration window W, lags
``tau_min..tau_max`` (``tau_max + frame`` samples per frame), frames every ``hop`` samples from 0.
Per frame (steps 2-5 of the paper):

- difference ``d(tau) = sum_{j<W} (x[t+j] - x[t+j+tau])^2``,
- cumulative mean normalised difference ``d'(tau) = d(tau) tau / sum_{k=1..tau} d(k)``, ``d'(0) = 1``,
- the first lag in ``tau_min..tau_max`` where ``d'`` dips under ``threshold``, followed down to its
  local minimum (absolute threshold); none: the frame is unvoiced (f0 0),
- parabolic interpolation of ``d'`` around that lag; ``f0 = sample_rate / lag``.

``aperiodicity`` is ``d'`` at the chosen lag (the global minimum for an unvoiced frame): near 0 for
a clean periodic signal, near 1 for noise. A silent frame (``d`` all zero) is unvoiced with
aperiodicity 1. Oracle: ``tests/test_mix.py``.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def yin(x, sample_rate, frame, hop, tau_min, tau_max, threshold, f0, aperiodicity):
    """Write each frame's f0 (Hz, 0 when unvoiced) and aperiodicity; returns the frame count
    written (``(n - frame - tau_max) // hop + 1``, at most ``f0.size``). Shape: x (n,) float64;
    f0, aperiodicity (frames,) float64."""
    n = x.shape[0]
    count = 0
    if n >= frame + tau_max:
        count = min((n - frame - tau_max) // hop + 1, f0.shape[0])
    d = np.empty(tau_max + 1)
    cmnd = np.empty(tau_max + 1)
    for i in range(count):
        t = i * hop
        for tau in range(tau_max + 1):
            acc = 0.0
            for j in range(frame):
                diff = x[t + j] - x[t + j + tau]
                acc += diff * diff
            d[tau] = acc
        cmnd[0] = 1.0
        running = 0.0
        for tau in range(1, tau_max + 1):
            running += d[tau]
            cmnd[tau] = d[tau] * tau / running if running > 0.0 else 1.0
        chosen = -1
        tau = tau_min
        while tau <= tau_max:
            if cmnd[tau] < threshold:
                while tau + 1 <= tau_max and cmnd[tau + 1] < cmnd[tau]:
                    tau += 1
                chosen = tau
                break
            tau += 1
        if chosen < 0:
            best = tau_min
            for tau in range(tau_min, tau_max + 1):
                if cmnd[tau] < cmnd[best]:
                    best = tau
            f0[i] = 0.0
            aperiodicity[i] = min(cmnd[best], 1.0)
            continue
        lag = float(chosen)
        if tau_min < chosen < tau_max:
            a, b, c = cmnd[chosen - 1], cmnd[chosen], cmnd[chosen + 1]
            den = a - 2.0 * b + c
            if den > 0.0:
                lag += 0.5 * (a - c) / den
        f0[i] = sample_rate / lag
        aperiodicity[i] = cmnd[chosen]
    return count
