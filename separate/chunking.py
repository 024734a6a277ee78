"""Chunked separation of long signals: segments, batches, cross-fades (the idea of
:func:`roomtone.models.apply.apply_chunked`, for a model that takes all channels of a segment at
once and answers with several stems).

The signal is cut into segments of ``segment`` samples overlapping by ``overlap``; each batch of
segments goes through ``run`` and the stems are overlap-added with the weights of
:func:`roomtone.models.apply.segment_weights` (raised-cosine ramps, normalised by their sum; the
last segment is aligned to the end), so the seams are smooth, a mixture the model splits exactly
is still split exactly, and memory is the output plus one batch whatever the length.

Shape: x (channels, samples) float32 -> (stems, channels, samples) float32.
"""

import numpy as np

from roomtone.models.apply import segment_starts, segment_weights


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
