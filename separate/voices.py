"""Splitting a recording of several voices into one track per speaker, with the turns (who spoke
when): the ``separate --speakers`` job (:func:`speakers`).

The pipeline, on each channel of the input (the turns found once, on the mono mix):

1. On a denoised copy of the mix (the enhance job's ``roomtone`` denoiser): voice activity
   (:mod:`roomtone.separate.vad`), speaker embeddings over short windows
   (:mod:`roomtone.separate.speaker_encoder`), clustering and re-segmentation
   (:mod:`roomtone.separate.diarize`): the turns, as 10 ms activity per speaker (overlaps
   included).
2. The separation model (:mod:`roomtone.separate.speakers_net`) at 16 kHz, on segments of
   :data:`~roomtone.separate.speakers_net.SEGMENT_S` cross-faded together: two voices and a
   residual (noise) per segment, the voices in no fixed order.
3. Assembly (:func:`assign_segment`): in each segment, the two speakers the turns find most active
   take the model's two voices, ordered by which voice holds each speaker's solo frames; where the
   turns say one speaker talks alone, that speaker takes both voices (the model is trusted only
   where voices overlap); a third speaker active in the segment takes its solo frames from both.
   Gates are 10 ms activity smoothed over :data:`GATE_MS`.
4. Back at the input's rate: whatever the 16 kHz outputs do not hold (the band above 8 kHz, the
   resampler's error) is shared among the tracks and the residual by their short-time energy.

The speaker tracks and the residual sum to the input (to float32 rounding): nothing is lost.

Shape: audio (channels, samples) float32; tracks (speakers, channels, samples); residual
(channels, samples).
"""

import os
import time

import numpy as np

from roomtone.models.apply import segment_starts, segment_weights

FRAME_S = 0.01  # the turns' activity resolution
GATE_MS = 20.0  # activity edges smoothed over this (no clicks at a turn)
SHARE_MS = 20.0  # the energy window that shares the band above the model's


def _smooth(x, width):
    """Centred moving mean over ``width`` samples along the last axis, edges cut. Shape kept."""
    if width <= 1:
        return x.astype(np.float32)
    pad = [(0, 0)] * (x.ndim - 1) + [(width // 2, width - 1 - width // 2)]
    padded = np.pad(x.astype(np.float64), pad, mode="edge")
    csum = np.cumsum(padded, axis=-1)
    csum = np.concatenate([np.zeros(x.shape[:-1] + (1,)), csum], axis=-1)
    return ((csum[..., width:] - csum[..., :-width]) / width).astype(np.float32)


def sample_gates(activity, start, stop, sample_rate, frame_s=FRAME_S):
    """Per-sample gates in [0, 1] of the speakers' 10 ms ``activity`` (speakers, frames) bool over
    samples ``start..stop``, edges smoothed over :data:`GATE_MS`. Shape: (speakers, stop - start)."""
    hop = frame_s * sample_rate
    margin = int(GATE_MS * 1e-3 * sample_rate)
    lo, hi = max(0, start - margin), stop + margin
    frames = np.minimum((np.arange(lo, hi) / hop).astype(np.int64), activity.shape[1] - 1)
    raw = activity[:, frames].astype(np.float32)
    gates = _smooth(raw, max(1, int(GATE_MS * 1e-3 * sample_rate)))
    return gates[:, start - lo:start - lo + (stop - start)]


def assign_segment(voices, gates):
    """One segment's speaker tracks from the model's voices.

    Args:
        voices: (2, samples) the model's two voice outputs, in no fixed order.
        gates: (speakers, samples) each speaker's smoothed activity (:func:`sample_gates`).
    Returns: (speakers, samples) float32; the tracks sum to ``voices.sum(0)``.
    """
    speakers, n = gates.shape
    out = np.zeros((speakers, n), np.float32)
    both = voices[0] + voices[1]
    if speakers == 0:
        return out
    ranked = np.argsort(-gates.sum(axis=1), kind="stable")
    if speakers == 1 or gates[ranked[1]].sum() == 0.0:
        out[ranked[0]] = both
        return out
    a, b = int(ranked[0]), int(ranked[1])
    # solo_k: speaker k talks and no one else does (products of the soft gates)
    silent = 1.0 - gates
    solo = np.stack([gates[k] * np.prod(np.delete(silent, k, axis=0), axis=0) for k in range(speakers)])
    energy = voices.astype(np.float64) ** 2
    score = energy @ solo[[a, b]].T.astype(np.float64)  # (voice, a|b): a voice's energy where each talks alone
    ja = 0 if score[0, 0] + score[1, 1] >= score[1, 0] + score[0, 1] else 1
    rest = 1.0 - solo.sum(axis=0)  # overlap or silence: the model's voices as they are
    out[:] = solo * both
    out[a] += rest * voices[ja]
    out[b] += rest * voices[1 - ja]
    return out


def model_segments(run, x16, segment, overlap, batch=4, progress=None):
    """The model over ``x16`` (samples,) in segments of ``segment`` samples overlapping by
    ``overlap`` (:func:`roomtone.models.apply.segment_starts`), ``batch`` at a time. Yields
    ``(start, stop, outputs (3, stop - start), input (stop - start,))`` per segment, in order;
    ``progress(done, count)`` after each batch."""
    n = x16.size
    starts = segment_starts(n, segment, segment - overlap)
    for first in range(0, len(starts), batch):
        group = starts[first:first + batch]
        block = np.zeros((batch, segment), np.float32)
        for j, s in enumerate(group):
            piece = x16[s:s + segment]
            block[j, :piece.size] = piece
        out = run(block)
        for j, s in enumerate(group):
            stop = min(s + segment, n)
            yield s, stop, out[j, :, :stop - s], block[j, :stop - s]
        if progress is not None:
            progress(min(first + batch, len(starts)), len(starts))


def separate_channel(run, x16, activity, *, segment, overlap, offset=0, batch=4, progress=None):
    """One channel at 16 kHz through the model, segment by segment, assembled into tracks.

    Args:
        run: ``callable(block (items, segment)) -> (items, 3, segment)`` (two voices, residual).
        x16: (samples,) float32 at 16 kHz.
        activity: (speakers, frames) bool at :data:`FRAME_S`, frame 0 at ``x16``'s sample ``-offset``
            (a block of a longer recording starts ``offset`` samples in).
    Returns: (tracks (speakers, samples), residual (samples,)) float32; they sum to ``x16``
    within the model's reconstruction (float32 rounding and the STFT's, about -100 dB).
    """
    n = x16.size
    speakers = activity.shape[0]
    segment = min(segment, n)
    overlap = min(overlap, segment // 2)
    starts = segment_starts(n, segment, segment - overlap)
    weights, total = segment_weights(n, segment, starts, overlap)
    tracks = np.zeros((speakers, n), np.float32)
    residual = np.zeros(n, np.float32)
    for s, stop, out, _ in model_segments(run, x16, segment, overlap, batch, progress):
        w = weights[s][:stop - s]
        gates = sample_gates(activity, offset + s, offset + stop, 16000)
        tracks[:, s:stop] += assign_segment(out[:2], gates) * w
        residual[s:stop] += out[2] * w
    tracks /= total
    residual /= total
    return tracks, residual


SHARE_BLOCK = 1 << 20  # samples per block of share_remainder (memory: a few blocks, whatever the length)


def share_remainder(remainder, parts, sample_rate, block=SHARE_BLOCK):
    """Add ``remainder`` (samples,) to ``parts`` (k, samples) in place, shared by the parts'
    short-time energy (over :data:`SHARE_MS`; equally where all are silent), block by block.
    Returns ``parts``."""
    width = max(1, int(SHARE_MS * 1e-3 * sample_rate))
    n = parts.shape[1]
    for start in range(0, n, block):
        stop = min(n, start + block)
        lo, hi = max(0, start - width), min(n, stop + width)
        energy = _smooth(parts[:, lo:hi].astype(np.float64) ** 2, width)[:, start - lo:stop - lo]
        energy = energy.astype(np.float64) + 1e-20
        parts[:, start:stop] += (remainder[start:stop] * (energy / energy.sum(axis=0, keepdims=True))).astype(
            np.float32)
    return parts


# ------------------------------------------------------------------ speaker embeddings without the wheel

DIMENSIONS = 24  # discriminant directions kept by the fallback embedding
LDA_WEIGHTS = "weights/melstats_lda.npz"


def mel_stats(wav, sample_rate=16000, *, window_s=1.5, hop_s=0.75):
    """Per window of ``window_s`` every ``hop_s``: the mean and standard deviation over its frames
    of the 40 log-mel energies of the GE2E front end (16 kHz, 25 ms / 10 ms), the last window
    reaching the end. Shape: (samples,) -> (starts_s (n,), features (n, 80) float64)."""
    from roomtone.separate.speaker_encoder import HOP, mel_span, mono_16k, frame_count

    wav = mono_16k(wav, sample_rate, "speaker windows")
    frames = frame_count(wav.size)
    window = max(1, int(round(window_s * 16000 / HOP)))
    hop = max(1, int(round(hop_s * 16000 / HOP)))
    count = 1 + max(0, -(-(frames - window) // hop))
    mel = np.log(mel_span(wav, 0, frames).astype(np.float64) + 1e-6)
    out = np.empty((count, 2 * mel.shape[1]), np.float64)
    for i in range(count):
        part = mel[i * hop:i * hop + window]
        out[i, :mel.shape[1]] = part.mean(axis=0)
        out[i, mel.shape[1]:] = part.std(axis=0)
    return np.arange(count) * hop * (HOP / 16000), out


class MelStatsEncoder:
    """The speaker embedding when the GE2E weights are not installed (ours): per window the mean and
    standard deviation of 40 log-mel energies (:func:`mel_stats`), less the training windows' mean
    (not the recording's: a monologue must stay one cloud), through a linear discriminant projection fitted on the training speakers
    (``python -m roomtone.separate.training.speaker_lda``: Fisher's LDA, within-speaker scatter
    whitened, :data:`DIMENSIONS` directions), scaled to unit length. It tells fewer voices apart
    than GE2E (``benchmarks/bench_speakers.py``)."""

    name = "mel-stats"
    sample_rate = 16000

    def __init__(self, path=None):
        from importlib.resources import files

        from roomtone.models import weights

        path = str(files("roomtone.separate").joinpath(LDA_WEIGHTS)) if path is None else str(path)
        arrays = weights.load_arrays(path)
        self.mean = arrays["mean"].astype(np.float64)
        self.projection = arrays["projection"].astype(np.float64)

    def embed_windows(self, wav, sample_rate=16000, *, window_s=1.5, hop_s=0.75):
        """As :meth:`roomtone.separate.speaker_encoder.SpeakerEncoder.embed_windows`.
        Shape: (samples,) -> (starts_s (n,), embeddings (n, DIMENSIONS) float32)."""
        starts, features = mel_stats(wav, sample_rate, window_s=window_s, hop_s=hop_s)
        out = (features - self.mean) @ self.projection
        out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-12
        return starts, out.astype(np.float32)


def load_embedder(path=None):
    """The GE2E encoder (:func:`roomtone.separate.speaker_encoder.load_encoder`) when its weights are
    found, else :class:`MelStatsEncoder`; ``path`` given and unreadable raises."""
    from roomtone.errors import ModelUnavailableError, OptionalDependencyError
    from roomtone.separate import speaker_encoder

    try:
        return speaker_encoder.load_encoder(path)
    except (ModelUnavailableError, OptionalDependencyError):
        if path is not None:
            raise
        return MelStatsEncoder()


# ------------------------------------------------------------------ the job

WINDOW_S = 1.5  # embedding windows, every HOP_S
HOP_S = 0.75
DENSE_HOP_S = 0.25  # re-segmentation: windows this far apart take the nearest cluster (chosen on tune)
# the speaker-count threshold (average cosine distance) per embedding, chosen on built conversations
# of the training speakers (benchmarks/bench_speakers.py --tune)
DISTANCE_THRESHOLDS = {"resemblyzer-ge2e": 0.4, "mel-stats": 0.6}
TURNS_DENOISER = "roomtone"  # the denoiser the turns hear through (ours: every install has it)
VAD_OPTIONS = {}  # voice_activity settings for the turns: its defaults (3 dB traded tune for tune-rooms, within the spread)
MIN_CLUSTER_SHARE = 0.06  # a cluster of fewer windows than this share is no speaker (chosen on tune)
OVERLAP_RATIO_DB = -10.0  # a frame overlaps when the weaker voice is within this of the stronger
OVERLAP_SHARE = 0.25  # ... and holds at least this share of the frame's energy (chosen on tune)
OVERLAP_MEDIAN_FRAMES = 11  # median filter of the overlap decision (110 ms)


class SpeakerSplit(tuple):
    """What :func:`speakers` returns: ``(tracks, turns, residual, report)``; ``tracks`` (speakers,
    channels, samples) float32, ``turns`` a list of :class:`roomtone.separate.diarize.Turn`
    (speakers named ``speaker_1``...), ``residual`` (channels, samples) what no speaker holds
    (noise, room tone); tracks and residual sum to the input."""

    def __new__(cls, tracks, turns, residual, report):
        return super().__new__(cls, (tracks, turns, residual, report))

    tracks = property(lambda self: self[0])
    turns = property(lambda self: self[1])
    residual = property(lambda self: self[2])
    report = property(lambda self: self[3])

    def gates(self, sample_rate):
        """Each speaker's smoothed activity per sample (:func:`sample_gates` of the turns), float64.
        Shape: (speakers, samples)."""
        tracks, turns, _, report = self
        frames = -(-tracks.shape[2] // int(round(FRAME_S * sample_rate)))
        activity = activity_matrix(turns, report["names"], frames)
        return sample_gates(activity, 0, tracks.shape[2], sample_rate).astype(np.float64)

    def remix(self, gains_db, sample_rate, gates=None):
        """The recording again with speaker ``k``'s track at ``gains_db[k]`` dB, the residual (its
        room and noise) following whoever talks: at the talking speakers' mean gain (the last
        one's through pauses, 0 dB before anyone talks). Where one speaker talks alone this is the
        input times that speaker's gain, whatever the separation. ``gates``: :meth:`gates`, when
        the caller remixes several times. Shape: (channels, samples)."""
        tracks, _, residual, _ = self
        gains = 10.0 ** (np.asarray(gains_db, np.float64) / 20.0)
        gates = self.gates(sample_rate) if gates is None else gates
        total = gates.sum(axis=0)
        follow = np.where(total > 1e-6, (gains[:, None] * gates).sum(axis=0) / np.maximum(total, 1e-6), np.nan)
        if not np.isnan(follow).all():  # hold the last gain through the pauses
            held = np.maximum.accumulate(np.where(~np.isnan(follow), np.arange(follow.size), -1))
            follow = np.where(held >= 0, follow[np.maximum(held, 0)], 1.0)
        else:
            follow = np.ones(follow.size)
        out = residual * follow.astype(np.float32)
        for g, track in zip(gains, tracks):
            out += track * np.float32(g)
        return out


def _frame_energy(x, frame):
    """Energy per ``frame``-sample frame (the last one partial). Shape: (..., n) -> (..., frames)."""
    frames = -(-x.shape[-1] // frame)
    padded = np.zeros(x.shape[:-1] + (frames * frame,), np.float64)
    padded[..., :x.shape[-1]] = x
    return np.sum(padded.reshape(x.shape[:-1] + (frames, frame)) ** 2, axis=-1)


def overlap_frames(run, x16, speech, *, segment, overlap, batch=4, progress=None):
    """Per 10 ms frame, whether two voices talk at once: the model's two voices both hold energy
    (the weaker within :data:`OVERLAP_RATIO_DB` of the stronger and at least :data:`OVERLAP_SHARE`
    of the frame's), in speech, median-filtered. Shape: x16 (samples,), speech (frames,) -> (frames,) bool."""
    n = x16.size
    frame = int(FRAME_S * 16000)
    segment = min(segment, n)
    overlap = min(overlap, segment // 2)
    frames = speech.size
    flags = np.zeros(frames, bool)
    for s, stop, out, piece in model_segments(run, x16, segment, overlap, batch, progress):
        e = _frame_energy(out[:2], frame)
        mix = _frame_energy(piece, frame) + 1e-12
        weak, strong = e.min(axis=0), e.max(axis=0) + 1e-12
        both = (weak / strong >= 10.0 ** (OVERLAP_RATIO_DB / 10.0)) & (weak / mix >= OVERLAP_SHARE)
        f0 = s // frame
        count = min(both.size, frames - f0)
        flags[f0:f0 + count] = both[:count]
    flags &= speech
    half = OVERLAP_MEDIAN_FRAMES // 2
    padded = np.pad(flags.astype(np.int32), half)
    window_sum = np.convolve(padded, np.ones(OVERLAP_MEDIAN_FRAMES, np.int32), mode="valid")
    return (window_sum > half) & speech


def activity_matrix(turns, names, frames, frame_s=FRAME_S):
    """(speakers, frames) bool: speaker ``names[k]`` talks in the frame (its turns, overlaps included)."""
    out = np.zeros((len(names), frames), bool)
    index = {name: k for k, name in enumerate(names)}
    for turn in turns:
        lo = int(round(turn.start_s / frame_s))
        hi = int(round((turn.start_s + turn.duration_s) / frame_s))
        out[index[turn.speaker], max(0, lo):min(frames, hi)] = True
    return out


def _to_16k(x, sample_rate):
    from roomtone.resample import resample

    x = np.asarray(x, np.float32)
    return x if sample_rate == 16000 else resample(x[None], sample_rate, 16000)[0]


def _from_16k(x, sample_rate, samples):
    """(k, samples_16k) back at ``sample_rate``, cut or zero-extended to ``samples``."""
    from roomtone.resample import resample

    y = x if sample_rate == 16000 else resample(np.ascontiguousarray(x, np.float32), 16000, sample_rate)
    out = np.zeros((x.shape[0], samples), np.float32)
    out[:, :min(samples, y.shape[1])] = y[:, :samples]
    return out


def find_turns(mono16, run, embedder, *, n="auto", say=lambda message: None):
    """The turns of a 16 kHz mono mix: voice activity, overlap from the model's voices, window
    embeddings, clustering. Returns (turns named ``speaker_1``..., speaker names in order, activity
    (speakers, frames) bool at :data:`FRAME_S`, the share of frames found overlapped)."""
    from roomtone.jobs import job
    from roomtone.separate import speakers_net
    from roomtone.separate.diarize import Turn, diarize
    from roomtone.separate.vad import voice_activity

    segment = int(speakers_net.SEGMENT_S * 16000)
    overlap = int(speakers_net.OVERLAP_S * 16000)
    say("denoising a copy for the turns")
    # voice activity and embeddings read the mix through our denoiser (the enhance job's, through
    # roomtone.jobs): in noisy rooms it cut the tune-rooms set's DER 32 -> 24 % (missed speech and
    # confusion both), and left the clean tune set as it was
    cleaned = job("enhance")(mono16[None], 16000, preset="denoise", model=TURNS_DENOISER)[0][0]
    say("voice activity")
    _, speech = voice_activity(cleaned, 16000, **VAD_OPTIONS)
    say("overlapped speech")
    both = overlap_frames(run, mono16, speech, segment=segment, overlap=overlap,
                          progress=lambda done, count: say(f"overlap segment {done} of {count}"))
    say("speaker embeddings")
    # dense windows (every DENSE_HOP_S) for the re-segmentation; every HOP_S-th of them is clustered
    dense_s, dense = embedder.embed_windows(cleaned, 16000, window_s=WINDOW_S, hop_s=DENSE_HOP_S)
    del cleaned
    step = max(1, int(round(HOP_S / DENSE_HOP_S)))
    threshold = DISTANCE_THRESHOLDS.get(getattr(embedder, "name", ""), 0.6)
    say("clustering")
    turns = diarize(dense[::step], dense_s[::step], WINDOW_S, speech, FRAME_S, n=n, second_speaker=both,
                    distance_threshold=threshold, min_cluster_share=MIN_CLUSTER_SHARE, refine=(dense_s, dense))
    names = sorted({t.speaker for t in turns}, key=lambda s: int(s.replace("speaker", "")))
    if isinstance(n, int) and len(names) < n:  # a fixed count: speakers with no turn get silent tracks
        names += [f"speaker{k}" for k in range(n) if f"speaker{k}" not in names]
    rename = {old: f"speaker_{k + 1}" for k, old in enumerate(names)}
    turns = sorted(Turn(t.start_s, t.duration_s, rename[t.speaker]) for t in turns)
    if not names:  # no speech at all: one silent speaker
        rename = {"speaker0": "speaker_1"}
    names = list(rename.values())
    return turns, names, activity_matrix(turns, names, speech.size), float(both.mean()) if both.size else 0.0


BLOCK_S = 60.0  # a long recording is split in blocks of this, cross-faded over BLOCK_OVERLAP_S
BLOCK_OVERLAP_S = 1.0


def block_parts(x, start, sample_rate, activity, run):
    """One block of a recording split: ``x`` (channels, n) from sample ``start``, each channel
    through the model at 16 kHz (:func:`separate_channel`), back at the input's rate with the
    remainder shared (:func:`share_remainder`). Returns (speakers + 1, channels, n) float32: the
    tracks and, last, the residual; they sum to ``x``."""
    from roomtone.separate import speakers_net

    segment = int(speakers_net.SEGMENT_S * 16000)
    overlap = int(speakers_net.OVERLAP_S * 16000)
    channels, n = x.shape
    parts = np.zeros((activity.shape[0] + 1, channels, n), np.float32)
    offset = int(round(start * 16000 / sample_rate))
    for c in range(channels):
        x16 = _to_16k(x[c], sample_rate)
        t16, r16 = separate_channel(run, x16, activity, segment=segment, overlap=overlap, offset=offset)
        p = _from_16k(np.concatenate([t16, r16[None]]), sample_rate, n)
        parts[:, c] = share_remainder(x[c] - p.sum(axis=0), p, sample_rate)
    return parts


def split_blocks(read, samples, sample_rate, activity, run, sink, *, block_s=BLOCK_S, overlap_s=BLOCK_OVERLAP_S,
                 say=lambda message: None):
    """Split a recording of ``samples`` samples block by block (:func:`block_parts`), the blocks
    cross-faded over ``overlap_s`` (:func:`roomtone.models.apply.segment_weight`), and hand each
    stretch to ``sink(start, stop, parts (speakers + 1, channels, stop - start))`` in order, once
    final. ``read(start, stop)`` gives (channels, stop - start) float32. Memory: two blocks,
    whatever the length."""
    from roomtone.models.apply import crossfade, segment_weight

    keep = min(int(block_s * sample_rate), samples)
    overlap = min(int(overlap_s * sample_rate), keep // 2)
    starts = segment_starts(samples, keep, keep - overlap)
    ramp = crossfade(overlap)
    acc = wsum = None
    for i, s in enumerate(starts):
        say(f"separating block {i + 1} of {len(starts)}")
        parts = block_parts(read(s, s + keep), s, sample_rate, activity, run)
        if acc is None:
            acc = np.zeros_like(parts)
            wsum = np.zeros(keep, np.float32)
        w = segment_weight(i, len(starts), keep, ramp)
        acc += parts * w  # acc holds samples s .. s + keep (the previous block's tail first)
        wsum += w
        final = starts[i + 1] if i + 1 < len(starts) else samples
        ready = final - s
        sink(s, final, acc[..., :ready] / wsum[:ready])
        rest = keep - ready
        acc[..., :rest] = acc[..., ready:].copy()
        acc[..., rest:] = 0.0
        wsum[:rest] = wsum[ready:].copy()
        wsum[rest:] = 0.0


def _report(names, turns, n, embedder, sample_rate, channels, samples, overlap_share, started, residual_dbfs):
    from roomtone.separate import speakers_net
    from roomtone.separate.diarize import speaker_times

    times = speaker_times(turns)
    return {"job": "separate", "mode": "speakers", "speakers": len(names), "names": names,
            "count": "auto" if n == "auto" else "fixed", "embedding": getattr(embedder, "name", "?"),
            "separator": speakers_net.KIND, "sample_rate": sample_rate, "channels": channels, "samples": samples,
            "speech_s": {k: round(float(times["speech_s"].get(k, 0.0)), 2) for k in names},
            "overlap_share": round(float(times["overlap_share"]), 4),
            "overlap_frames_share": round(overlap_share, 4),
            "residual_rms_dbfs": residual_dbfs, "turns": len(turns),
            "seconds": round(time.perf_counter() - started, 3)}


def _prepare(sample_rate, n, separator, embedder, say):
    """Check the rate and the count, load the models not given. Returns (n, separator, embedder)."""
    from roomtone.separate import speakers_net

    if sample_rate < 8000:
        from roomtone.errors import InvalidAudioError

        raise InvalidAudioError(f"sample rate {sample_rate} Hz: speakers are split from 8000 Hz up")
    check_count(n)
    say("loading the speaker models")
    return (n if n == "auto" else int(n), separator or speakers_net.SpeakerSeparator(),
            embedder or load_embedder())


def check_count(n):
    """Refuse a speaker count other than ``"auto"`` or 1..6 (:class:`~roomtone.errors.PresetError`)."""
    if n != "auto" and not (isinstance(n, (int, np.integer)) and 1 <= int(n) <= 6):
        from roomtone.errors import PresetError

        raise PresetError(f"speakers n={n!r}: 'auto' or a whole number from 1 to 6")


def speakers(audio, sample_rate, *, n="auto", separator=None, embedder=None, progress=None):
    """Split a recording of several voices into one track per speaker, and say who spoke when.

    Args:
        audio: (channels, samples) float (mono or more channels; each channel split alike).
        sample_rate: Hz, from 8000.
        n: ``"auto"`` (1 to 6 speakers found) or the number of speakers.
        separator: the separation model (:class:`roomtone.separate.speakers_net.SpeakerSeparator`;
            default the shipped one); embedder: the speaker embedding (default :func:`load_embedder`).
        progress: optional ``callable(str)`` told of each stage.

    Returns: :class:`SpeakerSplit` ``(tracks, turns, residual, report)``.

    Example::

        tracks, turns, residual, report = speakers(audio, 48000, n=2)
    """
    from roomtone.audio import validate_audio

    started = time.perf_counter()
    say = progress or (lambda message: None)
    audio = validate_audio(audio, sample_rate)
    sample_rate = int(sample_rate)
    n, separator, embedder = _prepare(sample_rate, n, separator, embedder, say)
    channels, samples = audio.shape
    turns, names, activity, overlap_share = find_turns(_to_16k(audio.mean(axis=0), sample_rate), separator, embedder,
                                                       n=n, say=say)
    tracks = np.zeros((len(names), channels, samples), np.float32)
    residual = np.zeros((channels, samples), np.float32)

    def sink(start, stop, parts):
        tracks[:, :, start:stop] = parts[:-1]
        residual[:, start:stop] = parts[-1]

    split_blocks(lambda start, stop: audio[:, start:stop], samples, sample_rate, activity, separator, sink, say=say)
    report = _report(names, turns, n, embedder, sample_rate, channels, samples, overlap_share, started,
                     _rms_dbfs(residual))
    return SpeakerSplit(tracks, turns, residual, report)


def _rms_dbfs(x):
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return round(20.0 * np.log10(rms), 2) if rms > 0 else None


MAX_SPEAKERS = 6


def _mono_16k_stream(handle, block):
    """The whole file of ``handle`` (an open :class:`soundfile.SoundFile`) as a 16 kHz mono mix,
    read ``block`` frames at a time through libsoxr's streaming resampler (no whole input held).
    Raises :class:`~roomtone.errors.InvalidAudioError` for samples that are not finite."""
    from roomtone.errors import InvalidAudioError
    from roomtone.resample import QUALITY

    rate = int(handle.samplerate)
    stream = None
    if rate != 16000:
        import soxr

        stream = soxr.ResampleStream(rate, 16000, 1, dtype="float32", quality=QUALITY)
    pieces = []
    handle.seek(0)
    while True:
        x = handle.read(block, dtype="float32", always_2d=True)
        last = x.shape[0] < block
        if x.size and not np.all(np.isfinite(x)):
            raise InvalidAudioError(f"{handle.name}: holds samples that are not finite (NaN or infinity)")
        mono = np.ascontiguousarray(x.mean(axis=1), np.float32)
        pieces.append(mono if stream is None else stream.resample_chunk(mono, last=last))
        if last:
            break
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def speakers_file(input_path, output_dir, *, n="auto", bit_depth="32f", clip=None, fmt="wav", separator=None,
                  embedder=None, progress=None):
    """Split a file by speaker into ``DIR/<input name>/speaker_1.wav ... speaker_N.wav``, the
    ``residual.wav`` (what no speaker holds: noise, room tone; with the tracks it sums to the
    input) and ``turns.rttm`` (NIST RTTM, overlaps included), as one set: every file written to a
    temporary one beside it and all renamed only when all were written; on any failure or
    interrupt they are removed (and the folders, if this call made them). Same rate, length and
    channels as the input.

    The file is streamed: read once for the turns (a 16 kHz mono mix is kept: 230 MB an hour), then
    block by block (:data:`BLOCK_S`) through the separation into the open output files, so memory
    does not grow with the length beyond that mix. Integer output (``bit_depth`` 16/24) is dithered
    per block and clamped to the code range where a track passes it (``clip``: ``None`` or
    ``"clamp"``; the count is reported: no track is rescaled, as a stream cannot know its peak
    before it is written).

    Returns the report of :func:`speakers` with ``input``, ``outputs``, ``bit_depth`` and ``clip``
    added. Raises as :func:`speakers`, and :class:`~roomtone.errors.OutputError` for a bad format,
    depth or clipping policy (before the input is read), an unwritable folder or a failed write."""
    import soundfile as sf

    from roomtone.audio import StreamWrite, check_output_path, output_format, read_audio, write_text_atomic
    from roomtone.errors import InvalidAudioError, OutputError
    from roomtone.separate.api import make_folders, remove_set, stem_paths
    from roomtone.separate.rttm import rttm_text

    started = time.perf_counter()
    say = progress or (lambda message: None)
    if clip not in (None, "clamp"):
        raise OutputError(f"clip={clip!r}: the speaker tracks are streamed, so integer output is clamped "
                          f"(counted, reported) or written as float (bit depth 32f)")
    check_count(n)
    names = [f"speaker_{k + 1}" for k in range(MAX_SPEAKERS)] + ["residual"]
    paths = stem_paths(input_path, output_dir, names, fmt)
    output_format(paths["residual"], bit_depth)
    folder = os.path.dirname(paths["residual"])
    text_path = os.path.join(folder, "turns.rttm")
    file_id = os.path.splitext(os.path.basename(os.fspath(input_path)))[0].replace(" ", "_") or "recording"
    say("reading")
    try:
        handle = sf.SoundFile(os.fspath(input_path))
    except (sf.LibsndfileError, RuntimeError, OSError):  # not for libsndfile (AAC...): read whole, as the others
        audio, rate, info = read_audio(input_path)
        handle = None
        source_format = {"format": info.format, "subtype": info.subtype}
    else:
        rate, channels, samples = int(handle.samplerate), int(handle.channels), int(handle.frames)
        source_format = {"format": handle.format, "subtype": handle.subtype}
    created, writers = [], []
    try:
        created = make_folders((os.fspath(output_dir), folder))
        for path in [*paths.values(), text_path]:
            check_output_path(path, input_path)
        if handle is None:
            channels, samples = audio.shape
        if samples == 0:
            raise InvalidAudioError(f"{input_path}: holds no samples")
        n, separator, embedder = _prepare(rate, n, separator, embedder, say)
        mono16 = (_mono_16k_stream(handle, int(BLOCK_S * rate)) if handle is not None
                  else _to_16k(audio.mean(axis=0), rate))
        turns, found, activity, overlap_share = find_turns(mono16, separator, embedder, n=n, say=say)
        del mono16
        writers = [StreamWrite(paths[name], rate, channels, bit_depth, seed=k)
                   for k, name in enumerate([*found, "residual"])]
        power = [0.0]

        def read(start, stop):
            if handle is None:
                return audio[:, start:stop]
            handle.seek(start)
            x = handle.read(stop - start, dtype="float32", always_2d=True).T
            if not np.all(np.isfinite(x)):
                raise InvalidAudioError(f"{input_path}: holds samples that are not finite (NaN or infinity)")
            return np.ascontiguousarray(x)

        def sink(start, stop, parts):
            for writer, part in zip(writers, parts):
                writer.write(part)
            power[0] += float(np.sum(np.square(parts[-1], dtype=np.float64)))

        split_blocks(read, samples, rate, activity, separator, sink, say=say)
        say("committing")
        for writer in writers:
            writer.commit()
        write_text_atomic(text_path, rttm_text(turns, file_id))
    except BaseException:
        for writer in writers:
            writer.discard()
        remove_set([*paths.values(), text_path], created, folder)
        raise
    finally:
        if handle is not None:
            handle.close()
    rms = np.sqrt(power[0] / max(1, channels * samples))
    report = _report(found, turns, n, embedder, rate, channels, samples, overlap_share, started,
                     round(20.0 * np.log10(rms), 2) if rms > 0 else None)
    clipped = {name: w.clipped for name, w in zip([*found, "residual"], writers)}
    outputs = {**{k: paths[k] for k in [*found, "residual"]}, "turns.rttm": text_path}
    report.update(input=str(input_path), input_format=source_format, outputs=outputs, bit_depth=str(bit_depth), dither="tpdf" if str(bit_depth) != "32f" else None,
                  clip={"policy": None if str(bit_depth) == "32f" else "clamp", "clipped_samples": clipped,
                        "clipped_total": int(sum(clipped.values()))})
    return report
