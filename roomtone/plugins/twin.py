"""The processor chain in JAX, differentiable in every parameter: the numba processors of
:mod:`roomtone.plugins` mirrored parameter for parameter, with the same names and units. Each
processor's twin lives beside it (``twin_params``, ``from_twin``, ``render_twin``); this module is
their shared toolbox (the biquad designs and responses, the compressor's gain computer, the 2x
curve) and the loop that runs a chain of them.

Imported only where a chain is fitted (``--reference``, a preset's ``[target]``); a plain master
never imports JAX.

Parameters are a dict ``{"0:eq": {...}, "1:multiband": {...}, ...}`` keyed by chain position and
kind (the keys are the static structure; the leaves are float32 arrays), each inner dict holding
the processor's own fields: ``eq`` (``low_shelf_hz``, ``low_shelf_db``, ``high_shelf_hz``,
``high_shelf_db``, ``bands`` of shape (B, 3) = ``freq_hz, gain_db, q``), ``multiband``
(``crossovers_hz`` (K,), ``threshold_db``, ``ratio``, ``makeup_db`` (K + 1,), ``attack_ms``,
``release_ms``, ``knee_db``), ``width`` (``width``, ``bass_mono_hz``), ``saturation``
(``drive_db``, ``mix``). :func:`params_from_chain` and :func:`chain_from_params` convert to and
from a numba :class:`~roomtone.processor.Chain`.

How each stage is computed (and where it differs from the numba render):

- Filters (EQ shelves and bells, the LR4 crossovers and their all-passes, the side high-pass):
  the same RBJ biquad designs (:mod:`roomtone.filters`), applied in the frequency domain: the
  exact frequency response of each section, ``H(e^jw) = (b0 + b1 z^-1 + b2 z^-2) / (1 + a1 z^-1 +
  a2 z^-2)``, is evaluated on the bins of one real FFT of the whole (zero-padded) excerpt. With the
  padding longer than the impulse responses' decay this is the recursive filter from zero state
  (the numba render) up to the truncated tail: measured under -80 dB relative error for the
  shipped presets (``tests/test_jax_chain.py``). A ``jax.lax.scan`` over samples would be exact but
  about 100x slower on CPU.
- Multiband gain computer: the numba kernel's own algorithm, not an approximation: per control
  period (``round(sample_rate / 3000)`` samples) the peak over the period and the channels, the
  soft-knee static curve (already continuous with a continuous slope), and the branching one-pole
  smoother in dB as a ``jax.lax.scan`` over control periods (branch selection is a ``where``:
  differentiable almost everywhere, through the branch taken), then the linear gain interpolated
  across each period. The period's max is differentiable through its argmax (a subgradient).
- Stereo width: mid/side, side x ``width``, side high-passed at ``bass_mono_hz`` (frequency
  domain, skipped exactly at 0 Hz as the numba processor skips it).
- Saturation: the kernel's [7/6] Pade tanh curve at 2x, with the same 31-tap half-band filter,
  applied as its zero-phase response on the FFT bins (the kernel removes the filter delay, so the
  two are the same operation). The curve's clip to [-1, 1] has zero slope beyond the clip (only
  reached above |v| = 4.9).

Shape: audio (channels, samples) float32; channels beyond the first two pass the width stage
unchanged, as in the numba processor.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from roomtone import filters
import roomtone.plugins  # noqa: F401 - registers every processor kind
from roomtone.plugins import dynamics
from roomtone.plugins.dynamics import control_block
from roomtone.processor import PROCESSORS, Chain

LN10_20 = math.log(10.0) / 20.0


# ---------------------------------------------------------------- parameters <-> numba chain

def fittable(kind):
    """True when processors of ``kind`` have a JAX twin (``render_twin``)."""
    return hasattr(PROCESSORS.get(kind), "render_twin")


def params_from_chain(chain):
    """The JAX parameter dict of a numba :class:`Chain`: each processor's ``twin_params()`` under
    ``"<index>:<kind>"``. A processor without a JAX twin is refused (ValueError)."""
    params = {}
    for index, processor in enumerate(chain):
        if not fittable(processor.kind):
            twins = ", ".join(sorted(k for k in PROCESSORS if fittable(k)))
            raise ValueError(f"the JAX chain has no {processor.kind!r} stage (it mirrors {twins})")
        params[f"{index}:{processor.kind}"] = {name: jnp.asarray(np.asarray(value, dtype=np.float32))
                                               for name, value in processor.twin_params().items()}
    return params


def chain_from_params(params):
    """The numba :class:`Chain` for a JAX parameter dict (each processor's ``from_twin``: values
    clamped into each parameter's range and rounded, so the preset file written from it validates)."""
    processors = []
    for key in sorted(params, key=lambda k: int(k.split(":")[0])):
        p = {name: np.asarray(value, dtype=np.float64) for name, value in params[key].items()}
        processors.append(PROCESSORS[key.split(":")[1]].from_twin(p))
    return Chain(processors)


# ---------------------------------------------------------------- biquad designs (jnp, as roomtone.filters)

def safe_hz(freq_hz, sample_rate):
    return jnp.minimum(freq_hz, 0.45 * sample_rate)


def peaking(freq_hz, gain_db, q, sample_rate):
    """RBJ peaking EQ as ``(b0, b1, b2, a1, a2)`` (:func:`roomtone.filters.peaking_sos`)."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * jnp.pi * freq_hz / sample_rate
    alpha = jnp.sin(w0) / (2.0 * q)
    cw = jnp.cos(w0)
    a0 = 1 + alpha / a
    return ((1 + alpha * a) / a0, -2 * cw / a0, (1 - alpha * a) / a0, -2 * cw / a0, (1 - alpha / a) / a0)


def shelf(freq_hz, gain_db, sample_rate, kind):
    """RBJ shelf, slope 1 (:func:`roomtone.filters.shelf_sos`)."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * jnp.pi * freq_hz / sample_rate
    cw, sw = jnp.cos(w0), jnp.sin(w0)
    alpha = sw / 2.0 * jnp.sqrt(2.0)
    sa = 2.0 * jnp.sqrt(a) * alpha
    if kind == "low":
        b0, b1, b2 = a * ((a + 1) - (a - 1) * cw + sa), 2 * a * ((a - 1) - (a + 1) * cw), a * ((a + 1) - (a - 1) * cw - sa)
        a0, a1, a2 = (a + 1) + (a - 1) * cw + sa, -2 * ((a - 1) + (a + 1) * cw), (a + 1) + (a - 1) * cw - sa
    else:
        b0, b1, b2 = a * ((a + 1) + (a - 1) * cw + sa), -2 * a * ((a - 1) + (a + 1) * cw), a * ((a + 1) + (a - 1) * cw - sa)
        a0, a1, a2 = (a + 1) - (a - 1) * cw + sa, 2 * ((a - 1) - (a + 1) * cw), (a + 1) - (a - 1) * cw - sa
    return (b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0)


def butterworth2(freq_hz, sample_rate, kind):
    """2nd-order Butterworth (:func:`roomtone.filters.butterworth2_sos`)."""
    w0 = 2.0 * jnp.pi * freq_hz / sample_rate
    cw = jnp.cos(w0)
    alpha = jnp.sin(w0) / jnp.sqrt(2.0)
    a0 = 1 + alpha
    if kind == "low":
        b = ((1 - cw) / 2, 1 - cw, (1 - cw) / 2)
    else:
        b = ((1 + cw) / 2, -(1 + cw), (1 + cw) / 2)
    return (b[0] / a0, b[1] / a0, b[2] / a0, -2 * cw / a0, (1 - alpha) / a0)


def allpass_lr4(freq_hz, sample_rate):
    """The all-pass equal to LR4 low + high (:func:`roomtone.filters.allpass_lr4_sos`)."""
    _, _, _, a1, a2 = butterworth2(freq_hz, sample_rate, "low")
    return (a2, a1, jnp.ones_like(a1), a1, a2)


def response(coefs, z1, z2):
    """Complex response of one section at ``z1 = e^-jw``, ``z2 = e^-2jw``."""
    b0, b1, b2, a1, a2 = coefs
    return (b0 + b1 * z1 + b2 * z2) / (1.0 + a1 * z1 + a2 * z2)


def _unit_circle(n_fft, sample_rate):
    w = 2.0 * np.pi * np.arange(n_fft // 2 + 1) / n_fft
    return jnp.asarray(np.exp(-1j * w).astype(np.complex64)), jnp.asarray(np.exp(-2j * w).astype(np.complex64))


def eq_response(p, sample_rate, z1, z2):
    """The EQ's complex response on the bins ``z1, z2``. A 0 dB section is exactly flat, as the
    numba EQ skips it; a bell at or above 0.45 x the sample rate is skipped as there."""
    h = response(shelf(safe_hz(p["low_shelf_hz"], sample_rate), p["low_shelf_db"], sample_rate, "low"), z1, z2)
    h = h * response(shelf(safe_hz(p["high_shelf_hz"], sample_rate), p["high_shelf_db"], sample_rate, "high"), z1, z2)
    bands = p["bands"]
    if bands.shape[0]:  # every bell at once: (B, 1) against the bins
        freq, gain, q = bands[:, 0:1], bands[:, 1:2], bands[:, 2:3]
        hb = response(peaking(jnp.minimum(freq, 0.449 * sample_rate), gain, q, sample_rate), z1, z2)
        h = h * jnp.prod(jnp.where(freq < 0.45 * sample_rate, hb, 1.0), axis=0)
    return h


def band_responses(crossovers_hz, sample_rate, z1, z2):
    """Complex responses of the multiband split's bands (lowest first), as the kernel builds them:
    at crossover k the LR4 low-pass takes the band (then all-passed at every higher crossover),
    the rest goes on as ``A_k - L_k``. Shape: (K + 1, bins)."""
    n_x = crossovers_hz.shape[0]
    lows, alls = [], []
    for k in range(n_x):
        f = safe_hz(crossovers_hz[k], sample_rate)
        lp = response(butterworth2(f, sample_rate, "low"), z1, z2)
        lows.append(lp * lp)
        alls.append(response(allpass_lr4(f, sample_rate), z1, z2))
    rest = jnp.ones_like(z1)
    out = []
    for k in range(n_x):
        band = rest * lows[k]
        for h in range(k + 1, n_x):
            band = band * alls[h]
        out.append(band)
        rest = rest * (alls[k] - lows[k])
    out.append(rest)
    return jnp.stack(out)


def halfband_response(n_fft2):
    """Zero-phase response of :func:`roomtone.filters.halfband_lowpass` on ``n_fft2 // 2 + 1``
    bins of the 2x rate. Shape: (bins,) float32."""
    h = filters.halfband_lowpass()
    c = (h.shape[0] - 1) // 2
    w = 2.0 * np.pi * np.arange(n_fft2 // 2 + 1) / n_fft2
    amp = h[c] + 2.0 * sum(h[c + k] * np.cos(k * w) for k in range(1, c + 1))
    return amp.astype(np.float32)


# ---------------------------------------------------------------- the stages

def soft_clip(v):
    """The saturation curve of :func:`roomtone.kernels.saturation.soft_clip`."""
    v2 = v * v
    num = v * (135135.0 + v2 * (17325.0 + v2 * (378.0 + v2)))
    den = 135135.0 + v2 * (62370.0 + v2 * (3150.0 + 28.0 * v2))
    return jnp.clip(num / den, -1.0, 1.0)


def static_gain_db(level_db, threshold_db, slope, knee_db):
    """The kernel's soft-knee static curve on a peak level in dB. Shape: broadcast."""
    over = level_db - threshold_db
    half = 0.5 * knee_db
    safe_knee = jnp.maximum(knee_db, 1e-6)
    in_knee = -slope * (over + half) ** 2 / (2.0 * safe_knee)
    above = -slope * over
    return jnp.where(over <= -half, 0.0, jnp.where((knee_db > 0.0) & (over <= half), in_knee, above))


def smooth_gain_db(target_db, attack, release):
    """The kernel's branching one-pole smoother in dB over control periods (``lax.scan``): attack
    while the target is below the state, release otherwise, a release within 1e-9 dB of 0 set to 0.
    Shape: target (periods, bands) -> (periods, bands)."""

    def step(s, t):
        falling = t < s
        coef = jnp.where(falling, attack, release)
        new = t + (s - t) * coef
        new = jnp.where((~falling) & (new > -1e-9), 0.0, new)
        return new, new

    _, out = jax.lax.scan(step, jnp.zeros(target_db.shape[1], target_db.dtype), target_db)
    return out


def _time_coef_pow(ms, sample_rate, power):
    """``time_coef(ms, sample_rate) ** power`` (:func:`roomtone.plugins.units.time_coef`)."""
    return jnp.exp(-power / (jnp.maximum(ms, 1e-3) * 1e-3 * sample_rate))


def interpolation_fraction(n, block):
    """:func:`roomtone.plugins.dynamics.interpolation_fraction` as float32, computed on the host and
    passed in. Shape: (n,) float32."""
    return dynamics.interpolation_fraction(n, block).astype(np.float32)


def compress(bands, p, sample_rate, frac):
    """Gain computer and band sum. Shape: bands (B, C, n) float32, frac (n,) -> (C, n)."""
    n_b, _, n = bands.shape
    block = control_block(sample_rate)
    periods = -(-n // block)
    padded = jnp.pad(bands, ((0, 0), (0, 0), (0, periods * block - n)))
    peak = jnp.max(jnp.abs(padded).reshape(n_b, -1, periods, block), axis=(1, 3))  # (B, periods)
    level_db = 20.0 * jnp.log10(jnp.maximum(peak, 1e-20))
    slope = 1.0 - 1.0 / p["ratio"]
    target = static_gain_db(level_db, p["threshold_db"][:, None], slope[:, None], p["knee_db"])
    smoothed = smooth_gain_db(target.T, _time_coef_pow(p["attack_ms"], sample_rate, block),
                              _time_coef_pow(p["release_ms"], sample_rate, block)).T  # (B, periods)
    makeup = 10.0 ** (p["makeup_db"] / 20.0)
    g_new = makeup[:, None] * jnp.exp(smoothed * LN10_20)
    g_prev = jnp.concatenate([makeup[:, None], g_new[:, :-1]], axis=1)
    g_new_s = jnp.repeat(g_new, block, axis=1)[:, :n]
    g_prev_s = jnp.repeat(g_prev, block, axis=1)[:, :n]
    gain = g_prev_s + (g_new_s - g_prev_s) * frac[None, :]
    return jnp.einsum("bcn,bn->cn", bands, gain), smoothed


class Context:
    """What every stage's JAX render shares for one excerpt: the sample rate, the length ``n``, the
    FFT length ``n_fft`` (even, ``n`` plus the filters' padding), the unit-circle bins ``z1``,
    ``z2`` of that FFT, the multiband interpolation fractions ``frac`` (n,) and the list
    ``reductions`` where compressor stages leave their smoothed gain (dB per control period)."""

    def __init__(self, sample_rate, n, n_fft, frac):
        self.sample_rate, self.n, self.n_fft, self.frac = sample_rate, n, n_fft, frac
        self.z1, self.z2 = _unit_circle(n_fft, sample_rate)
        self.reductions = []


def filtered(signal, response_bins, ctx):
    """``signal`` (..., n) through a filter given by its complex response on ``ctx``'s bins."""
    spec = jnp.fft.rfft(signal, ctx.n_fft, axis=-1) * response_bins
    return jnp.fft.irfft(spec, ctx.n_fft, axis=-1)[..., :ctx.n]


def render(params, audio, sample_rate, frac, pad, with_reduction=False):
    """Run the chain of ``params`` over ``audio`` (zero state at its start, as the numba chain):
    each stage through its processor's ``render_twin`` (:mod:`roomtone.plugins`).

    ``sample_rate`` and ``pad`` (samples of zeros appended for the filters' tails) are static;
    ``frac`` is :func:`interpolation_fraction` for ``audio``'s length. Returns the output (C, n)
    float32 (and, with ``with_reduction``, each multiband stage's smoothed gain in dB per control
    period, (B, periods)).
    """
    n = audio.shape[1]
    ctx = Context(sample_rate, n, n + pad + (n + pad) % 2, frac)  # an even FFT, for the 2x stage
    signal = audio
    for key in sorted(params, key=lambda k: int(k.split(":")[0])):
        signal = PROCESSORS[key.split(":")[1]].render_twin(params[key], signal, ctx)
    return (signal, ctx.reductions) if with_reduction else signal


def saturate(signal, p, n_fft):
    """``(1 - mix) x + mix * lowpass(soft_clip(drive * up2(x)) / drive)`` at twice the rate."""
    n = signal.shape[1]
    n2 = 2 * n_fft
    h2 = jnp.asarray(halfband_response(n2))
    spec = jnp.fft.rfft(signal, n_fft, axis=-1)
    up_spec = jnp.concatenate([spec, jnp.conj(spec[:, -2::-1])], axis=1)  # zero-stuffing: the spectrum's image
    up = jnp.fft.irfft(up_spec * (2.0 * h2), n2, axis=-1)  # 2 x interpolation
    drive = 10.0 ** (p["drive_db"] / 20.0)
    curved = soft_clip(drive * up) / drive
    down = jnp.fft.irfft(jnp.fft.rfft(curved, n2, axis=-1) * h2, n2, axis=-1)[:, 0::2][:, :n]
    return (1.0 - p["mix"]) * signal + p["mix"] * down


def default_pad(sample_rate):
    """Zeros appended for the filters' tails: 0.5 s (a 20 Hz bell of Q 10 decays by e^-10)."""
    return int(0.5 * sample_rate)


def render_numpy(chain, audio, sample_rate, pad=None):
    """Convenience: render a numba :class:`Chain`'s parameters with the JAX chain (tests, parity).
    Returns float32 (C, n)."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    pad = default_pad(sample_rate) if pad is None else pad
    frac = jnp.asarray(interpolation_fraction(audio.shape[1], control_block(sample_rate)))
    fn = jax.jit(render, static_argnums=(2, 4))
    return np.asarray(fn(params_from_chain(chain), jnp.asarray(audio), sample_rate, frac, pad))
