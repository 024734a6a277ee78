"""The ``classic`` denoiser: MMSE log-spectral-amplitude (Ephraim & Malah 1985) over an STFT, with
decision-directed a-priori SNR and MCRA noise tracking (:func:`roomtone.kernels.enhance.lsa_gains`).
Any sample rate, no weights, no JAX: the denoiser every installation has.

STFT: frames of about 32 ms (a multiple of 64 samples), hop a quarter frame, periodic Hann analysis
and synthesis windows (their squares sum to 1.5 at that overlap). The signal is processed in
chunks of frames with the tracker's state carried over, each chunk's output written over the input
once no later frame reaches it, so memory is one chunk whatever the length (the output itself in
place of the input, :meth:`ClassicDenoiser.denoise_in_place`), and the result does not depend on
the chunk size. The noise tracker is first
run over the opening seconds (a look-ahead warm-up, offline), so the start of a file is not
treated as noise-free. Output: the input's length, sample-aligned (no delay).

Shape: audio (channels, samples) float32 in and out.
"""

import numpy as np

from roomtone.kernels.enhance import (N_PARAMS, P_ALPHA_D, P_ALPHA_DD, P_ALPHA_P, P_ALPHA_S, P_DELTA, P_GAIN_MIN,
                                      P_SIDE_GAP, P_SIDE_SPAN, P_TONAL_CAP, P_WINDOW, P_XI_MIN, ST_CLEAN, ST_MIN,
                                      ST_NOISE, ST_SMOOTH, ST_TMP, STATE_ROWS, lsa_gains, overlap_add)
from roomtone.models.stft import frame_count, frames_host, hann

FRAME_S = 0.032
CHUNK_FRAMES = 1024
WARM_UP_S = 3.0
MIN_WINDOW_S = 1.0  # MCRA minimum search window
XI_MIN_DB = -25.0  # a-priori SNR floor (limits musical noise)


def frame_length(sample_rate):
    """STFT frame length in samples: about 32 ms, a multiple of 64."""
    return max(64, int(round(FRAME_S * sample_rate / 64.0)) * 64)


def _params(sample_rate, hop, n_fft, atten_lim_db):
    params = np.zeros(N_PARAMS)
    params[P_ALPHA_DD] = 0.98
    params[P_XI_MIN] = 10.0 ** (XI_MIN_DB / 10.0)
    params[P_GAIN_MIN] = 0.0 if atten_lim_db is None or atten_lim_db >= 100.0 else 10.0 ** (-atten_lim_db / 20.0)
    # Cohen & Berdugo's constants are for a 8 ms hop; keep their time constants at other hops
    scale = hop / sample_rate / 0.008
    params[P_ALPHA_S] = 0.8 ** scale
    params[P_ALPHA_P] = 0.2 ** scale
    params[P_ALPHA_D] = 0.95 ** scale
    params[P_DELTA] = 5.0
    params[P_WINDOW] = max(8, int(round(MIN_WINDOW_S * sample_rate / hop)))
    params[P_TONAL_CAP] = 4.0
    bin_hz = sample_rate / n_fft
    params[P_SIDE_GAP] = max(3, int(round(90.0 / bin_hz)))  # beyond a Hann main lobe
    params[P_SIDE_SPAN] = params[P_SIDE_GAP] + max(4, int(round(250.0 / bin_hz)))
    return params


class ClassicDenoiser:
    """MMSE-LSA + MCRA, any sample rate (``sample_rate`` is None: called with the audio's rate)."""

    name = "classic"
    sample_rate = None

    def __init__(self, chunk_frames=CHUNK_FRAMES):
        self.chunk_frames = int(chunk_frames)

    def __repr__(self):
        return "ClassicDenoiser()"

    def __call__(self, audio, atten_lim_db=None, sample_rate=None, progress=None):
        """Denoise every channel of ``audio`` at ``sample_rate`` (Hz); ``atten_lim_db`` limits the
        attenuation (gain floor ``10^(-atten_lim_db / 20)``; None or 100: unlimited)."""
        return self.denoise_in_place(np.array(audio, dtype=np.float32, order="C", copy=True), atten_lim_db,
                                     sample_rate=sample_rate, progress=progress)

    def denoise_in_place(self, audio, atten_lim_db=None, sample_rate=None, progress=None):
        """:meth:`__call__` written over ``audio`` (writeable float32 (channels, samples)), the same
        output; scratch: one chunk of frames. ``progress``: optional ``callable(done, total)``
        called after each chunk of each channel (``total``: channels x chunks). Returns ``audio``."""
        if sample_rate is None:
            raise ValueError("the classic denoiser needs the audio's sample_rate")
        channels, n = audio.shape
        per = chunk_count(n, int(sample_rate), self.chunk_frames)
        for c in range(channels):
            told = None if progress is None else (lambda done, _, c=c: progress(c * per + done, channels * per))
            denoise_channel_in_place(audio[c], int(sample_rate), atten_lim_db, self.chunk_frames, progress=told)
        return audio


def _frames_power(x, first, count, n_fft, hop, window):
    """Windowed spectra (float64) of frames ``first .. first + count - 1`` of ``x``
    (:func:`roomtone.models.stft.frames_host`): ``(spectrum, power)``."""
    spectrum = np.fft.rfft(frames_host(x, n_fft, hop, first, count) * window, axis=1)
    return spectrum, spectrum.real ** 2 + spectrum.imag ** 2


def denoise_channel(x, sample_rate, atten_lim_db=None, chunk_frames=CHUNK_FRAMES):
    """One channel through the classic denoiser. Shape: (samples,) float32 -> same, float32."""
    return denoise_channel_in_place(np.array(x, dtype=np.float32, copy=True), sample_rate, atten_lim_db,
                                    chunk_frames)


def chunk_count(samples, sample_rate, chunk_frames=CHUNK_FRAMES):
    """How many chunks of ``chunk_frames`` frames :func:`denoise_channel_in_place` takes through a
    channel of ``samples`` samples (at least 1: a silent or empty channel is one step)."""
    n_fft = frame_length(sample_rate)
    hop = n_fft // 4
    n_frames = frame_count(samples, hop, n_fft)
    return max(1, -(-n_frames // int(chunk_frames)))


def denoise_channel_in_place(x, sample_rate, atten_lim_db=None, chunk_frames=CHUNK_FRAMES, progress=None):
    """:func:`denoise_channel` written over ``x`` (a writeable float32 row), the same output. The
    frames of a chunk overlap-add into a scratch of the chunk's span; what no later frame reaches
    is final and written over ``x`` at once, the overlap carried to the next chunk, whose frames
    read ``x`` only from where those writes stop. ``progress(done, total)``, optional, is called
    after each chunk (:func:`chunk_count` of them). Returns ``x``."""
    n = x.shape[0]
    total = chunk_count(n, sample_rate, chunk_frames)  # progress's count
    if n == 0 or not np.any(x):
        if progress is not None:
            progress(total, total)
        return x
    n_fft = frame_length(sample_rate)
    hop = n_fft // 4
    window = hann(n_fft, np.float64)
    lead = n_fft - hop  # the first fully overlapped sample of the padded signal
    n_frames = frame_count(n, hop, n_fft)
    params = _params(sample_rate, hop, n_fft, atten_lim_db)
    bins = n_fft // 2 + 1
    state = np.zeros((STATE_ROWS, bins))
    counter = np.zeros(1, dtype=np.int64)
    # warm-up: the tracker runs over the opening seconds, its noise estimate starts the real pass
    warm = min(n_frames, max(1, int(WARM_UP_S * sample_rate / hop)))
    _, power = _frames_power(x, 0, warm, n_fft, hop, window)
    first = power[min(warm - 1, lead // hop)]
    for row in (ST_NOISE, ST_SMOOTH, ST_MIN, ST_TMP):
        state[row] = first
    lsa_gains(power, state, counter, params, np.empty(power.shape, dtype=np.float32))
    state[ST_CLEAN] = 0.0
    state[ST_SMOOTH] = state[ST_NOISE]
    state[ST_MIN] = state[ST_TMP] = state[ST_NOISE]
    counter[0] = 0
    norm = 1.0 / 1.5  # sum of squared periodic Hann windows at a quarter-frame hop
    carry = np.zeros(lead)  # the overlap-add of the padded signal from the chunk's start, so far
    for f0 in range(0, n_frames, chunk_frames):
        count = min(chunk_frames, n_frames - f0)
        start = f0 * hop  # in the padded signal; the chunk's frames span start .. start + count hop + lead
        spectrum, power = _frames_power(x, f0, count, n_fft, hop, window)
        gains = lsa_gains(power, state, counter, params, np.empty(power.shape, dtype=np.float32))
        frames = np.fft.irfft(spectrum * gains, n=n_fft, axis=1) * (window * norm)
        span = np.zeros(count * hop + lead)
        span[:lead] = carry
        overlap_add(frames, hop, span, 0)
        stop = start + count * hop  # later frames start here: everything before is final
        i0, i1 = max(start, lead), min(stop, lead + n)
        if i1 > i0:
            x[i0 - lead:i1 - lead] = span[i0 - start:i1 - start]
        carry = span[count * hop:].copy()
        if progress is not None:
            progress(f0 // chunk_frames + 1, total)
    return x
