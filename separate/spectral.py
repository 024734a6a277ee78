"""A numpy STFT/ISTFT with the framing of :mod:`roomtone.models.stft` (which is JAX), for the
separators that need no JAX (the ``dsp`` one).

Frame ``t`` holds samples ``[t hop - (n_fft - hop), t hop + hop)``; a signal of ``n`` samples has
``ceil(n / hop) + n_fft / hop - 1`` frames and every sample lies in ``n_fft / hop`` of them. The
inverse overlap-adds the synthesis-windowed frames and divides by the window-sum envelope
(:func:`roomtone.models.stft.window_envelope`), so ``istft(stft(x)) == x`` to float32 precision
for a periodic Hann window at hop ``n_fft / 4``.

Shape: audio (..., samples) float32; spectra (..., frames, n_fft // 2 + 1) complex64.
"""

import numpy as np

from roomtone.models.stft import frame_count, hann, window_envelope


def fft_size(sample_rate, seconds=0.0464):
    """The power of two closest to ``seconds`` (default about 46 ms: 2048 at 44.1 and 48 kHz)."""
    return int(2 ** round(np.log2(max(64.0, seconds * float(sample_rate)))))


def stft(x, n_fft, hop):
    """Hann-windowed STFT of ``x`` (..., samples). Shape: (..., frames, n_fft // 2 + 1) complex64."""
    x = np.asarray(x, np.float32)
    frames = frame_count(x.shape[-1], hop, n_fft)
    lead = n_fft - hop
    padded = np.zeros(x.shape[:-1] + (frames * hop + lead,), np.float32)
    padded[..., lead:lead + x.shape[-1]] = x
    view = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop, :][..., :frames, :]
    return np.fft.rfft(view * hann(n_fft), axis=-1).astype(np.complex64)


def istft(spec, n_fft, hop, length):
    """Inverse of :func:`stft`, ``length`` samples. Shape: (..., frames, bins) -> (..., length) float32."""
    spec = np.asarray(spec)
    frames = spec.shape[-2]
    window = hann(n_fft)
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
