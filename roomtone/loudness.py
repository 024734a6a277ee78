"""The loudness stage every delivering job ends in: one static gain, then the true-peak limiter,
solved so the output reads a target integrated loudness (BS.1770-4) under a true-peak ceiling
(BS.1770-4 Annex 2), then dither for integer output.

The loudness change comes from one static gain and the limiter only: no gain riding. The limiter's
gain curve for ``g * audio`` comes from one detector (peaks scale with ``g``), so each search
step costs one gain curve and one integrated-loudness reading of ``audio * curve`` (no candidate
output is built): a secant search on ``I(g) - target``, which rises monotonically with ``g``.

Shape: audio (channels, samples) float32.
"""

import dataclasses

import numpy as np

from roomtone.audio import quantization_error_bound, quantize_to_grid
from roomtone.errors import TargetUnreachableError
from roomtone.kernels.truepeak import interpolator_gain_bound
from roomtone.meter import LoudnessStats, integrated_loudness, measure, peak_interpolator, true_peak
from roomtone.plugins import TruePeakLimiter

TOLERANCE_LU = 0.01  # the search aims well inside the 0.1 LU promise of DESIGN.md
ACCEPT_LU = 0.05  # a final reading further than this from the target is a failure
DEFAULT_MAX_LIMITING_LU = 6.0
_ACTIVE_DB = 0.01  # the limiter "acts" on a sample when it takes off more than this


@dataclasses.dataclass
class LoudnessResult:
    """What :func:`reach_loudness` delivers.

    ``audio``: the output, float32 (channels, samples), quantized when ``bits`` was given.
    ``after``: its meter readings. ``gain_db``: the static gain before the limiter.
    ``limiting_lu``: integrated loudness the limiter took off (``level + gain_db - after``).
    ``gain_reduction_max_db`` / ``gain_reduction_mean_db``: the limiter's deepest reduction and its
    mean over the samples it acted on (more than 0.01 dB); ``limited_percent``: share of samples it
    acted on. ``iterations``: search steps.
    """

    audio: np.ndarray
    after: LoudnessStats
    gain_db: float
    limiting_lu: float
    gain_reduction_max_db: float
    gain_reduction_mean_db: float
    limited_percent: float
    iterations: int

    def stage_report(self):
        """The limiter's line of a job report (JSON-ready)."""
        return {"stage": "limiter", "gain_db": round(-self.limiting_lu, 3),
                "gain_reduction_max_db": round(self.gain_reduction_max_db, 2),
                "gain_reduction_mean_db": round(self.gain_reduction_mean_db, 2),
                "limited_percent": round(self.limited_percent, 2)}


def _render(audio, curve, bits, in_place, on_candidate=None):
    """``audio * curve`` as float32, quantized (TPDF-dithered) to ``bits`` unless None; written
    over ``audio`` when ``in_place``; passed to ``on_candidate`` if given."""
    if bits:
        out = quantize_to_grid(audio, bits, gain=curve, in_place=in_place)
    elif in_place:
        out = np.multiply(audio, curve[None, :], out=audio)
    else:
        out = audio * curve[None, :]
    if on_candidate is not None:
        on_candidate(out)
    return out


def _supersede(out, on_candidate):
    """Before a new candidate is built, let the old one go (``on_candidate(None)`` tells the
    caller to drop it too), so two whole outputs are never alive at once. Returns None."""
    if out is not None and on_candidate is not None:
        on_candidate(None)
    return None


def _reduction_stats(curve, gain, chunk=1 << 18):
    """(max dB, mean dB over acting samples, percent of samples acting) of the limiter part of
    ``curve`` (= ``gain * limiter gain``), in chunks: no whole-file scratch."""
    deepest, total_db, acting = 0.0, 0.0, 0
    for start in range(0, curve.size, chunk):
        reduction_db = -20.0 * np.log10(np.maximum(curve[start:start + chunk] / gain, 1e-12))
        hit = reduction_db > _ACTIVE_DB
        if hit.any():
            deepest = max(deepest, float(reduction_db.max()))
            total_db += float(reduction_db[hit].sum())
            acting += int(np.count_nonzero(hit))
    if not acting:
        return 0.0, 0.0, 0.0
    return deepest, total_db / acting, 100.0 * acting / curve.size


IN_PLACE_MIN_BYTES = 128 << 20  # about 6 minutes of 44.1 kHz stereo float32


def in_place_pays(audio):
    """Whether a job that owns ``audio`` should have :func:`reach_loudness` work in place: from
    :data:`IN_PLACE_MIN_BYTES` on, where the memory saved (a whole output) matters more than the one
    extra true-peak reading it costs (about 0.1 s a minute of stereo here)."""
    return audio.nbytes >= IN_PLACE_MIN_BYTES


class _Search:
    """One :func:`reach_loudness` run's state: the signal, its limiter detector, the latest gain
    curve, the output built so far and the step count. It holds at most one gain curve and one
    whole output at a time (memory)."""

    def __init__(self, audio, sample_rate, limiter, detector, *, level, target, max_limiting_lu, bits,
                 on_candidate):
        self.audio, self.sample_rate, self.limiter, self.detector = audio, sample_rate, limiter, detector
        self.level, self.target, self.max_limiting_lu = level, target, max_limiting_lu
        self.bits, self.on_candidate = bits, on_candidate
        self.curve = self.out = None
        self.iterations = 0

    def build(self):
        """Build the output of the latest curve (not in place), letting the previous one go first."""
        self.out = _supersede(self.out, self.on_candidate)
        self.out = _render(self.audio, self.curve, self.bits, False, self.on_candidate)

    def gain_steps(self, gain_db, limiter_ceiling, in_place):
        """A secant search of the static gain (dB) at one limiter ceiling (dBTP), at most 16 steps,
        until the reading is within :data:`TOLERANCE_LU` of the target or the limiter takes more
        than half a LU beyond its budget. The first step meters ``audio * curve`` through the
        curve; later ones (not ``in_place``) build the output and meter it in full.

        Returns: (gain_db, linear gain, the output's readings or None when none was built, the
        last reading in LUFS, the limiting in LU)."""
        history = []  # (gain_db, loudness) at this limiter ceiling
        after = None
        for _ in range(16):
            gain = 10.0 ** (gain_db / 20.0)
            self.curve = None  # the last step's curve goes before the next is built (memory)
            self.curve = self.limiter.gain_curve(self.detector, self.sample_rate, pre_gain=gain,
                                                 ceiling_dbtp=limiter_ceiling)
            self.curve *= np.float32(gain)
            if history and not in_place:  # close: build and meter the real output
                self.build()
                after = measure(self.out, self.sample_rate)
                result = after.integrated_lufs
            else:
                result = integrated_loudness(self.audio, self.sample_rate, gain=self.curve)  # audio * curve
            error = self.target - result
            history.append((gain_db, result))
            self.iterations += 1
            limiting_lu = self.level + gain_db - result
            if limiting_lu > self.max_limiting_lu + 0.5 or abs(error) <= TOLERANCE_LU:
                break
            if len(history) >= 2 and history[-1][0] != history[-2][0] and history[-1][1] != history[-2][1]:
                (g0, r0), (g1, r1) = history[-2], history[-1]
                gain_db = g1 + error / max((r1 - r0) / (g1 - g0), 0.05)
            else:
                gain_db += error
        return gain_db, gain, after, result, limiting_lu

    def check_settled(self, result, limiting_lu, ceiling):
        """Raise :class:`TargetUnreachableError` when the search needed more limiting than allowed
        or stopped further than :data:`ACCEPT_LU` from the target."""
        target = self.target
        if limiting_lu > self.max_limiting_lu:
            raise TargetUnreachableError(
                f"reaching {target:g} LUFS under {ceiling:g} dBTP needs {limiting_lu:.1f} LU of limiting "
                f"(this preset allows {self.max_limiting_lu:g} LU); lower the target, raise the ceiling, "
                f"or use a preset with more compression", limiting_lu=float(limiting_lu),
                max_limiting_lu=float(self.max_limiting_lu))
        if abs(target - result) > ACCEPT_LU:
            raise TargetUnreachableError(
                f"the loudness search stopped at {result:.2f} LUFS, {abs(target - result):.2f} LU from the "
                f"{target:g} LUFS target, after {self.iterations} steps")

    def finish_in_place(self, ceiling, peak_dbtp):
        """Write the output over the signal: the detector is released and the curve dropped before
        the output is metered (float output: its true peak is the ``peak_dbtp`` read through the
        curve). Returns its readings; raises when the quantizer's bound is broken after all."""
        if hasattr(self.detector, "release"):
            self.detector.release()
        self.detector = None
        self.out = _render(self.audio, self.curve, self.bits, True, self.on_candidate)
        self.audio = self.curve = None
        after = measure(self.out, self.sample_rate, true_peak_dbtp=None if self.bits else peak_dbtp)
        if after.true_peak_dbtp > ceiling or abs(after.integrated_lufs - self.target) > ACCEPT_LU:
            raise TargetUnreachableError(  # the quantizer's bound forbids it
                f"the output reads {after.integrated_lufs:.2f} LUFS and {after.true_peak_dbtp:.2f} dBTP "
                f"against {self.target:g} LUFS under {ceiling:g} dBTP")
        return after


def reach_loudness(audio, sample_rate, *, target_lufs, ceiling_dbtp, level_lufs=None, limiter=None,
                   detector=None, max_limiting_lu=DEFAULT_MAX_LIMITING_LU, bits=None, on_candidate=None,
                   in_place=False):
    """Gain, limit and (for ``bits``) dither ``audio`` so it reads ``target_lufs`` under ``ceiling_dbtp``.

    Args:
        audio: (channels, samples) float32, validated, at least one 400 ms block long and not silent.
        sample_rate: Hz.
        target_lufs: integrated loudness to land on (BS.1770-4), within 0.01 LU where it can.
        ceiling_dbtp: true-peak ceiling the output's meter reading stays at or under.
        level_lufs: the integrated loudness of ``audio`` if the caller has it (else it is metered).
        limiter: a :class:`~roomtone.plugins.limiter.TruePeakLimiter` for its timing (its own ceiling is
            not used: ``ceiling_dbtp`` is); default 3 ms look-ahead, 80 ms release.
        detector: the limiter's detector of ``audio`` (:meth:`TruePeakLimiter.lazy_detector`) if
            the caller prepared it (e.g. in a thread beside other work).
        max_limiting_lu: the most integrated loudness the limiter may take off; beyond it the
            target is unreachable without wrecking the audio.
        bits: 16 or 24 to quantize with TPDF dither (the returned samples are exactly what a file
            of that depth holds, and it is these that are metered); ``None`` for float.
        on_candidate: ``callable(out)`` told of each built output before it is metered (a file
            job can start writing it meanwhile); the last one told is the one returned. It is told
            ``None`` when the last output is superseded, before the next one is built: drop it
            then, so no two whole outputs are held at once.
        in_place: the caller gives ``audio`` (C-contiguous, writeable float32) and ``detector``
            away: the output is written over ``audio`` and the detector released first, so the
            stage needs no second whole signal (memory: the signal, the detector's one float32 per
            sample and the float32 gain curve, never more). :func:`in_place_pays` says when a job
            should (long signals: it costs one more true-peak reading).

    The first step meters ``audio * curve`` through the curve (the integrated loudness the built
    float32 product reads) without building it; from the second on, a step builds the (quantized)
    output and meters it in full, so a two-step search ends with its final reading taken. Should the
    output's true peak exceed the ceiling, the limiter aims lower and the search runs again (at
    most four times). In place, no step builds anything: the signal is gone once the output is
    built, so the check comes first. The true peak of ``audio * curve`` is read through the curve,
    and quantizing moves a sample by at most 1.5 LSB, hence the true peak by at most the
    interpolator's gain times that; the limiter aims lower whenever that bound could cross the
    ceiling, and only then is the output built, once. The readings returned are the output's own.

    Returns: :class:`LoudnessResult`.
    Raises: :class:`TargetUnreachableError` when the target needs more than ``max_limiting_lu`` of
    limiting or the search does not settle.
    """
    if limiter is None:
        limiter = TruePeakLimiter(ceiling_dbtp=ceiling_dbtp)
    if detector is None:
        detector = limiter.lazy_detector(audio, sample_rate)
    level = integrated_loudness(audio, sample_rate) if level_lufs is None else float(level_lufs)
    target, ceiling = float(target_lufs), float(ceiling_dbtp)
    search = _Search(audio, sample_rate, limiter, detector, level=level, target=target,
                     max_limiting_lu=max_limiting_lu, bits=bits, on_candidate=on_candidate)
    del audio, detector  # the search holds them (in place, it lets them go)
    # the most quantizing can add to the true peak (linear full scale): 0 for float output
    allowance = (interpolator_gain_bound(peak_interpolator(sample_rate)) * quantization_error_bound(bits)
                 if bits else 0.0)
    limiter_ceiling = ceiling
    gain_db = target - level
    after = worst_dbtp = None
    for attempt in range(4):
        gain_db, gain, after, result, limiting_lu = search.gain_steps(gain_db, limiter_ceiling, in_place)
        search.check_settled(result, limiting_lu, ceiling)
        if in_place:  # the signal is overwritten: check the true peak through the curve first
            peak_dbtp = true_peak(search.audio, sample_rate, gain=search.curve)
            worst_dbtp = 20.0 * np.log10(10.0 ** (peak_dbtp / 20.0) + allowance)
            if worst_dbtp > ceiling:
                limiter_ceiling -= worst_dbtp - ceiling + 0.01
                continue
            reduction = _reduction_stats(search.curve, gain)
            after = search.finish_in_place(ceiling, peak_dbtp)
            break
        if after is None:  # the first step landed: build and meter it
            search.build()
            after = measure(search.out, sample_rate)
        if after.true_peak_dbtp <= ceiling and abs(after.integrated_lufs - target) <= ACCEPT_LU:
            reduction = _reduction_stats(search.curve, gain)
            break
        limiter_ceiling -= max(after.true_peak_dbtp - ceiling, 0.0) + 0.01
    else:
        raise TargetUnreachableError(
            f"after 4 attempts the output reads {result:.2f} LUFS and up to "
            f"{after.true_peak_dbtp if after is not None else worst_dbtp:.2f} dBTP; "
            f"the target is {target:g} LUFS under {ceiling:g} dBTP")
    return LoudnessResult(search.out, after, gain_db, limiting_lu, *reduction, search.iterations)
