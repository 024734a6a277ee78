"""Fusion of the ``roomtone`` network's masks with the classical ``dsp`` masks: a product of
experts, as pure numpy functions apart from both.

The network (:mod:`roomtone.separate.net`) and the DSP combination
(:mod:`roomtone.separate.dsp`: HPSS, a low-pass and a centre-channel cue) make different errors:
the network knows timbre, the DSP knows stereo position and the harmonic/percussive contrast
whatever the instrument. Each gives ratio masks ``m_j`` (summing to 1 over the stems ``j`` in every
bin and channel). The fused mask is their weighted geometric mean, normalised again:

    m_j  proportional to  (m_net_j + eps)^a * (m_dsp_j + eps)^b_j,        sum_j m_j = 1,

(a log-linear pool, Hinton's product of experts with powers), so a stem keeps a bin only where
both experts allow it, to a degree set by ``a`` (the network's power) and ``b_j`` (each stem's DSP
power). The stems still sum to the mixture. The powers are chosen on the held-out synthetic
validation set (:func:`roomtone.separate.training.fusion.tune`, coordinate search over a small
grid; not shipped) and stored in the weights' config (``fusion``); the evaluation excerpt plays no
part.

Both masks are computed on the network's STFT (2048-point Hann, hop 512 = n_fft / 4, the hop
the DSP masks assume).

Shapes: masks (batch, stems 4, channels 2, frames, bins) float32.
"""

import numpy as np

EPS = 1e-4


def fuse_masks(net_masks, dsp_masks, net_power, dsp_power, *, eps=EPS, xp=np):
    """The product-of-experts masks (see the module): ``net_masks`` and ``dsp_masks`` (batch,
    stems, channels, frames, bins) in [0, 1]; ``net_power`` a float, ``dsp_power`` one float per
    stem. Returns float32 masks of the same shape summing to 1 over the stems. ``dsp_power`` all 0
    and ``net_power`` 1 give the network's masks back (up to ``eps``). ``xp``: ``numpy`` (the
    separator) or ``jax.numpy`` (the fused training loss, differentiable)."""
    b = xp.asarray(dsp_power, xp.float32).reshape(1, -1, 1, 1, 1)
    logits = float(net_power) * xp.log(xp.asarray(net_masks, xp.float32) + eps)
    logits = logits + b * xp.log(xp.asarray(dsp_masks, xp.float32) + eps)
    logits = logits - logits.max(axis=1, keepdims=True)
    weights = xp.exp(logits)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(xp.float32)


def dsp_masks(spec, sample_rate, n_fft):
    """The DSP separator's masks for the network's STFT ``spec`` (batch, channels, frames, bins)
    complex, hop ``n_fft / 4``: (batch, 4, channels, frames, bins) float32, the same mask for every
    channel (the DSP's masks are of the channel mean and the inter-channel coherence)."""
    from roomtone.separate.dsp import DspSeparator

    dsp = DspSeparator()
    spec = np.asarray(spec)
    out = np.empty((spec.shape[0], 4) + spec.shape[1:], np.float32)
    for i, item in enumerate(spec):
        out[i] = np.transpose(dsp.masks(item, sample_rate, n_fft), (2, 0, 1))[:, None]
    return out

