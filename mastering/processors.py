"""The mastering processors: EQ, multiband compressor, stereo width and saturation (the static
gain and the true-peak limiter every job shares are in :mod:`roomtone.stages`). Each is a frozen dataclass with units in its parameter names and the
common call ``processor(audio, sample_rate)`` (see :mod:`roomtone.processor`).

Shape: audio (channels, samples) float32 in and out, same shape.
"""

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from roomtone import filters
from roomtone.errors import PresetError
from roomtone.kernels._split import run_split
from roomtone.kernels.biquad import sos_filter
from roomtone.kernels.multiband import multiband_compress, smooth_gain_trace
from roomtone.kernels.saturation import tanh_saturate_2x
from roomtone.processor import Processor, check_number, param, register
from roomtone.stages import db_to_gain, time_coef


def _safe_freq(freq_hz, sample_rate):
    """Keep a corner frequency below 0.45 x the sample rate (e.g. a 16 kHz shelf on 22.05 kHz audio)."""
    return min(freq_hz, 0.45 * sample_rate)


@register("eq")
@dataclasses.dataclass(frozen=True)
class Equalizer(Processor):
    """Low shelf, high shelf and parametric bands (RBJ biquads, minimum phase).

    ``bands`` is a tuple of ``(freq_hz, gain_db, q)``. A 0 dB shelf or band is skipped.
    """

    low_shelf_hz: float = param(100.0, 20.0, 1000.0, "Hz")
    low_shelf_db: float = param(0.0, -12.0, 12.0, "dB")
    high_shelf_hz: float = param(8000.0, 1000.0, 20000.0, "Hz")
    high_shelf_db: float = param(0.0, -12.0, 12.0, "dB")
    bands: tuple = ()

    def __post_init__(self):
        super().__post_init__()
        for band in self.bands:
            if len(band) != 3:
                raise PresetError(f"eq.bands entries are [freq_hz, gain_db, q]; got {list(band)!r}")
            for name, value, low, high, unit in zip(("freq_hz", "gain_db", "q"), band, (20.0, -12.0, 0.1),
                                                    (20000.0, 12.0, 10.0), ("Hz", "dB", "(Q)")):
                check_number(f"eq.bands {name}", value, low, high, unit)

    @property
    def bypassed(self):
        return not self.low_shelf_db and not self.high_shelf_db and not any(gain for _, gain, _ in self.bands)

    @classmethod
    def example(cls):
        return cls(low_shelf_db=2.0, high_shelf_db=-1.5, bands=((1000.0, 3.0, 1.0),))

    def sos(self, sample_rate):
        """The cascade as SOS rows. Shape: (sections, 6)."""
        rows = []
        if self.low_shelf_db:
            rows.append(filters.shelf_sos(_safe_freq(self.low_shelf_hz, sample_rate), self.low_shelf_db, sample_rate, "low"))
        if self.high_shelf_db:
            rows.append(filters.shelf_sos(_safe_freq(self.high_shelf_hz, sample_rate), self.high_shelf_db, sample_rate, "high"))
        for freq_hz, gain_db, q in self.bands:
            if gain_db and freq_hz < 0.45 * sample_rate:
                rows.append(filters.peaking_sos(freq_hz, gain_db, q, sample_rate))
        return np.concatenate(rows) if rows else np.zeros((0, 6))

    def process(self, audio, sample_rate):
        sos = self.sos(sample_rate)
        if sos.shape[0] == 0:
            return audio.copy()
        out = np.empty(audio.shape, dtype=np.float32)
        if audio.shape[0] >= 2 and audio.shape[1] >= SPLIT_SAMPLES:  # channels over the cores (kernel without the GIL)
            run_split(_sos_rows, audio.shape[0], np.ascontiguousarray(audio), sos, out)
            return out
        return sos_filter(audio, sos, out)


SPLIT_SAMPLES = 1 << 19  # an EQ this long (12 s at 44.1 kHz) runs its channels in parallel


def _sos_rows(x, sos, out, first, last):
    sos_filter(x[first:last], sos, out[first:last])


def _crossover_sos(sample_rate, crossovers_hz):
    """LR4 low-pass cascades (K, 2, 6) and matching all-passes (K, 6) at the crossovers."""
    freqs = [_safe_freq(f, sample_rate) for f in crossovers_hz]
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
        block = max(1, round(sample_rate * self.CONTROL_PERIOD_S))
        return smooth_gain_trace(np.ascontiguousarray(target_db, dtype=np.float64),
                                 time_coef(self.attack_ms, sample_rate) ** block,
                                 time_coef(self.release_ms, sample_rate) ** block)

    def gain_reduction_db(self, audio, sample_rate, chunk_s=10.0):
        """Mean gain reduction per band in dB (>= 0, lowest band first) that :meth:`process`
        applies to ``audio``: the kernel's split (in chunks of ``chunk_s``, each led in by
        :meth:`settle_samples`, so memory stays a few chunks), the per-period peak, the static curve
        and the same smoother (:func:`roomtone.kernels.multiband.smooth_gain_trace`), averaged over
        the control periods. For ``--explain``. Shape: returns (bands,) float64."""
        block = max(1, round(sample_rate * self.CONTROL_PERIOD_S))
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

    def process(self, audio, sample_rate):
        lows, allpasses = _crossover_sos(sample_rate, self.crossovers_hz)
        block = max(1, round(sample_rate * self.CONTROL_PERIOD_S))
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


@register("width")
@dataclasses.dataclass(frozen=True)
class StereoWidth(Processor):
    """Mid/side width on the first two channels (L, R); ``width`` scales the side signal.

    ``bass_mono_hz`` > 0 high-passes the side (2nd-order Butterworth), centring the low end.
    Mono input is returned unchanged; channels beyond the first two pass through.
    """

    width: float = param(1.0, 0.0, 2.0, "x")
    bass_mono_hz: float = param(0.0, 0.0, 500.0, "Hz")

    @property
    def bypassed(self):
        return self.width == 1.0 and self.bass_mono_hz == 0.0

    @classmethod
    def example(cls):
        return cls(width=1.3, bass_mono_hz=120.0)

    def process(self, audio, sample_rate):
        if audio.shape[0] < 2:
            return audio.copy()
        out = np.array(audio, dtype=np.float32 if audio.dtype == np.float32 else np.float64)
        if self.bass_mono_hz > 0.0:
            left = audio[0].astype(np.float64)
            right = audio[1].astype(np.float64)
            mid = 0.5 * (left + right)
            side = (0.5 * (left - right) * self.width)[None]
            sos_filter(side, filters.butterworth2_sos(_safe_freq(self.bass_mono_hz, sample_rate), sample_rate, "high"),
                       side)
            out[0] = mid + side[0]
            out[1] = mid - side[0]
            return out
        # Without the side filter, L' = a L + b R and R' = b L + a R with a = (1 + width) / 2,
        # b = (1 - width) / 2: mid/side in two products per sample, in the input's precision.
        a, b = out.dtype.type(0.5 * (1.0 + self.width)), out.dtype.type(0.5 * (1.0 - self.width))
        left, right = audio[0], audio[1]
        out[0] = a * left + b * right
        out[1] = b * left + a * right
        return out


@register("saturation")
@dataclasses.dataclass(frozen=True)
class Saturation(Processor):
    """Soft (tanh) saturation at 2x oversampling, unity small-signal gain, blended by ``mix``.

    ``drive_db`` is the gain into the curve (the output is scaled back by the same amount).
    """

    drive_db: float = param(0.0, 0.0, 24.0, "dB")
    mix: float = param(1.0, 0.0, 1.0, "fraction")

    @property
    def bypassed(self):
        return self.mix == 0.0  # drive_db = 0 still runs the curve at unity drive

    @classmethod
    def example(cls):
        return cls(drive_db=6.0, mix=0.5)

    def process(self, audio, sample_rate):
        # Drive relative to the working level: full scale maps to tanh(drive).
        drive = db_to_gain(self.drive_db)
        return tanh_saturate_2x(audio, filters.halfband_lowpass(), drive, float(self.mix))
