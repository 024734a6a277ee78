"""Loudness and peak metering: ITU-R BS.1770-4, EBU Tech 3341 (EBU Mode), EBU Tech 3342 (LRA).

All loudness quantities come from one numba pass (K-weighting, then the 400 ms and 3 s sliding
energies, evaluated at every sample) that keeps no per-sample array; the true peak is the
BS.1770-4 Annex 2 4x oversampled peak (numba).

Shape convention: ``audio`` is (channels, samples) float32; ``sample_rate`` in Hz.
"""

from dataclasses import asdict, dataclass

import numpy as np

from roomtone.kernels.loudness import loudness_pass, weighted_power, window_means
from roomtone.kernels.truepeak import true_peak_per_channel
from roomtone.concurrency import side_executor
from roomtone.filters import k_weighting_sos, meter_interpolator, true_peak_factor

# BS.1770-4 eq. 2: loudness offset so a 0 dBFS 997 Hz sine in one front channel reads -3.01 LKFS.
LOUDNESS_OFFSET_DB = -0.691
ABSOLUTE_GATE_LUFS = -70.0  # BS.1770-4 eq. 5 / Tech 3342
RELATIVE_GATE_LU = -10.0  # BS.1770-4 eq. 6
LRA_RELATIVE_GATE_LU = -20.0  # EBU Tech 3342
MOMENTARY_S = 0.4  # EBU Tech 3341: momentary window
SHORT_TERM_S = 3.0  # EBU Tech 3341: short-term window
GATING_HOP_S = 0.1  # 75 % overlap of 400 ms gating blocks (BS.1770-4); 10 Hz short-term for LRA


def channel_weights(n_channels):
    """BS.1770-4 Table 3 weights G_i by the standard WAV channel order.

    1-4 channels: 1.0 each. 5 channels (L R C Ls Rs): 1, 1, 1, 1.41, 1.41. 6 channels (5.1:
    L R C LFE Ls Rs): 1, 1, 1, 0 (LFE excluded), 1.41, 1.41. Shape: returns (channels,) float64.
    """
    if n_channels == 5:
        return np.array([1.0, 1.0, 1.0, 1.41, 1.41])
    if n_channels == 6:
        return np.array([1.0, 1.0, 1.0, 0.0, 1.41, 1.41])
    return np.ones(n_channels)


def to_lufs(mean_power):
    """``-0.691 + 10 log10(z)`` (BS.1770-4 eq. 2); ``-inf`` for zero power."""
    with np.errstate(divide="ignore"):
        return LOUDNESS_OFFSET_DB + 10.0 * np.log10(mean_power)


def to_db(linear):
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(linear)


def _samples(seconds, sample_rate):
    return max(1, int(round(seconds * sample_rate)))


def k_weighted_power(audio, sample_rate, weights=None, pre_sos=None):
    """Channel-weighted K-weighted power per sample, ``sum_i G_i y_i[n]^2``. ``pre_sos``: sections
    (rows ``b0 b1 b2 a0 a1 a2``) run before the K-weighting in the same pass, the power of the
    audio as a linear filter (an EQ) would leave it, without building it. Shape: (samples,) float64."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if weights is None:
        weights = channel_weights(audio.shape[0])
    return weighted_power(audio, _weighting_cascade(sample_rate, pre_sos), np.asarray(weights, dtype=np.float64))


def _weighting_cascade(sample_rate, pre_sos=None):
    """The K-weighting's sections, with ``pre_sos`` (an EQ's sections) in front where given."""
    sos = k_weighting_sos(sample_rate)
    if pre_sos is not None and len(pre_sos):
        sos = np.ascontiguousarray(np.concatenate([np.asarray(pre_sos, dtype=np.float64), sos]))
    return sos


def gated_blocks(power, sample_rate, window_s, hop_s):
    """Mean power of each complete block of ``window_s`` every ``hop_s``. Shape: (blocks,) float64."""
    return window_means(power, _samples(window_s, sample_rate), _samples(hop_s, sample_rate))


def integrated_from_blocks(blocks):
    """Gated integrated loudness (BS.1770-4 eqs. 4-6) from 400 ms block powers; ``-inf`` if none pass."""
    lk = to_lufs(blocks)
    above_abs = blocks[lk > ABSOLUTE_GATE_LUFS]
    if above_abs.size == 0:
        return float("-inf")
    gamma_r = to_lufs(above_abs.mean()) + RELATIVE_GATE_LU
    gated = blocks[(lk > ABSOLUTE_GATE_LUFS) & (lk > gamma_r)]
    return float(to_lufs(gated.mean()))


def loudness_range_from_short_term(short_term_power):
    """LRA (EBU Tech 3342): L95 - L10 of short-term loudness (10 Hz) after an absolute gate at
    -70 LUFS and a relative gate 20 LU below the power mean of the absolutely gated blocks.
    ``nan`` (undefined: JSON ``null``) for silence, where no block passes the absolute gate;
    ``0.0`` when fewer than two blocks remain."""
    lk = to_lufs(short_term_power)
    keep = lk > ABSOLUTE_GATE_LUFS
    if not keep.any():
        return float("nan")
    gamma_r = to_lufs(short_term_power[keep].mean()) + LRA_RELATIVE_GATE_LU
    values = lk[keep & (lk > gamma_r)]
    if values.size < 2:
        return 0.0
    low, high = np.percentile(values, [10.0, 95.0])
    return float(high - low)


def gated_spread(short_term_lufs, integrated_lufs=None):
    """Short-term loudness spread (LU): p95 - p5 of short-term loudness readings (LUFS) after LRA's
    gates (EBU Tech 3342): -70 LUFS absolute, then 20 LU under ``integrated_lufs`` (None: the power
    mean of the readings that pass the absolute gate). Like LRA (p95 - p10) but reaching lower, it
    is what the mastering fit matches for dynamics. None when fewer than two readings pass either gate."""
    values = np.asarray(short_term_lufs, dtype=np.float64)
    values = values[np.isfinite(values) & (values > ABSOLUTE_GATE_LUFS)]
    if values.size < 2:
        return None
    if integrated_lufs is None:
        integrated_lufs = 10.0 * np.log10(np.mean(10.0 ** (values / 10.0)))
    values = values[values > integrated_lufs + LRA_RELATIVE_GATE_LU]
    if values.size < 2:
        return None
    p5, p95 = np.percentile(values, [5, 95])
    return float(p95 - p5)


def _loudness_pass(audio, sample_rate, gain=None, every_sample=True, pre_sos=None):
    """(400 ms gating blocks, 3 s short-term blocks at 10 Hz, max momentary power, max short-term
    power) of ``audio * gain`` (``gain``: optional per-sample factor, shape (samples,)); without
    ``every_sample`` the maxima are not computed (-1.0). ``pre_sos``: as :func:`k_weighted_power`."""
    audio = np.asarray(audio)
    if audio.dtype not in (np.float32, np.float64) or not audio.flags.c_contiguous:
        audio = np.ascontiguousarray(audio, dtype=np.float32)
    gain = np.zeros(0, dtype=np.float32) if gain is None else np.ascontiguousarray(gain, dtype=np.float32)
    return loudness_pass(audio, _weighting_cascade(sample_rate, pre_sos), channel_weights(audio.shape[0]), gain,
                         _samples(MOMENTARY_S, sample_rate), _samples(SHORT_TERM_S, sample_rate),
                         _samples(GATING_HOP_S, sample_rate), every_sample)


def block_powers(audio, sample_rate, pre_sos=None):
    """(400 ms gating-block powers, 3 s short-term block powers), both every 100 ms, from one pass
    that keeps no per-sample array (for a job that rides level on them). Block ``k`` starts at
    sample ``k * hop``. ``pre_sos``: as :func:`k_weighted_power`. Shape: two (blocks,) float64
    arrays (K-weighted, channel-weighted power)."""
    blocks_m, blocks_s, _, _ = _loudness_pass(audio, sample_rate, None, every_sample=False, pre_sos=pre_sos)
    return blocks_m, blocks_s


def integrated_loudness(audio, sample_rate, gain=None):
    """Integrated (gated) loudness in LUFS per BS.1770-4; ``-inf`` for silence or < 400 ms.

    ``gain`` (shape (samples,)) meters ``audio * gain`` without building it.
    """
    return integrated_from_blocks(_loudness_pass(audio, sample_rate, gain, every_sample=False)[0])


def loudness_stats(audio, sample_rate, gain=None):
    """Integrated loudness (LUFS), LRA (LU), max momentary and max short-term loudness (LUFS) and
    the short-term spread (:func:`gated_spread`, LU; ``nan`` where undefined) of ``audio`` (times
    the optional per-sample ``gain``), from one pass. Returns a dict."""
    blocks_m, blocks_s, max_m, max_s = _loudness_pass(audio, sample_rate, gain)
    integrated = integrated_from_blocks(blocks_m)
    spread = gated_spread(to_lufs(blocks_s), integrated) if np.isfinite(integrated) else None
    return {"integrated_lufs": integrated, "lra_lu": loudness_range_from_short_term(blocks_s),
            "max_momentary_lufs": float(to_lufs(max_m)) if max_m >= 0.0 else float("-inf"),
            "max_short_term_lufs": float(to_lufs(max_s)) if max_s >= 0.0 else float("-inf"),
            "short_term_spread_lu": float("nan") if spread is None else spread}


def momentary_loudness(audio, sample_rate, hop_s=None):
    """Momentary loudness (400 ms, EBU Tech 3341) every ``hop_s`` (default: every sample), LUFS.

    Reading ``k`` covers samples ``[k*hop, k*hop + window)``. Shape: (readings,) float64.
    """
    power = k_weighted_power(audio, sample_rate)
    hop = 1 if hop_s is None else _samples(hop_s, sample_rate)
    return to_lufs(window_means(power, _samples(MOMENTARY_S, sample_rate), hop))


def short_term_loudness(audio, sample_rate, hop_s=None):
    """Short-term loudness (3 s, EBU Tech 3341) every ``hop_s`` (default: every sample), LUFS."""
    power = k_weighted_power(audio, sample_rate)
    hop = 1 if hop_s is None else _samples(hop_s, sample_rate)
    return to_lufs(window_means(power, _samples(SHORT_TERM_S, sample_rate), hop))


def peak_interpolator(sample_rate):
    """The true-peak meter's polyphase branches at ``sample_rate``. Shape: (factor, taps)."""
    return meter_interpolator(true_peak_factor(sample_rate))


def true_peak(audio, sample_rate, gain=None):
    """Maximum true peak in dBTP (BS.1770-4 Annex 2: 4x oversampling below 96 kHz, |.|, max).

    ``gain`` (shape (samples,)) meters ``(audio * gain)`` in float32 without building it: the same
    reading, bit for bit, as metering the product.
    """
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if audio.size == 0:
        return float("-inf")
    if gain is not None:
        gain = np.ascontiguousarray(gain, dtype=np.float32)
    return float(to_db(float(true_peak_per_channel(audio, peak_interpolator(sample_rate), gain).max())))


@dataclass(frozen=True)
class LoudnessStats:
    """Everything ``meter`` prints for one signal. Loudness in LUFS, ranges in LU, peaks in dB.

    ``-inf`` loudness (silence, or shorter than the 400 ms gating block) is kept as ``-inf`` here and
    written as ``null`` in JSON; so is an undefined LRA (``nan``: nothing above the gate) and PLR.
    """

    integrated_lufs: float
    lra_lu: float
    max_momentary_lufs: float
    max_short_term_lufs: float
    true_peak_dbtp: float
    sample_peak_dbfs: float
    plr_lu: float
    sample_rate: int
    channels: int
    duration_s: float
    short_term_spread_lu: float = float("nan")  # gated_spread: p95 - p5 of short-term loudness, LU

    def as_dict(self):
        """JSON-ready: non-finite numbers become ``None``."""
        out = {}
        for key, value in asdict(self).items():
            if isinstance(value, float) and not np.isfinite(value):
                value = None
            elif isinstance(value, float):
                value = round(value, 4)
            out[key] = value
        return out


def measure(audio, sample_rate, loudness=None, true_peak_dbtp=None):
    """Meter ``audio`` (channels, samples) at ``sample_rate``: I, LRA, max M, max S, TP, SP, PLR.

    ``loudness`` (:func:`loudness_stats`) and ``true_peak_dbtp`` (:func:`true_peak`) of the same
    audio may be passed in if the caller has them. The true peak runs in a second thread beside the
    loudness readings (the kernels release the GIL).
    """
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    n_ch, n = audio.shape
    if loudness is not None and true_peak_dbtp is not None:
        stats, tp = loudness, float(true_peak_dbtp)
    else:
        with side_executor("peak") as pool:
            peak = pool.submit(true_peak, audio, sample_rate) if true_peak_dbtp is None else None
            stats = loudness_stats(audio, sample_rate) if loudness is None else loudness
            tp = peak.result() if peak is not None else float(true_peak_dbtp)
    integrated = stats["integrated_lufs"]
    sp = float(to_db(max(float(audio.max()), -float(audio.min())))) if audio.size else float("-inf")
    plr = tp - integrated if np.isfinite(integrated) and np.isfinite(tp) else float("nan")
    return LoudnessStats(true_peak_dbtp=tp, sample_peak_dbfs=sp, plr_lu=plr, sample_rate=int(sample_rate),
                         channels=int(n_ch), duration_s=n / sample_rate, **stats)
