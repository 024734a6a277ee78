"""Voice activity detection: which 10 ms frames hold speech. Ours, numpy and numba, no weights.

The signal is mixed to mono and resampled to :data:`ANALYSIS_RATE` (8 kHz: the speech band ends at
4 kHz), so every input rate from 8 kHz up gives the same frames. Frame ``i`` is the 10 ms
``[i * 0.01, (i + 1) * 0.01)`` s, analysed through a 50 ms periodic Hann window centred on it (the
suite's framing, :func:`roomtone.models.stft.frames_host`), zero-padded twice for a linear
autocorrelation. Two cues per frame:

- **band SNR**: the power spectrum ``P[k]`` in :data:`BAND_HZ` (100-4000 Hz) over a per-bin noise
  floor ``N[k]`` tracked by minimum statistics (Martin, "Noise power spectral density estimation
  based on optimal smoothing and minimum statistics", IEEE TSAP 9(5), 2001: the minimum of the
  recursively smoothed periodogram over a window, times a bias factor; offline, so the window is
  centred), ``snr_db = 10 log10(mean_k P[k] / N[k])``. Stationary noise and hum sit in the floor
  whatever their level and colour;
- **harmonicity**: the peak, over lags of an f0 in 80-400 Hz, of the normalised autocorrelation of
  the *whitened* band spectrum ``P[k] / N[k]`` (the inverse FFT of a power spectrum is an
  autocorrelation, Wiener-Khinchin), divided by the Hann window's own autocorrelation at that lag
  (Boersma, "Accurate short-term analysis of the fundamental frequency and the harmonics-to-noise
  ratio of a sampled sound", IFA Proceedings 17, 1993, eq. 9). Whitened, coloured noise and noise
  bursts have no periodicity (near 0); voiced speech has (0.4-0.9).

Speech probability ``p = sigmoid((snr_db - threshold_db) / SNR_SCALE_DB) *
sigmoid((harmonicity - harmonicity_threshold) / HARMONICITY_SCALE)``, averaged over 30 ms; the
decision is a hysteresis (enter at ``onset_probability``, leave under ``offset_probability``),
then a hangover after each run, then gaps shorter than ``min_silence_ms`` are filled and runs
shorter than ``min_speech_ms`` dropped. Voiced nuclei carry the decision; the hangover and the
gap filling carry the consonants between them. Whispered (unvoiced) speech is not detected, and a
short tone burst (not long enough to enter the floor) counts as voiced.

Long input is analysed in blocks of :data:`BLOCK_FRAMES` frames with a margin of half the noise
window on each side, so memory stays bounded and blocks give the same frames as the whole.

Shape: audio (samples,) or (channels, samples); frames ``ceil(samples / sample_rate / 0.01)``.
"""

import numpy as np
from numba import njit

from roomtone.audio import validate_audio
from roomtone.errors import InvalidAudioError
from roomtone.models.stft import frames_host, hann
from roomtone.resample import resample

ANALYSIS_RATE = 8000  # Hz: everything is analysed at this rate
FRAME_S = 0.01  # s: the decision grid
HOP = 80  # samples at ANALYSIS_RATE (10 ms)
WINDOW = 5 * HOP  # 50 ms analysis window, an odd number of hops so it centres on a frame
N_FFT = 2 * WINDOW  # zero-padded twice: the autocorrelation is linear, not circular
BAND_HZ = (100.0, 4000.0)
F0_RANGE_HZ = (80.0, 400.0)  # harmonicity lags: periods of 2.5-12.5 ms
SMOOTHING = 0.8  # recursive smoothing of the periodogram before its minimum (Martin 2001, alpha)
# E[P] / min over the window of the smoothed periodogram, for noise at the default 3 s window:
# measured on white noise (tests/test_diarize.py checks noise alone sits near 0 dB).
FLOOR_BIAS = 3.9
ABSOLUTE_FLOOR = 1e-12  # per-bin power under which nothing counts (about -120 dBFS): digital silence
SNR_SCALE_DB = 2.0
HARMONICITY_SCALE = 0.06
PROBABILITY_AVERAGE_FRAMES = 3
EDGE_FRAMES = 2  # frames at the start whose window begins before the signal
BLOCK_FRAMES = 6000  # 60 s of frames per analysis block


def frame_count(samples, sample_rate):
    """Decision frames for ``samples`` samples at ``sample_rate``: the 10 ms frames that hold any of them."""
    return -(-int(samples) * int(round(1.0 / FRAME_S)) // int(sample_rate))


def _mono_8k(audio, sample_rate):
    audio = validate_audio(audio, sample_rate)
    mono = audio.mean(axis=0, keepdims=True)
    return resample(mono, int(sample_rate), ANALYSIS_RATE)[0]


@njit(cache=True, nogil=True)
def _noise_floor(power, alpha, width, bias, floor, out):
    """Minimum statistics per bin: ``s_t = alpha s_{t-1} + (1 - alpha) P_t`` (``s_{-1}`` the mean of
    the first ``2 / (1 - alpha)`` frames),
    then the minimum of ``s`` over the centred window of ``width`` (odd) frames (clamped at the
    ends; van Herk / Gil-Werman: block prefix and suffix minima), times ``bias``, at least ``floor``.
    Shape: power, out (frames, bins) float64; returns ``out``."""
    frames, bins = power.shape
    h = width // 2
    if frames == 0:
        return out
    s = np.empty(frames)
    prefix = np.empty(frames)
    suffix = np.empty(frames)
    for k in range(bins):
        settle = min(frames, int(2.0 / (1.0 - alpha)) + 1)  # start from a settled mean, not one periodogram
        s[0] = 0.0
        for t in range(settle):
            s[0] += power[t, k] / settle
        s[0] = alpha * s[0] + (1.0 - alpha) * power[0, k]
        for t in range(1, frames):
            s[t] = alpha * s[t - 1] + (1.0 - alpha) * power[t, k]
        for t in range(frames):  # minima from each block's start (prefix) and to its end (suffix)
            prefix[t] = s[t] if t % width == 0 else min(prefix[t - 1], s[t])
        for t in range(frames - 1, -1, -1):
            last = t == frames - 1 or (t + 1) % width == 0
            suffix[t] = s[t] if last else min(suffix[t + 1], s[t])
        for t in range(frames):
            a = max(t - h, 0)
            b = min(t + h, frames - 1)
            # [a, b] (at most ``width`` long) spans at most two blocks; within one block it starts
            # the block (clamped at the signal's start) or ends it (clamped at the signal's end)
            if a // width != b // width:
                m = min(suffix[a], prefix[b])
            elif a % width == 0:
                m = prefix[b]
            else:
                m = suffix[a]
            out[t, k] = max(m * bias, floor)
    return out


def _lag_range():
    lo = int(np.ceil(ANALYSIS_RATE / F0_RANGE_HZ[1]))
    hi = int(np.floor(ANALYSIS_RATE / F0_RANGE_HZ[0]))
    return lo, hi


def _window_autocorrelation():
    """The Hann window's normalised autocorrelation at every lag (Boersma 1993, eq. 9's divisor)."""
    w = hann(WINDOW, np.float64)
    r = np.fft.irfft(np.abs(np.fft.rfft(w, N_FFT)) ** 2, N_FFT)
    return r / r[0]


def _detrend(frames):
    """Each frame less its least-squares line: drift and rumble far under the band (a 50 ms frame
    holds under one period of 20 Hz) would leak into it through the window's side lobes.
    Shape: (frames, n) float64 -> (frames, n)."""
    ramp = np.linspace(-1.0, 1.0, frames.shape[-1])
    slope = frames @ ramp / (ramp @ ramp)
    return frames - frames.mean(axis=-1, keepdims=True) - slope[:, None] * ramp


def _block_features(x, first, count, noise_window_s):
    """Band SNR (dB) and harmonicity of frames ``first .. first + count - 1`` of the 8 kHz signal
    ``x``. Shape: x (samples,) -> (count,), (count,) float64."""
    frames = frames_host(x, WINDOW, HOP, first=first + 2, count=count).astype(np.float64)  # t + 2 centres on t
    spectrum = np.fft.rfft(_detrend(frames) * hann(WINDOW, np.float64), N_FFT, axis=-1)
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / ANALYSIS_RATE)
    band = (freqs >= BAND_HZ[0]) & (freqs <= BAND_HZ[1])
    power = np.abs(spectrum[:, band]) ** 2
    # frames whose window reaches past either end of the signal (zeros in it) take the nearest
    # complete frame's spectrum: zeros would sink the floor, and a padding by reflection is periodic
    index = first + np.arange(count)
    complete = np.flatnonzero((index >= EDGE_FRAMES) & (index * HOP + WINDOW - 2 * HOP <= x.size))
    if complete.size:
        nearest = np.clip(np.arange(count), complete[0], complete[-1])
        power = power[nearest]
    power = np.ascontiguousarray(power)
    width = 2 * int(round(noise_window_s / FRAME_S / 2)) + 1
    floor = _noise_floor(power, SMOOTHING, width, FLOOR_BIAS, ABSOLUTE_FLOOR, np.empty_like(power))
    whitened = power / floor
    snr_db = 10.0 * np.log10(np.maximum(whitened.mean(axis=1), 1e-12))
    full = np.zeros(spectrum.shape)
    full[:, band] = whitened
    autocorrelation = np.fft.irfft(full, N_FFT, axis=-1)
    lo, hi = _lag_range()
    ratio = autocorrelation[:, lo:hi + 1] / np.maximum(autocorrelation[:, :1], 1e-30)
    harmonicity = np.clip((ratio / _window_autocorrelation()[lo:hi + 1]).max(axis=1), 0.0, 1.0)
    silent = power.max(axis=1) <= ABSOLUTE_FLOOR
    harmonicity[silent] = 0.0
    return snr_db, harmonicity


def frame_features(audio, sample_rate, *, noise_window_s=3.0):
    """The two cues of every 10 ms frame: band SNR over the noise floor (dB) and harmonicity (0-1).

    ``noise_window_s``: the span of the minimum-statistics window (s, 0.5-30): longer than the
    longest stretch of speech without a pause, shorter than the changes of the noise.
    Shape: audio (samples,) or (channels, samples) -> snr_db (frames,), harmonicity (frames,) float64.
    """
    if not 0.5 <= noise_window_s <= 30.0:
        raise InvalidAudioError(f"noise_window_s={noise_window_s} s is outside 0.5..30 s")
    samples = np.shape(audio)[-1]
    x = _mono_8k(audio, sample_rate)
    total = frame_count(samples, sample_rate)
    margin = int(round(noise_window_s / FRAME_S / 2)) + 120  # the smoothing settles: 0.8^120 ~ 1e-12
    snr_db, harmonicity = np.zeros(total), np.zeros(total)
    for start in range(0, total, BLOCK_FRAMES):
        stop = min(total, start + BLOCK_FRAMES)
        lo, hi = max(0, start - margin), min(total, stop + margin)
        snr, harm = _block_features(x, lo, hi - lo, noise_window_s)
        snr_db[start:stop], harmonicity[start:stop] = snr[start - lo:stop - lo], harm[start - lo:stop - lo]
    return snr_db, harmonicity


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def speech_probability(audio, sample_rate, *, threshold_db=6.0, harmonicity_threshold=0.3,
                       noise_window_s=3.0):
    """Per-frame speech probability (module docstring): ``threshold_db`` is the band SNR (dB over
    the noise floor) and ``harmonicity_threshold`` the periodicity (0-1) where each cue's factor
    is one half. Returns ``(frame_s, probability)``. Shape: -> (frames,) float64 in [0, 1]."""
    snr_db, harmonicity = frame_features(audio, sample_rate, noise_window_s=noise_window_s)
    p = _sigmoid((snr_db - threshold_db) / SNR_SCALE_DB)
    p *= _sigmoid((harmonicity - harmonicity_threshold) / HARMONICITY_SCALE)
    if p.size:
        kernel = np.ones(PROBABILITY_AVERAGE_FRAMES) / PROBABILITY_AVERAGE_FRAMES
        p = np.convolve(np.pad(p, PROBABILITY_AVERAGE_FRAMES // 2, mode="edge"), kernel, mode="valid")
    return FRAME_S, p


@njit(cache=True, nogil=True)
def _hysteresis(probability, onset, offset, out):
    """``out[t]``: speech from the first frame at or over ``onset`` until the first under
    ``offset``. Shape: probability (frames,) float64, out (frames,) bool; returns ``out``."""
    state = False
    for t in range(probability.shape[0]):
        if state:
            state = probability[t] >= offset
        else:
            state = probability[t] >= onset
        out[t] = state
    return out


def runs(mask):
    """Starts and ends (exclusive) of the runs of True in ``mask``. Shape: (frames,) bool ->
    (runs,), (runs,) int."""
    edges = np.diff(np.concatenate(([0], np.asarray(mask, np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _tidy(speech, hangover, min_silence, min_speech):
    """Hangover after each run, gaps under ``min_silence`` frames filled, runs under ``min_speech``
    dropped. Shape: (frames,) bool -> (frames,) bool."""
    out = np.zeros_like(speech)
    starts, ends = runs(speech)
    ends = np.minimum(ends + hangover, speech.size)
    if starts.size:
        keep = np.concatenate(([True], starts[1:] - ends[:-1] >= min_silence))  # runs starting anew
        starts = starts[keep]
        ends = np.maximum.reduceat(ends, np.flatnonzero(keep))
        long_enough = ends - starts >= min_speech
        for s, e in zip(starts[long_enough], ends[long_enough]):
            out[s:e] = True
    return out


def voice_activity(audio, sample_rate, *, threshold_db=6.0, harmonicity_threshold=0.3,
                   onset_probability=0.6, offset_probability=0.3, hangover_ms=150.0,
                   min_speech_ms=120.0, min_silence_ms=200.0, noise_window_s=3.0):
    """Speech or not in every 10 ms frame of ``audio`` at ``sample_rate`` (Hz, 8000 or more).

    ``threshold_db``, ``harmonicity_threshold``, ``noise_window_s``: :func:`speech_probability`;
    ``onset_probability`` / ``offset_probability``: the hysteresis (0-1, offset <= onset);
    ``hangover_ms``: speech held after each run; ``min_silence_ms``: shorter gaps are filled;
    ``min_speech_ms``: shorter runs are dropped. Returns ``(frame_s, speech)``: frame ``i`` is
    ``[i * frame_s, (i + 1) * frame_s)``. Shape: audio (samples,) or (channels, samples) -> speech
    (frames,) bool.

    Example::

        frame_s, speech = voice_activity(audio, 16000)
        seconds_of_speech = speech.sum() * frame_s
    """
    if not 0.0 <= offset_probability <= onset_probability <= 1.0:
        raise InvalidAudioError(f"offset_probability={offset_probability} and onset_probability="
                                f"{onset_probability} must satisfy 0 <= offset <= onset <= 1")
    for name, value in (("hangover_ms", hangover_ms), ("min_speech_ms", min_speech_ms),
                        ("min_silence_ms", min_silence_ms)):
        if not 0.0 <= value <= 10000.0:
            raise InvalidAudioError(f"{name}={value} ms is outside 0..10000 ms")
    frame_s, p = speech_probability(audio, sample_rate, threshold_db=threshold_db,
                                    harmonicity_threshold=harmonicity_threshold, noise_window_s=noise_window_s)
    speech = _hysteresis(p, onset_probability, offset_probability, np.zeros(p.size, bool))
    frames = [int(round(ms / 1000.0 / frame_s)) for ms in (hangover_ms, min_silence_ms, min_speech_ms)]
    return frame_s, _tidy(speech, *frames)


def mask_segments(speech, frame_s=FRAME_S):
    """The runs of ``speech`` as ``[(start_s, end_s)]``. Shape: speech (frames,) bool."""
    starts, ends = runs(speech)
    return [(float(s * frame_s), float(e * frame_s)) for s, e in zip(starts, ends)]


def speech_segments(audio, sample_rate, **options):
    """:func:`voice_activity` as a list of ``(start_s, end_s)`` spans of speech, in order; ``options``
    are :func:`voice_activity`'s keywords."""
    frame_s, speech = voice_activity(audio, sample_rate, **options)
    return mask_segments(speech, frame_s)
