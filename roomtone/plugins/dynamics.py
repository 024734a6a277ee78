"""Dynamics: the multiband compressor (phase-coherent LR4 split, soft-knee peak gain computer), the
split-band de-esser and the leveler (slow level riding towards the programme's own loudness).
The true-peak limiter is :mod:`roomtone.plugins.limiter`; a static gain :mod:`roomtone.plugins.gain`.

Shape: audio (channels, samples) float32 in and out, same shape.
"""

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from roomtone import filters
from roomtone.errors import PresetError
from roomtone.kernels.enhance import apply_block_gains, deess
from roomtone.kernels.multiband import multiband_compress, smooth_gain_trace
from roomtone.meter import block_powers, integrated_from_blocks, to_lufs
from roomtone.plugins.units import safe_freq, time_coef
from roomtone.processor import Processor, check_number, clamp, field_range, param, register


def _crossover_sos(sample_rate, crossovers_hz):
    """LR4 low-pass cascades (K, 2, 6) and matching all-passes (K, 6) at the crossovers."""
    freqs = [safe_freq(f, sample_rate) for f in crossovers_hz]
    lows = np.stack([filters.linkwitz_riley4_sos(f, sample_rate, "low") for f in freqs]) if freqs else np.zeros((0, 2, 6))
    allpasses = np.concatenate([filters.allpass_lr4_sos(f, sample_rate) for f in freqs]) if freqs else np.zeros((0, 6))
    return lows, allpasses


def split_bands(audio, sample_rate, crossovers_hz):
    """Phase-coherent band split with Linkwitz-Riley 4th-order crossovers, as the multiband
    compressor splits (for analysis and tests).

    Each band but the top is all-passed at every higher crossover, so the bands sum to an all-pass
    of the input (flat magnitude, no comb filtering). Shape: returns (bands, channels, samples)
    float64, lowest band first.
    """
    audio = np.asarray(audio)
    lows, allpasses = _crossover_sos(sample_rate, crossovers_hz)
    n_b = lows.shape[0] + 1
    bands = np.empty((n_b,) + audio.shape, dtype=np.float64)
    multiband_compress(audio, lows, allpasses, np.zeros(n_b), np.ones(n_b), np.zeros(n_b), 0.0, 0.0, 0.0, 1, bands,
                       np.empty(audio.shape, dtype=np.float32), 0, 0, audio.shape[1])
    return bands


def static_curve_db(levels_db, threshold_db, ratio, knee_db):
    """The multiband kernel's static soft-knee curve: gain in dB (<= 0) for levels ``levels_db``
    (dBFS) against ``threshold_db`` (dBFS) and ``ratio`` (:1), a quadratic knee ``knee_db`` wide
    (Giannoulis, Massberg and Reiss, JAES 2012, eq. 4). The arrays broadcast, so one call can
    take many settings at once (a leading axis of thresholds and ratios)."""
    slope = 1.0 - 1.0 / np.asarray(ratio)
    over = levels_db - threshold_db
    half = 0.5 * knee_db
    target = np.where(over > half, -slope * over, 0.0)
    if knee_db > 0.0:
        knee = (over > -half) & (over <= half)
        target = np.where(knee, -slope * (over + half) ** 2 / (2.0 * knee_db), target)
    return target


def control_block(sample_rate):
    """Samples per control period of the compressors' gain computer (1/3 ms, at least one)."""
    return max(1, round(sample_rate * MultibandCompressor.CONTROL_PERIOD_S))


def interpolation_fraction(n, block):
    """Per-sample fraction ``(j + 1) / m`` of the compressors' gain interpolation across a control
    period (``m``: the period's length, shorter for the last one), as the multiband kernel
    interpolates. Shape: (n,) float64."""
    j = np.arange(n)
    period_len = np.full(n, block, dtype=np.float64)
    last = (n // block) * block
    if last < n:
        period_len[last:] = n - last
    return (j % block + 1.0) / period_len


@register("multiband")
@dataclasses.dataclass(frozen=True)
class MultibandCompressor(Processor):
    """Downward compressor per band after a phase-coherent LR4 split.

    Thresholds are peak levels in dBFS at the master's working level (-18 LUFS); one entry per band
    (``len(crossovers_hz) + 1``) for ``threshold_db``, ``ratio`` and ``makeup_db``. The gain
    computer runs on the peak of each 1/3 ms control period, its gain interpolated in between
    (:mod:`roomtone.kernels.multiband`).
    """

    CONTROL_PERIOD_S = 1.0 / 3000.0
    SETTLE_TIME_CONSTANTS = 20  # a part's zero start decays to e^-20 before its output is used

    crossovers_hz: tuple = (120.0, 2500.0)
    threshold_db: tuple = (-18.0, -20.0, -22.0)
    ratio: tuple = (2.0, 1.8, 1.6)
    makeup_db: tuple = (0.0, 0.0, 0.0)
    attack_ms: float = param(20.0, 0.1, 200.0, "ms")
    release_ms: float = param(150.0, 5.0, 2000.0, "ms")
    knee_db: float = param(6.0, 0.0, 24.0, "dB")

    def __post_init__(self):
        super().__post_init__()
        n = len(self.crossovers_hz) + 1
        if list(self.crossovers_hz) != sorted(self.crossovers_hz) or any(not 20 <= f <= 20000 for f in self.crossovers_hz):
            raise PresetError(f"multiband.crossovers_hz={list(self.crossovers_hz)} must ascend within 20..20000 Hz")
        for name, low, high, unit in (("threshold_db", -60.0, 0.0, "dB"), ("ratio", 1.0, 20.0, ":1"),
                                      ("makeup_db", -12.0, 12.0, "dB")):
            values = getattr(self, name)
            if len(values) != n:
                raise PresetError(f"multiband.{name} needs {n} values (one per band); got {len(values)}")
            for v in values:
                check_number(f"multiband.{name} value", v, low, high, unit)

    def settle_samples(self, sample_rate):
        """Samples after which the zero start of the filters and the gain computer is forgotten:
        :data:`SETTLE_TIME_CONSTANTS` of the slowest of attack, release and the lowest crossover's
        Butterworth poles (time constant ``1 / (2 pi f zeta)``, ``zeta = 1/sqrt(2)``)."""
        slowest_s = max(self.attack_ms, self.release_ms) * 1e-3
        if self.crossovers_hz:
            slowest_s = max(slowest_s, 1.0 / (2.0 * math.pi * min(self.crossovers_hz) * math.sqrt(0.5)))
        return int(math.ceil(self.SETTLE_TIME_CONSTANTS * slowest_s * sample_rate))

    def split_bands(self, audio, sample_rate):
        """The kernel's LR4 band split of ``audio`` from zero state, no gain applied (the bands sum
        to an all-pass of the input). Shape: (channels, n) -> (bands, channels, n) float64."""
        lows, allpasses = _crossover_sos(sample_rate, self.crossovers_hz)
        n_b = len(self.crossovers_hz) + 1
        x = np.ascontiguousarray(audio, dtype=np.float32)
        bands = np.zeros((n_b,) + x.shape)
        multiband_compress(x, lows, allpasses, np.zeros(n_b), np.ones(n_b), np.zeros(n_b), 0.0, 0.0, 0.0, 1, bands,
                           np.empty(x.shape, dtype=np.float32), 0, 0, x.shape[1])
        return bands

    def target_gain_db(self, peaks, threshold_offset_db=0.0, levels_db=None):
        """The static soft-knee curve (the kernel's) on per-period band peaks (linear; or their
        ``levels_db``, 20 log10 of them, when given), the thresholds moved by
        ``threshold_offset_db``: gain in dB (<= 0). Shape: (bands, periods)."""
        if levels_db is None:
            with np.errstate(divide="ignore"):
                levels_db = 20.0 * np.log10(peaks)
        return static_curve_db(levels_db, np.asarray(self.threshold_db)[:, None] + threshold_offset_db,
                              np.asarray(self.ratio)[:, None], self.knee_db)

    def smoothed_gain_db(self, target_db, sample_rate):
        """The kernel's attack/release smoother over control periods (zero state). Shape: (bands, periods)."""
        block = control_block(sample_rate)
        return smooth_gain_trace(np.ascontiguousarray(target_db, dtype=np.float64),
                                 time_coef(self.attack_ms, sample_rate) ** block,
                                 time_coef(self.release_ms, sample_rate) ** block)

    def gain_reduction_db(self, audio, sample_rate, chunk_s=10.0):
        """Mean gain reduction per band in dB (>= 0, lowest band first) that :meth:`process`
        applies to ``audio``: the kernel's split (in chunks of ``chunk_s``, each led in by
        :meth:`settle_samples`, so memory stays a few chunks), the per-period peak, the static curve
        and the same smoother (:func:`roomtone.kernels.multiband.smooth_gain_trace`), averaged over
        the control periods. For ``--explain``. Shape: returns (bands,) float64."""
        block = control_block(sample_rate)
        n_b, (n_ch, n) = len(self.crossovers_hz) + 1, audio.shape
        periods = -(-n // block)
        if n == 0:
            return np.zeros(n_b)
        peaks = np.zeros((n_b, periods))
        chunk = block * max(1, int(chunk_s * sample_rate) // block)
        lead = -(-self.settle_samples(sample_rate) // block) * block
        for start in range(0, n, chunk):
            first, stop = max(0, start - lead), min(n, start + chunk)
            bands = self.split_bands(audio[:, first:stop], sample_rate)
            seg = np.abs(bands[:, :, start - first:])
            m = seg.shape[2]
            p = -(-m // block)
            seg = np.pad(seg, ((0, 0), (0, 0), (0, p * block - m)))
            peaks[:, start // block:start // block + p] = seg.reshape(n_b, n_ch, p, block).max(axis=(1, 3))
        return -self.smoothed_gain_db(self.target_gain_db(peaks), sample_rate).mean(axis=1)

    def measure(self, audio, sample_rate):
        """``{"reduction_db": (bands,)}``: :meth:`gain_reduction_db` (the protocol's report hook)."""
        return {"reduction_db": self.gain_reduction_db(audio, sample_rate)}

    def twin_params(self):
        """The JAX twin's parameters (:mod:`roomtone.plugins.twin`): the fields as arrays."""
        return {name: np.asarray(getattr(self, name), dtype=np.float32) for name in
                ("crossovers_hz", "threshold_db", "ratio", "makeup_db", "attack_ms", "release_ms", "knee_db")}

    @classmethod
    def from_twin(cls, p):
        """The compressor of fitted twin parameters ``p`` (clamped into range, rounded)."""
        return cls(crossovers_hz=tuple(clamp(f, (20.0, 20000.0), 1) for f in p["crossovers_hz"]),
                   threshold_db=tuple(clamp(v, (-60.0, 0.0), 3) for v in p["threshold_db"]),
                   ratio=tuple(clamp(v, (1.0, 20.0), 3) for v in p["ratio"]),
                   makeup_db=tuple(clamp(v, (-12.0, 12.0), 3) for v in p["makeup_db"]),
                   attack_ms=clamp(p["attack_ms"], field_range(cls, "attack_ms"), 3),
                   release_ms=clamp(p["release_ms"], field_range(cls, "release_ms"), 2),
                   knee_db=clamp(p["knee_db"], field_range(cls, "knee_db"), 3))

    @staticmethod
    def render_twin(p, signal, ctx):
        """The JAX render: the LR4 split as band responses on the FFT bins, then the kernel's gain
        computer (:func:`~roomtone.plugins.twin.compress`); its smoothed gain goes to ``ctx.reductions``."""
        from roomtone.plugins import twin

        resp = twin.band_responses(p["crossovers_hz"], ctx.sample_rate, ctx.z1, ctx.z2)
        out, smoothed = twin.compress(twin.filtered(signal[None], resp[:, None, :], ctx), p, ctx.sample_rate, ctx.frac)
        ctx.reductions.append(smoothed)
        return out

    def process(self, audio, sample_rate):
        lows, allpasses = _crossover_sos(sample_rate, self.crossovers_hz)
        block = control_block(sample_rate)
        out = np.empty(audio.shape, dtype=np.float32)
        args = (audio, lows, allpasses, np.asarray(self.threshold_db, dtype=np.float64),
                np.asarray(self.ratio, dtype=np.float64), np.asarray(self.makeup_db, dtype=np.float64),
                float(self.knee_db), time_coef(self.attack_ms, sample_rate), time_coef(self.release_ms, sample_rate),
                block, np.zeros((0, 0, 0)), out)
        n = audio.shape[1]
        lead = -(-self.settle_samples(sample_rate) // block) * block  # whole control periods
        mid = (n // 2) // block * block
        if mid < 2 * lead:  # too short to gain from two threads
            return multiband_compress(*args, 0, 0, n)
        # The second half starts one lead early from zero state, in a second thread (the kernel
        # releases the GIL); by its start the state matches a single pass to e^-20.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="roomtone-multiband") as pool:
            second = pool.submit(multiband_compress, *args, mid - lead, mid, n)
            multiband_compress(*args, 0, 0, mid)
            second.result()
        return out


# ------------------------------------------------------------------------------------ de-esser

@register("deess")
@dataclasses.dataclass(frozen=True)
class DeEsser(Processor):
    """Split-band de-esser (:func:`roomtone.kernels.enhance.deess`): the band above
    ``split_hz`` (a dynamic high shelf, the identity at 0 dB) is turned down while the sibilance band (``band_low_hz``..``band_high_hz``)
    holds more than ``threshold_db`` of the full band's power (a vowel's share is some 25 dB
    lower; an "s" is mostly that band), by ``(share - threshold) (1 - 1 / ratio)`` dB, at most
    ``max_reduction_db``. Nothing happens under ``floor_dbfs``. Channels linked. No delay.
    Streaming: :meth:`new_state` and :meth:`run_block` give the same output in blocks, and in place."""

    split_hz: float = param(4500.0, 2000.0, 12000.0, "Hz")
    band_low_hz: float = param(5000.0, 2000.0, 12000.0, "Hz")
    band_high_hz: float = param(9000.0, 3000.0, 16000.0, "Hz")
    threshold_db: float = param(-10.0, -30.0, 0.0, "dB")
    ratio: float = param(4.0, 1.0, 20.0, ":1")
    max_reduction_db: float = param(8.0, 0.0, 24.0, "dB")
    attack_ms: float = param(1.0, 0.1, 50.0, "ms")
    release_ms: float = param(60.0, 5.0, 1000.0, "ms")
    floor_dbfs: float = param(-60.0, -120.0, 0.0, "dBFS")

    @property
    def bypassed(self):
        return self.max_reduction_db == 0.0 or self.ratio == 1.0

    def _filters(self, sample_rate):
        w0 = 2.0 * math.pi * safe_freq(self.split_hz, sample_rate) / sample_rate
        low = safe_freq(self.band_low_hz, sample_rate)
        band = np.concatenate([filters.butterworth2_sos(low, sample_rate, "high"),
                               filters.butterworth2_sos(safe_freq(max(self.band_high_hz, low * 1.1), sample_rate),
                                                        sample_rate, "low")])
        return math.cos(w0), math.sin(w0) / math.sqrt(2.0), band

    def new_state(self, channels):
        """Filter and envelope state for :meth:`run_block` (a fresh stream)."""
        return {"z": np.zeros((channels, 2 + 2 * 2)), "env": np.zeros(2), "deepest_db": 0.0}

    def run_block(self, audio, sample_rate, state, out=None):
        """The next block of a stream; ``state`` from :meth:`new_state`, updated. ``out``: where
        to write it (float32 of ``audio``'s shape; may be ``audio`` itself), else a new array."""
        cw, alpha, band = self._filters(sample_rate)
        out = np.empty(audio.shape, dtype=np.float32) if out is None else out
        deepest = deess(np.ascontiguousarray(audio, dtype=np.float32), cw, alpha, band,
                        time_coef(self.attack_ms, sample_rate), time_coef(self.release_ms, sample_rate),
                        float(self.threshold_db), float(self.ratio), float(self.max_reduction_db),
                        10.0 ** (self.floor_dbfs / 10.0), state["z"], state["env"], out)
        state["deepest_db"] = max(state["deepest_db"], float(deepest))
        return out

    def run_in_place(self, audio, sample_rate):
        state = self.new_state(audio.shape[0])
        self.run_block(audio, sample_rate, state, out=audio)
        return {"max_reduction_db": round(state["deepest_db"], 2)}


# ------------------------------------------------------------------------------------- leveler

@register("leveler")
@dataclasses.dataclass(frozen=True)
class Leveler(Processor):
    """Gentle level riding towards the programme's own integrated loudness, offline and zero-phase.

    Every 100 ms the gated mean loudness over ``window_s`` around (only 400 ms blocks above the
    gate count) is compared with the file's integrated loudness; the gain is ``strength`` times
    the difference, within ``+-range_db``. A block under the gate (``gate_lu`` below the
    integrated loudness: a pause) is never raised: it keeps at most 0 dB, or the cut of the speech
    around it. The gains are smoothed forwards and backwards (time constant ``smoothing_s``, no
    pumping, no lag), clamped again in the pauses, and interpolated per sample. In place: the
    block loudness is read from the whole signal first, then the gains go over it."""

    HOP_S = 0.1

    range_db: float = param(6.0, 0.0, 20.0, "dB")
    strength: float = param(0.8, 0.0, 1.0, "fraction")
    window_s: float = param(3.0, 0.4, 20.0, "s")
    smoothing_s: float = param(1.0, 0.05, 10.0, "s")
    gate_lu: float = param(20.0, 5.0, 40.0, "LU")

    @property
    def bypassed(self):
        return self.range_db == 0.0 or self.strength == 0.0

    def block_gains_db(self, audio, sample_rate):
        """``(gains_db per 100 ms block, active mask, integrated LUFS)``; gains None when the
        signal is silent or under one 400 ms block."""
        momentary, _ = block_powers(audio, sample_rate)
        integrated = integrated_from_blocks(momentary) if momentary.size else float("-inf")
        if not np.isfinite(integrated):
            return None, None, integrated
        level = to_lufs(np.maximum(momentary, 1e-30))
        active = level > max(integrated - self.gate_lu, -70.0)
        half = max(0, int(round(self.window_s / self.HOP_S / 2)))
        power = np.where(active, momentary, 0.0)
        csum = np.concatenate(([0.0], np.cumsum(power)))
        ccount = np.concatenate(([0], np.cumsum(active)))
        idx = np.arange(momentary.size)
        lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, momentary.size)
        count = ccount[hi] - ccount[lo]
        with np.errstate(divide="ignore", invalid="ignore"):
            local = to_lufs(np.where(count > 0, (csum[hi] - csum[lo]) / np.maximum(count, 1), 1e-30))
        wanted = np.clip(self.strength * (integrated - local), -self.range_db, self.range_db)
        # pauses: the wanted gain of the nearest active block before (else after), never above 0 dB
        filled = wanted.copy()
        if active.any():
            last = np.where(active, idx, -1)
            last = np.maximum.accumulate(last)
            nxt = np.where(active, idx, momentary.size)
            nxt = np.minimum.accumulate(nxt[::-1])[::-1]
            source = np.where(last >= 0, last, nxt)
            filled = np.where(active, wanted, np.minimum(wanted[source], 0.0))
        coef = math.exp(-self.HOP_S / self.smoothing_s)
        smoothed = _one_pole(_one_pole(filled, coef)[::-1], coef)[::-1]
        smoothed = np.where(active, smoothed, np.minimum(smoothed, np.minimum(filled, 0.0)))
        return np.ascontiguousarray(smoothed), active, integrated

    def run_in_place(self, audio, sample_rate):
        gains, active, integrated = self.block_gains_db(audio, sample_rate)
        if gains is None:
            return {"gain_min_db": 0.0, "gain_max_db": 0.0, "programme_lufs": None}
        hop = self.HOP_S * sample_rate
        centre = 0.5 * 0.4 * sample_rate  # a 400 ms block's centre
        apply_block_gains(audio, gains, float(hop), float(centre), audio)
        return {"gain_min_db": round(float(gains.min()), 2), "gain_max_db": round(float(gains.max()), 2),
                "programme_lufs": round(float(integrated), 2),
                "paused_percent": round(100.0 * float(1.0 - active.mean()), 1)}


def _one_pole(x, coef):
    """``y[k] = coef y[k-1] + (1 - coef) x[k]``, ``y[-1] = x[0]``. Shape: (n,) float64."""
    y = np.empty_like(x)
    state = x[0] if x.size else 0.0
    for k in range(x.size):  # blocks of 100 ms: an hour is 36 000 steps
        state = coef * state + (1.0 - coef) * x[k]
        y[k] = state
    return y


@register("compressor")
@dataclasses.dataclass(frozen=True)
class Compressor(Processor):
    """Single-band downward compressor: the multiband compressor's gain computer (peak per 1/3 ms
    control period, soft knee, branching attack/release smoother, gain interpolated in between;
    :mod:`roomtone.kernels.multiband`) on the whole band, channels linked. ``threshold_db`` is a
    peak level in dBFS, ``ratio`` :1 above it, ``makeup_db`` after.

    >>> import numpy as np
    >>> loud = np.full((2, 4800), 0.9, np.float32)
    >>> bool(Compressor(threshold_db=-20.0, ratio=4.0)(loud, 48000)[0, -1] < 0.9)
    True
    """

    threshold_db: float = param(-20.0, -60.0, 0.0, "dB")
    ratio: float = param(2.0, 1.0, 20.0, ":1")
    attack_ms: float = param(10.0, 0.1, 200.0, "ms")
    release_ms: float = param(120.0, 5.0, 2000.0, "ms")
    knee_db: float = param(6.0, 0.0, 24.0, "dB")
    makeup_db: float = param(0.0, -12.0, 24.0, "dB")

    @property
    def bypassed(self):
        return self.ratio == 1.0 and self.makeup_db == 0.0

    @classmethod
    def example(cls):
        return cls(threshold_db=-24.0, ratio=3.0, makeup_db=2.0)

    def twin_params(self):
        """The JAX twin's parameters: the multiband twin's, one band (no crossovers)."""
        return {"crossovers_hz": np.zeros(0, np.float32), "threshold_db": np.array([self.threshold_db], np.float32),
                "ratio": np.array([self.ratio], np.float32), "makeup_db": np.array([self.makeup_db], np.float32),
                "attack_ms": self.attack_ms, "release_ms": self.release_ms, "knee_db": self.knee_db}

    @classmethod
    def from_twin(cls, p):
        """The compressor of fitted twin parameters ``p`` (clamped into range, rounded)."""
        return cls(**{name: clamp(np.ravel(p[name])[0], field_range(cls, name), 3) for name in
                      ("threshold_db", "ratio", "attack_ms", "release_ms", "knee_db", "makeup_db")})

    @staticmethod
    def render_twin(p, signal, ctx):
        """The JAX render: the multiband twin's gain computer on the whole band."""
        from roomtone.plugins import twin

        return twin.compress(signal[None], p, ctx.sample_rate, ctx.frac)[0]

    def process(self, audio, sample_rate):
        block = control_block(sample_rate)
        out = np.empty(audio.shape, dtype=np.float32)
        return multiband_compress(audio, np.zeros((0, 2, 6)), np.zeros((0, 6)),
                                  np.array([self.threshold_db]), np.array([self.ratio]), np.array([self.makeup_db]),
                                  float(self.knee_db), time_coef(self.attack_ms, sample_rate),
                                  time_coef(self.release_ms, sample_rate), block, np.zeros((0, 0, 0)), out, 0, 0,
                                  audio.shape[1])


@register("gate")
@dataclasses.dataclass(frozen=True)
class Gate(Processor):
    """Downward expander / gate: below ``threshold_db`` (peak dBFS per 1/3 ms control period,
    channels linked) the gain falls by ``ratio - 1`` dB per dB under it, at most ``range_db``
    (a ratio of 20 or more is a gate). The gain opens with ``attack_ms`` and closes with
    ``release_ms`` (the compressor's branching one-pole smoother in dB,
    :func:`roomtone.kernels.multiband.smooth_gain_trace`, its coefficients swapped), interpolated
    per sample between control periods. Offline: the whole signal's peaks first, then the gains.

    >>> import numpy as np
    >>> quiet = np.full((1, 9600), 1e-3, np.float32)
    >>> bool(Gate(threshold_db=-40.0, range_db=40.0)(quiet, 48000)[0, -1] < 1e-4)
    True
    """

    threshold_db: float = param(-50.0, -90.0, 0.0, "dB")
    ratio: float = param(4.0, 1.0, 100.0, ":1")
    range_db: float = param(40.0, 0.0, 90.0, "dB")
    attack_ms: float = param(1.0, 0.1, 100.0, "ms")
    release_ms: float = param(100.0, 5.0, 2000.0, "ms")

    @property
    def bypassed(self):
        return self.ratio == 1.0 or self.range_db == 0.0

    @classmethod
    def example(cls):
        return cls(threshold_db=-30.0, ratio=10.0, range_db=30.0)

    def gain_db(self, audio, sample_rate):
        """The smoothed gain in dB per control period (<= 0). Shape: (periods,) float64."""
        block = control_block(sample_rate)
        n = audio.shape[1]
        periods = -(-n // block)
        padded = np.pad(np.abs(audio), ((0, 0), (0, periods * block - n)))
        peak = padded.reshape(audio.shape[0], periods, block).max(axis=(0, 2)).astype(np.float64)
        with np.errstate(divide="ignore"):
            under = np.minimum(20.0 * np.log10(peak) - self.threshold_db, 0.0)
        target = np.maximum(under * (self.ratio - 1.0), -self.range_db)
        # falling gain (closing) takes the release time, rising (opening) the attack time
        return smooth_gain_trace(target[None], time_coef(self.release_ms, sample_rate) ** block,
                                 time_coef(self.attack_ms, sample_rate) ** block)[0]

    def process(self, audio, sample_rate):
        n = audio.shape[1]
        block = control_block(sample_rate)
        gain = 10.0 ** (self.gain_db(audio, sample_rate) / 20.0)
        previous = np.concatenate(([1.0], gain[:-1]))
        period = np.arange(n) // block
        per_sample = previous[period] + (gain[period] - previous[period]) * interpolation_fraction(n, block)
        return (audio * per_sample[None, :]).astype(np.float32)
