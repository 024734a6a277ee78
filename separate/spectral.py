"""The ``dsp`` separator's STFT: :mod:`roomtone.models.stft`'s numpy half with a periodic Hann
window as analysis and synthesis window (``istft(stft(x)) == x`` to float32 precision at hop
``n_fft / 4``), and its frame size.

Shape: audio (..., samples) float32; spectra (..., frames, n_fft // 2 + 1) complex64.
"""

import numpy as np

from roomtone.models.stft import hann, istft_host, stft_host


def fft_size(sample_rate, seconds=0.0464):
    """The power of two closest to ``seconds`` (default about 46 ms: 2048 at 44.1 and 48 kHz)."""
    return int(2 ** round(np.log2(max(64.0, seconds * float(sample_rate)))))


def stft(x, n_fft, hop):
    """Hann-windowed STFT of ``x`` (..., samples). Shape: (..., frames, n_fft // 2 + 1) complex64."""
    return stft_host(x, hann(n_fft), hop)


def istft(spec, n_fft, hop, length):
    """Inverse of :func:`stft`, ``length`` samples. Shape: (..., frames, bins) -> (..., length) float32."""
    return istft_host(spec, hann(n_fft), hop, length)
