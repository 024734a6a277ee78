"""What the mix job measures of each track as it is read: its loudness (plain BS.1770-4 and
refined), its pitch and its spectral shape, for the rules of stage 1 and the report.

Refined loudness, as the two-stage automatic mixing paper measures it (loudness misjudges
narrow-band sources, whose energy LUFS weighs by where it sits, not by how loud it sounds in a
mix): a track with a stable f0 (voiced in at least :data:`VOICED_SHARE` of its active frames, the
middle half of its f0 within :data:`STABLE_OCTAVES` octaves) is measured in the band from 2 to 4
times its median f0; one without, from 50 Hz to 10 kHz. The centroid variant measures the band
from half to twice the spectral centroid. Each is the integrated loudness (BS.1770-4, K-weighted,
gated) of the band-passed track (an FFT brick wall over the analysed excerpt), plus the loudness
the band loses against the whole track on that excerpt, so every measure stays in LUFS of the track.

f0: YIN (:func:`roomtone.kernels.f0.yin`) on the channel mean decimated to
:data:`ANALYSIS_RATE`, 46 ms frames every 23 ms, 40-1000 Hz. The spectral features (centroid,
spread, low-frequency share, percussiveness) come from the same excerpt.

Memory and time: at most :data:`ANALYSIS_S` seconds of a track (5 s segments spread over its
active part) are analysed, with one FFT; the loudness is the whole track's. Shape: a track (channels, samples) float32.
"""

import dataclasses

import numpy as np

from roomtone.meter import integrated_loudness

ANALYSIS_RATE = 11025
FRAME_S = 512 / ANALYSIS_RATE
HOP_S = 256 / ANALYSIS_RATE
F0_MIN_HZ, F0_MAX_HZ = 40.0, 1000.0
YIN_THRESHOLD = 0.15
VOICED_SHARE = 0.5
STABLE_OCTAVES = 1.0
ANALYSIS_S = 30.0
SEGMENT_S = 5.0
BROAD_BAND_HZ = (50.0, 10000.0)


@dataclasses.dataclass
class TrackAnalysis:
    """One track's measures (dB values in LUFS; frequencies in Hz)."""

    loudness_lufs: float  # BS.1770-4 integrated, the whole track as it will be mixed (stereo)
    refined_lufs: float  # the f0-band (or broad-band) loudness, in LUFS of the track
    centroid_lufs: float  # the centroid-band variant
    f0_hz: float  # median f0 when stable, else 0
    voiced_share: float  # of the active frames
    band_hz: tuple  # the band the refined loudness read
    centroid_hz: float
    spread_octaves: float
    low_share: float  # energy share under 150 Hz
    low_edge_hz: float  # the frequency under which 1 % of the track's energy lies
    percussiveness: float  # 99th percentile of the 10 ms envelope over its median (dB), active part
    active_share: float  # frames within 40 dB of the track's loudest
    peak_dbfs: float

    MEASURES = {"refined": "refined_lufs", "centroid": "centroid_lufs", "plain": "loudness_lufs"}

    def loudness(self, measure):
        """The reading ``measure`` names: ``"refined"``, ``"centroid"`` or ``"plain"`` (LUFS)."""
        return getattr(self, self.MEASURES[measure])

    def as_dict(self):
        out = {k: (round(v, 3) if isinstance(v, float) and np.isfinite(v) else v) for k, v in
               dataclasses.asdict(self).items()}
        out["band_hz"] = [round(float(b), 1) for b in self.band_hz]
        return out


def excerpt(audio, sample_rate, seconds=ANALYSIS_S, segment_s=SEGMENT_S):
    """At most ``seconds`` of ``audio``: segments of ``segment_s`` spread evenly over the span
    where the track plays (first to last sample above -60 dBFS), joined. Shape: (channels, m)."""
    mono = np.abs(audio).max(axis=0)
    loud = np.flatnonzero(mono > 1e-3)
    if loud.size == 0:
        return audio[:, :0]
    first, last = int(loud[0]), int(loud[-1]) + 1
    span = audio[:, first:last]
    limit = int(seconds * sample_rate)
    if span.shape[1] <= limit:
        return span
    seg = int(segment_s * sample_rate)
    count = max(1, limit // seg)
    starts = np.linspace(0, span.shape[1] - seg, count).astype(int)
    return np.concatenate([span[:, s:s + seg] for s in starts], axis=1)


def f0_track(mono, sample_rate):
    """``(f0 Hz per frame (0: unvoiced), aperiodicity, frame RMS)`` of ``mono`` (n,) by YIN at
    :data:`ANALYSIS_RATE`."""
    from roomtone.kernels.f0 import yin
    from roomtone.resample import resample

    x = resample(mono[None].astype(np.float32), sample_rate, ANALYSIS_RATE)[0].astype(np.float64)
    frame, hop = int(round(FRAME_S * ANALYSIS_RATE)), int(round(HOP_S * ANALYSIS_RATE))
    tau_min, tau_max = int(ANALYSIS_RATE / F0_MAX_HZ), int(np.ceil(ANALYSIS_RATE / F0_MIN_HZ))
    count = max(0, (x.size - frame - tau_max) // hop + 1)
    f0, aperiodicity = np.zeros(count), np.ones(count)
    yin(np.ascontiguousarray(x), float(ANALYSIS_RATE), frame, hop, tau_min, tau_max, YIN_THRESHOLD, f0, aperiodicity)
    rms = np.array([np.sqrt(np.mean(x[i * hop:i * hop + frame] ** 2)) for i in range(count)])
    return f0, aperiodicity, rms


def fast_length(n):
    """The FFT length used for ``n`` samples: the next power of two (pocketfft is slow on lengths
    with large prime factors)."""
    return 1 << max(0, int(n - 1).bit_length())


def band_loudness(audio, sample_rate, band_hz, plain_lufs, spectrum=None):
    """Loudness in ``band_hz`` of ``audio`` (an excerpt) in LUFS of the whole track: the band's
    integrated loudness on the excerpt, less the excerpt's own, plus the whole track's
    ``plain_lufs`` (so a track whose energy is all in the band reads its plain loudness).
    ``spectrum``: ``audio``'s rfft at :func:`fast_length`, when the caller has it."""
    n = audio.shape[1]
    size = fast_length(n)
    spectrum = np.fft.rfft(audio, n=size, axis=1) if spectrum is None else spectrum
    f = np.fft.rfftfreq(size, 1.0 / sample_rate)
    keep = (f >= band_hz[0]) & (f <= band_hz[1])
    band = np.fft.irfft(spectrum * keep, n=size, axis=1)[:, :n].astype(np.float32)
    whole = integrated_loudness(np.ascontiguousarray(audio), sample_rate)
    part = integrated_loudness(np.ascontiguousarray(band), sample_rate)
    if not (np.isfinite(whole) and np.isfinite(part)):
        return float(plain_lufs)
    return float(plain_lufs + part - whole)


def analyse(audio, sample_rate):
    """The :class:`TrackAnalysis` of one track, (channels, samples) float32 (mono is measured as
    the centred stereo it becomes in the mix). None for a silent track."""
    stereo = np.repeat(audio, 2, axis=0) if audio.shape[0] == 1 else audio[:2]
    stereo = np.ascontiguousarray(stereo, dtype=np.float32)
    plain = float(integrated_loudness(stereo, sample_rate))
    if not np.isfinite(plain):
        return None
    part = excerpt(stereo, sample_rate)
    mono = part.mean(axis=0)
    f0, aperiodicity, rms = f0_track(mono, sample_rate)
    active = rms > (rms.max() * 10 ** (-40 / 20) if rms.size else 0.0)
    voiced = active & (f0 > 0)
    voiced_share = float(voiced.sum() / max(1, active.sum()))
    f0_hz = 0.0
    if voiced.sum() >= 5 and voiced_share >= VOICED_SHARE:
        octaves = np.log2(f0[voiced])
        q25, q75 = np.percentile(octaves, [25, 75])
        if q75 - q25 <= STABLE_OCTAVES:
            f0_hz = float(2 ** np.median(octaves))
    spec = np.fft.rfft(part, n=fast_length(part.shape[1]), axis=1)  # once: the features and both bands
    spectrum = np.abs(spec.mean(axis=0)) ** 2  # the mono mean's
    freqs = np.fft.rfftfreq(fast_length(part.shape[1]), 1.0 / sample_rate)
    total = spectrum.sum() + 1e-30
    centroid = float((spectrum * freqs).sum() / total)
    logf = np.log2(np.maximum(freqs, 20.0))
    mean_log = (spectrum * logf).sum() / total
    spread = float(np.sqrt(max((spectrum * (logf - mean_log) ** 2).sum() / total, 0.0)))
    low_share = float(spectrum[freqs < 150.0].sum() / total)
    cumulative = np.cumsum(spectrum) / total
    low_edge = float(freqs[min(int(np.searchsorted(cumulative, 0.01)), freqs.size - 1)])
    hop10 = max(1, int(0.01 * sample_rate))
    m = mono.size // hop10
    env = np.sqrt(np.mean(mono[:m * hop10].reshape(m, hop10) ** 2, axis=1)) if m else np.zeros(1)
    env_active = env[env > env.max() * 10 ** (-40 / 20)] if env.size and env.max() > 0 else env
    percussive = float(20 * np.log10((np.percentile(env_active, 99) + 1e-12) / (np.median(env_active) + 1e-12))) \
        if env_active.size else 0.0
    band = (min(max(2 * f0_hz, BROAD_BAND_HZ[0]), BROAD_BAND_HZ[1]), min(4 * f0_hz, BROAD_BAND_HZ[1])) \
        if f0_hz else BROAD_BAND_HZ
    refined = band_loudness(part, sample_rate, band, plain, spec)
    centroid_band = (max(centroid / 2, 20.0), min(centroid * 2, 0.49 * sample_rate))
    centroid_lufs = band_loudness(part, sample_rate, centroid_band, plain, spec)
    return TrackAnalysis(loudness_lufs=plain, refined_lufs=refined, centroid_lufs=centroid_lufs, f0_hz=f0_hz,
                         voiced_share=voiced_share, band_hz=band, centroid_hz=centroid, spread_octaves=spread,
                         low_share=low_share, low_edge_hz=low_edge, percussiveness=percussive,
                         active_share=float(active.mean()) if active.size else 0.0,
                         peak_dbfs=float(20 * np.log10(np.abs(stereo).max() + 1e-12)))
