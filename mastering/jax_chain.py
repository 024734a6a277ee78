"""The mastering chain in JAX, differentiable in every parameter: the numba chain of
:mod:`roomtone.mastering.processors` mirrored parameter for parameter, with the same names and units.

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
from roomtone.mastering.processors import Equalizer, MultibandCompressor, Saturation, StereoWidth
from roomtone.processor import Chain

CONTROL_PERIOD_S = MultibandCompressor.CONTROL_PERIOD_S
LN10_20 = math.log(10.0) / 20.0


# ---------------------------------------------------------------- parameters <-> numba chain

def _f32(value):
    return jnp.asarray(np.asarray(value, dtype=np.float32))


def params_from_chain(chain):
    """The JAX parameter dict of a numba :class:`Chain` (``eq``, ``multiband``, ``width``,
    ``saturation``; other kinds are refused)."""
    params = {}
    for index, processor in enumerate(chain):
        key = f"{index}:{processor.kind}"
        if processor.kind == "eq":
            bands = np.asarray(processor.bands, dtype=np.float32).reshape(-1, 3)
            params[key] = {"low_shelf_hz": _f32(processor.low_shelf_hz), "low_shelf_db": _f32(processor.low_shelf_db),
                           "high_shelf_hz": _f32(processor.high_shelf_hz),
                           "high_shelf_db": _f32(processor.high_shelf_db), "bands": jnp.asarray(bands)}
        elif processor.kind == "multiband":
            params[key] = {name: _f32(getattr(processor, name)) for name in
                           ("crossovers_hz", "threshold_db", "ratio", "makeup_db", "attack_ms", "release_ms", "knee_db")}
        elif processor.kind == "width":
            params[key] = {"width": _f32(processor.width), "bass_mono_hz": _f32(processor.bass_mono_hz)}
        elif processor.kind == "saturation":
            params[key] = {"drive_db": _f32(processor.drive_db), "mix": _f32(processor.mix)}
        else:
            raise ValueError(f"the JAX chain has no {processor.kind!r} stage (it mirrors eq, multiband, width, saturation)")
    return params


def _clamp(value, field_range, digits=4):
    low, high = field_range
    return round(min(max(float(value), low), high), digits)


def chain_from_params(params):
    """The numba :class:`Chain` for a JAX parameter dict (values clamped into each parameter's
    range and rounded to 4 decimals, so the preset file written from it validates)."""
    processors = []
    for key in sorted(params, key=lambda k: int(k.split(":")[0])):
        kind = key.split(":")[1]
        p = {name: np.asarray(value, dtype=np.float64) for name, value in params[key].items()}
        if kind == "eq":
            r = {f.name: f.metadata.get("range") for f in Equalizer.__dataclass_fields__.values()}
            bands = tuple((_clamp(f, (20.0, 20000.0), 1), _clamp(g, (-12.0, 12.0), 3), _clamp(q, (0.1, 10.0), 3))
                          for f, g, q in p["bands"].reshape(-1, 3))
            processors.append(Equalizer(low_shelf_hz=_clamp(p["low_shelf_hz"], r["low_shelf_hz"], 1),
                                        low_shelf_db=_clamp(p["low_shelf_db"], r["low_shelf_db"], 3),
                                        high_shelf_hz=_clamp(p["high_shelf_hz"], r["high_shelf_hz"], 1),
                                        high_shelf_db=_clamp(p["high_shelf_db"], r["high_shelf_db"], 3), bands=bands))
        elif kind == "multiband":
            r = {f.name: f.metadata.get("range") for f in MultibandCompressor.__dataclass_fields__.values()}
            processors.append(MultibandCompressor(
                crossovers_hz=tuple(_clamp(f, (20.0, 20000.0), 1) for f in p["crossovers_hz"]),
                threshold_db=tuple(_clamp(v, (-60.0, 0.0), 3) for v in p["threshold_db"]),
                ratio=tuple(_clamp(v, (1.0, 20.0), 3) for v in p["ratio"]),
                makeup_db=tuple(_clamp(v, (-12.0, 12.0), 3) for v in p["makeup_db"]),
                attack_ms=_clamp(p["attack_ms"], r["attack_ms"], 3), release_ms=_clamp(p["release_ms"], r["release_ms"], 2),
                knee_db=_clamp(p["knee_db"], r["knee_db"], 3)))
        elif kind == "width":
            r = {f.name: f.metadata.get("range") for f in StereoWidth.__dataclass_fields__.values()}
            processors.append(StereoWidth(width=_clamp(p["width"], r["width"]),
                                          bass_mono_hz=_clamp(p["bass_mono_hz"], r["bass_mono_hz"], 2)))
        elif kind == "saturation":
            r = {f.name: f.metadata.get("range") for f in Saturation.__dataclass_fields__.values()}
            processors.append(Saturation(drive_db=_clamp(p["drive_db"], r["drive_db"], 3), mix=_clamp(p["mix"], r["mix"])))
    return Chain(processors)


# ---------------------------------------------------------------- biquad designs (jnp, as roomtone.filters)

def _safe(freq_hz, sample_rate):
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
    h = response(shelf(_safe(p["low_shelf_hz"], sample_rate), p["low_shelf_db"], sample_rate, "low"), z1, z2)
    h = h * response(shelf(_safe(p["high_shelf_hz"], sample_rate), p["high_shelf_db"], sample_rate, "high"), z1, z2)
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
        f = _safe(crossovers_hz[k], sample_rate)
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
    """``time_coef(ms, sample_rate) ** power`` (:func:`roomtone.stages.time_coef`)."""
    return jnp.exp(-power / (jnp.maximum(ms, 1e-3) * 1e-3 * sample_rate))


def control_block(sample_rate):
    return max(1, round(sample_rate * CONTROL_PERIOD_S))


def interpolation_fraction(n, block):
    """Per-sample fraction ``(j + 1) / m`` of the kernel's gain interpolation (``m``: the period's
    length, shorter for the last one). Computed on the host and passed in. Shape: (n,) float32."""
    j = np.arange(n)
    period_len = np.full(n, block, dtype=np.float64)
    last = (n // block) * block
    if last < n:
        period_len[last:] = n - last
    return ((j % block + 1.0) / period_len).astype(np.float32)


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


def render(params, audio, sample_rate, frac, pad, with_reduction=False):
    """Run the chain of ``params`` over ``audio`` (zero state at its start, as the numba chain).

    ``sample_rate`` and ``pad`` (samples of zeros appended for the filters' tails) are static;
    ``frac`` is :func:`interpolation_fraction` for ``audio``'s length. Returns the output (C, n)
    float32 (and, with ``with_reduction``, each multiband stage's smoothed gain in dB per control
    period, (B, periods)).
    """
    n = audio.shape[1]
    n_fft = n + pad + (n + pad) % 2  # even, for the 2x stage
    z1, z2 = _unit_circle(n_fft, sample_rate)
    signal = audio
    reductions = []
    for key in sorted(params, key=lambda k: int(k.split(":")[0])):
        kind = key.split(":")[1]
        p = params[key]
        if kind == "eq":
            spec = jnp.fft.rfft(signal, n_fft, axis=-1) * eq_response(p, sample_rate, z1, z2)
            signal = jnp.fft.irfft(spec, n_fft, axis=-1)[:, :n]
        elif kind == "multiband":
            spec = jnp.fft.rfft(signal, n_fft, axis=-1)
            resp = band_responses(p["crossovers_hz"], sample_rate, z1, z2)
            bands = jnp.fft.irfft(spec[None] * resp[:, None, :], n_fft, axis=-1)[..., :n]
            signal, smoothed = compress(bands, p, sample_rate, frac)
            reductions.append(smoothed)
        elif kind == "width":
            if signal.shape[0] < 2:
                continue
            mid = 0.5 * (signal[0] + signal[1])
            side = 0.5 * (signal[0] - signal[1]) * p["width"]
            f = p["bass_mono_hz"]
            hp = response(butterworth2(jnp.maximum(_safe(f, sample_rate), 1e-3), sample_rate, "high"), z1, z2)
            side_spec = jnp.fft.rfft(side, n_fft) * jnp.where(f > 0.0, hp, 1.0)
            side = jnp.fft.irfft(side_spec, n_fft)[:n]
            signal = jnp.concatenate([jnp.stack([mid + side, mid - side]), signal[2:]], axis=0)
        elif kind == "saturation":
            signal = saturate(signal, p, n_fft)
    return (signal, reductions) if with_reduction else signal


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
