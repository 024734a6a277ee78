"""Fit the chain's parameters to a target (a reference track's features or a preset's
``[target]``) with optax, then hand back a numba :class:`~roomtone.mastering.presets.Preset`:
the real chain renders the fitted parameters and the loudness stage delivers them, as every master.

What is fitted, and how (the speed budget is "fit + render within 2x of a plain master"):

- EQ gains (the preset's shelves and bells plus nine octave-spaced bells, 50 Hz .. 12.8 kHz,
  Q 1.41; for a reference's curve eighteen half-octave bells, 40 Hz .. 14.5 kHz, Q 2:
  :func:`roomtone.mastering.targets.bells_for`) and the stereo width. Both are linear and time-invariant, so their effect on the
  features is exact in the frequency domain: the model's 1/3-octave band power is
  ``T_b * sum_bins |H_eq(f)|^2 P_in(f)`` (mid and side separately, the side scaled by
  ``width^2``), with ``H_eq`` the JAX chain's own EQ response (:func:`jax_chain.eq_response`) and
  ``P_in`` the whole input's Welch spectrum (summed over a few runs of bins per band,
  :func:`model_points`). ``T_b`` is the per-band power change of the nonlinear
  stages (multiband, saturation), measured by rendering a few excerpts (``excerpts`` x
  ``excerpt_s``) through the numba chain at the current parameters; the fit runs ``rounds``
  times, re-measuring ``T_b`` with the new EQ in between (the compressor's tonal effect depends a
  little on the EQ in front of it).
- Parameters stay inside their ``param(...)`` ranges by reparametrisation: ``gain_db = 12
  tanh(u)``, ``width = 2 sigmoid(v)``.
- Loss: mean square of the tonal difference with its mean removed (the loudness stage sets the
  level), plus 1 x the square of the EQ's K-weighted level change in dB (the EQ must keep the
  loudness into the compressor, whose thresholds are set at the working level), plus 0.3 x the mean square width difference (dB, per group), plus 1e-3 x the mean square
  gain (dB) so that bells do not fight each other, plus 10 x the mean square of any move against
  the target's direction: on octave-smoothed curves, where the target lies more than 0.5 dB above (or
  below) the input, the model's curve may fall short of it but not move the other way (a clipped loud master fitted to a reference with more sub-bass once moved 50 Hz down 7.5 dB).
  The width is then held for mono compatibility (:func:`roomtone.mastering.targets.bound_width`).

- Dynamics, between the first and second tonal rounds (so that the second re-measures the
  compressor's tonal effect at its new settings), when the target has a short-term spread and the chain a
  multiband compressor: its thresholds move by one offset so that the output's short-term
  loudness spread meets the target's (:mod:`roomtone.mastering.dynamics`: the kernel's own gain
  computer on excerpts through the fitted EQ, a grid search on the one offset; the report's
  ``dynamics`` section gives the target, the input's, the predicted and, in the master report,
  the output's measured spread). The crest factor is reported, not fitted: at a given loudness
  and ceiling the final limiter sets it.

Not fitted yet: the compressor's ratios, knee and times, the shelf and bell frequencies and Q.
"""

import dataclasses
import functools
import math
import time
from concurrent.futures import Future

import jax
import jax.numpy as jnp
import numpy as np
import optax

from roomtone.mastering import dynamics
from roomtone.plugins import twin as jax_chain
from roomtone.mastering import targets as tg
from roomtone.plugins import Equalizer, StereoWidth
from roomtone.concurrency import side_executor
from roomtone.models import runtime
from roomtone.processor import Chain

# Direction: on the octave-smoothed curves (each band with its two neighbours), wherever the target
# asks a band up or down by more than DIRECTION_ASK_DB, the model's move of that band against it
# beyond DIRECTION_TOL_DB costs DIRECTION_WEIGHT x its square: the fit may fall short, never go the
# other way.
DIRECTION_WEIGHT = 10.0
DIRECTION_ASK_DB = 0.5
DIRECTION_TOL_DB = 0.0
GAIN_LIMIT_DB = 12.0
WIDTH_LIMIT = 2.0
ANALYSIS_HZ = (35.0, 18000.0)
WIDTH_WEIGHT = 0.3
GAIN_PENALTY = 1e-3
LEVEL_WEIGHT = 1.0
SETTLE_S = 0.5  # each excerpt's render from zero state: this much at its start is left out of the analysis


def excerpt_starts(n, sample_rate, count, length_s):
    """Start samples of ``count`` evenly spread excerpts of ``length_s`` (fewer for a short
    signal; one covering it all when it is shorter than one excerpt)."""
    length = int(length_s * sample_rate)
    if n <= length:
        return [0], n
    count = max(1, min(count, n // length))
    return [int(round(s)) for s in np.linspace(0, n - length, count + 2)[1:-1]] if count > 1 else [(n - length) // 2], length


def with_fit_stages(chain, stereo, bells_hz=tg.FIT_BELLS_HZ, bell_q=tg.FIT_BELL_Q):
    """The chain with an EQ carrying the fitting bells (:func:`roomtone.mastering.targets.bells_for`;
    numpy-only there, so the job picks them before JAX is imported) and a width stage for stereo."""
    items = list(chain)
    kinds = [p.kind for p in items]
    if "eq" not in kinds:
        items.insert(0, Equalizer())
    index = [p.kind for p in items].index("eq")
    eq = items[index]
    have = {(round(f, 1), round(q, 3)) for f, _, q in eq.bands}  # a proposal's bells are not added twice
    bands = tuple(eq.bands) + tuple((f, 0.0, bell_q) for f in bells_hz if (round(f, 1), round(bell_q, 3)) not in have)
    items[index] = dataclasses.replace(eq, bands=bands)
    if stereo and "width" not in kinds:
        at = [p.kind for p in items].index("saturation") if "saturation" in kinds else len(items)
        items.insert(at, StereoWidth())
    return Chain(items)


def _render_round(chain, eq_index, pieces, sample_rate):
    """The excerpts through the chain's EQ, and those through the rest of the chain: ``(eq_in, outs)``."""
    eq = chain[eq_index]
    eq_in = [np.ascontiguousarray(eq.process(x, sample_rate) if not eq.bypassed else x, dtype=np.float32)
             for x in pieces]
    rest = Chain([p for i, p in enumerate(chain) if i != eq_index])
    return eq_in, [rest.render(x, sample_rate) for x in eq_in]


def _band_powers(excerpts, sample_rate, bands, keep):
    """Per-band (mid, side, total) power of the excerpts, their first SETTLE_S left out."""
    skip = int(SETTLE_S * sample_rate)
    joined = np.concatenate([x[:, skip:] if x.shape[1] > 4 * skip else x for x in excerpts], axis=1)
    _, total, mid, side = tg.spectra(joined, sample_rate)
    total = bands @ total[keep]
    if mid is None:
        return None, None, total
    return bands @ mid[keep], bands @ side[keep], total


def eq_power(u, data, sample_rate):
    """``(gains_db, |H_eq|^2)``: the fitted EQ's gains for the unconstrained ``u`` (shelves, then
    bells) and its power response on the analysis bins (``data``: the EQ template and ``z1``, ``z2``)."""
    gains = GAIN_LIMIT_DB * jnp.tanh(u)
    template = data["eq"]
    eq = dict(template, low_shelf_db=gains[0], high_shelf_db=gains[1], bands=template["bands"].at[:, 1].set(gains[2:]))
    return gains, jnp.abs(jax_chain.eq_response(eq, sample_rate, data["z1"], data["z2"])) ** 2


def model_powers(theta, data, sample_rate, stereo):
    """The chain's band powers under the fit's linear model (module docstring) for ``theta``:
    ``(gains_db, total, flat, mid, side)``, ``flat`` the total without the EQ (mid/side None for
    mono). Shape: each (bands,)."""
    gains, h2 = eq_power(theta["u"], data, sample_rate)
    bands = data["bands"]
    if not stereo:
        total = data["t_total"] * (bands @ (h2 * data["p_total"]))
        return gains, total, data["t_total"] * (bands @ data["p_total"]), None, None
    width = WIDTH_LIMIT * jax.nn.sigmoid(theta["v"])
    mid = data["t_mid"] * (bands @ (h2 * data["p_mid"]))
    side = data["t_side"] * (width / data["width_now"]) ** 2 * (bands @ (h2 * data["p_side"]))
    flat = 2.0 * (data["t_mid"] * (bands @ data["p_mid"]) + data["t_side"] * (bands @ data["p_side"]))
    return gains, 2.0 * (mid + side), flat, mid, side


def loss(theta, data, sample_rate, stereo, has_width):
    """The fit's loss (module docstring) for the unconstrained ``theta`` = ``{"u": gains, "v":
    width}``; ``data`` holds the spectra, band matrices, the measured ``T_b`` and the target."""
    gains, total, flat, mid, side = model_powers(theta, data, sample_rate, stereo)
    d = normalised(10.0 * jnp.log10(total + 1e-20), data["k2"]) - data["target_tonal"]
    # The EQ keeps the loudness into the compressor (its thresholds are set at the working level):
    # the K-weighted level change counts against the fit.
    level_change = 10.0 * jnp.log10(jnp.sum(data["k2"] * total) / jnp.sum(data["k2"] * flat))
    value = jnp.mean(d ** 2) + GAIN_PENALTY * jnp.mean(gains ** 2) + LEVEL_WEIGHT * level_change ** 2
    if "ask_sign" in data:  # never against the direction the target asks (octave-smoothed; 0 where it asks little)
        moved = data["smooth"] @ (normalised(10.0 * jnp.log10(total + 1e-20), data["k2"]) - data["input_tonal"])
        value = value + DIRECTION_WEIGHT * jnp.mean(jax.nn.relu(-data["ask_sign"] * moved - DIRECTION_TOL_DB) ** 2)
    if stereo and has_width:
        ratio = 10.0 * jnp.log10((data["groups"] @ side + 1e-20) / (data["groups"] @ mid + 1e-20))
        value = value + WIDTH_WEIGHT * jnp.mean((ratio - data["target_width"]) ** 2)
    return value


def normalised(curve_db, k2):
    """A 1/3-octave curve less its loudness proxy: the K-weighted sum of its band powers
    (``k2``: BS.1770-4 K-weighting power at the band centres), as the target curve is less its
    integrated loudness, so the fit aims at the loudness-normalised distance itself."""
    xp = np if isinstance(curve_db, np.ndarray) and isinstance(k2, np.ndarray) else jnp  # numpy outside the traced loss
    return curve_db - 10.0 * xp.log10(xp.sum(k2 * 10.0 ** (curve_db / 10.0)))


def k_weighting_power(sample_rate):
    from roomtone import filters

    sos = filters.k_weighting_sos(sample_rate)
    w = 2.0 * np.pi * np.asarray(tg.THIRD_OCTAVE_HZ) / sample_rate
    z = np.exp(-1j * w)
    h = np.ones_like(z)
    for b0, b1, b2, _, a1, a2 in sos:
        h *= (b0 + b1 * z + b2 * z * z) / (1 + a1 * z + a2 * z * z)
    return (np.abs(h) ** 2).astype(np.float32)


_OPT = optax.adam(0.08)


def _tonal_rms(tonal, target, k2):
    """The loudness-normalised distance (dB RMS) of ``tonal`` to ``target`` (numpy)."""
    d = normalised(tonal, k2) - target
    return float(np.sqrt(np.mean(d ** 2)))


@functools.partial(jax.jit, static_argnames=("sample_rate", "stereo", "has_width", "steps"))
def _optimise(theta, data, sample_rate, stereo, has_width, steps):
    """``steps`` Adam steps in one compiled ``lax.scan``: ``(theta, losses)``."""
    grad = jax.value_and_grad(loss)

    def step(carry, _):
        th, st = carry
        value, grads = grad(th, data, sample_rate, stereo, has_width)
        updates, st = _OPT.update(grads, st, th)
        return (optax.apply_updates(th, updates), st), value

    (theta, _), values = jax.lax.scan(step, (theta, _OPT.init(theta)), None, length=steps)
    return theta, values


def run_optimise(theta, data, sample_rate, stereo, has_width, steps):
    """:func:`_optimise`, traced once per machine (:func:`roomtone.models.runtime.exported`: its
    StableHLO kept beside JAX's compilation cache, keyed by this module's and the JAX chain's
    source, optax's version and the shapes) instead of once per process. Returns ``(theta, losses)``."""
    static = {"sample_rate": int(sample_rate), "stereo": bool(stereo), "has_width": bool(has_width), "steps": int(steps)}
    call = runtime.exported(f"fit._optimise optax {optax.__version__}", _optimise, (theta, data), static,
                            sources=(__file__, jax_chain.__file__))
    return call(theta, data)


def ask_signs(input_tonal, target_tonal):
    """Per band, +1 / -1 where the octave-smoothed target lies more than :data:`DIRECTION_ASK_DB`
    above / below the octave-smoothed input (both loudness-normalised), else 0. Shape: (27,)."""
    ask = tg.octave_smoothed(np.asarray(target_tonal, np.float64) - np.asarray(input_tonal, np.float64))
    return (np.sign(ask) * (np.abs(ask) > DIRECTION_ASK_DB)).astype(np.float32)


def _round_inputs(eq, bins_z, bands, groups, k2, powers, width_now, tgt):
    """``(theta, data)`` of one round's :func:`_optimise`: the EQ's gains and the width as the
    unconstrained parameters, and the model's arrays (``powers``: p_total, p_mid, p_side,
    t_total, t_mid, t_side on the kept bins)."""
    f32 = lambda a: jnp.asarray(np.asarray(a, dtype=np.float32))  # noqa: E731
    data = {"eq": jax_chain.params_from_chain(Chain([eq]))["0:eq"], "z1": bins_z[0], "z2": bins_z[1],
            "bands": f32(bands), "groups": f32(groups), "k2": k2, "p_total": powers[0], "p_mid": powers[1],
            "p_side": powers[2], "t_total": powers[3], "t_mid": powers[4], "t_side": powers[5],
            "width_now": f32(max(width_now, 1e-3)), "target_tonal": tgt["tonal"], "target_width": tgt["width"],
            "input_tonal": tgt["input"], "ask_sign": tgt["ask_sign"], "smooth": f32(tg.smoothing_matrix())}
    gains0 = np.array([eq.low_shelf_db, eq.high_shelf_db] + [g for _, g, _ in eq.bands]) / GAIN_LIMIT_DB
    theta = {"u": f32(np.arctanh(np.clip(gains0, -0.999, 0.999))),
             "v": f32(math.log(max(width_now, 1e-3) / max(WIDTH_LIMIT - width_now, 1e-3)))}
    return theta, data


MODEL_POINTS_PER_BAND = 12  # the model's frequency points per 1/3-octave band (chunks of its bins)


def model_points(freqs, bands, power=None, per_band=MODEL_POINTS_PER_BAND):
    """The fit's model evaluates the EQ at a few points per band instead of every analysis bin
    (3337 bins at 44.1 kHz, most of them in the top octaves): each band's bins are cut into at most
    ``per_band`` runs of neighbours, a run's power is the sum of its bins' and its response is the
    EQ's at the run's mean frequency weighted by ``power`` (the input's spectrum: music falls
    steeply in the top bands, so an unweighted mean is off by up to 0.08 dB). The EQ's sections
    are an octave or more wide, so within such a run ``|H|^2`` barely moves: within 0.02 dB of the
    per-bin model over the fit's +-12 dB (``tests/test_jax_chain.py``). ``freqs``: (bins,) Hz;
    ``bands``: (bands, bins) membership; ``power``: (bins,) or None (unweighted). Returns
    ``(centres_hz (points,), gather (points, bins), point_bands (bands, points))``."""
    runs, owner = [], []
    for b in range(bands.shape[0]):
        members = np.flatnonzero(bands[b] > 0)
        runs += np.array_split(members, min(per_band, members.size))
        owner += [b] * min(per_band, members.size)
    gather = np.zeros((len(runs), bands.shape[1]))
    centres = np.empty(len(runs))
    for i, run in enumerate(runs):
        gather[i, run] = 1.0
        weights = None if power is None or not np.sum(power[run]) > 0 else power[run]
        centres[i] = np.average(freqs[run], weights=weights)
    point_bands = np.zeros((bands.shape[0], len(runs)))
    point_bands[owner, np.arange(len(runs))] = 1.0
    return centres, gather, point_bands


def _analysis_bins(sample_rate):
    """``(freqs, keep)``: the Welch analysis's bin frequencies (Hz) and the ones the fit models."""
    freqs = np.fft.rfftfreq(tg.welch_nfft(sample_rate), 1.0 / sample_rate)
    return freqs, (freqs >= ANALYSIS_HZ[0]) & (freqs <= min(ANALYSIS_HZ[1], 0.45 * sample_rate))


def _bins_z(freqs, sample_rate):
    w = 2.0 * np.pi * freqs / sample_rate
    return (jnp.asarray(np.exp(-1j * w).astype(np.complex64)), jnp.asarray(np.exp(-2j * w).astype(np.complex64)))


def warm_up(chain, sample_rate, channels, has_width, steps=250, bells=(tg.FIT_BELLS_HZ, tg.FIT_BELL_Q)):
    """Trace and load (from JAX's compilation cache) the fit's optimiser for a fit of ``chain`` at
    ``sample_rate`` with ``channels``, on placeholder arrays of the real shapes, so that a fit
    that follows skips that cost (about 0.4 s of a 2-core CPU per process). The ``master`` command
    runs this in a background thread while the input is metered (:func:`roomtone.startup.after_imports`). Returns the seconds spent."""
    started = time.perf_counter()
    stereo = channels >= 2
    chain = with_fit_stages(chain, stereo, *bells)
    freqs, keep = _analysis_bins(sample_rate)
    bands = tg.band_matrix(freqs[keep])
    centres, _, point_bands = model_points(freqs[keep], bands)
    # placeholders built in numpy and handed over (a jnp.ones would compile a computation of its own)
    ones = jnp.asarray(np.ones(centres.size, dtype=np.float32))  # per model point
    per_band = jnp.asarray(np.ones(bands.shape[0], dtype=np.float32))
    scalar = lambda v: jnp.asarray(np.float32(v))  # noqa: E731  (fit_chain's placeholders for mono)
    powers = (ones, ones if stereo else scalar(0.0), ones if stereo else scalar(0.0), per_band,
              per_band if stereo else scalar(1.0), per_band if stereo else scalar(1.0))
    zeros = jnp.asarray(np.zeros(len(tg.THIRD_OCTAVE_HZ), np.float32))
    tgt = {"tonal": zeros, "width": jnp.asarray(np.zeros(len(tg.WIDTH_GROUPS_HZ), np.float32)), "input": zeros,
           "ask_sign": zeros}
    k2 = jnp.asarray(k_weighting_power(sample_rate).astype(np.float32))
    eq = chain[[p.kind for p in chain].index("eq")]
    theta, data = _round_inputs(eq, _bins_z(centres, sample_rate), point_bands, tg.group_matrix(), k2, powers, 1.0, tgt)
    theta, values = run_optimise(theta, data, sample_rate, stereo, has_width, steps)
    np.asarray(values)
    return time.perf_counter() - started


def segment_starts(segments, sample_rate, length_s):
    """One excerpt of at most ``length_s`` centred in each ``(start, stop)`` segment (samples):
    ``(starts, lengths)``."""
    starts, lengths = [], []
    for start, stop in segments:
        length = min(int(length_s * sample_rate), int(stop) - int(start))
        starts.append(int(start) + (int(stop) - int(start) - length) // 2)
        lengths.append(length)
    return starts, lengths


def _fit_dynamics(chain, eq_index, signal, sample_rate, preset, target, segments, delivery):
    """Fit ``chain``'s multiband compressor (in place) to ``target``'s short-term spread
    (:mod:`roomtone.mastering.dynamics`); returns its report, or None when there is nothing to fit."""
    kinds = [p.kind for p in chain]
    if target.spread_lu is None or "multiband" not in kinds or chain[kinds.index("multiband")].bypassed:
        return None
    mb_index = kinds.index("multiband")
    front = chain[eq_index] if eq_index < mb_index and not chain[eq_index].bypassed else None
    # The spread going into the compressor: the fitted EQ can move it (a section's loudness
    # depends on its spectrum), so it is read after the EQ, on the whole signal, in the meter's
    # own K-weighting pass (the EQ's sections run first; the EQ'd signal is never built).
    # That pass (one K-weighting of the whole signal, the kernels release the GIL) runs in a second
    # thread beside the probes' measurement, which does not need it.
    side = side_executor("spread")
    spread_in = side.submit(tg.short_term_spread, signal, sample_rate,
                            pre_sos=front.sos(sample_rate) if front is not None else None)
    side.shutdown(wait=False)
    deliver = None
    if delivery is not None:
        from roomtone.meter import integrated_loudness
        from roomtone.plugins import TruePeakLimiter

        limiter = TruePeakLimiter(ceiling_dbtp=delivery[1], lookahead_ms=preset.lookahead_ms,
                                  release_ms=preset.release_ms)
        level = delivery[2] if len(delivery) > 2 and delivery[2] is not None else integrated_loudness(signal, sample_rate)
        deliver = (chain, mb_index, level, delivery[0], limiter)
    chain[mb_index], report = dynamics.fit_multiband(
        chain[mb_index], front, signal, sample_rate, target.spread_lu, spread_in, segments=segments,
        delivery=deliver)
    return report


def _excerpt_pieces(signal, sample_rate, segments, excerpts, excerpt_s):
    """The excerpts the nonlinear stages are measured on (:func:`fit_chain`): ``(starts, lengths,
    pieces)``, ``excerpts`` spread over ``signal``, or one centred in each of ``segments``."""
    if segments is None:
        starts, length = excerpt_starts(signal.shape[1], sample_rate, excerpts, excerpt_s)
        lengths = [length] * len(starts)
    else:
        starts, lengths = segment_starts(segments, sample_rate, excerpt_s)
    return starts, lengths, [np.ascontiguousarray(signal[:, s:s + n]) for s, n in zip(starts, lengths)]


def _round_powers(eq_in, outs, sample_rate, bands, keep, gather, whole, stereo):
    """A round's power inputs of the optimiser: the whole input's total, mid and side powers at the
    model points (``whole``: its spectra's ``(total, mid, side)``), and the ratios of the chain's
    output to the EQ's input band powers on the excerpts (total, mid, side; 1 for mono)."""
    f32 = lambda a: jnp.asarray(np.asarray(a, dtype=np.float32))  # noqa: E731
    total, mid, side = whole
    m_in, s_in, t_in = _band_powers(eq_in, sample_rate, bands, keep)
    m_out, s_out, t_out = _band_powers(outs, sample_rate, bands, keep)
    ratio = lambda a, b: f32(np.clip(a / np.maximum(b, 1e-30), 1e-3, 1e3)) if a is not None else f32(1.0)  # noqa: E731
    return (f32(gather @ total[keep]), f32(gather @ mid[keep] if stereo else 0.0),
            f32(gather @ side[keep] if stereo else 0.0),
            ratio(t_out, t_in), ratio(m_out, m_in), ratio(s_out, s_in) if stereo else f32(1.0))


def _apply_round(chain, eq_index, width_index, theta, mid, side, keep):
    """One round's optimum ``theta`` written into ``chain`` (in place): the EQ's gains (dB, rounded
    as the report shows them) and, with a ``width_index`` (stereo), the width held under the
    mono-compatibility bound (:func:`~roomtone.mastering.targets.bound_width`, from the ``mid`` and
    ``side`` powers of the bins ``keep`` selects) whatever the target asks. Returns the bound's
    report (None for mono)."""
    eq = chain[eq_index]
    gains = np.asarray(GAIN_LIMIT_DB * np.tanh(np.asarray(theta["u"])), dtype=np.float64)
    new_bands = tuple((f, round(float(g), 3), q) for (f, _, q), g in zip(eq.bands, gains[2:]))
    chain[eq_index] = dataclasses.replace(eq, low_shelf_db=round(float(gains[0]), 3),
                                          high_shelf_db=round(float(gains[1]), 3), bands=new_bands)
    if width_index is None:
        return None
    width, width_report = tg.bound_width(float(WIDTH_LIMIT * jax.nn.sigmoid(theta["v"])), mid[keep], side[keep],
                                         WIDTH_LIMIT)
    chain[width_index] = dataclasses.replace(chain[width_index], width=round(min(max(width, 0.0), 2.0), 4))
    return width_report


def fit_chain(signal, sample_rate, preset, target, *, excerpts=4, excerpt_s=6.0, steps=250, rounds=2,
              segments=None, delivery=None, measured=None):
    """Fit ``preset``'s chain to ``target`` (:class:`~roomtone.mastering.targets.MatchTarget`) on
    ``signal``, the input at the working level (after the input trim).

    ``segments``: ``[(start, stop)]`` sample ranges when ``signal`` is pieces of several tracks
    joined end to end (an album, :mod:`roomtone.mastering.album`): the nonlinear stages' tonal
    change is then measured on one excerpt of ``excerpt_s`` centred in each piece (``excerpts`` is
    not used), so no excerpt straddles two tracks.

    ``delivery``: ``(target_lufs, ceiling_dbtp[, level_lufs])`` of the loudness stage that will
    follow, so the dynamics fit can count the final limiter's flattening
    (:mod:`roomtone.mastering.dynamics`); ``level_lufs``, the signal's integrated loudness where the
    caller knows it, saves a metering pass.

    ``measured``: the signal's :func:`~roomtone.mastering.targets.spectra` (or a
    :class:`~concurrent.futures.Future` of them) where the caller has them.

    Shape: signal (channels, samples) float32. Returns ``(preset, report)``: a new
    :class:`~roomtone.mastering.presets.Preset` with the fitted chain (rendered by numba) and a
    JSON-ready dict (the loss per round, the model's tonal distance before and after, the fitted
    parameters, the seconds spent).
    """
    started = time.perf_counter()
    stereo = signal.shape[0] >= 2
    chain = with_fit_stages(preset.chain, stereo, *tg.bells_for(target))
    # The whole input's spectra (numpy's FFT releases the GIL) in a second thread beside the first
    # round's excerpt render, which does not need them.
    whole = measured
    if whole is None:
        pool = side_executor("spectra")
        whole = pool.submit(tg.spectra, signal, sample_rate)
        pool.shutdown(wait=False)
    starts, lengths, pieces = _excerpt_pieces(signal, sample_rate, segments, excerpts, excerpt_s)
    eq_index = [p.kind for p in chain].index("eq")
    first = _render_round(chain, eq_index, pieces, sample_rate)
    # what needs only the analysis bins, while the whole input's spectra may still be on their way
    freqs, keep = _analysis_bins(sample_rate)
    bands = tg.band_matrix(freqs[keep])
    groups = tg.group_matrix()
    k2_np = k_weighting_power(sample_rate)
    target_np = normalised(np.asarray(target.tonal_db, dtype=np.float32), k2_np)
    _, total, mid, side = whole.result() if isinstance(whole, Future) else whole
    centres, gather, point_bands = model_points(freqs[keep], bands, total[keep])
    bins_z = _bins_z(centres, sample_rate)
    has_width = stereo and target.width_db is not None
    f32 = lambda a: jnp.asarray(np.asarray(a, dtype=np.float32))  # noqa: E731
    in_tonal = 10.0 * np.log10(bands @ total[keep] + 1e-20)
    input_np = normalised(in_tonal, k2_np)
    tgt = {"tonal": f32(target_np), "width": f32(target.width_db if has_width else np.zeros(len(tg.WIDTH_GROUPS_HZ))),
           "input": f32(input_np), "ask_sign": f32(ask_signs(input_np, target_np))}
    k2 = f32(k2_np)
    width_index = [p.kind for p in chain].index("width") if stereo else None
    history, dyn_report, width_report = [], None, None
    before = _tonal_rms(in_tonal, target_np, k2_np)
    for round_index in range(rounds):
        if round_index == 1:  # the compressor fitted between the tonal rounds: the next re-measures its tonal effect
            dyn_report = _fit_dynamics(chain, eq_index, signal, sample_rate, preset, target, segments, delivery)
        eq = chain[eq_index]
        eq_in, outs = first if round_index == 0 else _render_round(chain, eq_index, pieces, sample_rate)
        width_now = chain[width_index].width if stereo else 1.0
        powers = _round_powers(eq_in, outs, sample_rate, bands, keep, gather, (total, mid, side), stereo)
        theta, data = _round_inputs(eq, bins_z, point_bands, groups, k2, powers, width_now, tgt)
        theta, values = run_optimise(theta, data, sample_rate, stereo, has_width, steps)
        values = np.asarray(values)
        history.append({"round": round_index + 1, "loss_first": round(float(values[0]), 4),
                        "loss_last": round(float(values[-1]), 4)})
        width_report = _apply_round(chain, eq_index, width_index, theta, mid, side, keep)
    # Tidy: drop bells the fit left near 0 dB (a 0 dB bell is skipped by the numba EQ anyway).
    eq = chain[eq_index]
    chain[eq_index] = dataclasses.replace(eq, bands=tuple(b for b in eq.bands if abs(b[1]) >= 0.05))
    if rounds < 2:
        dyn_report = _fit_dynamics(chain, eq_index, signal, sample_rate, preset, target, segments, delivery)
    fitted = dataclasses.replace(preset, chain=chain, name=f"{preset.name}+fit",
                                 description=f"{preset.description}; fitted to {', '.join(target.sources)}")
    report = {"target": target.as_dict(), "base_preset": preset.name, "excerpts_s": [round(s / sample_rate, 2) for s in starts],
              "excerpt_length_s": round(max(lengths) / sample_rate, 2), "rounds": history,
              "input_tonal_distance_db": round(before, 3), "dynamics": dyn_report, "width_bound": width_report,
              "seconds": round(time.perf_counter() - started, 3)}
    return fitted, report
