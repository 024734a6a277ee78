"""Independent reference meters and seeded test signals for tests and benchmarks (not used by any
job).

- :func:`libebur128`: integrated loudness and true peak by libebur128 (PyPI ``pyebur128``), the
  independent meter DESIGN.md names for "hits the target";
- :func:`true_peak_16x`: a true peak far finer than the 4x of BS.1770-4 Annex 2, from 16x
  interpolation with a long Kaiser-windowed sinc;
- :func:`vowel`, :func:`band_noise`, :func:`speech_like`: seeded speech-like signals (numpy only),
  the ones both the tests (through ``tests/refsignals.py``) and the benchmarks use.

The meters need the ``test`` (or ``bench``) extra: ``pip install 'roomtone[test]'``; the imports
are inside the functions, so importing this module costs nothing.

Shape: audio (channels, samples), any float dtype; the signals return float32 (channels, samples).
"""

import math

import numpy as np

# 16x reference interpolator: Kaiser-windowed sinc over +-32 input samples, beta 12 (about -120 dB
# stop band, flat to about 19 kHz at 44.1 kHz). resample_poly's default filter (+-10 samples,
# beta 5) droops below Nyquist and would under-read treble-heavy peaks.
TP16_FACTOR = 16
TP16_HALF_TAPS = 32
TP16_BETA = 12.0
_TP16_BLOCK = 1 << 18  # input samples per block (blocks overlap by the filter's half length)
_TP16_FILTER = None


def _require(module):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"roomtone.testing needs {module} (pip install 'roomtone[test]')") from None


def _db(linear):
    return 20.0 * math.log10(linear) if linear > 0 else float("-inf")


def libebur128(audio, sample_rate):
    """``(integrated LUFS, true peak dBTP)`` of ``audio`` by libebur128.

    Six channels are read as 5.1 (L R C LFE Ls Rs, the LFE left out, BS.1770-4 Table 3), as
    roomtone's meter reads them; other counts use libebur128's defaults.
    """
    pyebur128 = _require("pyebur128")
    audio = np.asarray(audio)
    frames = np.ascontiguousarray(audio.T, dtype=np.float64)
    mode = pyebur128.MeasurementMode.MODE_I | pyebur128.MeasurementMode.MODE_TRUE_PEAK
    state = pyebur128.R128State(audio.shape[0], int(sample_rate), mode)
    if audio.shape[0] == 6:
        kinds = (pyebur128.ChannelType.LEFT, pyebur128.ChannelType.RIGHT, pyebur128.ChannelType.CENTER,
                 pyebur128.ChannelType.UNUSED, pyebur128.ChannelType.LEFT_SURROUND,
                 pyebur128.ChannelType.RIGHT_SURROUND)
        for index, kind in enumerate(kinds):
            state.set_channel(index, kind)
    state.add_frames(frames.ravel(), frames.shape[0])
    peak = max(pyebur128.get_true_peak(state, c) for c in range(audio.shape[0]))
    return float(pyebur128.get_loudness_global(state)), _db(peak)


def _tp16_filter():
    global _TP16_FILTER
    if _TP16_FILTER is None:
        signal = _require("scipy.signal")
        n = 2 * TP16_FACTOR * TP16_HALF_TAPS + 1
        _TP16_FILTER = signal.firwin(n, 1.0 / TP16_FACTOR, window=("kaiser", TP16_BETA))
    return _TP16_FILTER


def true_peak_16x(audio):
    """Max ``|x|`` in dBTP of ``audio`` interpolated 16x (and of the samples themselves), in blocks
    that overlap by the filter's half length, so the result equals a one-shot computation."""
    signal = _require("scipy.signal")
    audio = np.asarray(audio)
    taps = _tp16_filter()
    n = audio.shape[1]
    pad = TP16_HALF_TAPS + 2
    best = float(np.abs(audio).max()) if audio.size else 0.0
    for row in audio:
        x = np.asarray(row, dtype=np.float64)
        for start in range(0, n, _TP16_BLOCK):
            lo, hi = max(0, start - pad), min(n, start + _TP16_BLOCK + pad)
            best = max(best, float(np.abs(signal.resample_poly(x[lo:hi], TP16_FACTOR, 1, window=taps)).max()))
    return _db(best)


# ---------------------------------------------------------------- speech-like test signals

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
                # v.size / sample_rate seconds can round to one sample fewer: zeros make it up
                tail = np.pad(tail, (0, v.size - tail.size))
                x[s:s + v.size] += tail * env[::-1]
            active[s:s + v.size] = True
            s += syl
        pos = end + int(pause_s * sample_rate)
    x *= level / max(np.abs(x).max(), 1e-9)
    return np.tile(x, (channels, 1)).astype(np.float32), active
