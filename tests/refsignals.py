"""Seeded reference signals for tests: sines, sweeps, pink noise, impulses, silence, music-like mixes;
and the speech-like ones the benchmarks use too (:func:`vowel`, :func:`band_noise`,
:func:`speech_like`), defined in :mod:`roomtone.testing`.

All return float32 of shape (channels, samples).
"""

import numpy as np

from roomtone.testing import band_noise, speech_like, vowel  # noqa: F401 - the tests import them from here

SAMPLE_RATES = (44100, 48000, 96000)
CHANNELS = (1, 2)


def sine(freq_hz, seconds, sample_rate, amplitude=0.5, channels=2, phase=0.0):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    row = amplitude * np.sin(2 * np.pi * freq_hz * t + phase)
    return np.tile(row, (channels, 1)).astype(np.float32)


def sweep(seconds, sample_rate, f0=20.0, f1=20000.0, amplitude=0.5, channels=2):
    """Exponential sine sweep from f0 to min(f1, 0.45 fs)."""
    f1 = min(f1, 0.45 * sample_rate)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    k = np.log(f1 / f0)
    row = amplitude * np.sin(2 * np.pi * f0 * seconds / k * (np.exp(t / seconds * k) - 1))
    return np.tile(row, (channels, 1)).astype(np.float32)


def pink_noise(seconds, sample_rate, rms=0.1, channels=2, seed=0):
    """1/f noise by spectral shaping of white noise; independent channels."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    spectrum = np.fft.rfft(rng.standard_normal((channels, n)), axis=1)
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    spectrum[:, 1:] /= np.sqrt(freqs[1:])
    spectrum[:, 0] = 0
    x = np.fft.irfft(spectrum, n=n, axis=1)
    x *= rms / np.sqrt(np.mean(x ** 2))
    return x.astype(np.float32)


def impulse(seconds, sample_rate, channels=2, at=0.5, amplitude=0.9):
    x = np.zeros((channels, int(seconds * sample_rate)), dtype=np.float32)
    x[:, int(at * x.shape[1])] = amplitude
    return x


def silence(seconds, sample_rate, channels=2):
    return np.zeros((channels, int(seconds * sample_rate)), dtype=np.float32)


def music_like(seconds, sample_rate, channels=2, seed=1, level=0.3):
    """Drum-like transients over a chord pad and bass: a crest factor like real mixes."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    x = np.zeros((channels, n))
    for f, a in ((55.0, 0.5), (220.0, 0.2), (277.2, 0.15), (329.6, 0.15), (1760.0, 0.03)):
        for c in range(channels):
            x[c] += a * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    beat = int(0.5 * sample_rate)
    hit_len = int(0.12 * sample_rate)
    env = np.exp(-np.arange(hit_len) / (0.03 * sample_rate))
    for start in range(0, n - hit_len, beat):
        hit = rng.standard_normal(hit_len) * env * 1.5
        x[:, start:start + hit_len] += hit
    x *= level / np.abs(x).max()
    return x.astype(np.float32)


ENHANCE_RATES = (16000, 22050, 44100, 48000)
