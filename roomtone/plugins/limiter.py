"""The look-ahead true-peak limiter every job ends with (BS.1770-4 Annex 2 true peak, 4x
oversampled detector), and its lazily computed detector.

The loudness search that puts a signal on a target under a ceiling is :mod:`roomtone.loudness`.

Shape: audio (channels, samples) float32 in and out, same shape.
"""

import dataclasses

import numpy as np

from roomtone import filters
from roomtone.kernels.dynamics import limiter_gain_held, limiter_gain_peak, sliding_max_forward
from roomtone.kernels.truepeak import block_peak_bounds, oversampled_peak_runs, oversampled_peaks
from roomtone.plugins.units import db_to_gain, time_coef
from roomtone.processor import Processor, param, register


def _detector_interpolator(sample_rate):
    """The limiter's interpolator: 4x at every sample rate (refinement needs that grid, even where
    the meter uses 2x or none) with 48 taps per branch, Kaiser beta 8, flatter near Nyquist than
    the meter's 49-tap Hann filter (-0.1 dB at 19 kHz for 44.1 kHz input, where 24 taps lost
    0.4 dB and let a heavily limited full-band signal read 0.02 dB over the ceiling by a long
    16x reference). The kernel is memory-bound: 48 taps cost no more time than 24 here. With
    parabolic refinement it reads within about 0.04 dB of the 16x reference of
    :mod:`roomtone.testing` on noise, sweeps and drum hits (tests/test_processors.py)."""
    return filters.polyphase_interpolator(4, taps_per_phase=48, beta=8.0)


class LazyDetector:
    """The limiter's detector (oversampled peak per sample, max over channels) computed only where
    it can matter; the look-ahead hold is taken as the gain curve is computed
    (:func:`roomtone.kernels.dynamics.limiter_gain_peak`), so the detector costs one float32 value
    per sample and no held copy.

    The limiter leaves a sample alone when ``pre_gain * held <= ceiling``. A cheap bound per block
    of :attr:`BLOCK` samples (:func:`roomtone.kernels.truepeak.block_peak_bounds`: the sample peak around it
    times the interpolator's worst-case gain) stands in for the exact detector wherever even the
    bound sits under ``ceiling / pre_gain``; elsewhere the exact values are computed, once, as the
    loudness search asks for higher gains. The gain curve is then identical to the one from the
    exact detector: where a bound wins the window's maximum, the exact maximum is under the same
    floor, and both give a gain of 1.
    """

    BLOCK = 32  # samples: small enough to skip the quiet stretches between transients
    MERGE_GAP = 2  # blocks: shorter gaps between runs are computed too
    # A search asks for rising gains: compute ahead for 1 dB more, so its next step rarely needs
    # new exact blocks.
    ANTICIPATE = 10.0 ** (-1.0 / 20.0)

    def __init__(self, audio, sample_rate, lookahead):
        self.audio = np.ascontiguousarray(audio, dtype=np.float32)
        self.phases = _detector_interpolator(sample_rate)
        self.lookahead = lookahead
        self.bounds = block_peak_bounds(self.audio, self.phases, self.BLOCK)
        n = self.audio.shape[1]
        self.peaks = np.repeat(self.bounds.astype(np.float32), self.BLOCK)[:n]
        np.nextafter(self.peaks, np.float32(np.inf), out=self.peaks)  # rounding down must not undercut
        self.exact = np.zeros(self.bounds.shape, dtype=bool)

    @property
    def exact_fraction(self):
        """Share of the blocks computed exactly so far."""
        return float(self.exact.mean()) if self.exact.size else 1.0

    def peaks_for(self, floor):
        """The detector before the hold, exact wherever the exact value could exceed ``floor``
        (elsewhere a bound above it, which the limiter treats alike: both are under ``floor``).
        Shape: (samples,) float32."""
        need = (self.bounds > floor * self.ANTICIPATE) & ~self.exact
        if need[self.bounds > floor].any():
            edges = np.flatnonzero(np.diff(np.concatenate(([0], need.view(np.int8), [0]))))
            first, last = edges[0::2], edges[1::2]  # runs of blocks [first, last)
            # a run costs about a filter length of set-up: join runs with short gaps between them
            new_run = first[1:] - last[:-1] > self.MERGE_GAP
            first = first[np.concatenate(([0], np.flatnonzero(new_run) + 1))]
            last = last[np.concatenate((np.flatnonzero(new_run), [len(edges) // 2 - 1]))]
            marks = np.zeros(need.size + 1, dtype=np.int64)
            np.add.at(marks, first, 1)
            np.add.at(marks, last, -1)
            need = np.cumsum(marks[:-1]) > 0
            starts, stops = first * self.BLOCK, np.minimum(last * self.BLOCK, self.audio.shape[1])
            oversampled_peak_runs(self.audio, self.phases, True, self.peaks, starts.astype(np.int64),
                                  stops.astype(np.int64))
            self.exact |= need
        return self.peaks

    def release(self):
        """Let the detector's arrays go (the job is done with it, or its audio is about to be
        overwritten); it cannot be used afterwards."""
        self.audio = self.peaks = self.bounds = self.exact = None


@register("limiter")
@dataclasses.dataclass(frozen=True)
class TruePeakLimiter(Processor):
    """Look-ahead true-peak limiter: a 4x oversampled detector (with parabolic refinement between
    interpolated points), a forward hold over the look-ahead, release, and smoothing, so every
    detected peak lands at or under ``ceiling_dbtp - MARGIN_DB``. The detector reads within about
    0.04 dB of a 16x reference; fast, deep gain changes spread the spectrum and add up to about
    0.08 dB more between samples (measured on 150 random hot signals), so the margin is 0.1 dB and
    :meth:`process` checks its own output and limits once more where a peak still pokes through.
    Offline: zero latency in the output.
    """

    MARGIN_DB = 0.1

    ceiling_dbtp: float = param(-1.0, -20.0, 0.0, "dBTP")
    lookahead_ms: float = param(3.0, 0.5, 20.0, "ms")
    release_ms: float = param(80.0, 1.0, 2000.0, "ms")

    def _lookahead(self, sample_rate):
        return max(2, int(round(self.lookahead_ms * 1e-3 * sample_rate)))

    def detector(self, audio, sample_rate):
        """Oversampled peak per sample, max over channels, held over the look-ahead window
        (``max(peak[:, n : n + lookahead])``). It does not depend on gain or ceiling, so a loudness
        search computes it once. Shape: (samples,) float32."""
        peaks = oversampled_peaks(np.ascontiguousarray(audio, dtype=np.float32), _detector_interpolator(sample_rate), True)
        return sliding_max_forward(peaks, self._lookahead(sample_rate))

    def lazy_detector(self, audio, sample_rate):
        """A :class:`LazyDetector` for ``audio``: :meth:`gain_curve` accepts it in place of
        :meth:`detector` and gives the same curve, computing the exact detector only where needed."""
        return LazyDetector(audio, sample_rate, self._lookahead(sample_rate))

    def _target_peak(self, ceiling_dbtp):
        """The linear peak every detected peak is brought to: the ceiling less the margin."""
        return db_to_gain((self.ceiling_dbtp if ceiling_dbtp is None else ceiling_dbtp) - self.MARGIN_DB)

    def prepare(self, detector, pre_gain, ceiling_dbtp=None):
        """Let a :class:`LazyDetector` compute ahead what :meth:`gain_curve` at ``pre_gain`` will
        need (e.g. in one thread while another meters); nothing for a plain detector."""
        if isinstance(detector, LazyDetector):
            detector.peaks_for(self._target_peak(ceiling_dbtp) / float(pre_gain))

    def gain_curve(self, detector, sample_rate, pre_gain=1.0, ceiling_dbtp=None):
        """Limiter gain per sample for ``pre_gain * audio`` from :meth:`detector` or
        :meth:`lazy_detector` (the same curve from either). Shape: (samples,) float32 in (0, 1]."""
        ceiling = self._target_peak(ceiling_dbtp)
        if isinstance(detector, LazyDetector):
            peaks = detector.peaks_for(ceiling / float(pre_gain))
            return limiter_gain_peak(peaks, float(pre_gain), ceiling, self._lookahead(sample_rate),
                                     time_coef(self.release_ms, sample_rate))
        return limiter_gain_held(detector, float(pre_gain), ceiling, self._lookahead(sample_rate),
                                 time_coef(self.release_ms, sample_rate))

    def process(self, audio, sample_rate):
        out = audio * self.gain_curve(self.detector(audio, sample_rate), sample_rate)[None, :]
        check = self.detector(out, sample_rate)
        if check.max() > self._target_peak(None):
            out = out * self.gain_curve(check, sample_rate)[None, :]
        return out
