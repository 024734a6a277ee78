"""The separation benchmark's oracle ceiling (benchmarks/bench_separate.py): the ideal ratio masks
made from the true stems must give those stems back where they do not overlap, and sum to the mix."""

import numpy as np
import pytest

import bench_separate  # benchmarks/ is on the tests' path (pyproject.toml, [tool.pytest.ini_options])

RATE = 44100


def _stems(seconds=1.0):
    t = np.arange(int(RATE * seconds)) / RATE
    low = 0.5 * np.sin(2 * np.pi * 110.0 * t)
    high = 0.3 * np.sin(2 * np.pi * 5000.0 * t)
    return np.stack([np.stack([low, 0.5 * low]), np.stack([0.7 * high, high])]).astype(np.float32)


@pytest.mark.parametrize("power", [1, 2])
def test_oracle_gives_separate_partials_back_and_sums_to_the_mix(power):
    refs = _stems()
    est = bench_separate.oracle(refs, power)
    assert est.shape == refs.shape
    np.testing.assert_allclose(est.sum(axis=0), refs.sum(axis=0), atol=1e-4)
    for ref, out in zip(refs, est):
        error_db = 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - out).astype(np.float64) ** 2))
        assert error_db > 40.0


def test_oracle_of_overlapping_stems_splits_by_level():
    noise = np.random.default_rng(0).standard_normal((2, RATE // 2)).astype(np.float32)
    refs = np.stack([noise, 0.5 * noise])  # the same sound at two levels: masks 2/3 and 1/3 at p = 1
    est = bench_separate.oracle(refs, 1)
    np.testing.assert_allclose(est, refs, atol=1e-4)  # ratios of a shared sound are exact
    est2 = bench_separate.oracle(refs, 2)  # p = 2: 0.8 / 0.2 of the mix (1.5 x)
    np.testing.assert_allclose(est2[0], 1.2 * noise, atol=1e-4)
