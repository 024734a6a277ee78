"""Multichannel Wiener filtering and EM (roomtone.separate.filtering) on cases with a known answer."""

import numpy as np
import pytest

from roomtone.separate.filtering import (expectation_maximization, multichannel_wiener, soft_mask,
                                         spatial_covariance, wiener)


def _complex(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _panned_sources(rng, frames=40, bins=6):
    """Two sources with rank-1 spatial images a_j s_j (different mixing vectors per bin)."""
    s = _complex(rng, frames, bins, 2)  # (frames, bins, sources)
    a = _complex(rng, bins, 2, 2)  # (bins, channels, sources)
    images = np.einsum("fcj,tfj->tfcj", a, s)  # (frames, bins, channels, sources)
    return images, s, a


def test_wiener_with_the_true_model_recovers_rank_one_sources_exactly():
    """With v_j = |s_j|^2 and R_j = a_j a_j^H (the true local model of rank-1 images), the posterior
    mean is the exact image: v_j R_j (A V A^H)^-1 x = a_j s_j."""
    rng = np.random.default_rng(0)
    images, s, a = _panned_sources(rng)
    x = images.sum(axis=-1)
    power = np.abs(s) ** 2
    covariance = np.einsum("fcj,fdj->fjcd", a, np.conj(a))
    y = multichannel_wiener(power, covariance, x, eps=1e-12)
    assert np.max(np.abs(y - images)) < 1e-3 * np.max(np.abs(images))


def test_images_sum_to_the_mixture():
    rng = np.random.default_rng(1)
    x = _complex(rng, 30, 8, 2)
    v = np.abs(rng.standard_normal((30, 8, 2, 3))).astype(np.float32)
    for iterations in (0, 1, 3):
        y = wiener(v, x, iterations)
        assert y.shape == (30, 8, 2, 3)
        assert np.max(np.abs(y.sum(axis=-1) - x)) < 1e-4 * np.max(np.abs(x))


def test_disjoint_sources_are_a_fixed_point_of_em():
    """Sources occupying different bins: the soft masks already split them exactly, and EM keeps
    that answer."""
    rng = np.random.default_rng(2)
    frames, bins = 50, 10
    images = np.zeros((frames, bins, 2, 2), np.complex64)
    images[:, :5, :, 0] = _complex(rng, frames, 5, 2)
    images[:, 5:, :, 1] = _complex(rng, frames, 5, 2)
    x = images.sum(axis=-1)
    v = np.abs(images)
    for iterations in (0, 2):
        y = wiener(v, x, iterations)
        assert np.max(np.abs(y - images)) < 1e-4


def test_em_improves_on_soft_masks_for_panned_sources():
    """Overlapping sources panned differently: the soft mask cannot split a bin, the spatial model
    can; one EM round from the right powers gets much closer to the true images."""
    rng = np.random.default_rng(3)
    images, s, a = _panned_sources(rng, frames=200, bins=4)
    x = images.sum(axis=-1)
    v = np.abs(images)  # magnitude estimates per channel
    err = lambda y: float(np.sum(np.abs(y - images) ** 2) / np.sum(np.abs(images) ** 2))  # noqa: E731
    masked = soft_mask(v, x)
    refined, power, covariance = expectation_maximization(masked, x, 1)
    assert power.shape == (200, 4, 2) and covariance.shape == (4, 2, 2, 2)
    assert err(wiener(v, x, 1)) < 0.6 * err(masked)


def test_spatial_covariance_of_a_rank_one_image():
    rng = np.random.default_rng(4)
    images, s, a = _panned_sources(rng, frames=30, bins=3)
    power = np.mean(np.abs(images) ** 2, axis=2)
    r = spatial_covariance(images, power)
    expected = np.einsum("fcj,fdj->fjcd", a, np.conj(a))
    expected /= np.einsum("fjcc->fj", expected)[..., None, None] / 2  # trace normalised to the channel count
    assert np.allclose(r, expected, atol=1e-4)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="do not match"):
        wiener(np.ones((3, 4, 2, 2)), np.ones((3, 5, 2), np.complex64))
