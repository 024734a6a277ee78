"""The ``dsp`` separator: a classical combination of soft time-frequency masks, no weights, any
sample rate, any channel count. The benchmark row every model must beat, and what lets the job be
tested without weights.

On an STFT of about 93 ms (4096 samples at 44.1/48 kHz), hop a quarter of it, periodic Hann:

- **drums**: median-filter harmonic/percussive separation (Fitzgerald 2010) of the channel-mean
  magnitude ``S``: ``H`` = running median of ``S`` across :data:`HARMONIC_S` of frames,
  ``P`` = across :data:`PERCUSSIVE_HZ` of bins; the percussive soft mask ``P^2 / (H^2 + P^2)``
  (Wiener-like, power 2), the harmonic mask its complement;
- **bass**: the harmonic part times a smooth low-pass weight ``1 / (1 + (f / fc)^8)`` (a
  4th-order Butterworth power response) at :data:`BASS_CROSSOVER_HZ`;
- **vocals**: the harmonic part above the bass, in the band :data:`VOCAL_BAND_HZ` (2nd-order
  high-pass and 4th-order low-pass power responses), weighted by a centre-channel mask for stereo:
  the normalised cross-spectrum ``c = 2 Re <L R*> / (<|L|^2> + <|R|^2>)`` (1 for a source panned
  dead centre, about 0 for uncorrelated or hard-panned ones; ``<.>`` a moving average over
  :data:`COHERENCE_FRAMES` frames), clipped to ``[0, 1]`` and raised to :data:`CENTRE_POWER`
  (after Avendano & Jot's inter-channel coherence up-mixing). Mono or more than two channels: no
  centre cue, the harmonic mid band is the vocal estimate;
- **other**: what is left (the masks sum to 1 in every bin).

The masks are applied to every channel's spectrum, or, for ``dsp-wiener``, used as magnitude
estimates for multichannel Wiener/EM refinement (:func:`roomtone.separate.filtering.wiener`). The
job chunks long input into :data:`SEGMENT_S` segments cross-faded over :data:`OVERLAP_S`, so
memory stays bounded; the medians are local (well under a segment), so chunked is close to whole.

Shape: block (batch, channels, samples) float32 -> (batch, 4, channels, samples).
"""

import numpy as np

from roomtone.separate.spectral import fft_size, istft, stft

STEMS = ("vocals", "drums", "bass", "other")
HARMONIC_S = 0.4  # time span of the harmonic median (s)
PERCUSSIVE_HZ = 250.0  # frequency span of the percussive median (Hz)
FRAME_S = 0.093  # STFT length (s), rounded to a power of two
# FRAME_S and PERCUSSIVE_HZ were chosen on the synthetic mix of the tests (kick, hi-hat, voice, bass;
# tests/test_separate_dsp.py), never on the evaluation excerpt: against 46 ms and 500 Hz, the kick's
# low sustain stays with the drums (drums SDR 1.6 -> 4.5 dB, bass 10.2 -> 13.5 dB there).
BASS_CROSSOVER_HZ = 170.0
VOCAL_BAND_HZ = (150.0, 8000.0)
CENTRE_POWER = 6.0
COHERENCE_FRAMES = 3
SEGMENT_S = 20.0
OVERLAP_S = 2.0
EPS = 1e-12


def _odd(n):
    n = max(1, int(round(n)))
    return n if n % 2 else n + 1


def _moving_average(x, width, axis):
    """Centred moving average of ``width`` (odd) along ``axis``, edges by repetition."""
    if width <= 1:
        return x
    h = width // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (h, h)
    padded = np.pad(x, pad, mode="edge")
    c = np.cumsum(padded, axis=axis, dtype=np.complex128 if np.iscomplexobj(x) else np.float64)
    zero = np.zeros_like(np.take(c, [0], axis=axis))
    c = np.concatenate([zero, c], axis=axis)
    n = x.shape[axis]
    upper = np.take(c, np.arange(width, width + n), axis=axis)
    lower = np.take(c, np.arange(0, n), axis=axis)
    return ((upper - lower) / width).astype(x.dtype)


class DspSeparator:
    """HPSS drums, low-passed harmonic bass, centre-masked vocals, residual other (see the module)."""

    stems = STEMS
    sample_rate = None
    channels = None
    fixed_segment = False
    batch = 1

    def __init__(self, *, wiener_iterations=0, name="dsp", segment_s=None, overlap_s=None):
        self.name = name
        self.wiener_iterations = int(wiener_iterations)
        self.segment_s = float(SEGMENT_S if segment_s is None else segment_s)
        self.overlap_s = float(OVERLAP_S if overlap_s is None else overlap_s)

    def __repr__(self):
        return f"DspSeparator(name={self.name!r}, wiener_iterations={self.wiener_iterations})"

    def separate_segment(self, block, sample_rate):
        return np.stack([self.separate_one(x, sample_rate) for x in np.asarray(block, np.float32)])

    def masks(self, spec, sample_rate, n_fft):
        """Soft masks ``(frames, bins, 4)`` summing to 1, from the spectra ``(channels, frames,
        bins)``, in :data:`STEMS` order."""
        from roomtone.kernels.median import median_filter_rows

        channels, frames, bins = spec.shape
        hop = n_fft // 4
        mag = np.ascontiguousarray(np.abs(spec).mean(axis=0), dtype=np.float32)  # (frames, bins)
        harmonic = median_filter_rows(np.ascontiguousarray(mag.T), _odd(HARMONIC_S * sample_rate / hop)).T
        percussive = median_filter_rows(mag, _odd(PERCUSSIVE_HZ * n_fft / sample_rate))
        h2, p2 = np.square(harmonic, dtype=np.float32), np.square(percussive, dtype=np.float32)
        drums = p2 / (h2 + p2 + EPS)
        harm = 1.0 - drums
        freqs = np.arange(bins) * (sample_rate / n_fft)
        low = 1.0 / (1.0 + (freqs / BASS_CROSSOVER_HZ) ** 8)
        lo, hi = VOCAL_BAND_HZ
        with np.errstate(divide="ignore"):
            band = (1.0 / (1.0 + (lo / np.maximum(freqs, 1e-3)) ** 4)) / (1.0 + (freqs / hi) ** 8)
        centre = self.centre_mask(spec) if channels == 2 else 1.0
        bass = harm * low.astype(np.float32)
        vocals = harm * ((1.0 - low) * band).astype(np.float32) * centre
        other = np.clip(harm - bass - vocals, 0.0, 1.0)
        return np.stack([vocals, drums, bass, other], axis=-1).astype(np.float32)

    @staticmethod
    def centre_mask(spec):
        """``clip(2 Re <L R*> / (<|L|^2> + <|R|^2>), 0, 1) ** CENTRE_POWER``: (frames, bins)."""
        left, right = spec[0], spec[1]
        cross = _moving_average((left * np.conj(right)).real.astype(np.float32), COHERENCE_FRAMES, 0)
        power = _moving_average((np.abs(left) ** 2 + np.abs(right) ** 2).astype(np.float32), COHERENCE_FRAMES, 0)
        c = np.clip(2.0 * cross / (power + EPS), 0.0, 1.0)
        return (c ** CENTRE_POWER).astype(np.float32)

    def separate_one(self, x, sample_rate):
        """One segment: (channels, samples) -> (4, channels, samples)."""
        channels, samples = x.shape
        n_fft = fft_size(sample_rate, FRAME_S)
        hop = n_fft // 4
        spec = stft(x, n_fft, hop)  # (channels, frames, bins)
        masks = self.masks(spec, sample_rate, n_fft)  # (frames, bins, 4)
        if self.wiener_iterations:
            from roomtone.separate.filtering import wiener

            mix = np.transpose(spec, (1, 2, 0))  # (frames, bins, channels)
            v = np.abs(mix)[..., None] * masks[:, :, None, :]
            images = wiener(v, mix, self.wiener_iterations)  # (frames, bins, channels, 4)
            return np.stack([istft(np.transpose(images[..., j], (2, 0, 1)), n_fft, hop, samples)
                             for j in range(len(STEMS))])
        # one stem at a time: the peak memory is one stem's spectrogram, not four
        return np.stack([istft(spec * masks[None, :, :, j], n_fft, hop, samples) for j in range(len(STEMS))])
