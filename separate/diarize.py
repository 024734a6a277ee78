"""Who spoke when: speaker turns from window embeddings and voice activity, and the diarization
error rate. Ours, numpy and numba, no weights: the embeddings come from an encoder (e.g.
:func:`roomtone.separate.speaker_encoder.embed_windows`), the speech frames from
:func:`roomtone.separate.vad.voice_activity`.

1. **Windows in speech** (:func:`speech_windows`): a window is kept when at least
   ``min_speech_share`` of its frames are speech.
2. **Clustering** (:func:`cluster_embeddings`): average-linkage agglomerative clustering on the
   cosine distance (nearest-neighbour chain, Murtagh, "A survey of recent advances in hierarchical
   clustering algorithms", Computer Journal 26(4), 1983), then a few spherical k-means passes from
   the largest clusters' centroids. The speaker count (``n="auto"``, 1..``max_speakers``) comes from
   :func:`speaker_count`: ``count_method="threshold"`` (default) counts the clusters left when no
   two are closer than ``distance_threshold`` (average cosine distance, default
   :data:`DISTANCE_THRESHOLD`) and hold at least ``min_cluster_share`` of the windows;
   ``"eigengap"`` takes the largest gap of the normalised Laplacian's eigenvalues of the p-pruned
   cosine affinity (Park et al., "Auto-tuning spectral clustering for speaker diarization using
   normalized maximum eigengap", IEEE SPL 27, 2020, with a fixed ``p_prune``). ``n=int`` fixes it.
3. **Frames** (:func:`frame_labels`): each speech frame (10 ms) takes the speaker with the most
   weight among the kept windows covering it (a window weighs 1 at its centre, 0.5 at its edges);
   a speech frame no kept window covers takes the nearest labelled frame's speaker. Runs of one
   speaker shorter than ``min_turn_ms`` inside a stretch of speech go to their longer neighbour.
4. **Overlap**: where an optional per-frame ``second_speaker`` activity (e.g. from a separation
   model) is on, the frame also gets a second speaker: the next-best covering window's speaker,
   else the nearest other speaker in time.
5. **Turns** (:class:`Turn`): the runs of each speaker, sorted by start.

:func:`diarization_error_rate` follows NIST md-eval (Rich Transcription evaluation plan, 2009):
a no-score collar around every reference boundary, overlapped speech scored (a frame with k
reference speakers counts k), confusion under the optimal one-to-one speaker mapping (Hungarian
algorithm, Kuhn 1955 / Munkres 1957).

Shape: embeddings (windows, dim); starts_s (windows,); speech, second_speaker (frames,).
"""

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from roomtone.errors import RoomtoneError

FRAME_S = 0.01
MAX_SPEAKERS = 6
DISTANCE_THRESHOLD = 0.6  # average cosine distance between speakers; a benchmark validates it
REFINE_PASSES = 5
EIGENGAP_WINDOWS = 1500  # windows the eigengap count looks at, at most (evenly spaced)


class DiarizationInputError(RoomtoneError, ValueError):
    """Embeddings, window times, activity or turns that do not fit together, or a parameter out of range."""


@dataclass(frozen=True, order=True)
class Turn:
    """One speaker speaking from ``start_s`` for ``duration_s`` seconds."""

    start_s: float
    duration_s: float
    speaker: str

    @property
    def end_s(self):
        return self.start_s + self.duration_s


def _unit_rows(embeddings):
    x = np.asarray(embeddings, np.float64)
    if x.ndim != 2:
        raise DiarizationInputError(f"embeddings must have shape (windows, dim); got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DiarizationInputError("embeddings contain NaN or infinite values")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def speech_windows(starts_s, window_s, speech, frame_s=FRAME_S, *, min_speech_share=0.5):
    """Which windows ``[start, start + window_s)`` hold at least ``min_speech_share`` (0-1) of
    speech frames. Shape: starts_s (windows,), speech (frames,) bool -> (windows,) bool."""
    starts_s = np.asarray(starts_s, np.float64).reshape(-1)
    speech = np.asarray(speech, bool).reshape(-1)
    if not window_s > 0:
        raise DiarizationInputError(f"window_s={window_s} s must be positive")
    if not 0.0 <= min_speech_share <= 1.0:
        raise DiarizationInputError(f"min_speech_share={min_speech_share} is outside 0..1")
    total = np.concatenate(([0], np.cumsum(speech)))
    first = np.clip(np.round(starts_s / frame_s).astype(np.int64), 0, speech.size)
    last = np.clip(np.round((starts_s + window_s) / frame_s).astype(np.int64), 0, speech.size)
    length = max(1, int(round(window_s / frame_s)))
    return (total[last] - total[first]) >= min_speech_share * length


@njit(cache=True, nogil=True)
def _average_linkage(distance):
    """Average-linkage merges by the nearest-neighbour chain; ``distance`` (n, n) float64 is
    overwritten. Returns merges (n - 1, 3) float64: slot merged away, slot kept, height."""
    n = distance.shape[0]
    merges = np.zeros((max(n - 1, 0), 3))
    size = np.ones(n)
    active = np.ones(n, np.bool_)
    chain = np.empty(n, np.int64)
    length = 0
    for step in range(n - 1):
        if length == 0:
            for k in range(n):
                if active[k]:
                    chain[0] = k
                    length = 1
                    break
        while True:
            a = chain[length - 1]
            b = chain[length - 2] if length >= 2 else -1
            best = distance[a, b] if b >= 0 else np.inf
            for k in range(n):
                if active[k] and k != a and distance[a, k] < best:
                    best = distance[a, k]
                    b = k
            if length >= 2 and b == chain[length - 2]:
                break
            chain[length] = b
            length += 1
        length -= 2
        merges[step, 0], merges[step, 1], merges[step, 2] = a, b, best
        for k in range(n):  # Lance-Williams update for average linkage
            if active[k] and k != a and k != b:
                d = (size[a] * distance[a, k] + size[b] * distance[b, k]) / (size[a] + size[b])
                distance[b, k] = d
                distance[k, b] = d
        size[b] += size[a]
        active[a] = False
    return merges


def _cut(merges, n, clusters):
    """Cluster index (0 ..) of each of ``n`` items with the ``n - clusters`` lowest merges applied."""
    parent = np.arange(n)

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b, _ in merges[np.argsort(merges[:, 2], kind="stable")][:max(0, n - clusters)]:
        parent[root(int(a))] = root(int(b))
    roots = np.array([root(i) for i in range(n)])
    return np.unique(roots, return_inverse=True)[1]


def _linkage(unit):
    distance = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    return _average_linkage(np.ascontiguousarray(distance))


def _large(labels, min_windows):
    """Cluster indices holding at least ``min_windows`` items, largest first."""
    counts = np.bincount(labels)
    order = np.argsort(-counts, kind="stable")
    return order[counts[order] >= min_windows]


def _eigengap_count(unit, max_speakers, p_prune):
    """Count by the largest eigengap of the p-pruned affinity's normalised Laplacian (Park 2020)."""
    if unit.shape[0] > EIGENGAP_WINDOWS:  # eigvalsh is O(n^3): an even subsample keeps every speaker's share
        unit = unit[np.linspace(0, unit.shape[0] - 1, EIGENGAP_WINDOWS).round().astype(np.int64)]
    n = unit.shape[0]
    affinity = unit @ unit.T
    keep = max(2, int(math.ceil(p_prune * n)))
    order = np.argsort(-affinity, axis=1)[:, :keep]
    pruned = np.zeros_like(affinity)
    np.put_along_axis(pruned, order, 1.0, axis=1)  # binarised, as in NME-SC
    pruned = 0.5 * (pruned + pruned.T)
    degree = pruned.sum(axis=1)
    scale = 1.0 / np.sqrt(np.maximum(degree, 1e-12))
    laplacian = np.eye(n) - scale[:, None] * pruned * scale[None, :]
    values = np.linalg.eigvalsh(laplacian)[:max_speakers + 1]
    return int(np.argmax(np.diff(values))) + 1


def speaker_count(embeddings, *, max_speakers=MAX_SPEAKERS, count_method="threshold",
                  distance_threshold=DISTANCE_THRESHOLD, min_cluster_share=0.03, p_prune=0.1):
    """How many speakers (1..``max_speakers``) the embeddings hold (module docstring, step 2).

    ``count_method``: ``"threshold"`` (clusters at average cosine distance ``distance_threshold``,
    0-2, holding at least ``min_cluster_share`` of the windows) or ``"eigengap"`` (``p_prune``,
    0-1: the share of each window's most similar windows kept as graph edges).
    Shape: embeddings (windows, dim) -> int.
    """
    unit = _unit_rows(embeddings)
    _check_count_options(max_speakers, count_method, distance_threshold, min_cluster_share, p_prune)
    n = unit.shape[0]
    if n < 2:
        return 1 if n else 0
    if count_method == "eigengap":
        return max(1, min(max_speakers, _eigengap_count(unit, min(max_speakers, n - 1), p_prune)))
    merges = _linkage(unit)
    labels = _cut(merges, n, n - int(np.count_nonzero(merges[:, 2] <= distance_threshold)))
    return max(1, min(max_speakers, _large(labels, max(1.0, min_cluster_share * n)).size))


def _check_count_options(max_speakers, count_method, distance_threshold, min_cluster_share, p_prune):
    if not 1 <= max_speakers <= 20:
        raise DiarizationInputError(f"max_speakers={max_speakers} is outside 1..20")
    if count_method not in ("threshold", "eigengap"):
        raise DiarizationInputError(f"count_method={count_method!r} must be 'threshold' or 'eigengap'")
    if not 0.0 <= distance_threshold <= 2.0:
        raise DiarizationInputError(f"distance_threshold={distance_threshold} is outside 0..2 (cosine distance)")
    if not 0.0 <= min_cluster_share < 1.0 or not 0.0 < p_prune <= 1.0:
        raise DiarizationInputError(f"min_cluster_share={min_cluster_share} must be in 0..1 and p_prune="
                                    f"{p_prune} in (0, 1]")


def _refine(unit, labels, seeds, passes=REFINE_PASSES):
    """Spherical k-means from the centroids of clusters ``seeds``; returns labels 0..len(seeds)-1."""
    centroids = np.stack([unit[labels == s].mean(axis=0) for s in seeds])
    for _ in range(passes):
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        assigned = np.argmax(unit @ centroids.T, axis=1)
        for j in range(len(seeds)):
            if np.any(assigned == j):
                centroids[j] = unit[assigned == j].mean(axis=0)
    return assigned


def cluster_embeddings(embeddings, n="auto", *, min_cluster_share=0.03, **count_options):
    """Speaker index (0 .. speakers - 1, largest cluster first) of every window (module docstring,
    step 2). ``n``: ``"auto"`` (:func:`speaker_count` with ``count_options``) or a fixed count.
    Shape: embeddings (windows, dim) -> (windows,) int."""
    unit = _unit_rows(embeddings)
    windows = unit.shape[0]
    if n == "auto":
        n = speaker_count(unit, min_cluster_share=min_cluster_share, **count_options)
    elif isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 20:
        raise DiarizationInputError(f"n={n!r} must be 'auto' or a speaker count in 1..20")
    if windows == 0:
        return np.zeros(0, np.int64)
    n = min(int(n), windows)
    merges = _linkage(unit)
    min_windows = max(1.0, min_cluster_share * windows)
    for clusters in range(n, windows + 1):  # the coarsest cut with n clusters big enough
        labels = _cut(merges, windows, clusters)
        seeds = _large(labels, min_windows)
        if seeds.size >= n:
            break
    else:
        seeds = _large(labels, 1)
    assigned = _refine(unit, labels, seeds[:n])
    counts = np.bincount(assigned, minlength=n)
    rank = np.argsort(np.argsort(-counts, kind="stable"), kind="stable")
    return rank[assigned]


def frame_scores(labels, starts_s, window_s, frames, frame_s=FRAME_S, speakers=None):
    """Per frame and speaker, the summed weight of the windows covering the frame (1 at a window's
    centre, 0.5 at its edges). Shape: labels, starts_s (windows,) -> (frames, speakers) float64."""
    labels = np.asarray(labels, np.int64)
    speakers = int(labels.max()) + 1 if speakers is None and labels.size else int(speakers or 0)
    scores = np.zeros((frames, speakers))
    length = max(1, int(round(window_s / frame_s)))
    offset = np.arange(length)
    weight = 1.0 - np.abs((offset + 0.5) / length - 0.5)
    index = np.round(np.asarray(starts_s, np.float64) / frame_s).astype(np.int64)[:, None] + offset
    inside = (index >= 0) & (index < frames)
    rows = np.broadcast_to(labels[:, None], index.shape)
    np.add.at(scores, (index[inside], rows[inside]), np.broadcast_to(weight, index.shape)[inside])
    return scores


def _nearest_fill(label, where):
    """``label`` with frames in ``where`` that hold -1 set to the nearest frame's label >= 0."""
    known = np.flatnonzero(label >= 0)
    if known.size == 0:
        return label
    todo = np.flatnonzero(where & (label < 0))
    right = np.clip(np.searchsorted(known, todo), 0, known.size - 1)
    left = np.clip(right - 1, 0, known.size - 1)
    pick = np.where(np.abs(known[left] - todo) <= np.abs(known[right] - todo), known[left], known[right])
    out = label.copy()
    out[todo] = label[pick]
    return out


def _smooth_runs(label, min_frames):
    """Runs of one speaker shorter than ``min_frames`` between speech neighbours go to the longer
    neighbour, shortest first. Shape: (frames,) int (-1 non-speech) -> (frames,) int."""
    label = label.copy()
    while True:
        change = np.flatnonzero(np.diff(label)) + 1
        starts = np.concatenate(([0], change))
        ends = np.concatenate((change, [label.size]))
        values = label[starts]
        candidates = [i for i in np.argsort(ends - starts, kind="stable")
                      if values[i] >= 0 and ends[i] - starts[i] < min_frames
                      and ((i > 0 and values[i - 1] >= 0) or (i + 1 < values.size and values[i + 1] >= 0))]
        if not candidates:
            return label
        i = candidates[0]
        left = ends[i - 1] - starts[i - 1] if i > 0 and values[i - 1] >= 0 else -1
        right = ends[i + 1] - starts[i + 1] if i + 1 < values.size and values[i + 1] >= 0 else -1
        label[starts[i]:ends[i]] = values[i - 1] if left >= right else values[i + 1]


def frame_labels(labels, starts_s, window_s, speech, frame_s=FRAME_S, *, min_turn_ms=250.0):
    """Speaker of each frame (-1 where no speech; module docstring, step 3) and the frame scores.
    Shape: labels, starts_s (windows,), speech (frames,) bool -> (frames,) int, (frames, speakers)."""
    speech = np.asarray(speech, bool).reshape(-1)
    if not 0.0 <= min_turn_ms <= 60000.0:
        raise DiarizationInputError(f"min_turn_ms={min_turn_ms} ms is outside 0..60000 ms")
    scores = frame_scores(labels, starts_s, window_s, speech.size, frame_s)
    label = np.where(speech & (scores.max(axis=1, initial=0.0) > 0), np.argmax(scores, axis=1)
                     if scores.shape[1] else -1, -1)
    label = _nearest_fill(label, speech)
    return _smooth_runs(label, int(round(min_turn_ms / 1000.0 / frame_s))), scores


def _second_labels(label, scores, active):
    """Second speaker of each frame where ``active``: the best other covering speaker, else the
    nearest other speaker in time; -1 elsewhere. Shape: (frames,) -> (frames,) int."""
    second = np.full(label.size, -1)
    if scores.shape[1] < 2:
        return second
    masked = scores.copy()
    masked[np.arange(label.size), np.maximum(label, 0)] = -1.0
    best = np.argmax(masked, axis=1)
    has = active & (label >= 0) & (masked.max(axis=1) > 0)
    second[has] = best[has]
    for t in np.flatnonzero(active & (label >= 0) & ~has):
        other = np.flatnonzero((label >= 0) & (label != label[t]))
        if other.size:
            second[t] = label[other[np.argmin(np.abs(other - t))]]
    return second


def _turns(label, second, frame_s, names):
    turns = []
    for s, name in enumerate(names):
        mask = (label == s) | (second == s)
        edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            turns.append(Turn(round(a * frame_s, 6), round((b - a) * frame_s, 6), name))
    return sorted(turns)


def _nearest_centroid(unit, labels, refine, window_s, speech, frame_s, min_speech_share):
    """Labels of the dense windows ``refine = (starts_s, embeddings)`` in speech: the nearest (cosine)
    of the centroids of ``unit``'s clusters. Returns (labels, their starts), or None when no dense
    window is in speech."""
    starts, embeddings = refine
    starts = np.asarray(starts, np.float64).reshape(-1)
    dense = _unit_rows(embeddings)
    if starts.size != dense.shape[0]:
        raise DiarizationInputError(f"refine: {dense.shape[0]} embeddings but {starts.size} window starts")
    centroids = np.stack([unit[labels == k].mean(axis=0) for k in range(int(labels.max()) + 1)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-12
    keep = speech_windows(starts, window_s, speech, frame_s, min_speech_share=min_speech_share)
    if not keep.any():
        return None
    return np.argmax(dense[keep] @ centroids.T, axis=1), starts[keep]


def diarize(embeddings, starts_s, window_s, speech, frame_s=FRAME_S, *, n="auto", second_speaker=None,
            min_speech_share=0.5, min_turn_ms=250.0, speaker_prefix="speaker", refine=None, **cluster_options):
    """Speaker turns (module docstring) from window embeddings and per-frame speech activity.

    ``embeddings`` of the windows ``[starts_s, starts_s + window_s)`` (s); ``speech`` per frame of
    ``frame_s`` (s; :func:`roomtone.separate.vad.voice_activity`); ``n``: ``"auto"`` or a count;
    ``second_speaker``: optional per-frame activity (bool, or probability taken at 0.5) of a second
    voice; ``cluster_options``: :func:`cluster_embeddings`' keywords. Speakers are named
    ``f"{speaker_prefix}{k}"``, k = 0 for the one with most windows. ``refine``: optional
    ``(starts_s, embeddings)`` of denser windows of the same length (re-segmentation): the clusters'
    centroids are found on ``embeddings``, then every dense window takes its nearest centroid
    (cosine) and the frames are labelled from those, so turn changes are placed at the dense hop.
    Shape: embeddings (windows, dim), starts_s (windows,), speech and second_speaker (frames,) ->
    list of :class:`Turn`.

    Example::

        frame_s, speech = voice_activity(audio, 16000)
        starts_s, embeddings = embed_windows(audio_16k, 1.5, 0.75)
        turns = diarize(embeddings, starts_s, 1.5, speech, frame_s)
    """
    unit = _unit_rows(embeddings)
    starts_s = np.asarray(starts_s, np.float64).reshape(-1)
    speech = np.asarray(speech, bool).reshape(-1)
    if starts_s.size != unit.shape[0]:
        raise DiarizationInputError(f"{unit.shape[0]} embeddings but {starts_s.size} window starts")
    keep = speech_windows(starts_s, window_s, speech, frame_s, min_speech_share=min_speech_share)
    if not keep.any():
        return []
    labels = cluster_embeddings(unit[keep], n, **cluster_options)
    window_starts = starts_s[keep]
    dense = None if refine is None else _nearest_centroid(unit[keep], labels, refine, window_s, speech, frame_s,
                                                          min_speech_share)
    if dense is not None:
        labels, window_starts = dense
    label, scores = frame_labels(labels, window_starts, window_s, speech, frame_s, min_turn_ms=min_turn_ms)
    second = np.full(label.size, -1)
    if second_speaker is not None:
        active = np.asarray(second_speaker, np.float64).reshape(-1)
        if active.size != speech.size:
            raise DiarizationInputError(f"second_speaker has {active.size} frames; speech has {speech.size}")
        second = _second_labels(label, scores, active >= 0.5)
    names = [f"{speaker_prefix}{k}" for k in range(scores.shape[1])]
    return _turns(label, second, frame_s, names)


def speaker_times(turns):
    """Speech time per speaker and overlap, exactly (a sweep over the turn boundaries).

    Returns ``dict(speech_s={speaker: s}, total_s, overlap_s, overlap_share)``: ``total_s`` the time
    anyone speaks, ``overlap_s`` the time two or more speak, ``overlap_share`` their ratio (0 when
    nobody speaks). A speaker's own overlapping turns count once.
    """
    speech_s = {}
    events = []
    for speaker in sorted({t.speaker for t in turns}):
        spans = sorted((t.start_s, t.end_s) for t in turns if t.speaker == speaker and t.duration_s > 0)
        merged = []
        for a, b in spans:  # a speaker's own overlapping turns merged first
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        speech_s[speaker] = sum(b - a for a, b in merged)
        events += [(a, 1) for a, _ in merged] + [(b, -1) for _, b in merged]
    total = overlap = 0.0
    active, previous = 0, None
    for time, step in sorted(events):
        if previous is not None:
            total += (time - previous) if active >= 1 else 0.0
            overlap += (time - previous) if active >= 2 else 0.0
        active, previous = active + step, time
    return dict(speech_s=speech_s, total_s=total, overlap_s=overlap,
                overlap_share=overlap / total if total > 0 else 0.0)


def _hungarian(profit):
    """Rows-to-columns assignment maximising the summed ``profit`` (the O(n^3) shortest augmenting
    path form of Kuhn-Munkres, with potentials). Shape: (rows, cols) -> [(row, col)] pairs."""
    rows, cols = profit.shape
    size = max(rows, cols)
    cost = np.zeros((size + 1, size + 1))
    cost[1:rows + 1, 1:cols + 1] = -profit
    u, v = np.zeros(size + 1), np.zeros(size + 1)
    match = np.zeros(size + 1, np.int64)  # match[col] = row (1-based, 0 free)
    for i in range(1, size + 1):
        match[0], j0 = i, 0
        low, way, used = np.full(size + 1, np.inf), np.zeros(size + 1, np.int64), np.zeros(size + 1, bool)
        while match[j0]:
            used[j0] = True
            i0 = match[j0]
            reduced = cost[i0] - u[i0] - v
            better = ~used & (reduced < low)
            low[better], way[better] = reduced[better], j0
            free = np.flatnonzero(~used)
            j1 = free[np.argmin(low[free])]
            delta = low[j1]
            u[match[used]] += delta
            v[used] -= delta
            low[~used] -= delta
            j0 = j1
        while j0:
            j1 = way[j0]
            match[j0] = match[j1]
            j0 = j1
    return [(match[j] - 1, j - 1) for j in range(1, size + 1) if match[j] - 1 < rows and j - 1 < cols]


def _activity(turns, speakers, frames, frame_s):
    """(frames, speakers) bool: frame centres inside each speaker's turns."""
    out = np.zeros((frames, len(speakers)), bool)
    column = {s: k for k, s in enumerate(speakers)}
    for t in turns:
        a = max(0, int(math.ceil(t.start_s / frame_s - 0.5)))
        b = min(frames, int(math.ceil(t.end_s / frame_s - 0.5)))
        out[a:b, column[t.speaker]] = True
    return out


def _scored_frames(reference_turns, frames, frame_s, collar_s):
    """Frames whose centres lie further than ``collar_s`` from every reference boundary."""
    centres = (np.arange(frames) + 0.5) * frame_s
    keep = np.ones(frames, bool)
    if collar_s > 0:
        bounds = np.unique([b for t in reference_turns for b in (t.start_s, t.end_s)])
        if bounds.size:
            right = np.clip(np.searchsorted(bounds, centres), 0, bounds.size - 1)
            left = np.clip(right - 1, 0, bounds.size - 1)
            nearest = np.minimum(np.abs(bounds[left] - centres), np.abs(bounds[right] - centres))
            keep = nearest >= collar_s
    return keep


def diarization_error_rate(reference_turns, hypothesis_turns, collar_s=0.25, frame_s=FRAME_S):
    """Diarization error rate as NIST md-eval scores it, on a grid of ``frame_s`` (s) frames.

    A frame is scored unless its centre lies within ``collar_s`` (s) of a reference turn's start
    or end. Over scored frames with ``R`` reference and ``H`` hypothesis speakers, ``C`` of them
    matched under the optimal one-to-one speaker mapping (found on the scored frames): missed
    ``max(0, R - H)``, false alarm ``max(0, H - R)``, confusion ``min(R, H) - C``, scored ``R``.
    Returns ``dict(der, missed, false_alarm, confusion, scored_s)``: the three errors and
    ``scored_s`` in seconds of speaker time, ``der`` their sum over ``scored_s`` (nan when nothing
    is scored and nothing is wrong, inf when nothing is scored yet the hypothesis speaks).
    """
    if not collar_s >= 0 or not frame_s > 0:
        raise DiarizationInputError(f"collar_s={collar_s} s must be >= 0 and frame_s={frame_s} s > 0")
    reference_turns, hypothesis_turns = list(reference_turns), list(hypothesis_turns)
    end = max([t.end_s for t in reference_turns + hypothesis_turns], default=0.0)
    frames = int(math.ceil(end / frame_s))
    ref_names = sorted({t.speaker for t in reference_turns})
    hyp_names = sorted({t.speaker for t in hypothesis_turns})
    scored = _scored_frames(reference_turns, frames, frame_s, collar_s)
    ref = _activity(reference_turns, ref_names, frames, frame_s)[scored]
    hyp = _activity(hypothesis_turns, hyp_names, frames, frame_s)[scored]
    together = ref.T.astype(np.int64) @ hyp.astype(np.int64)  # (ref speakers, hyp speakers) frames
    correct = sum(together[i, j] for i, j in _hungarian(together)) if together.size else 0
    n_ref, n_hyp = ref.sum(axis=1), hyp.sum(axis=1)
    missed = float(np.maximum(n_ref - n_hyp, 0).sum()) * frame_s
    false_alarm = float(np.maximum(n_hyp - n_ref, 0).sum()) * frame_s
    confusion = float(np.minimum(n_ref, n_hyp).sum() - correct) * frame_s
    scored_s = float(n_ref.sum()) * frame_s
    error = missed + false_alarm + confusion
    der = error / scored_s if scored_s > 0 else (math.inf if error > 0 else math.nan)
    return dict(der=der, missed=missed, false_alarm=false_alarm, confusion=confusion, scored_s=scored_s)
