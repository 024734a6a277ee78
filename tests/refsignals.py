"""Seeded reference signals for tests: sines, sweeps, pink noise, impulses, silence, music-like mixes.

All return float32 of shape (channels, samples).
"""

import numpy as np

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


def _formant_gain(freqs, formants=((600.0, 1.0), (1200.0, 0.5), (2500.0, 0.25)), width_hz=120.0):
    return sum(a / (1.0 + ((freqs - f) / width_hz) ** 2) for f, a in formants)


def vowel(seconds, sample_rate, f0=120.0, amplitude=0.2, channels=1, glide=0.1, seed=0):
    """A voiced vowel: harmonics of a gliding ``f0`` (+-``glide`` fraction) under three formants,
    nothing above about 4 kHz."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    pitch = f0 * (1.0 + glide * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6.28)))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    row = np.zeros(n)
    for h in range(1, 40):
        fh = h * f0
        if fh > min(4000.0, 0.45 * sample_rate):
            break
        row += _formant_gain(fh) * np.sin(h * phase + rng.uniform(0, 6.28)) / h ** 0.5
    row *= amplitude / np.abs(row).max()
    return np.tile(row, (channels, 1)).astype(np.float32)


def band_noise(seconds, sample_rate, low_hz, high_hz, rms=0.05, channels=1, seed=0):
    """White noise band-limited (FFT brick wall) to ``low_hz..high_hz``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    spec = np.fft.rfft(rng.standard_normal((channels, n)), axis=1)
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    spec[:, (freqs < low_hz) | (freqs > high_hz)] = 0
    x = np.fft.irfft(spec, n=n, axis=1)
    x *= rms / np.sqrt(np.mean(x ** 2))
    return x.astype(np.float32)


def speech_like(seconds, sample_rate, channels=1, seed=3, level=0.2, pause_s=0.4, phrase_s=1.6):
    """Speech-like programme: phrases of syllables (voiced vowels with gliding pitch between 95 and
    170 Hz, some with a sibilant tail of 5-9 kHz noise), separated by pauses of digital silence.
    Returns ``(audio, active)``: float32 (channels, samples) and a (samples,) bool mask of speech."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    x = np.zeros(n)
    active = np.zeros(n, dtype=bool)
    pos = int(0.2 * sample_rate)
    while pos < n:
        end = min(n, pos + int(phrase_s * sample_rate))
        s = pos
        while s < end:
            syl = int(rng.uniform(0.15, 0.3) * sample_rate)
            syl = min(syl, end - s)
            if syl < 64:
                break
            v = vowel(syl / sample_rate, sample_rate, f0=rng.uniform(95, 170), amplitude=1.0,
                      seed=int(rng.integers(1 << 30)))[0]
            env = np.sin(np.pi * np.arange(v.size) / v.size) ** 0.5
            x[s:s + v.size] += v * env * rng.uniform(0.6, 1.0)
            if rng.uniform() < 0.3 and 0.45 * sample_rate > 9000:
                tail = band_noise(v.size / sample_rate, sample_rate, 5000, 9000, rms=0.15,
                                  seed=int(rng.integers(1 << 30)))[0]
                x[s:s + v.size] += tail * env[::-1]
            active[s:s + v.size] = True
            s += syl
        pos = end + int(pause_s * sample_rate)
    x *= level / max(np.abs(x).max(), 1e-9)
    return np.tile(x, (channels, 1)).astype(np.float32), active
