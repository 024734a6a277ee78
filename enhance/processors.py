"""The enhance job's processors: high-pass, hum removal, click removal, the denoiser stage, de-esser
and leveler. Each is a frozen dataclass with units in its parameter names and the common call
``processor(audio, sample_rate)`` (:mod:`roomtone.processor`); :meth:`EnhanceProcessor.run` also
returns what the stage did (hum found at X Hz, clicks repaired, deepest reduction...) for the
job's report. Every one keeps the length and is sample-aligned (``latency_samples`` 0).

Memory: every stage also runs in place (:meth:`EnhanceProcessor.run_in_place`), writing its output
over the signal with a bounded scratch, whatever the length, and giving the same samples as a
whole-signal run. What must see the whole signal is read from it first (the hum spectrum, the
leveler's loudness blocks, the click detector's flags, the model's input level); what runs through
it sample by sample does so in place (the filters, forwards and, for zero phase, backwards; the
de-esser's envelopes; gains); the denoiser stage, which changes rate, goes through it in blocks of
:data:`BLOCK_S` seconds (see :class:`Denoise`).

Shape: audio (channels, samples) float32 in and out, same shape.
"""

import dataclasses
import math

import numpy as np

from roomtone import filters
from roomtone.enhance.denoisers import get_denoiser
from roomtone.kernels.biquad import sos_filter, sos_filter_backward, sos_filter_stream
from roomtone.kernels.enhance import levinson, apply_block_gains, deess, lpc_residual_flags
from roomtone.meter import block_powers, integrated_from_blocks, to_lufs
from roomtone.processor import Processor, param, register
from roomtone.resample import resample_pieces, resampled_length
from roomtone.stages import time_coef


def _safe_freq(freq_hz, sample_rate):
    return min(freq_hz, 0.45 * sample_rate)


class EnhanceProcessor(Processor):
    """A processor that reports what it did: :meth:`run` gives ``(audio, info)``, ``info`` a
    JSON-ready dict; :meth:`process` is its audio alone; :meth:`run_in_place` writes the same
    audio over its input."""

    def process(self, audio, sample_rate):
        return self.run(audio, sample_rate)[0]

    def run(self, audio, sample_rate):
        """``(audio_out, info)``, the output a new array (``audio`` is left alone)."""
        out = np.array(audio, dtype=np.float32, order="C", copy=True)
        return out, self.run_in_place(out, sample_rate)

    def run_in_place(self, audio, sample_rate):  # pragma: no cover - interface
        """Write the stage's output over ``audio`` (validated, C-contiguous, writeable float32
        (channels, samples)) and return ``info``; the scratch does not grow with the length."""
        raise NotImplementedError


@register("highpass")
@dataclasses.dataclass(frozen=True)
class HighPass(EnhanceProcessor):
    """Gentle rumble filter: 2nd-order Butterworth high-pass (12 dB/octave, -3 dB at
    ``cutoff_hz``), minimum phase: no delay."""

    cutoff_hz: float = param(75.0, 20.0, 300.0, "Hz")

    def run_in_place(self, audio, sample_rate):
        sos = filters.butterworth2_sos(_safe_freq(self.cutoff_hz, sample_rate), sample_rate, "high")
        sos_filter(audio, sos, audio)
        return {"cutoff_hz": self.cutoff_hz}


# ---------------------------------------------------------------------------------------- hum

HUM_ANALYSIS_S = 60.0  # at most this much audio is analysed, in segments spread over the file
HUM_SEGMENTS = 12
HUM_FRAME_S = 1.0  # the spectrum's frame: 1 Hz resolution (Hann) at every sample rate
HUM_HOP_S = 0.25
HUM_QUANTILE = 0.3  # per bin, this quantile over the frames: a steady hum stays, moving speech harmonics do not


def _hum_spectrum(audio, sample_rate):
    """Power spectrum of the channel mean for hum finding, with a resolution fixed in Hz: frames of
    :data:`HUM_FRAME_S` (Hann, zero-padded to a power of two) every :data:`HUM_HOP_S` over at most
    :data:`HUM_ANALYSIS_S` seconds in segments spread over the file, and per bin the
    :data:`HUM_QUANTILE` quantile over the frames (mains hum is there in every frame, speech's
    harmonics glide through a bin in a few). Returns ``(freqs_hz, power)`` or None when the file
    is under a quarter of a second (under 4 Hz resolution: 50 and 60 Hz series blur)."""
    n = audio.shape[1]
    frame = min(n, int(round(HUM_FRAME_S * sample_rate)))
    if frame < sample_rate / 4:
        return None
    n_fft = 1 << int(math.ceil(math.log2(frame)))
    hop = max(1, int(round(HUM_HOP_S * sample_rate)))
    window = np.hanning(frame)
    seg_len = min(n, max(frame, int(HUM_ANALYSIS_S * sample_rate / HUM_SEGMENTS)))
    starts = np.unique(np.linspace(0, n - seg_len, HUM_SEGMENTS).astype(np.int64))
    spectra = []
    for start in starts:
        seg = audio[:, start:start + seg_len].astype(np.float64).mean(axis=0)
        for f0 in range(0, seg.size - frame + 1, hop):
            spec = np.fft.rfft(seg[f0:f0 + frame] * window, n_fft)
            spectra.append(spec.real ** 2 + spec.imag ** 2)
    spectra = np.array(spectra)
    power = np.quantile(spectra, HUM_QUANTILE, axis=0) if len(spectra) >= 4 else spectra.mean(axis=0)
    return np.fft.rfftfreq(n_fft, 1.0 / sample_rate), power


def find_hum(audio, sample_rate, *, max_harmonics=12, threshold_db=10.0, max_hz=2000.0):
    """Look for a mains hum series (50 or 60 Hz and harmonics) in the averaged spectrum.

    A harmonic ``h f0`` is present where the spectrum's peak within ``+-(0.6 + 0.004 h f0)`` Hz
    stands ``threshold_db`` over the median of its neighbourhood (``+-3..15`` Hz, and wider with
    ``h``). A series is found with two present harmonics or more; the one with more (then the
    louder) wins. Returns a dict: ``found``, ``mains_hz`` (50 or 60), ``fundamental_hz`` (refined
    from the peaks), ``harmonics`` ``[(number, freq_hz, prominence_db)]``.
    """
    result = {"found": False, "mains_hz": None, "fundamental_hz": None, "harmonics": []}
    analysed = _hum_spectrum(audio, sample_rate)
    if analysed is None:
        return result
    freqs, power = analysed
    if not np.any(power > 0):
        return result
    bin_hz = freqs[1]
    best = None
    for mains in (50.0, 60.0):
        present = []
        for h in range(1, max_harmonics + 1):
            f = h * mains
            if f > min(max_hz, 0.45 * sample_rate):
                break
            tol = 0.6 + 0.004 * f
            near = (freqs >= f - tol) & (freqs <= f + tol)
            ring = (np.abs(freqs - f) >= max(3.0, 3 * bin_hz, 2 * tol)) & (np.abs(freqs - f) <= 15.0 + 0.02 * f)
            if not near.any() or ring.sum() < 4:
                continue
            idx = np.flatnonzero(near)
            k = int(idx[np.argmax(power[idx])])
            floor = float(np.median(power[ring]))
            if floor <= 0.0 or power[k] <= 0.0:
                continue
            prominence = 10.0 * math.log10(power[k] / floor)
            if prominence < threshold_db:
                continue
            # parabolic interpolation of the log peak
            shift = 0.0
            if 0 < k < power.size - 1 and power[k - 1] > 0 and power[k + 1] > 0:
                a, b, c = (math.log(power[k - 1]), math.log(power[k]), math.log(power[k + 1]))
                denom = a - 2 * b + c
                if denom < 0:
                    shift = 0.5 * (a - c) / denom
            present.append((h, float(freqs[k] + shift * bin_hz), prominence))
        score = (len(present), sum(p for _, _, p in present))
        if len(present) >= 2 and (best is None or score > best[0]):
            best = (score, mains, present)
    if best is None:
        return result
    _, mains, present = best
    weights = np.array([p for _, _, p in present])
    fundamental = float(np.sum(weights * np.array([f / h for h, f, _ in present])) / weights.sum())
    return {"found": True, "mains_hz": mains, "fundamental_hz": round(fundamental, 3),
            "harmonics": [(h, round(h * fundamental, 2), round(p, 1)) for h, _, p in present]}


@register("dehum")
@dataclasses.dataclass(frozen=True)
class Dehum(EnhanceProcessor):
    """Mains hum removal: :func:`find_hum` looks for a 50 or 60 Hz series in the spectrum; only
    when one is found are its present harmonics notched (RBJ notches ``bandwidth_hz`` wide, run
    forwards and backwards: zero phase, no delay; in place, the backward pass runs from the last
    sample to the first). A hum-free recording is returned unchanged."""

    max_harmonics: int = param(12, 1, 40, "harmonics")
    threshold_db: float = param(10.0, 3.0, 40.0, "dB")
    bandwidth_hz: float = param(3.0, 0.5, 20.0, "Hz")

    def run_in_place(self, audio, sample_rate):
        hum = find_hum(audio, sample_rate, max_harmonics=int(self.max_harmonics), threshold_db=self.threshold_db)
        info = {"hum_found": hum["found"], "mains_hz": hum["mains_hz"], "fundamental_hz": hum["fundamental_hz"],
                "harmonics": len(hum["harmonics"]), "notched_hz": [f for _, f, _ in hum["harmonics"]],
                "prominence_db": [p for _, _, p in hum["harmonics"]]}
        if not hum["found"]:
            return info
        sos = np.concatenate([filters.notch_sos(f, self.bandwidth_hz, sample_rate) for _, f, _ in hum["harmonics"]])
        sos_filter(audio, sos, audio)  # forwards,
        sos_filter_backward(audio, sos, audio)  # then backwards: zero phase
        return info


# ------------------------------------------------------------------------------------- clicks

def _lpc(sides, order):
    """Prediction-error filter (a[0] = 1) of ``order`` from the summed autocorrelations of the
    stretches in ``sides`` (float64 samples, each Hann-windowed on its own: no joint between them
    reads as signal); stretches no longer than ``order`` are left out."""
    r = np.zeros(order + 1)
    for side in sides:
        if side.size > order:
            side = side * np.hanning(side.size + 2)[1:-1]
            r += np.correlate(side, side, "full")[side.size - 1:side.size + order]
    a = np.zeros(order + 1)
    a[0] = 1.0
    if r[0] <= 0.0:
        return a
    r[0] *= 1.0 + 1e-9
    levinson(r, order, a)
    return a


def lsar_interpolate(x, start, stop, order, context):
    """Least-squares AR interpolation (Vaseghi; Godsill & Rayner 1998, sec. 5.2): the samples
    ``x[start:stop]`` replaced by those minimising the prediction error of an AR(``order``) model
    fitted on ``context`` samples either side (their autocorrelations summed). In place on the
    float32 row ``x``; returns False (nothing changed) without ``order`` samples either side."""
    lo, hi = start - order, stop + order
    if lo < 0 or hi > x.size:
        return False
    c0, c1 = max(0, start - context), min(x.size, stop + context)
    a = _lpc((x[c0:start].astype(np.float64), x[stop:c1].astype(np.float64)), order)
    seg = x[lo:hi].astype(np.float64)
    m = seg.size
    rows = m - order  # residuals e[n] for n = order .. m-1 (every one touching the gap)
    matrix = np.zeros((rows, m))
    for k in range(order + 1):
        matrix[np.arange(rows), np.arange(rows) + order - k] = a[k]
    unknown = np.zeros(m, dtype=bool)
    unknown[order:order + stop - start] = True
    mu, mk = matrix[:, unknown], matrix[:, ~unknown]
    try:
        fill = np.linalg.solve(mu.T @ mu + 1e-12 * np.eye(mu.shape[1]), -(mu.T @ (mk @ seg[~unknown])))
    except np.linalg.LinAlgError:
        return False
    x[start:stop] = fill.astype(np.float32)
    return True


FILL_MIN_ORDER_48K = 40  # the interpolating model's least order at 48 kHz (scaled with the rate)
FILL_CONTEXT_MS = 30.0  # the interpolating model is fitted on this much either side of a click
CLICK_SCALES_MS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)  # the detector's windows (0: one sample)
CLICK_EXTENT_MS = 0.1  # a click's extent: where the residual's power over this window stays high
CLICK_GUARD_MS = 1.0  # kept clear either side of a click when its surroundings are measured
CLICK_CONTEXT_MS = 20.0  # the surroundings a click must stand out of


def _click_scales(sample_rate, longest):
    """The detector's window lengths in samples (:data:`CLICK_SCALES_MS`, at most ``longest``)."""
    widths = sorted({max(1, int(round(ms * 1e-3 * sample_rate))) for ms in CLICK_SCALES_MS})
    return [w for w in widths if w <= max(1, longest)]


def _moving_mean(csum, width):
    """Centred moving mean of the series whose prefix sums are ``csum`` (``csum[0] = 0``) over
    ``width`` samples (window ``[i - width // 2, i - width // 2 + width)``, cut at the ends, divided
    by ``width``). Shape: (n + 1,) -> (n,) float64."""
    n = csum.size - 1
    lo = np.clip(np.arange(n) - width // 2, 0, n)
    hi = np.clip(lo + width, 0, n)
    return (csum[hi] - csum[lo]) / width


def _log_between(w, longest_w, at_one, at_longest):
    """``at_one`` for a one-sample window, ``at_longest`` for ``longest_w`` samples, log-linear in
    the window length between."""
    frac = 0.0 if w <= 1 else min(1.0, math.log(w) / math.log(max(longest_w, 2.0)))
    return math.exp((1.0 - frac) * math.log(at_one) + frac * math.log(at_longest))


def find_clicks(score, sample_rate, *, threshold, burst_threshold, isolation, burst_isolation, max_click_ms,
                extent=2.0, located=None):
    """Clicks in one channel's normalised residual (``score``: |residual| over its robust scale,
    :func:`roomtone.kernels.enhance.lpc_residual_flags`): ``[(start, stop)]`` sample spans to
    repair, and the number of impulsive spans left alone.

    A click is a short excess of the whitened residual's energy, found as a matched filter finds
    it: the residual's power ``p = score^2`` is averaged over windows of one sample to 2 ms
    (:data:`CLICK_SCALES_MS`); a 1 ms burst a few times over the residual's scale in every sample
    stands out over 1 ms though no sample of it does. At some window, a click

    - stands over the threshold: its mean power over ``threshold^2`` (one sample) falling
      log-linearly with the window's length to ``burst_threshold^2`` (2 ms);
    - is isolated: its mean power is over ``isolation^2`` (one sample; ``burst_isolation^2`` at
      2 ms, log-linear between: a longer window's mean is steadier) times the same window's
      anywhere else within :data:`CLICK_CONTEXT_MS` (:data:`CLICK_GUARD_MS` kept clear either
      side). Voiced speech fails that test: its glottal pulses stand out of the residual as much
      as a click, but one every pitch period; so do a plosive's or a drum's burst and the noise
      after it;
    - is short: its extent (the window cut to, then out as far as, where the power over
      :data:`CLICK_EXTENT_MS` stays over ``extent^2``, gaps under 0.1 ms bridged; measured on
      ``located``, a score that stays on the click alone, where given) is at most
      ``max_click_ms``.

    Of the windows where a candidate passes, the one where it stands most isolated gives its
    span: the extent and 0.1 ms and 2 samples either side. Lengths are in ms: the same at every
    sample rate.
    """
    score = np.asarray(score, dtype=np.float64)
    n = score.size
    if n == 0:
        return [], 0
    longest = int(round(max_click_ms * 1e-3 * sample_rate))
    widths = _click_scales(sample_rate, longest)
    power = score * score
    csum = np.concatenate(([0.0], np.cumsum(power)))
    longest_w = max(1e-3 * CLICK_SCALES_MS[-1] * sample_rate, 2.0)
    means = [power if w == 1 else _moving_mean(csum, w) for w in widths]
    limits = [_log_between(w, longest_w, threshold ** 2, burst_threshold ** 2) for w in widths]
    ratios = [_log_between(w, longest_w, isolation ** 2, burst_isolation ** 2) for w in widths]
    candidate = np.zeros(n, dtype=bool)
    for m, limit in zip(means, limits):
        candidate |= m > limit
    over = np.flatnonzero(candidate)
    if over.size == 0:
        return [], 0
    small = max(2, int(round(CLICK_EXTENT_MS * 1e-3 * sample_rate)))
    if located is not None:
        near = np.asarray(located, dtype=np.float64) ** 2
        ext = _moving_mean(np.concatenate(([0.0], np.cumsum(near))), small)
    else:
        ext = _moving_mean(csum, small)
    bridge = max(1, int(round(0.1e-3 * sample_rate)))
    margin = 2 + int(round(0.1e-3 * sample_rate))
    guard = int(round(CLICK_GUARD_MS * 1e-3 * sample_rate))
    context = int(round(CLICK_CONTEXT_MS * 1e-3 * sample_rate))
    level = extent * extent
    joins = max(widths) // 2 + bridge
    breaks = np.flatnonzero(np.diff(over) > joins)
    firsts = np.concatenate(([over[0]], over[breaks + 1]))
    lasts = np.concatenate((over[breaks], [over[-1]]))
    spans, left = [], 0
    for first, last in zip(firsts.tolist(), lasts.tolist()):
        best = None
        impulsive = False
        for w, m, limit, ratio in zip(widths, means, limits, ratios):
            a, b = first, last + 1
            peak = a + int(np.argmax(m[a:b]))
            if m[peak] <= limit:
                continue
            impulsive = True
            lo, hi = extent_of(ext, peak - w // 2, peak - w // 2 + w - 1, level, bridge, longest)
            if hi + 1 - lo > longest:
                continue
            start, stop = max(0, lo - margin), min(n, hi + 1 + margin)
            clear0, clear1 = max(0, start - guard - w // 2), min(n, stop + guard + w // 2)
            around = np.concatenate((m[max(0, clear0 - context):clear0], m[clear1:clear1 + context]))
            quality = m[peak] / (ratio * float(around.max())) if around.size and around.max() > 0 else np.inf
            if quality > 1.0 and (best is None or quality > best[0]):
                best = (quality, start, stop)
        if best is None:
            left += impulsive
            continue
        _, start, stop = best
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(stop, spans[-1][1]))
        else:
            spans.append((start, stop))
    return spans, left


def extent_of(ext, lo, hi, level, bridge, longest):
    """``(lo, hi)`` (inclusive) of a burst around the window ``lo..hi``: cut to where ``ext`` (the
    short-window power) is over ``level`` within it, then out while it stays over ``level`` with
    gaps under ``bridge`` samples, until longer than ``longest``."""
    n = ext.size
    lo, hi = max(0, lo), min(n - 1, hi)
    core = np.flatnonzero(ext[lo:hi + 1] > level)
    if core.size:
        lo, hi = lo + int(core[0]), lo + int(core[-1])
    while hi - lo < longest:
        back = np.flatnonzero(ext[max(0, lo - bridge):lo] > level)
        if back.size == 0:
            break
        lo = max(0, lo - bridge) + int(back[0])
    while hi - lo < longest:
        ahead = np.flatnonzero(ext[hi + 1:hi + 1 + bridge] > level)
        if ahead.size == 0:
            break
        hi = hi + 1 + int(ahead[-1])
    return lo, hi


@register("declick")
@dataclasses.dataclass(frozen=True)
class Declick(EnhanceProcessor):
    """Click removal: clicks are found in the linear-prediction residual, forward and backward
    (:func:`roomtone.kernels.enhance.lpc_residual_flags`: each block's robust residual scale, the
    model fitted without the click; quiet blocks against ``floor`` times the programme's typical
    scale), as a short excess of its energy over windows of one sample to 2 ms
    (:func:`find_clicks`: over ``threshold`` times the scale in one sample down to
    ``burst_threshold`` in RMS over 2 ms, ``isolation`` (one sample) to ``burst_isolation``
    (2 ms) times over the same window within 20 ms, which voiced speech's glottal pulses are not,
    and at most ``max_click_ms`` long), and each click is repaired by least-squares AR
    interpolation (:meth:`repair`: order 3x the gap, fitted on :data:`FILL_CONTEXT_MS` either
    side). In place, each channel's clicks are found in its input before its first repair, and the
    repairs go in order, each reading the ones before it, as on a copy."""

    threshold: float = param(8.0, 4.0, 50.0, "x residual scale")
    burst_threshold: float = param(1.5, 0.5, 50.0, "x residual scale")
    max_click_ms: float = param(2.5, 0.1, 10.0, "ms")
    isolation: float = param(7.0, 1.0, 20.0, "x residual within 20 ms")
    burst_isolation: float = param(4.5, 1.0, 20.0, "x residual within 20 ms")
    floor: float = param(2.0, 0.0, 10.0, "x median residual scale")

    def _order(self, sample_rate):
        return int(min(48, max(10, round(sample_rate / 1500.0))))

    def _fill_order(self, sample_rate, gap):
        """The interpolating model's order: 3x the gap (Godsill & Rayner), at least
        :data:`FILL_MIN_ORDER_48K` scaled to the rate and the detector's, at most a third of the
        context."""
        least = max(self._order(sample_rate), int(round(FILL_MIN_ORDER_48K * sample_rate / 48000.0)))
        return int(min(max(least, 3 * gap), self._fill_context(sample_rate) // 3))

    def _fill_context(self, sample_rate):
        return int(round(FILL_CONTEXT_MS * 1e-3 * sample_rate))

    def repair(self, row, start, stop, sample_rate):
        """Interpolate ``row[start:stop]`` in place (:func:`lsar_interpolate`); False where the
        row is too short around it."""
        return lsar_interpolate(row, start, stop, self._fill_order(sample_rate, stop - start),
                                self._fill_context(sample_rate))

    def _block(self, sample_rate):
        return max(4 * self._order(sample_rate), int(round(0.02 * sample_rate)))

    def clicks(self, row, sample_rate):
        """``(spans, left)`` of one channel (a C-contiguous float32 row): :func:`find_clicks` on
        its residual."""
        order = self._order(sample_rate)
        block = self._block(sample_rate)
        flags = np.empty(row.size, dtype=np.uint8)
        scores = []
        for x in (row, np.ascontiguousarray(row[::-1])):  # forward, then backward prediction
            score = np.empty(row.size, dtype=np.float32)
            sigmas = np.empty(-(-row.size // block))
            lpc_residual_flags(x, order, block, float(self.threshold), flags, score, sigmas)
            if not np.any(sigmas > 0):
                return [], 0
            # a quiet block's residual is measured against the programme's typical one
            floor = self.floor * float(np.median(sigmas[sigmas > 0]))
            score *= np.repeat(sigmas / np.maximum(sigmas, floor), block)[:row.size].astype(np.float32)
            scores.append(score)
        # a click spreads over ``order`` samples after it in the forward residual, before it in the
        # backward one: their geometric mean is high on the click, and keeps some of the spread
        # (a smooth pop's residual is mostly spread) where the lower of the two would not
        score = np.sqrt(scores[0].astype(np.float64) * scores[1][::-1])
        # where it is, the lower of the two says: high on the click alone
        near = np.minimum(scores[0], scores[1][::-1])
        return find_clicks(score, sample_rate, located=near, threshold=float(self.threshold),
                           burst_threshold=float(self.burst_threshold), isolation=float(self.isolation),
                           burst_isolation=float(self.burst_isolation), max_click_ms=float(self.max_click_ms))

    def run_in_place(self, audio, sample_rate):
        repaired = skipped = 0
        for c in range(audio.shape[0]):
            spans, left = self.clicks(audio[c], sample_rate)
            skipped += left
            for start, stop in spans:
                if self.repair(audio[c], start, stop, sample_rate):
                    repaired += 1
                else:
                    skipped += 1
        return {"clicks_repaired": repaired, "bursts_left": skipped}


# ------------------------------------------------------------------------------------ denoise

HIGH_BAND_BLOCK_S = 0.02
BLOCK_S = 30.0  # the denoiser stage's passes through a signal at another rate than the model's, in seconds


@register("denoise")
@dataclasses.dataclass(frozen=True)
class Denoise(EnhanceProcessor):
    """The denoiser stage: the model named ``model`` (:mod:`roomtone.enhance.denoisers`;
    ``"auto"``: the best available) on every channel, at its native rate (resampled there and
    back with :func:`roomtone.resample.resample`). Where the model's rate is below the input's, the
    band above its Nyquist frequency is kept from the input (input minus its round trip through
    the model's rate), scaled every 20 ms by the model's own attenuation of its top octave
    (clipped to the ``atten_lim_db`` floor), so the output keeps the full band and noise up there
    is reduced alike. ``atten_lim_db`` limits the attenuation (100: unlimited).

    In place (:meth:`run_in_place`), at another rate than the model's: the signal is resampled to
    the model's rate in blocks of :data:`BLOCK_S` seconds (a stream, bit for bit the one-shot
    resampler), the only whole copy the stage keeps (a third of the input at 48 kHz for a 16 kHz
    model); the band above is written over the input (which nothing needs any more), the model
    denoises its copy in place (``denoiser.denoise_in_place`` where it has one, else one call on the
    whole), and the result is resampled back in blocks and added over the band above. At the
    model's own rate the model works in place on the signal itself. The output is the whole-signal
    computation's: the same samples, whatever the block size."""

    model: str = "auto"
    atten_lim_db: float = param(100.0, 0.0, 100.0, "dB")

    @property
    def bypassed(self):
        return self.atten_lim_db == 0.0

    def run_in_place(self, audio, sample_rate, *, block_samples=None, progress=None):
        """As :meth:`EnhanceProcessor.run_in_place`; ``block_samples``: the passes' block (default
        :data:`BLOCK_S` seconds; the output does not depend on it); ``progress``: optional
        ``callable(done, total)``, handed to the denoiser (called per block or segment by the
        ones that take it: :func:`_denoise_over`)."""
        denoiser = get_denoiser(self.model)
        native = denoiser.sample_rate
        limit = None if self.atten_lim_db >= 100.0 else float(self.atten_lim_db)
        info = {"model": denoiser.name, "model_sample_rate": native, "atten_lim_db": self.atten_lim_db,
                "band_kept_above_hz": None, "high_band_gain_db_mean": None}
        if native is None:
            _denoise_over(denoiser, audio, limit, progress, sample_rate=sample_rate)
            return info
        native = int(native)
        if native == sample_rate:
            _denoise_over(denoiser, audio, limit, progress)
            _release_model_scratch(audio, sample_rate)
            return info
        block = int(round(BLOCK_S * sample_rate)) if block_samples is None else max(1, int(block_samples))
        low_block = max(1, block * native // sample_rate)
        # the way up to the model's rate: the model's own resampler where it has one (dfn3: the reference
        # runtime's, issue 24 §6), else soxr; the way back is always soxr
        way_in = getattr(denoiser, "input_resample_pieces", None) if native > sample_rate else None
        low = _resampled(audio, sample_rate, native, block, pieces=way_in)
        if native > sample_rate:
            _denoise_over(denoiser, low, limit, progress)
            _resample_over(low, native, sample_rate, audio, low_block, _assign)
            del low
            _release_model_scratch(audio, sample_rate)
            return info
        # the band above the model's Nyquist frequency, from the input: the input less its round trip
        # through the model's rate, written over the input
        e_in = _top_octave_energies(low, native, low_block)
        _resample_over(low, native, sample_rate, audio, low_block, _subtract)
        _denoise_over(denoiser, low, limit, progress)
        gains_db = _top_octave_gain_db(e_in, _top_octave_energies(low, native, low_block), limit)
        hop = max(1, int(round(HIGH_BAND_BLOCK_S * sample_rate)))

        def add_scaled_band(dest, start, stop, cleaned):  # dest: the band above; out = cleaned + gains * band
            band = np.ascontiguousarray(dest[:, start:stop])
            apply_block_gains(band, gains_db, float(hop), 0.5 * hop - start, band)
            band += cleaned
            dest[:, start:stop] = band

        _resample_over(low, native, sample_rate, audio, low_block, add_scaled_band)
        del low
        _release_model_scratch(audio, sample_rate)
        info["band_kept_above_hz"] = native / 2
        info["high_band_gain_db_mean"] = round(float(np.mean(gains_db)), 2) if gains_db.size else 0.0
        return info


LONG_S = 60.0  # from this length on, the model's freed scratch is handed back after the stage


def _release_model_scratch(audio, sample_rate):
    """After a model ran over a long signal, hand the freed scratch its threads leave in the heap
    back to the system (:func:`roomtone.models.runtime.release_free_memory`), so that it does not
    add to the stages after this one."""
    if audio.shape[1] >= LONG_S * sample_rate:
        from roomtone.models.runtime import release_free_memory

        release_free_memory()


def _denoise_over(denoiser, audio, limit, progress=None, **kwargs):
    """``denoiser`` on ``audio`` (float32 (channels, samples) at its rate), the output written over
    it: in place where the denoiser can (``denoise_in_place``), else from one whole call.
    ``progress`` goes to the denoiser where it takes a ``progress`` keyword (optional in the
    registry's protocol, :mod:`roomtone.enhance.denoisers`)."""
    in_place = getattr(denoiser, "denoise_in_place", None)
    call = in_place if in_place is not None else denoiser
    if progress is not None and _takes_progress(call):
        kwargs["progress"] = progress
    if in_place is not None:
        in_place(audio, limit, **kwargs)
    else:
        audio[:] = np.asarray(denoiser(audio, limit, **kwargs), dtype=np.float32)


def _takes_progress(call):
    """Whether ``call`` has a ``progress`` parameter (or takes any keyword)."""
    import inspect

    try:
        params = inspect.signature(call).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "progress" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _resampled(audio, sample_rate, rate, block, pieces=None):
    """``audio`` resampled to ``rate`` in blocks of ``block`` input samples (the same samples as
    one :func:`roomtone.resample.resample` call). Shape: (channels, samples) -> (channels,
    resampled length) float32."""
    out = np.empty((audio.shape[0], resampled_length(audio.shape[1], sample_rate, rate)), np.float32)
    filled = 0
    for start, piece in (pieces or resample_pieces)(audio, sample_rate, rate, block_samples=block):
        out[:, start:start + piece.shape[1]] = piece
        filled = start + piece.shape[1]
    if filled != out.shape[1]:  # libsoxr's count is resampled_length's
        raise RuntimeError(f"resampling {audio.shape[1]} samples gave {filled}, not {out.shape[1]}")
    return out


def _resample_over(low, rate, sample_rate, dest, block, combine):
    """``low`` resampled from ``rate`` to ``sample_rate`` in blocks of ``block`` samples, each piece
    handed with its place to ``combine(dest, start, stop, piece)``, cut or padded with zeros to
    ``dest``'s length (what a whole-signal result is fitted to)."""
    n = dest.shape[1]
    filled = 0
    for start, piece in resample_pieces(low, rate, sample_rate, block_samples=block):
        stop = min(n, start + piece.shape[1])
        if stop > start:
            combine(dest, start, stop, piece[:, :stop - start])
        filled = max(filled, stop)
    if filled < n:
        combine(dest, filled, n, np.zeros((dest.shape[0], n - filled), np.float32))


def _assign(dest, start, stop, piece):
    dest[:, start:stop] = piece


def _subtract(dest, start, stop, piece):
    dest[:, start:stop] -= piece


def _top_octave_energies(audio, sample_rate, block):
    """Per 20 ms block, the power in ``audio``'s top octave (above a quarter of its rate: a
    4th-order Butterworth high-pass), channels together, computed ``block`` samples (rounded to
    whole 20 ms blocks) at a time with the filter's state carried. Shape: (blocks,) float64."""
    sos = filters.butterworth2_sos(0.25 * sample_rate, sample_rate, "high")
    sos = np.concatenate([sos, sos])
    hop = max(1, int(round(HIGH_BAND_BLOCK_S * sample_rate)))
    block = max(1, block // hop) * hop
    state = np.zeros((audio.shape[0], sos.shape[0], 2))
    energies = [np.zeros(0)]
    for start in range(0, audio.shape[1], block):
        piece = np.ascontiguousarray(audio[:, start:start + block], dtype=np.float32)
        top = sos_filter_stream(piece, sos, state, np.empty(piece.shape, dtype=np.float32))
        count = -(-top.shape[1] // hop)
        power = np.pad(top.astype(np.float64) ** 2, ((0, 0), (0, count * hop - top.shape[1])))
        energies.append(power.reshape(power.shape[0], count, hop).sum(axis=(0, 2)))
    return np.concatenate(energies)


def _top_octave_gain_db(e_in, e_out, limit_db):
    """Per 20 ms block, ``10 log10`` of the model's output over input power in its top octave
    (:func:`_top_octave_energies`), clipped to ``[-limit_db, 0]`` and smoothed over 3 blocks.
    Shape: (blocks,) float64 (one 0 dB block where there is none)."""
    if e_in.size == 0:
        return np.zeros(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gains = np.where(e_in > 0, 10.0 * np.log10(np.maximum(e_out, 1e-30) / np.maximum(e_in, 1e-30)), 0.0)
    floor = -100.0 if limit_db is None else -float(limit_db)
    gains = np.clip(gains, floor, 0.0)
    if gains.size >= 3:
        gains = np.convolve(np.pad(gains, 1, mode="edge"), np.ones(3) / 3.0, mode="valid")
    return np.ascontiguousarray(gains)


# ------------------------------------------------------------------------------------ de-esser

@register("deess")
@dataclasses.dataclass(frozen=True)
class DeEsser(EnhanceProcessor):
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
        w0 = 2.0 * math.pi * _safe_freq(self.split_hz, sample_rate) / sample_rate
        low = _safe_freq(self.band_low_hz, sample_rate)
        band = np.concatenate([filters.butterworth2_sos(low, sample_rate, "high"),
                               filters.butterworth2_sos(_safe_freq(max(self.band_high_hz, low * 1.1), sample_rate),
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
class Leveler(EnhanceProcessor):
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
