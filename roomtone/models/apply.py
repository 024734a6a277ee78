"""Chunked application of a model to long signals: segment, pad, batch, run, cross-fade, trim.

The model never chunks or reads files; :func:`apply_chunked` cuts the signal into segments of a
fixed length (one compiled shape for any input length), overlapping by ``overlap`` samples, runs
them in batches, and overlap-adds the outputs weighted by raised-cosine ramps over the shared
samples, divided by the summed weights, so the seams are smooth and memory does not grow with the input beyond its
output. The last segment is aligned to the input's end, so only an input shorter than one segment
is ever padded (a model that normalises by its input's level sees no stretch of padding). ``delay`` samples of model latency are trimmed from the front, so the output is
sample-aligned with the input and of the same length.

:func:`separate_chunked` does the same for a model that takes all channels of a segment at once and
answers with several stems (the separators): a mixture the model splits exactly is still split
exactly, and memory is the output plus one batch whatever the length.

Shape: x (channels, samples) float32 -> (channels, samples) float32; for :func:`separate_chunked`,
-> (stems, channels, samples) float32.
"""

import numpy as np


def crossfade(overlap):
    """The rising half of the cross-fade: ``sin^2`` over ``overlap`` samples; it and its reverse
    sum to 1 at every sample. Shape: (overlap,) float32."""
    if overlap <= 0:
        return np.zeros(0, np.float32)
    t = (np.arange(overlap) + 0.5) / overlap
    return (np.sin(0.5 * np.pi * t) ** 2).astype(np.float32)


def segment_starts(samples, keep, step):
    """Start of every segment, ``step`` apart, each answering ``keep`` samples, so that together
    they cover ``samples`` samples; the last one ends exactly at the end (it overlaps its
    neighbour by more than the others do) so that no segment is padded unless the whole input is
    shorter than one."""
    if step <= 0:
        raise ValueError(f"segment step {step} must be positive (overlap and delay shorter than the segment)")
    starts = [i * step for i in range(1 + -(-max(0, samples - keep) // step))]
    if len(starts) > 1:
        starts[-1] = samples - keep
    return starts


def segment_weight(i, count, keep, ramp):
    """The overlap-add weight of segment ``i`` of ``count``, answering ``keep`` samples: ones, with
    ``ramp`` rising over the start a previous neighbour shares and falling over the end a next one
    shares. Shape: (keep,) float32."""
    w = np.ones(keep, np.float32)
    if ramp.size and i > 0:
        w[:ramp.size] = ramp
    if ramp.size and i < count - 1:
        w[keep - ramp.size:] = np.minimum(w[keep - ramp.size:], ramp[::-1])
    return w


def segment_weights(samples, keep, starts, overlap):
    """The overlap-add weights of segments at ``starts``, each answering ``keep`` samples: ones,
    with a raised-cosine ramp over ``overlap`` samples (at most half a segment) at each edge a
    neighbour shares, and their sum over the signal, which the overlap-added outputs are divided by
    (exactly 1 where two regular neighbours cross, and right wherever the end-aligned last segment
    overlaps more). Returns ``({start: (keep,) float32}, (samples,) float32)``."""
    ramp = crossfade(min(overlap, keep // 2))
    weights = {s: segment_weight(i, len(starts), keep, ramp) for i, s in enumerate(starts)}
    total = np.zeros(samples, np.float32)
    for s, w in weights.items():
        stop = min(s + keep, samples)
        total[s:stop] += w[:stop - s]
    return weights, total


def apply_chunked(run, x, *, segment, overlap, delay=0, batch=4, progress=None):
    """``run`` applied to ``x`` segment by segment and cross-faded together.

    Args:
        run: ``callable(batch) -> batch``, numpy float32 (items, segment) in and out (one compiled
            shape: the last batch is padded with silent items).
        x: (channels, samples) float32; each channel is an item.
        segment: samples per item (the model's fixed input length).
        overlap: samples two neighbouring outputs share (cross-faded).
        delay: the model's latency in samples: its output at ``n`` answers its input at ``n - delay``.
            An item's input covers ``x[s : s + segment]``; its output from sample ``delay`` on
            answers ``x[s : s + segment - delay]``, and only that part is kept, so a delaying model
            gives the same output chunked as whole.
        batch: items per call.
        progress: optional ``callable(done, total)`` after each batch.

    Returns: (channels, samples) float32, the same length as ``x`` (a new array: ``x`` is left
    alone; :func:`apply_chunked_in_place` writes over it instead).
    """
    out = np.array(x, dtype=np.float32, order="C", copy=True)
    return apply_chunked_in_place(run, out, segment=segment, overlap=overlap, delay=delay, batch=batch,
                                  progress=progress)


def apply_chunked_in_place(run, x, *, segment, overlap, delay=0, batch=4, progress=None):
    """:func:`apply_chunked` with the output written over ``x`` (writeable float32 (channels,
    samples)), bit for bit the same output. An output sample is final once every segment covering
    it has run (the segments of a channel run in order), and it is written then: only over samples
    before the next segment's start, while that segment and all later ones read their inputs from
    their own starts on, which still hold the input. Scratch: one batch of segments and, per
    channel, one segment of pending overlap-add (its weighted sum and its weights, added in the
    order :func:`apply_chunked` adds them, and divided the same way). Returns ``x``.
    """
    if x.dtype != np.float32 or x.ndim != 2 or not x.flags.writeable:
        raise ValueError("apply_chunked_in_place needs a writeable float32 (channels, samples) array")
    channels, samples = x.shape
    if samples == 0:
        return x
    keep = segment - delay  # output samples an item answers for
    starts = segment_starts(samples, keep, keep - overlap)
    ramp = crossfade(min(overlap, keep // 2))
    weights = [segment_weight(i, len(starts), keep, ramp) for i in range(len(starts))]
    # per channel: the pending output [base, base + keep): weighted sum and sum of weights
    base = [0] * channels
    acc = np.zeros((channels, keep), np.float32)
    wsum = np.zeros((channels, keep), np.float32)
    items = [(c, i) for c in range(channels) for i in range(len(starts))]
    done = 0
    for first in range(0, len(items), batch):
        group = items[first:first + batch]
        block = np.zeros((batch, segment), np.float32)
        for j, (c, i) in enumerate(group):
            s = starts[i]
            piece = x[c, s:min(s + segment, samples)]
            block[j, :len(piece)] = piece
        result = np.asarray(run(block), dtype=np.float32)
        for j, (c, i) in enumerate(group):
            s, w = starts[i], weights[i]
            y = result[j, delay:delay + keep] * w  # answers x[s : s + keep]
            stop = min(s + keep, samples)
            at = s - base[c]
            acc[c, at:at + stop - s] += y[:stop - s]
            wsum[c, at:at + stop - s] += w[:stop - s]
            final = starts[i + 1] if i + 1 < len(starts) else samples  # later segments start here
            ready = final - base[c]
            x[c, base[c]:final] = acc[c, :ready] / wsum[c, :ready]
            # what is still pending moves to the front
            rest = acc.shape[1] - ready
            acc[c, :rest] = acc[c, ready:].copy()
            wsum[c, :rest] = wsum[c, ready:].copy()
            acc[c, rest:] = 0.0
            wsum[c, rest:] = 0.0
            base[c] = final
        done += len(group)
        if progress is not None:
            progress(done, len(items))
    return x


# ------------------------------------------------------------------ models that answer with several stems
# A separator takes every channel of a segment at once and answers with several stems; the segments,
# weights and cross-fades are the ones above.

def separate_chunked(run, x, *, segment, overlap, stems, batch=1, progress=None):
    """``run`` applied to ``x`` segment by segment, its stems cross-faded together.

    Args:
        run: ``callable(block) -> stems``: numpy float32 (batch, channels, segment) in, (batch,
            stems, channels, segment) out (one compiled shape: the last batch is padded with
            silent segments, the last segment with silence).
        x: (channels, samples) float32.
        segment: samples per segment; overlap: samples two neighbours share (cross-faded).
        stems: how many stems ``run`` returns.
        progress: optional ``callable(done, total)`` after each batch.

    Returns: (stems, channels, samples) float32.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    channels, samples = x.shape
    out = np.zeros((stems, channels, samples), np.float32)
    if samples == 0:
        return out
    if not 0 <= overlap < segment:
        raise ValueError(f"overlap of {overlap} samples must be shorter than the segment ({segment} samples)")
    starts = segment_starts(samples, segment, segment - overlap)
    weights, total = segment_weights(samples, segment, starts, overlap)
    for first in range(0, len(starts), batch):
        group = starts[first:first + batch]
        block = np.zeros((batch, channels, segment), np.float32)
        for i, s in enumerate(group):
            piece = x[:, s:min(s + segment, samples)]
            block[i, :, :piece.shape[1]] = piece
        result = np.asarray(run(block), dtype=np.float32)
        if result.shape != (batch, stems, channels, segment):
            raise ValueError(f"the separator returned shape {result.shape}, expected {(batch, stems, channels, segment)}")
        for i, s in enumerate(group):
            y = result[i] * weights[s]
            stop = min(s + segment, samples)
            out[:, :, s:stop] += y[:, :, :stop - s]
        if progress is not None:
            progress(first + len(group), len(starts))
    out /= total
    return out


def segment_count(samples, segment, overlap):
    """How many segments :func:`separate_chunked` runs for ``samples`` samples."""
    return len(segment_starts(samples, segment, segment - overlap)) if samples else 0
