"""Seeded synthetic sources for the separate job's tests: a kick drum, a centred voice-like
harmonic tone, a low sustained bass note, a wide (uncorrelated) pad. float32 (channels, samples)."""

import numpy as np


def kick(seconds, sample_rate, channels=2, period_s=0.5, seed=0):
    """Decaying low sine bursts with a falling pitch (120 -> 50 Hz) and a 2 ms click, every
    ``period_s``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    x = np.zeros(n)
    tt = np.arange(int(0.3 * sample_rate)) / sample_rate
    freq = 50.0 + 70.0 * np.exp(-tt / 0.03)
    burst = np.sin(2 * np.pi * np.cumsum(freq) / sample_rate) * np.exp(-tt / 0.05)
    click = int(0.002 * sample_rate)
    for start in np.arange(0.0, seconds, period_s):
        i = int(start * sample_rate)
        b = burst.copy()
        b[:click] += 0.3 * rng.standard_normal(click)
        x[i:i + len(b)] += b[:n - i]
    return np.tile(0.5 * x, (channels, 1)).astype(np.float32)


def voice(seconds, sample_rate, channels=2, f0=220.0):
    """A centred (equal in every channel) harmonic tone with 5 Hz vibrato, two notes alternating
    every half second, 11 harmonics falling as 1/k."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = f0 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t)) * np.where((t % 1.0) < 0.5, 1.0, 1.25)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    return np.tile(0.2 * x, (channels, 1)).astype(np.float32)


def bass(seconds, sample_rate, channels=2, f0=55.0):
    """A sustained low note: fundamental and a weaker octave, 50 ms attack."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = (np.sin(2 * np.pi * f0 * t) + 0.3 * np.sin(4 * np.pi * f0 * t)) * np.minimum(1.0, t / 0.05)
    return np.tile(0.3 * x, (channels, 1)).astype(np.float32)


def mixture(seconds, sample_rate, channels=2):
    """kick + voice + bass."""
    return (kick(seconds, sample_rate, channels) + voice(seconds, sample_rate, channels)
            + bass(seconds, sample_rate, channels)).astype(np.float32)


def energy_shares(stems):
    """Each stem's share of the total energy of a dict of stems."""
    energies = {k: float(np.sum(np.square(v, dtype=np.float64))) for k, v in stems.items()}
    total = sum(energies.values()) or 1.0
    return {k: e / total for k, e in energies.items()}


def hihat(seconds, sample_rate, channels=2, period_s=0.25, seed=1):
    """Closed hi-hat-like bursts: white noise differentiated twice (a +12 dB/octave tilt), 20 ms
    decay, every ``period_s``; independent noise in each channel."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    x = np.zeros((channels, n))
    tt = np.arange(int(0.1 * sample_rate)) / sample_rate
    for start in np.arange(0.125, seconds, period_s):
        i = int(start * sample_rate)
        noise = np.diff(rng.standard_normal((channels, len(tt) + 2)), n=2, axis=1)
        burst = noise * np.exp(-tt / 0.02)
        x[:, i:i + len(tt)] += burst[:, :n - i]
    return (0.05 * x).astype(np.float32)
