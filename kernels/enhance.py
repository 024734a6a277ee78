"""Sample and frame loops of the enhance job: the classic denoiser's gain rule (MMSE log-spectral
amplitude with decision-directed a-priori SNR and MCRA noise tracking), STFT overlap-add, the
click detector's block-wise linear prediction, the split-band de-esser and block-gain application.

numpy in, numpy out, no validation; callers fix dtypes (C-contiguous float32 audio, float64
spectra and coefficients). Each kernel has a naive numpy oracle in ``tests/test_enhance_kernels.py``.
"""

import math

import numpy as np
from numba import njit

EULER_GAMMA = 0.5772156649015329

# lsa_gains state rows (float64, one value per bin)
ST_NOISE, ST_SMOOTH, ST_MIN, ST_TMP, ST_PRESENCE, ST_CLEAN = range(6)
STATE_ROWS = 6
# lsa_gains params
(P_ALPHA_DD, P_XI_MIN, P_GAIN_MIN, P_ALPHA_S, P_ALPHA_P, P_ALPHA_D, P_DELTA, P_WINDOW, P_TONAL_CAP,
 P_SIDE_GAP, P_SIDE_SPAN) = range(11)
N_PARAMS = 11


@njit(cache=True, nogil=True)
def exp1(x):
    """Exponential integral E1(x) for x > 0 (power series below 1, continued fraction above;
    relative error about 1e-12). ``inf`` at 0."""
    if x <= 0.0:
        return np.inf
    if x < 1.0:
        total = 0.0
        term = 1.0
        for k in range(1, 40):
            term *= -x / k
            total += term / k
            if abs(term) < 1e-17:
                break
        return -EULER_GAMMA - math.log(x) - total
    if x > 700.0:
        return 0.0
    # modified Lentz for the continued fraction of e^x E1(x) (Numerical Recipes 6.3)
    b = x + 1.0
    c = 1e300
    d = 1.0 / b
    h = d
    for i in range(1, 200):
        an = -float(i * i)
        b += 2.0
        d = 1.0 / (an * d + b)
        c = b + an / c
        step = c * d
        h *= step
        if abs(step - 1.0) < 1e-13:
            break
    return h * math.exp(-x)


@njit(cache=True, nogil=True)
def lsa_gains(power, state, counter, params, gains):
    """Per-bin gains of the MMSE log-spectral-amplitude estimator (Ephraim & Malah 1985, eq. 20)
    for frames of noisy power ``|Y|^2``, the noise power tracked by MCRA (Cohen & Berdugo 2002):

    - ``S = a_s S + (1 - a_s) (b * |Y|^2)`` (b = [1/4, 1/2, 1/4] over frequency), its running
      minimum over ``window`` frames (two-stage ``S_min`` / ``S_tmp``);
    - speech presence ``p = a_p p + (1 - a_p) [S / S_min > delta]``;
    - noise ``N = a N + (1 - a) |Y|^2`` with ``a = a_d + (1 - a_d) p``.

    The noise used for the gain is held broadband: at most ``tonal_cap`` times the higher of the
    mean noise of the bins ``side_gap..side_span`` below and above (a slope passes, a peak does not) (a steady tone is signal here;
    mains hum is the hum stage's). A-priori SNR by the decision-directed rule (eq. 51),
    ``xi = a_dd A_prev^2 / N + (1 - a_dd) max(gamma - 1, 0)`` floored at ``xi_min``; the gain is
    ``xi / (1 + xi) exp(E1(v) / 2)``, ``v = xi gamma / (1 + xi)``, clipped to ``[gain_min, 1]``.

    Shape:
        power: (frames, bins) float64
        state: (6, bins) float64, rows ST_* (updated in place: a later call continues the track)
        counter: (1,) int64 frames since the minimum window restarted (updated)
        params: (N_PARAMS,) float64, indices P_*
        gains: (frames, bins) float32, written
    """
    n_frames, n_bins = power.shape
    a_dd = params[P_ALPHA_DD]
    xi_min = params[P_XI_MIN]
    g_min = params[P_GAIN_MIN]
    a_s = params[P_ALPHA_S]
    a_p = params[P_ALPHA_P]
    a_d = params[P_ALPHA_D]
    delta = params[P_DELTA]
    window = int(params[P_WINDOW])
    cap = params[P_TONAL_CAP]
    gap = int(params[P_SIDE_GAP])
    span = int(params[P_SIDE_SPAN])
    tiny = 1e-30
    noise = state[ST_NOISE]
    smooth = state[ST_SMOOTH]
    smin = state[ST_MIN]
    stmp = state[ST_TMP]
    presence = state[ST_PRESENCE]
    clean = state[ST_CLEAN]
    prefix = np.zeros(n_bins + 1)
    used = np.empty(n_bins)
    for f in range(n_frames):
        y = power[f]
        # MCRA tracking
        for k in range(n_bins):
            lo = y[k - 1] if k > 0 else y[k]
            hi = y[k + 1] if k + 1 < n_bins else y[k]
            sf = 0.25 * lo + 0.5 * y[k] + 0.25 * hi
            smooth[k] = a_s * smooth[k] + (1.0 - a_s) * sf
            if smooth[k] < smin[k]:
                smin[k] = smooth[k]
            if smooth[k] < stmp[k]:
                stmp[k] = smooth[k]
        counter[0] += 1
        if counter[0] >= window:
            for k in range(n_bins):
                smin[k] = min(stmp[k], smooth[k])
                stmp[k] = smooth[k]
            counter[0] = 0
        for k in range(n_bins):
            indicator = 1.0 if smooth[k] > delta * max(smin[k], tiny) else 0.0
            presence[k] = a_p * presence[k] + (1.0 - a_p) * indicator
            a = a_d + (1.0 - a_d) * presence[k]
            noise[k] = a * noise[k] + (1.0 - a) * y[k]
        # broadband hold of the noise used for the gain
        for k in range(n_bins):
            prefix[k + 1] = prefix[k] + noise[k]
        for k in range(n_bins):
            side = -1.0
            b0 = k - span
            b1 = k - gap + 1
            if b0 < 0:
                b0 = 0
            if b1 > b0:
                side = (prefix[b1] - prefix[b0]) / (b1 - b0)
            c0 = k + gap
            c1 = k + span + 1
            if c1 > n_bins:
                c1 = n_bins
            if c1 > c0:
                m = (prefix[c1] - prefix[c0]) / (c1 - c0)
                if m > side:
                    side = m
            v = noise[k]
            if side >= 0.0 and v > cap * side:
                v = cap * side
            used[k] = max(v, tiny)
        # gain rule
        for k in range(n_bins):
            gamma = y[k] / used[k]
            xi = a_dd * clean[k] / used[k] + (1.0 - a_dd) * max(gamma - 1.0, 0.0)
            if xi < xi_min:
                xi = xi_min
            ratio = xi / (1.0 + xi)
            v = ratio * gamma
            if v < 1e-10:
                v = 1e-10
            g = ratio * math.exp(0.5 * exp1(v))
            if g > 1.0:
                g = 1.0
            if g < g_min:
                g = g_min
            clean[k] = g * g * y[k]
            gains[f, k] = g
    return gains


@njit(cache=True, nogil=True)
def overlap_add(frames, hop, out, first_sample):
    """Add frame ``f`` (``frames[f]``, already windowed) into ``out`` at ``first_sample + f * hop``;
    samples outside ``out`` are dropped.

    Shape: frames (n_frames, frame_len) float64; out (samples,) float64 (updated). Returns ``out``.
    """
    n_frames, length = frames.shape
    n = out.shape[0]
    for f in range(n_frames):
        start = first_sample + f * hop
        for j in range(length):
            i = start + j
            if 0 <= i < n:
                out[i] += frames[f, j]
    return out


@njit(cache=True, nogil=True)
def levinson(r, order, a):
    """Levinson-Durbin: prediction-error filter ``a`` (a[0] = 1) of ``order`` from autocorrelation
    ``r``; returns the final error power (0 when ``r[0]`` is 0)."""
    for i in range(order + 1):
        a[i] = 0.0
    a[0] = 1.0
    err = r[0]
    if err <= 0.0:
        return 0.0
    tmp = np.empty(order + 1)
    for i in range(1, order + 1):
        acc = r[i]
        for j in range(1, i):
            acc += a[j] * r[i - j]
        k = -acc / err
        for j in range(i + 1):
            tmp[j] = a[j]
        for j in range(1, i):
            a[j] = tmp[j] + k * tmp[i - j]
        a[i] = k
        err *= 1.0 - k * k
        if err <= 1e-12 * r[0]:
            break
    return err


@njit(cache=True, nogil=True)
def _block_predictor(x, w0, w1, order, outlier, seg, r, a):
    """The prediction-error filter ``a`` of ``order`` for ``x[w0:w1]`` (autocorrelation method,
    Hann window, 1e-9 white-noise correction), fitted twice: the second time with the samples whose
    first-fit residual is over ``outlier`` times its robust scale (a click) left out (zeroed), so
    a click does not shape the model that must expose it. Returns False where the stretch is
    silent (nothing to predict)."""
    m = w1 - w0
    for j in range(m):
        w = 0.5 - 0.5 * math.cos(2.0 * math.pi * (j + 0.5) / m)
        seg[j] = w * np.float64(x[w0 + j])
    for rep in range(2):
        for lag in range(order + 1):
            acc = 0.0
            for j in range(lag, m):
                acc += seg[j] * seg[j - lag]
            r[lag] = acc
        if r[0] <= 0.0:
            return False
        r[0] *= 1.0 + 1e-9
        levinson(r, order, a)
        if rep == 1:
            break
        resid = np.empty(m - order)
        for i in range(order, m):
            acc = 0.0
            for k in range(order + 1):
                acc += a[k] * np.float64(x[w0 + i - k])
            resid[i - order] = abs(acc)
        sigma = 1.4826 * np.median(resid)
        if sigma <= 0.0:
            return False
        dropped = 0
        for i in range(order, m):
            if resid[i - order] > outlier * sigma:
                seg[i] = 0.0
                dropped += 1
        if dropped == 0:
            break
    return True


@njit(cache=True, nogil=True)
def lpc_residual_flags(x, order, block, threshold, flags, score, sigmas):
    """Flag impulsive samples of one channel by their linear-prediction residual.

    Per block of ``block`` samples, the prediction-error filter of ``order`` is fitted on the
    block and half a block either side (:func:`_block_predictor`: a click found by a first fit is
    left out of the second) and gives the residual ``e[n] = sum_k a_k x[n - k]``; its scale is
    the block's robust ``sigma = 1.4826 median |e|``. ``score[n] = |e[n]| / sigma``; a sample is
    flagged where the score is over ``threshold``. A block whose sigma is 0 (digital silence
    around it) scores 0: there is no programme to tell a click from.

    Shape: x (samples,) float32; flags (samples,) uint8, score (samples,) float32 and sigmas
    (ceil(samples / block),) float64 (each block's sigma, 0 where not scanned), written. Returns
    the number of flagged samples.
    """
    n = x.shape[0]
    a = np.empty(order + 1)
    r = np.empty(order + 1)
    total = 0
    for i in range(n):
        flags[i] = 0
        score[i] = 0.0
    for i in range(sigmas.shape[0]):
        sigmas[i] = 0.0
    half = block // 2
    seg = np.empty(block + 2 * half + 2 * order)
    resid = np.empty(block)
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        w0 = max(0, b0 - max(half, order))
        w1 = min(n, b1 + max(half, order))
        if w1 - w0 <= 2 * order:
            continue
        if not _block_predictor(x, w0, w1, order, 0.5 * threshold, seg, r, a):
            continue
        count = 0
        for i in range(max(b0, order), b1):
            acc = 0.0
            for k in range(order + 1):
                acc += a[k] * np.float64(x[i - k])
            resid[count] = abs(acc)
            count += 1
        if count < 8:
            continue
        sigma = 1.4826 * np.median(resid[:count])
        if sigma <= 0.0:
            continue
        sigmas[b0 // block] = sigma
        for j in range(count):
            i = b1 - count + j
            s = resid[j] / sigma
            score[i] = s
            if s > threshold:
                flags[i] = 1
                total += 1
    return total


@njit(cache=True, nogil=True)
def _biquad(v, sos, s, z, c, base):
    """Transposed direct form II step of section ``s`` of ``sos``; state ``z[c, base + 2s : +2]``."""
    i = base + 2 * s
    out = sos[s, 0] * v + z[c, i]
    z[c, i] = sos[s, 1] * v - sos[s, 4] * out + z[c, i + 1]
    z[c, i + 1] = sos[s, 2] * v - sos[s, 5] * out
    return out


@njit(cache=True, nogil=True)
def deess(x, shelf_cw, shelf_alpha, band_sos, attack, release, threshold_db, ratio, max_reduction_db, floor_power,
          z, env, out):
    """Split-band de-esser as a dynamic high shelf: the band above the shelf's corner
    (``shelf_cw = cos w0``, ``shelf_alpha = sin w0 / sqrt 2``: RBJ high shelf, slope 1) is turned
    down by ``r`` dB, recomputed every sample; at 0 dB the shelf is the identity (b = a), so
    nothing is touched until sibilance. ``r`` comes from the sibilance band (``band_sos``:
    band-pass, channels linked by their maximum) against the full band: both powers follow
    one-pole envelopes (``attack`` / ``release`` coefficients); where the band's share
    ``10 log10(band / full)`` is over ``threshold_db`` and the band's power over ``floor_power``,
    ``r = (share - threshold) (1 - 1 / ratio)``, at most ``max_reduction_db``.

    Streaming: ``z`` (filter states) and ``env`` (band, full envelopes) carry over, so blocks in
    turn equal one call. Shape: x, out (channels, samples) float32; band_sos (sections, 6)
    float64; z (channels, 2 + 2 * band sections) float64; env (2,) float64. Returns the deepest
    reduction in dB.
    """
    n_ch, n = x.shape
    n_band = band_sos.shape[0]
    slope = 1.0 - 1.0 / ratio
    deepest = 0.0
    cw = shelf_cw
    b0 = 1.0
    b1 = -2.0 * cw / (1.0 + shelf_alpha)
    b2 = (1.0 - shelf_alpha) / (1.0 + shelf_alpha)
    a1 = b1
    a2 = b2
    last_red = 0.0
    for i in range(n):
        band_p = 0.0
        full_p = 0.0
        for c in range(n_ch):
            v = np.float64(x[c, i])
            b = v
            for s in range(n_band):
                b = _biquad(b, band_sos, s, z, c, 2)
            if b * b > band_p:
                band_p = b * b
            if v * v > full_p:
                full_p = v * v
        coef = attack if band_p > env[0] else release
        env[0] = coef * env[0] + (1.0 - coef) * band_p
        coef = attack if full_p > env[1] else release
        env[1] = coef * env[1] + (1.0 - coef) * full_p
        red = 0.0
        if env[0] > floor_power and env[1] > 0.0:
            over = 10.0 * math.log10(env[0] / env[1]) - threshold_db
            if over > 0.0:
                red = over * slope
                if red > max_reduction_db:
                    red = max_reduction_db
                if red > deepest:
                    deepest = red
        if red != last_red:
            A = 10.0 ** (-red / 40.0)
            sq = 2.0 * math.sqrt(A) * shelf_alpha
            a0 = (A + 1.0) - (A - 1.0) * cw + sq
            b0 = A * ((A + 1.0) + (A - 1.0) * cw + sq) / a0
            b1 = -2.0 * A * ((A - 1.0) + (A + 1.0) * cw) / a0
            b2 = A * ((A + 1.0) + (A - 1.0) * cw - sq) / a0
            a1 = 2.0 * ((A - 1.0) - (A + 1.0) * cw) / a0
            a2 = ((A + 1.0) - (A - 1.0) * cw - sq) / a0
            last_red = red
        for c in range(n_ch):
            v = np.float64(x[c, i])
            y = b0 * v + z[c, 0]
            z[c, 0] = b1 * v - a1 * y + z[c, 1]
            z[c, 1] = b2 * v - a2 * y
            out[c, i] = y
    return deepest


@njit(cache=True, nogil=True)
def apply_block_gains(x, gains_db, hop, first_centre, out):
    """``out = x * 10^(g(n) / 20)``, ``g`` interpolated linearly between block gains
    ``gains_db[k]`` placed at sample ``first_centre + k * hop`` (held before the first and after
    the last). Shape: x, out (channels, samples) float32 (``out`` may be ``x``); gains_db (blocks,)
    float64. Returns ``out``."""
    n_ch, n = x.shape
    n_b = gains_db.shape[0]
    for i in range(n):
        pos = (i - first_centre) / hop
        if pos <= 0.0 or n_b == 1:
            g_db = gains_db[0]
        elif pos >= n_b - 1:
            g_db = gains_db[n_b - 1]
        else:
            k = int(pos)
            t = pos - k
            g_db = (1.0 - t) * gains_db[k] + t * gains_db[k + 1]
        g = np.float32(10.0 ** (g_db / 20.0))
        for c in range(n_ch):
            out[c, i] = x[c, i] * g
    return out
