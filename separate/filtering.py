"""Multichannel Wiener filtering and its EM refinement, as pure functions apart from any model.

The local Gaussian model (Duong, Vincent & Gribonval 2010; the post-filter Open-Unmix and Spleeter
use, after Nugraha, Liutkus & Vincent 2016): the image of source ``j`` in bin ``(t, f)`` is a
zero-mean complex Gaussian with covariance ``v_j(t, f) R_j(f)``: a power spectral density ``v_j``
times a spatial covariance ``R_j`` (channels x channels, one per frequency). Given them, the
posterior mean of each image is the multichannel Wiener filter

    y_j(t, f) = v_j(t, f) R_j(f) C(t, f)^-1 x(t, f),   C(t, f) = sum_j v_j(t, f) R_j(f) + eps I,

so the images sum to ``(C - eps I) C^-1 x``, the mixture up to the regularisation. EM
(:func:`expectation_maximization`) alternates that E-step with re-estimating ``v_j`` (the power
averaged over channels) and ``R_j`` (the power-weighted average of ``y_j y_j^H / v_j`` over the
frames), starting from the soft-mask estimate of the images. Every frequency is independent: the
functions work over blocks of bins, so memory stays a few times the spectrogram.

The M-step here uses the point estimates of the images (``y_j y_j^H``), without the posterior
covariance term of the exact EM; the tests check the fixed points that matter: exact recovery with
known ``v_j, R_j`` and disjoint supports, and sum to the mixture.

Shapes (the Open-Unmix order): mixture ``x`` (frames, bins, channels) complex; magnitudes or
powers ``(frames, bins, channels, sources)`` or ``(frames, bins, sources)``; images
``(frames, bins, channels, sources)`` complex.
"""

import numpy as np

EPS = 1e-10
BIN_BLOCK = 128  # bins per block of the EM loop (memory: a few block-sized copies)


def soft_mask(v, x, *, eps=EPS):
    """The images by ratio masks: ``y_j = x v_j / sum_k v_k``.

    Args:
        v: (frames, bins, channels, sources) non-negative magnitude estimates.
        x: (frames, bins, channels) complex mixture.
    Returns: (frames, bins, channels, sources) complex64.
    """
    v = np.asarray(v, np.float32)
    total = v.sum(axis=-1, keepdims=True)
    return (x[..., None] * (v / (total + eps))).astype(np.complex64)


def spatial_covariance(y, power, *, eps=EPS):
    """``R_j(f) = sum_t y_j y_j^H / sum_t v_j``: the power-weighted spatial covariance of each
    image (Duong et al. 2010, eq. 18 with point estimates).

    Args:
        y: (frames, bins, channels, sources) complex images.
        power: (frames, bins, sources) their power spectral densities ``v_j``.
    Returns: (bins, sources, channels, channels) complex128.
    """
    y = np.asarray(y, np.complex128)
    outer = np.einsum("tfcj,tfdj->fjcd", y, np.conj(y))
    weight = np.asarray(power, np.float64).sum(axis=0)  # (bins, sources)
    return outer / (weight[..., None, None] + eps)


def multichannel_wiener(power, covariance, x, *, eps=EPS):
    """The posterior means ``y_j = v_j R_j C^-1 x`` with ``C = sum_j v_j R_j + eps I``.

    Args:
        power: (frames, bins, sources) ``v_j``.
        covariance: (bins, sources, channels, channels) ``R_j``.
        x: (frames, bins, channels) complex mixture.
    Returns: (frames, bins, channels, sources) complex64. Their sum is the mixture up to ``eps``.
    """
    power = np.asarray(power, np.float64)
    covariance = np.asarray(covariance, np.complex128)
    channels = x.shape[-1]
    weighted = power[..., None, None] * covariance[None]  # (frames, bins, sources, C, C)
    mix_cov = weighted.sum(axis=2) + eps * np.eye(channels)
    z = np.linalg.solve(mix_cov, np.asarray(x, np.complex128)[..., None])[..., 0]  # C^-1 x: (frames, bins, C)
    y = np.einsum("tfjcd,tfd->tfcj", weighted, z)
    return y.astype(np.complex64)


def expectation_maximization(y, x, iterations=1, *, eps=EPS):
    """``iterations`` rounds of EM from the images ``y``: estimate ``v_j`` (power averaged over
    channels) and ``R_j`` (:func:`spatial_covariance`) from the current images, then the Wiener
    E-step (:func:`multichannel_wiener`). Works on all bins at once (see :func:`wiener` for blocks).

    Args:
        y: (frames, bins, channels, sources) complex initial images.
        x: (frames, bins, channels) complex mixture.
    Returns: ``(y, v, R)``: images as ``y``, powers (frames, bins, sources), covariances
    (bins, sources, channels, channels).
    """
    power = covariance = None
    for _ in range(int(iterations)):
        power = np.mean(np.abs(y) ** 2, axis=2)
        covariance = spatial_covariance(y, power, eps=eps)
        y = multichannel_wiener(power, covariance, x, eps=eps)
    return y, power, covariance


def wiener(v, x, iterations=1, *, softmask=True, eps=EPS, bin_block=BIN_BLOCK):
    """Open-Unmix-style refinement of magnitude estimates into complex images.

    Starts from ratio masks of ``v`` applied to ``x`` (``softmask=True``) or from ``v`` with the
    mixture's phase (``softmask=False``), then ``iterations`` EM rounds
    (:func:`expectation_maximization`), ``bin_block`` bins at a time. The mixture is scaled to unit
    RMS first, so ``eps`` is relative to its level. ``iterations=0`` returns the initial images.

    Args:
        v: (frames, bins, channels, sources) or (frames, bins, sources) non-negative magnitudes.
        x: (frames, bins, channels) complex mixture.
    Returns: (frames, bins, channels, sources) complex64.
    """
    x = np.asarray(x)
    v = np.asarray(v, np.float32)
    if v.ndim == 3:
        v = np.repeat(v[:, :, None, :], x.shape[-1], axis=2)
    if v.shape[:3] != x.shape:
        raise ValueError(f"magnitudes of shape {v.shape} do not match a mixture of shape {x.shape} "
                         "(frames, bins, channels[, sources])")
    scale = float(np.sqrt(np.mean(np.abs(x) ** 2))) or 1.0
    x = (x / scale).astype(np.complex64)
    out = np.empty(v.shape, np.complex64)
    for lo in range(0, x.shape[1], int(bin_block)):
        hi = min(lo + int(bin_block), x.shape[1])
        xb, vb = x[:, lo:hi], v[:, lo:hi]
        if softmask:
            yb = soft_mask(vb, xb, eps=eps)
        else:
            yb = (vb / scale * np.exp(1j * np.angle(xb))[..., None]).astype(np.complex64)
        if iterations:
            yb = expectation_maximization(yb, xb, iterations, eps=eps)[0]
        out[:, lo:hi] = yb
    return out * np.float32(scale)
