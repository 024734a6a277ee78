"""STFT and ISTFT: a framed ``rfft`` and its overlap-add inverse, in JAX (:func:`stft`,
:func:`istft`) and in numpy (:func:`stft_host`, :func:`istft_host`, :func:`frames_host`) for the
callers that need no JAX (the ``dsp`` separator, the ``classic`` denoiser, the level of the
``roomtone`` denoiser's features). The one framing of the suite; JAX is imported inside the JAX
functions only, so importing this module (and using its numpy half) never imports JAX.

Framing: frame ``t`` holds samples ``[t * hop - (n_fft - hop), t * hop + hop)`` of the signal (zero
outside it), so frame ``t`` ends with the hop the signal reaches at ``t * hop``, and a signal of
``n`` samples has ``ceil(n / hop) + n_fft / hop - 1`` frames: every sample lies in ``n_fft / hop``
frames, the last ones included. The inverse overlap-adds the windowed frames and
divides by the window-sum envelope ``sum_t synthesis(n - t hop) analysis(n - t hop)``, computed on
the host (:func:`window_envelope`; TOOLCHAIN.md: built inside ``jit`` from constants, XLA spent
minutes constant-folding it) and passed in. Where every sample is covered by frames whose envelope
is non-zero (any window that overlaps-adds to a positive sum, e.g. periodic Hann at hop <= n_fft/2),
``istft(stft(x)) == x`` to float32 precision.

The numpy half builds frames from the stretch of the zero-padded signal they cover only
(:func:`padded_stretch`: no padded copy of a whole channel), so a long channel can be framed chunk
by chunk (:func:`frames_host` with ``first``, ``count``) with the same frames as all at once.

Shape: audio (..., samples) float32; spectra (..., frames, n_fft // 2 + 1) complex64.
"""

import numpy as np


def frame_count(samples, hop, n_fft):
    """Frames for ``samples`` samples: ``ceil(samples / hop) + n_fft / hop - 1`` (every sample in
    ``n_fft / hop`` frames)."""
    return -(-int(samples) // int(hop)) + int(n_fft) // int(hop) - 1


def hann(n_fft, dtype=np.float32):
    """Periodic Hann window (its squares overlap-add to a constant at hop n_fft/4; itself at n_fft/2).
    Shape: (n_fft,) ``dtype`` (float32 unless asked)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(dtype)


def sqrt_hann(n_fft):
    """Square root of the periodic Hann window: as analysis and synthesis window its product
    overlap-adds to exactly 1 at hop n_fft/2. Shape: (n_fft,) float32."""
    return np.sqrt(hann(n_fft)).astype(np.float32)


def window_envelope(analysis, synthesis, hop, frames):
    """The overlap-added ``analysis * synthesis`` over ``frames`` frames, aligned with the signal
    (sample 0 of the signal first). Shape: (frames * hop,) float32."""
    n_fft = len(analysis)
    lead = n_fft - hop
    product = np.asarray(analysis, np.float64) * np.asarray(synthesis, np.float64)
    total = np.zeros(frames * hop + lead)
    for t in range(frames):
        total[t * hop:t * hop + n_fft] += product
    return total[lead:].astype(np.float32)


def padded_stretch(x, lead, start, stop):
    """Samples ``start:stop`` of ``x`` padded with ``lead`` zeros before it and zeros after it, built
    on their own (no padded copy of the whole signal). Shape: (..., samples) -> (..., stop - start)
    float32."""
    out = np.zeros(np.shape(x)[:-1] + (stop - start,), np.float32)
    i0, i1 = max(start, lead), min(stop, lead + np.shape(x)[-1])
    if i1 > i0:
        out[..., i0 - start:i1 - start] = x[..., i0 - lead:i1 - lead]
    return out


def frames_host(x, n_fft, hop, first=0, count=None):
    """Frames ``first .. first + count - 1`` of ``x`` (see the module's framing; ``count`` None: to
    the last), unwindowed, in numpy, from the stretch of the padded signal they cover only.
    Shape: (..., samples) -> (..., count, n_fft) float32."""
    if count is None:
        count = frame_count(np.shape(x)[-1], hop, n_fft) - first
    start = first * hop
    stretch = padded_stretch(x, n_fft - hop, start, start + (count - 1) * hop + n_fft)
    return np.lib.stride_tricks.sliding_window_view(stretch, n_fft, axis=-1)[..., ::hop, :][..., :count, :]


def stft_host(x, window, hop):
    """:func:`stft` in numpy. Shape: (..., samples) -> (..., frames, n_fft // 2 + 1) complex64."""
    x = np.asarray(x, np.float32)
    return np.fft.rfft(frames_host(x, len(window), hop) * window, axis=-1).astype(np.complex64)


def istft_host(spec, window, hop, length):
    """:func:`istft` in numpy, the envelope computed here (:func:`window_envelope` of ``window``
    as analysis and synthesis window). Shape: (..., frames, bins) -> (..., length) float32."""
    spec = np.asarray(spec)
    n_fft = len(window)
    frames = spec.shape[-2]
    chunks = np.fft.irfft(spec, n=n_fft, axis=-1).astype(np.float32) * window
    lead = n_fft - hop
    out = np.zeros(spec.shape[:-2] + (frames * hop + lead,), np.float32)
    for j in range(n_fft // hop):  # overlap-add, one hop-block offset at a time
        block = chunks[..., j * hop:(j + 1) * hop]  # (..., frames, hop)
        flat = block.reshape(block.shape[:-2] + (frames * hop,))
        out[..., j * hop:j * hop + frames * hop] += flat
    out = out[..., lead:lead + frames * hop]
    env = window_envelope(window, window, hop, frames)
    out = np.where(env > 1e-6, out / np.maximum(env, 1e-6), 0.0).astype(np.float32)
    return out[..., :length]


def _pad(x, hop, n_fft, frames):
    import jax.numpy as jnp

    lead = n_fft - hop
    tail = frames * hop - x.shape[-1]  # frames * hop + lead samples in all
    widths = [(0, 0)] * (x.ndim - 1) + [(lead, tail)]
    return jnp.pad(x, widths)


def frames_of(x, n_fft, hop):
    """The frames of ``x`` (see the module's framing), unwindowed. Shape: (..., frames, n_fft)."""
    import jax.numpy as jnp

    frames = frame_count(x.shape[-1], hop, n_fft)
    padded = _pad(x, hop, n_fft, frames)
    if n_fft % hop == 0:
        # frame t is hop-blocks t .. t + k - 1: k shifted slices of the blocked signal, no gather
        # (XLA's gather of overlapping frames is several times slower on the CPU)
        k = n_fft // hop
        blocks = padded.reshape(padded.shape[:-1] + (frames + k - 1, hop))
        return jnp.concatenate([blocks[..., j:j + frames, :] for j in range(k)], axis=-1)
    index = (np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]).astype(np.int32)
    return jnp.take(padded, index, axis=-1)


def stft(x, window, hop):
    """Short-time Fourier transform of ``x`` with ``window`` (host array, length ``n_fft``) every
    ``hop`` samples. Shape: (..., samples) -> (..., frames, n_fft // 2 + 1) complex64."""
    import jax.numpy as jnp

    window = jnp.asarray(window, jnp.float32)
    return jnp.fft.rfft(frames_of(x, len(window), hop) * window, axis=-1)


def istft(spec, window, hop, envelope, length):
    """Inverse of :func:`stft`: inverse FFT of each frame, ``window`` (synthesis), overlap-add, divide
    by ``envelope`` (:func:`window_envelope` of the analysis and synthesis windows over these frames,
    from the host) and keep ``length`` samples. Shape: (..., frames, bins) -> (..., length) float32."""
    import jax.numpy as jnp

    n_fft = len(window)
    frames = spec.shape[-2]
    lead = n_fft - hop
    x = jnp.fft.irfft(spec, n=n_fft, axis=-1) * jnp.asarray(window, jnp.float32)
    # overlap-add as a sum of n_fft // hop shifted hop-blocks (n_fft a multiple of hop)
    if n_fft % hop:
        raise ValueError(f"n_fft {n_fft} must be a multiple of hop {hop}")
    k = n_fft // hop
    blocks = x.reshape(x.shape[:-1] + (k, hop))  # (..., frames, k, hop)
    out = jnp.zeros(x.shape[:-2] + (frames + k - 1, hop), x.dtype)
    for j in range(k):
        out = out.at[..., j:j + frames, :].add(blocks[..., :, j, :])
    out = out.reshape(x.shape[:-2] + ((frames + k - 1) * hop,))[..., lead:lead + frames * hop]
    env = jnp.asarray(envelope, jnp.float32)
    out = jnp.where(env > 1e-6, out / jnp.maximum(env, 1e-6), 0.0)
    return out[..., :length]
