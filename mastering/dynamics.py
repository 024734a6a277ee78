"""Fit the multiband compressor to a target's dynamics: the short-term loudness spread (LU).

A reference track (or a preset's ``[target]``) says how much its loudness moves: the spread of its
short-term loudness (EBU Tech 3341 short-term, 3 s windows every 100 ms, p95 - p5 after LRA's
gates: :func:`roomtone.mastering.targets.short_term_spread`). The chain's multiband compressor sets
how much of the input's movement survives. This module moves the compressor along one path of
"amount" so that the output's spread meets the target: first its thresholds, by one offset (dB, the
same for every band) from +``OFFSET_LIMIT_DB`` to -``OFFSET_LIMIT_DB``, then, with the thresholds at
their lowest, its ratios, each ``1 + (ratio - 1) x scale`` for a scale up to ``RATIO_SCALE_LIMIT``
(at most ``RATIO_LIMIT``:1); the knee and times stay the preset's. It says when the target is out
of reach (a downward compressor cannot make a track more dynamic than it is).

The model is the compressor's own gain computer on real excerpts of the input, not a proxy:

- ``probes`` excerpts of ``probe_s`` (each led in by ``lead_s`` from zero state, which is then left
  out) are run through the fitted EQ and split into the compressor's LR4 bands by the kernel
  (:meth:`MultibandCompressor.split_bands`). Per control period (1/3 ms) the model keeps each
  band's peak over the channels (what the kernel's detector sees), and per group of
  ``GROUP_PERIODS`` periods (10: 3.4 ms at 44.1 kHz) the Gram matrix of the K-weighted bands
  ``G_bc = sum_{channels, samples} (K x_b)(K x_c)`` (K-weighting, BS.1770-4, is
  linear and time-invariant, so it commutes with the band split: ``K x_b`` is band ``b`` of
  ``K x``).
- For a threshold offset the kernel's static curve and attack/release smoother
  (:func:`roomtone.kernels.multiband.smooth_gain_trace`) give each band's gain ``g_b`` per period,
  and the output's K-weighted energy per group is ``g^T G g`` with ``g`` the group's mean gain:
  exact for a gain constant over the group (the kernel's gain moves with a 25 ms attack in the
  shipped presets, so within 3.4 ms it is nearly constant).
- Block energies (29 groups, 98.6 ms at 44.1 kHz: about the meter's 100 ms) give short-term loudness (``-0.691 + 10 log10`` of the 3 s mean square,
  BS.1770-4 eq. 2); the probes' pooled readings give a spread. The excerpts sample the track's
  macro dynamics only coarsely, so the model predicts the relative change: ``predicted(offset) =
  spread(input, whole track) x spread_probes(offset) / spread_probes(no compression)`` (measured on
  the clips of ``../shared/data/music`` through ``balanced`` with offsets -9..+6 dB: within 0.4 LU
  of the rendered output's spread on 6 of 7 clips, 1 LU on the seventh, whose probes hardly move;
  an additive change was worse). Where the probes' own spread is under
  ``MIN_PROBE_SPREAD_LU`` the ratio is unstable and the change is added instead.
- The path is searched on a grid (1 dB steps of offset, then 0.5 steps of ratio scale) and
  refined by linear interpolation where the prediction crosses the target; of several crossings
  the one nearest the preset's own settings (the least change) is kept. A target within
  ``TOLERANCE_LU`` of the preset's prediction leaves the compressor alone, and a farther one is
  met at the near edge of that band: no large change for a difference under the model's accuracy. The spread is monotone
  along the path for a downward compressor in practice, but the search does not rely on it.

What follows the compressor moves the spread too: the width stage (a passage's side content is
part of its loudness: 0.9 LU on one clip here) and the final loudness stage (towards a loud target
the true-peak limiter takes more off the loud passages than the quiet ones). With ``delivery``
(the whole chain, the target loudness and the limiter), the probes are rendered once through the
real chain at the fitted settings, raised by the static gain the loudness stage will apply
(estimated from the probes' level change and the whole signal's level) and limited by the real
limiter; the ratio of that render's probe spread to the model's at the same settings (the stages
after the compressor, the limiter and the model's own error together) raises or lowers the spread
the compressor aims at (``aimed_spread_lu``), and the search runs again on the same grid. The master report gives the output's measured spread beside the prediction.
"""

import dataclasses
import math
from concurrent.futures import Future

import numpy as np

from roomtone import filters
from roomtone.concurrency import map_two
from roomtone.kernels.biquad import sos_filter
from roomtone.plugins.dynamics import control_block, static_curve_db
from roomtone.meter import gated_spread, to_lufs
from roomtone.processor import Chain

PROBES = 8
PROBE_S = 4.0
LEAD_S = 1.0
BLOCK_S = 0.1  # short-term loudness every 100 ms, as short_term_spread reads it
GROUP_PERIODS = 10
SHORT_TERM_S = 3.0
OFFSET_LIMIT_DB = 12.0
GRID_STEP_DB = 1.0
RATIO_SCALE_LIMIT = 4.0
RATIO_SCALE_STEP = 0.5
RATIO_LIMIT = 4.0
MIN_PROBE_SPREAD_LU = 1.0
TOLERANCE_LU = 0.3  # about the model's accuracy: a target this close leaves the preset's compressor alone


class Probe:
    """One excerpt reduced to what the model needs: ``peaks`` (bands, periods) linear band peaks
    over the channels, ``gram`` (groups, bands, bands) K-weighted band energies per
    GROUP_PERIODS periods, ``skip`` the lead-in groups left out of the readings."""

    def __init__(self, peaks, gram, skip):
        self.peaks, self.gram, self.skip = peaks, gram, skip
        with np.errstate(divide="ignore"):
            self.levels_db = 20.0 * np.log10(peaks)


def probe_windows(n, sample_rate, count=PROBES, probe_s=PROBE_S, lead_s=LEAD_S, segments=None):
    """``[(first, start, stop)]`` sample indices of each probe: it is rendered from ``first`` and
    read from ``start`` to ``stop``. Evenly spread over ``n`` samples, or one centred in each
    ``(start, stop)`` of ``segments`` (an album's pieces). Empty when nothing is long enough for one
    short-term reading."""
    length = int(probe_s * sample_rate)
    lead = int(lead_s * sample_rate)
    short = int(SHORT_TERM_S * sample_rate)
    windows = []
    if segments is None:
        if n < short:
            return []
        if n <= length + lead:
            return [(0, min(lead, n - short), n)]
        count = max(1, min(count, (n - lead) // length))
        starts = np.linspace(lead, n - length, count + 2)[1:-1] if count > 1 else [lead + (n - lead - length) // 2]
        return [(int(s) - lead, int(s), int(s) + length) for s in starts]
    for a, b in segments:
        a, b = int(a), int(b)
        if b - a < short:
            continue
        take = min(length, b - a)
        start = a + (b - a - take) // 2
        windows.append((max(a, start - lead), start, start + take))
    return windows


def measure_probes(multiband, eq, signal, sample_rate, windows):
    """The :class:`Probe` of each window of ``signal`` (channels, samples) at the working level:
    through ``eq`` (an :class:`~roomtone.plugins.eq.Equalizer`, or None) and the
    compressor's band split. The windows are shared between the calling thread and one worker
    (the kernels release the GIL)."""
    block = control_block(sample_rate)
    k_sos = np.asarray(filters.k_weighting_sos(sample_rate), dtype=np.float64)

    def probe(window):
        first, start, stop = window
        x = np.ascontiguousarray(signal[:, first:stop], dtype=np.float32)
        if eq is not None and not eq.bypassed:
            x = np.ascontiguousarray(eq.process(x, sample_rate), dtype=np.float32)
        groups = x.shape[1] // (block * GROUP_PERIODS)
        periods = groups * GROUP_PERIODS
        m = periods * block
        bands = np.abs(multiband.split_bands(x, sample_rate)[:, :, :m])
        n_b, n_ch = bands.shape[:2]
        peaks = bands.reshape(n_b, n_ch, periods, block).max(axis=(1, 3))
        weighted = sos_filter(x, k_sos, np.empty(x.shape, dtype=np.float64))
        kb = multiband.split_bands(weighted, sample_rate)[:, :, :m].reshape(n_b, n_ch, groups, GROUP_PERIODS * block)
        gram = np.einsum("acpk,bcpk->pab", kb, kb, optimize=True)
        return Probe(peaks, gram, -(-(start - first) // (block * GROUP_PERIODS)))

    return map_two(probe, windows)


def short_term_readings(probe, gain_db, sample_rate, block):
    """Short-term loudness (LUFS) about every 100 ms of one probe with per-period band gains
    ``gain_db`` (..., bands, periods), its lead-in left out: one row of readings per leading index
    (many settings in one call). Shape: (..., bands, periods) -> (..., readings)."""
    groups = probe.gram.shape[0]
    lead = gain_db.shape[:-2]
    g = (10.0 ** (gain_db / 20.0)).reshape(lead + (gain_db.shape[-2], groups, GROUP_PERIODS)).mean(axis=-1)
    energy = np.einsum("...bp,pbc,...cp->...p", g, probe.gram, g, optimize=True)[..., probe.skip:]
    block = block * GROUP_PERIODS
    per_block = max(1, round(BLOCK_S * sample_rate / block))
    count = energy.shape[-1] // per_block
    blocks = energy[..., : count * per_block].reshape(lead + (count, per_block)).sum(axis=-1)
    window = int(round(SHORT_TERM_S / BLOCK_S))
    if count < window:
        return np.zeros(lead + (0,))
    # 3 s sums of the 100 ms blocks (a running sum: every 3 s window, hop one block)
    csum = np.concatenate([np.zeros(lead + (1,)), np.cumsum(blocks, axis=-1)], axis=-1)
    sums = csum[..., window:] - csum[..., :-window]
    return to_lufs(sums / (window * per_block * block))


def pooled_spread(readings):
    """:func:`~roomtone.meter.gated_spread` of the pooled short-term readings (LU),
    the relative gate against their power mean; None when fewer than two pass."""
    return gated_spread(np.concatenate(readings) if readings else np.zeros(0))


def probe_spread(multiband, probes, sample_rate, threshold_offset_db=None):
    """The probes' pooled spread (LU) through ``multiband`` with its thresholds moved by
    ``threshold_offset_db`` (None: no compression, the makeup gains alone)."""
    if threshold_offset_db is None:
        block = control_block(sample_rate)
        makeup = np.asarray(multiband.makeup_db, dtype=np.float64)[:, None]
        return pooled_spread([short_term_readings(p, np.broadcast_to(makeup, p.peaks.shape), sample_rate, block)
                              for p in probes])
    moved = dataclasses.replace(multiband, threshold_db=tuple(t + threshold_offset_db for t in multiband.threshold_db))
    return settings_spreads([moved], probes, sample_rate)[0]


def settings_spreads(compressors, probes, sample_rate):
    """The probes' pooled spread (LU, or None without a reading) through each of ``compressors``
    (the same band split, knee, times and makeup; their thresholds and ratios differ, as along the
    amount path): every setting's static curve, smoother and readings in one vectorised pass per
    probe. Returns a list, one per compressor."""
    first = compressors[0]
    block = control_block(sample_rate)
    threshold = np.array([c.threshold_db for c in compressors], dtype=np.float64)[:, :, None]
    ratio = np.array([c.ratio for c in compressors], dtype=np.float64)[:, :, None]
    makeup = np.asarray(first.makeup_db, dtype=np.float64)[:, None]
    readings = []
    for probe in probes:
        target = static_curve_db(probe.levels_db[None], threshold, ratio, first.knee_db)
        n_s, n_b, periods = target.shape
        gain = first.smoothed_gain_db(target.reshape(n_s * n_b, periods), sample_rate).reshape(n_s, n_b, periods)
        readings.append(short_term_readings(probe, gain + makeup, sample_rate, block))
    return [pooled_spread([r[i] for r in readings]) for i in range(len(compressors))]


def path_grid():
    """The amount path's grid: ``(position, offset_db, ratio_scale)`` rows; position 0 is the
    preset, positive is more compression (offset falling to -OFFSET_LIMIT_DB at position
    OFFSET_LIMIT_DB, then the ratio scale rising). Shape: (points, 3)."""
    offsets = np.arange(OFFSET_LIMIT_DB, -OFFSET_LIMIT_DB - 1e-9, -GRID_STEP_DB)
    scales = np.arange(1.0 + RATIO_SCALE_STEP, RATIO_SCALE_LIMIT + 1e-9, RATIO_SCALE_STEP)
    rows = [(-o, o, 1.0) for o in offsets]
    rows += [(OFFSET_LIMIT_DB + (k - 1.0) / RATIO_SCALE_STEP * GRID_STEP_DB, -OFFSET_LIMIT_DB, k) for k in scales]
    return np.array(rows)


def at_position(multiband, position):
    """``multiband`` moved to ``position`` on the amount path (interpolated between grid rows)."""
    grid = path_grid()
    offset = float(np.interp(position, grid[:, 0], grid[:, 1]))
    scale = float(np.interp(position, grid[:, 0], grid[:, 2]))
    threshold = tuple(round(float(min(max(t + offset, -60.0), 0.0)), 2) for t in multiband.threshold_db)
    ratio = tuple(round(float(min(1.0 + (r - 1.0) * scale, max(r, RATIO_LIMIT))), 3) for r in multiband.ratio)
    return dataclasses.replace(multiband, threshold_db=threshold, ratio=ratio), offset, scale


def _predict(input_spread_lu, probe_lu, base_lu):
    """The whole signal's predicted spread from the probes' spread with and without compression."""
    if base_lu < MIN_PROBE_SPREAD_LU:
        return input_spread_lu + probe_lu - base_lu
    return input_spread_lu * probe_lu / base_lu


def _choose(offsets, predicted, target, tolerance=None):
    """The path position where ``predicted`` (per grid position ``offsets``) meets ``target``
    within ``tolerance`` (LU; default TOLERANCE_LU): 0 (the preset) when it is already within it,
    else a linear interpolation at the crossing of the tolerance band's near edge nearest 0, else
    the grid point closest to the target. Returns ``(position, reached)``."""
    tolerance = TOLERANCE_LU if tolerance is None else tolerance
    at_preset = float(np.interp(0.0, offsets, predicted)) - target
    if abs(at_preset) <= tolerance:
        return 0.0, True
    target = target + math.copysign(tolerance, at_preset)
    d = predicted - target
    crossings = []
    for i in range(len(offsets) - 1):
        if d[i] == 0.0:
            crossings.append(offsets[i])
        elif d[i] * d[i + 1] < 0.0:
            crossings.append(offsets[i] + (offsets[i + 1] - offsets[i]) * d[i] / (d[i] - d[i + 1]))
    if d[-1] == 0.0:
        crossings.append(offsets[-1])
    if crossings:
        return min(crossings, key=abs), True
    return float(offsets[int(np.argmin(np.abs(d)))]), False


def rendered_spread(chain, signal, sample_rate, windows, level_lufs, target_lufs, limiter):
    """The probes' pooled spread through ``chain`` (the numba chain), the loudness stage's static
    gain and ``limiter`` (a :class:`~roomtone.plugins.limiter.TruePeakLimiter`); None without a reading.
    ``level_lufs``: the whole signal's integrated loudness (the probes' level change through the
    chain is added to it to estimate the loudness stage's gain)."""
    from roomtone.meter import integrated_loudness, short_term_loudness

    pieces = [np.ascontiguousarray(signal[:, first:stop], dtype=np.float32) for first, _, stop in windows]
    skips = [start - first for first, start, _ in windows]
    ins = [x[:, skip:] for x, skip in zip(pieces, skips)]
    # each probe through the chain, then through the limiter: both shared between two threads
    outs = list(zip(map_two(lambda x: Chain(chain).render(x, sample_rate), pieces), skips))
    change = (integrated_loudness(np.concatenate([y[:, skip:] for y, skip in outs], axis=1), sample_rate)
              - integrated_loudness(np.concatenate(ins, axis=1), sample_rate))
    if not np.isfinite(change):
        return None
    gain = np.float32(10.0 ** ((target_lufs - (level_lufs + change)) / 20.0))

    def limited(out):
        y, skip = out
        y = y * gain
        curve = limiter.gain_curve(limiter.detector(y, sample_rate), sample_rate)
        return short_term_loudness(y[:, skip:] * curve[None, skip:], sample_rate, hop_s=BLOCK_S)

    return pooled_spread(map_two(limited, outs))


def fit_multiband(multiband, eq, signal, sample_rate, target_spread_lu, input_spread_lu, *, segments=None,
                  probes=PROBES, probe_s=PROBE_S, delivery=None):
    """Move ``multiband`` along the amount path (thresholds, then ratios) so the output's
    short-term spread meets ``target_spread_lu`` (module docstring). ``signal``: (channels,
    samples) at the working level; ``eq``: the fitted EQ in front of the compressor (or None);
    ``input_spread_lu``: the whole signal's spread (after the EQ), or a
    :class:`~concurrent.futures.Future` of it. ``delivery``: ``(chain, index, level_lufs,
    target_lufs, limiter)`` to account for the final limiter (module docstring): the whole chain
    with this compressor at ``index``, the signal's integrated loudness, the delivery target and
    the limiter. Returns ``(multiband, report)``: the compressor with the new thresholds (clamped
    to their -60..0 dBFS range) and ratios, and a JSON-ready dict; the compressor comes back
    unchanged when the input is too short or too quiet for a reading."""
    windows = probe_windows(signal.shape[1], sample_rate, probes, probe_s, segments=segments)
    measured = measure_probes(multiband, eq, signal, sample_rate, windows) if windows else []
    base = probe_spread(multiband, measured, sample_rate) if measured else None
    if isinstance(input_spread_lu, Future):  # read in another thread while the probes were measured
        input_spread_lu = input_spread_lu.result()
    report = {"target_spread_lu": round(float(target_spread_lu), 2),
              "input_spread_lu": None if input_spread_lu is None else round(float(input_spread_lu), 2)}
    if input_spread_lu is None or base is None:
        report.update(threshold_offset_db=0.0, reachable=False,
                      note="too short or too quiet for a short-term spread: the compressor is left as the preset has it")
        return multiband, report
    positions = path_grid()[:, 0]
    spreads = settings_spreads([at_position(multiband, float(x))[0] for x in positions], measured, sample_rate)
    predicted = np.array([_predict(input_spread_lu, s if s is not None else base, base) for s in spreads])
    position, reachable = _choose(positions, predicted, float(target_spread_lu))
    flattening = None
    if delivery is not None:
        chain, index, level_lufs, target_lufs, limiter = delivery
        items = list(chain)
        items[index] = at_position(multiband, position)[0]
        rendered = rendered_spread(items, signal, sample_rate, windows, level_lufs, target_lufs, limiter)
        modelled = probe_spread(items[index], measured, sample_rate, 0.0)
        flattening = rendered / modelled if rendered is not None and modelled else None
        if flattening is not None:
            aim = float(target_spread_lu) / flattening
            report.update(after_compressor_ratio=round(flattening, 3), aimed_spread_lu=round(aim, 2))
            position, reachable = _choose(positions, predicted, aim)
    fitted, offset, scale = at_position(multiband, position)
    after = probe_spread(fitted, measured, sample_rate, 0.0)
    into_limiter = _predict(input_spread_lu, after if after is not None else base, base)
    report.update(threshold_offset_db=round(offset, 2), ratio_scale=round(scale, 3),
                  threshold_db=list(fitted.threshold_db), ratio=list(fitted.ratio),
                  preset_spread_lu=round(float(np.interp(0.0, positions, predicted)), 2),
                  predicted_spread_lu=round(float(into_limiter * (flattening or 1.0)), 2),
                  reachable=bool(reachable), probes=len(measured),
                  probe_s=round(float(sum(stop - start for _, start, stop in windows) / sample_rate), 2))
    if not reachable:
        report["note"] = ("the target needs more movement than the input has: a downward compressor cannot add it"
                          if predicted[0] < report.get("aimed_spread_lu", target_spread_lu) else
                          f"the target is flatter than the compressor reaches ({OFFSET_LIMIT_DB:g} dB lower thresholds, "
                          f"{RATIO_SCALE_LIMIT:g}x the ratios)")
    return fitted, report
