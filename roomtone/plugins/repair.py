"""Repair: mains hum removal (a 50/60 Hz series found, then notched) and click removal (found on the
LPC residual at several scales, filled by least-squares autoregressive interpolation).

Shape: audio (channels, samples) float32 in and out, same shape; both in place, no delay.
"""

import dataclasses
import math

import numpy as np

from roomtone import filters
from roomtone.kernels.biquad import sos_filter, sos_filter_backward
from roomtone.kernels.enhance import levinson, lpc_residual_flags
from roomtone.processor import Processor, param, register


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
class Dehum(Processor):
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
                extent=2.0, located=None, qualities=None):
    """Clicks in one channel's normalised residual (``score``: |residual| over its robust scale,
    :func:`roomtone.kernels.enhance.lpc_residual_flags`): ``[(start, stop)]`` sample spans to
    repair, and the number of impulsive spans left alone. Where ``qualities`` (a list) is given,
    each span's isolation is appended to it: its window's power over ``isolation^2`` (or the ratio
    between) times the most of its surroundings, over 1.

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
    scales = list(zip(widths, means, limits, ratios))
    spans, left = [], 0
    for first, last in zip(firsts.tolist(), lasts.tolist()):
        best, impulsive = _best_span(first, last, scales, ext, level=level, bridge=bridge, longest=longest,
                                     margin=margin, guard=guard, context=context)
        if best is None:
            left += impulsive
            continue
        quality, start, stop = best
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(stop, spans[-1][1]))
            if qualities is not None:
                qualities[-1] = max(qualities[-1], quality)
        else:
            spans.append((start, stop))
            if qualities is not None:
                qualities.append(quality)
    return spans, left


def _best_span(first, last, scales, ext, *, level, bridge, longest, margin, guard, context):
    """:func:`find_clicks`' choice for one group of candidate samples ``first..last``: of the
    windows ``scales`` (``[(width, mean power, limit, isolation ratio)]``) where the group's peak
    is over the limit, short enough and isolated, the one where it stands most isolated.

    Returns: ``((quality, start, stop) or None, whether any window found it impulsive)``."""
    n = ext.size
    best = None
    impulsive = False
    for w, m, limit, ratio in scales:
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
    return best, impulsive


def residual_standout(row, start, stop, order, context, guard):
    """How far a span stands out of its surroundings in the prediction residual: the energy of
    the forward residual over ``row[start:stop]`` (an AR(``order``) model fitted on ``context``
    samples either side, :func:`_lpc`, the span left out of the fit) over the most energy of any
    window as long anywhere else within the context (``guard`` samples either side kept clear).

    A click is new information: no model of what came before predicts it, and nothing like it
    recurs. A glottal pulse stands as high over its own moment, but a pitch period away stands
    another: its standout is near 1. Returns inf where no other window fits."""
    lo, hi = max(0, start - context), min(row.size, stop + context)
    a = _lpc((row[lo:start].astype(np.float64), row[stop:hi].astype(np.float64)), order)
    residual = np.convolve(row[lo:hi].astype(np.float64), a)[:hi - lo]
    residual[:min(order, residual.size)] = 0.0  # the filter's start from rest is no residual
    width = stop - start
    energy = np.concatenate(([0.0], np.cumsum(residual * residual)))
    windows = energy[width:] - energy[:-width]  # window at i: residual[i:i + width]
    own = windows[start - lo]
    at = np.arange(windows.size)
    away = (at + width <= start - lo - guard) | (at >= stop - lo + guard)
    if not away.any() or windows[away].max() <= 0.0:
        return np.inf
    return float(own / windows[away].max())


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
class Declick(Processor):
    """Click removal: clicks are found in the linear-prediction residual, forward and backward
    (:func:`roomtone.kernels.enhance.lpc_residual_flags`: each block's robust residual scale, the
    model fitted without the click; quiet blocks against ``floor`` times the programme's typical
    scale), as a short excess of its energy over windows of one sample to 2 ms
    (:func:`find_clicks`: over ``threshold`` times the scale in one sample down to
    ``burst_threshold`` in RMS over 2 ms, ``isolation`` (one sample) to ``burst_isolation``
    (2 ms) times over the same window within 20 ms, which voiced speech's glottal pulses are not,
    and at most ``max_click_ms`` long; candidates are taken at ``weak_isolation`` times less
    isolation, then each is judged by its :func:`residual_standout`: over ``standout`` where it
    passed the full isolation, over ``weak_standout`` where only the looser, as a click beside
    voiced speech's pulses does), and each click is repaired by least-squares AR
    interpolation (:meth:`repair`: order 3x the gap, fitted on :data:`FILL_CONTEXT_MS` either
    side). In place, each channel's clicks are found in its input before its first repair, and the
    repairs go in order, each reading the ones before it, as on a copy."""

    threshold: float = param(8.0, 4.0, 50.0, "x residual scale")
    burst_threshold: float = param(1.5, 0.5, 50.0, "x residual scale")
    max_click_ms: float = param(2.5, 0.1, 10.0, "ms")
    isolation: float = param(7.0, 1.0, 20.0, "x residual within 20 ms")
    burst_isolation: float = param(4.5, 1.0, 20.0, "x residual within 20 ms")
    floor: float = param(2.0, 0.0, 10.0, "x median residual scale")
    standout: float = param(3.0, 1.0, 1000.0, "x residual energy within 30 ms")
    weak_isolation: float = param(3.0, 1.0, 4.0, "x less isolation")
    weak_standout: float = param(30.0, 1.0, 1000.0, "x residual energy within 30 ms")

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
        # candidates at a looser isolation; each is then judged by its residual standout: a
        # candidate isolated by the full measure needs ``standout``, one only by the looser (a click
        # beside voiced speech's pulses, say) ``weak_standout``
        weak = float(self.weak_isolation)
        qualities = []
        spans, left = find_clicks(score, sample_rate, located=near, threshold=float(self.threshold),
                                  burst_threshold=float(self.burst_threshold), isolation=float(self.isolation) / weak,
                                  burst_isolation=float(self.burst_isolation) / weak,
                                  max_click_ms=float(self.max_click_ms), qualities=qualities)
        context = self._fill_context(sample_rate)
        guard = int(round(CLICK_GUARD_MS * 1e-3 * sample_rate))
        kept = []
        for (start, stop), quality in zip(spans, qualities):
            need = self.standout if quality > weak * weak else self.weak_standout
            if residual_standout(row, start, stop, order, context, guard) > need:
                kept.append((start, stop))
            elif quality > weak * weak:
                left += 1
        return kept, left

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
