"""Filter design (numpy, float64): biquads as SOS rows ``b0 b1 b2 1 a1 a2``, polyphase interpolators.

Biquads follow the RBJ Audio EQ Cookbook (bilinear transform with frequency pre-warping); the
K-weighting filter is the BS.1770-4 pre-filter and RLB high-pass, rebuilt at any sample rate from
the analog parameters that reproduce the published 48 kHz coefficients (BS.1770-4 Table 1/2).
"""

import math

import numpy as np

from roomtone.errors import InvalidAudioError


def _row(b0, b1, b2, a0, a1, a2):
    return np.array([b0 / a0, b1 / a0, b2 / a0, 1.0, a1 / a0, a2 / a0], dtype=np.float64)


def _check_freq(freq_hz, sample_rate, name="frequency_hz"):
    if not 0.0 < freq_hz < sample_rate / 2:
        raise InvalidAudioError(
            f"{name}={freq_hz:g} Hz must lie between 0 and the Nyquist frequency {sample_rate / 2:g} Hz"
        )


def k_weighting_sos(sample_rate):
    """BS.1770-4 K-weighting (stage 1 high shelf, stage 2 RLB high-pass) at ``sample_rate``.

    At 48 kHz this reproduces Table 1 (b = 1.53512485958697, -2.69169618940638, 1.19839281085285;
    a = -1.69065929318241, 0.73248077421585) and Table 2 (a = -1.99004745483398, 0.99007225036621)
    to better than 1e-8. Shape: returns (2, 6).
    """
    # Stage 1: high shelf, +4 dB above ~1.7 kHz (analog prototype fitted to Table 1).
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / sample_rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh ** 0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = _row(vh + vb * k / q + k * k, 2.0 * (k * k - vh), vh - vb * k / q + k * k,
                 a0, 2.0 * (k * k - 1.0), 1.0 - k / q + k * k)
    # Stage 2: RLB weighting, 2nd-order high-pass at ~38 Hz (Table 2; numerator 1, -2, 1).
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sample_rate)
    a0 = 1.0 + k / q + k * k
    rlb = np.array([1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    return np.stack([shelf, rlb])


def peaking_sos(freq_hz, gain_db, q, sample_rate):
    """RBJ peaking EQ: ``gain_db`` at ``freq_hz``, bandwidth set by ``q``. Shape: (1, 6)."""
    _check_freq(freq_hz, sample_rate)
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * freq_hz / sample_rate
    alpha = math.sin(w0) / (2.0 * q)
    cw = math.cos(w0)
    return _row(1 + alpha * a, -2 * cw, 1 - alpha * a, 1 + alpha / a, -2 * cw, 1 - alpha / a)[None]


def shelf_sos(freq_hz, gain_db, sample_rate, kind, slope=1.0):
    """RBJ low or high shelf (``kind`` = "low" | "high") with shelf slope ``slope``. Shape: (1, 6)."""
    _check_freq(freq_hz, sample_rate)
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * freq_hz / sample_rate
    cw, sw = math.cos(w0), math.sin(w0)
    alpha = sw / 2.0 * math.sqrt((a + 1.0 / a) * (1.0 / slope - 1.0) + 2.0)
    sa = 2.0 * math.sqrt(a) * alpha
    if kind == "low":
        return _row(a * ((a + 1) - (a - 1) * cw + sa), 2 * a * ((a - 1) - (a + 1) * cw),
                    a * ((a + 1) - (a - 1) * cw - sa), (a + 1) + (a - 1) * cw + sa,
                    -2 * ((a - 1) + (a + 1) * cw), (a + 1) + (a - 1) * cw - sa)[None]
    return _row(a * ((a + 1) + (a - 1) * cw + sa), -2 * a * ((a - 1) + (a + 1) * cw),
                a * ((a + 1) + (a - 1) * cw - sa), (a + 1) - (a - 1) * cw + sa,
                2 * ((a - 1) - (a + 1) * cw), (a + 1) - (a - 1) * cw - sa)[None]


def butterworth2_sos(freq_hz, sample_rate, kind):
    """2nd-order Butterworth low- or high-pass (Q = 1/sqrt 2). Shape: (1, 6)."""
    _check_freq(freq_hz, sample_rate)
    w0 = 2.0 * math.pi * freq_hz / sample_rate
    cw = math.cos(w0)
    alpha = math.sin(w0) / (2.0 * (1.0 / math.sqrt(2.0)))
    if kind == "low":
        b = ((1 - cw) / 2, 1 - cw, (1 - cw) / 2)
    else:
        b = ((1 + cw) / 2, -(1 + cw), (1 + cw) / 2)
    return _row(*b, 1 + alpha, -2 * cw, 1 - alpha)[None]


def notch_sos(freq_hz, bandwidth_hz, sample_rate):
    """RBJ notch (infinitely deep at ``freq_hz``, -3 dB points ``bandwidth_hz`` apart,
    Q = freq / bandwidth). Shape: (1, 6)."""
    _check_freq(freq_hz, sample_rate)
    w0 = 2.0 * math.pi * freq_hz / sample_rate
    cw = math.cos(w0)
    alpha = math.sin(w0) / (2.0 * (freq_hz / bandwidth_hz))
    return _row(1.0, -2.0 * cw, 1.0, 1.0 + alpha, -2.0 * cw, 1.0 - alpha)[None]


def linkwitz_riley4_sos(freq_hz, sample_rate, kind):
    """4th-order Linkwitz-Riley low/high-pass: two cascaded Butterworth sections. Shape: (2, 6).

    LR4 low + high sum to a 2nd-order all-pass, so a crossover built from them is magnitude-flat.
    """
    s = butterworth2_sos(freq_hz, sample_rate, kind)
    return np.concatenate([s, s])


def allpass_lr4_sos(freq_hz, sample_rate):
    """The all-pass equal to LR4 low + LR4 high at ``freq_hz`` (for phase-aligning other bands).

    Shape: (1, 6). It is the 2nd-order all-pass with Butterworth poles: b = (a2, a1, 1).
    """
    lp = butterworth2_sos(freq_hz, sample_rate, "low")[0]
    a1, a2 = lp[4], lp[5]
    return np.array([[a2, a1, 1.0, 1.0, a1, a2]])


def polyphase_interpolator(factor, taps_per_phase=12, beta=6.0):
    """Polyphase branches of a ``factor``-times interpolation low-pass (Kaiser-windowed sinc).

    The prototype has ``factor * taps_per_phase`` taps, cutoff at the input's Nyquist frequency and
    unit gain per branch at DC. Used by the limiter's detector (longer and flatter than the meter's).
    Shape: returns (factor, taps_per_phase) float64.
    """
    length = factor * taps_per_phase
    k = np.arange(length) - (length - 1) / 2.0
    h = np.sinc(k / factor) * np.kaiser(length, beta)
    phases = h.reshape(taps_per_phase, factor).T.copy()
    phases /= phases.sum(axis=1, keepdims=True)
    return np.ascontiguousarray(phases)


def meter_interpolator(factor, taps=49):
    """The true-peak meter's interpolator: a ``taps``-long Hann-windowed sinc with cutoff at the
    input's Nyquist frequency, split into ``factor`` branches (zero-padded to equal length).

    BS.1770-4 Annex 2 specifies 4x oversampling with a filter of this order (its example has 48
    taps); this is the common open design (libebur128 uses the same window, length and factors), so
    our readings and libebur128's agree, while the branch 0 of an odd, centred prototype passes
    the samples themselves. Shape: returns (factor, ceil(taps / factor)) float64.
    """
    j = np.arange(taps)
    m = j - (taps - 1) / 2.0
    h = np.sinc(m / factor) * 0.5 * (1.0 - np.cos(2.0 * np.pi * j / (taps - 1)))
    per_phase = -(-taps // factor)
    padded = np.zeros(per_phase * factor)
    padded[:taps] = h
    return np.ascontiguousarray(padded.reshape(per_phase, factor).T)


def true_peak_factor(sample_rate):
    """Oversampling of the true-peak meter: 4x below 96 kHz, 2x below 192 kHz, none above
    (BS.1770-4 Annex 2 asks for at least 4x at 48 kHz; the interpolated rate stays >= 176.4 kHz)."""
    if sample_rate < 96000:
        return 4
    if sample_rate < 192000:
        return 2
    return 1


def halfband_lowpass(taps=31, beta=8.0):
    """Odd-length Kaiser-windowed sinc low-pass at a quarter of the (up-sampled) rate, unit DC gain.

    Used for 2x oversampling: cutoff at the original Nyquist. Shape: (taps,) float64.
    """
    if taps % 4 != 3:
        raise ValueError(f"halfband_lowpass needs 4 r + 3 taps (an odd centre, as the 2x kernel expects); got {taps}")
    k = np.arange(taps) - (taps - 1) / 2.0
    h = 0.5 * np.sinc(k / 2.0) * np.kaiser(taps, beta)
    return h / h.sum()
