"""The enhance job's numba kernels against naive numpy oracles."""

import math

import numpy as np
import pytest
from scipy import special

from roomtone.enhance.classic import _params
from roomtone.kernels.enhance import (P_ALPHA_D, P_ALPHA_DD, P_ALPHA_P, P_ALPHA_S, P_DELTA, P_GAIN_MIN, P_SIDE_GAP,
                                      P_SIDE_SPAN, P_TONAL_CAP, P_WINDOW, P_XI_MIN, STATE_ROWS, apply_block_gains,
                                      exp1, lsa_gains, overlap_add)


@pytest.mark.parametrize("x", [1e-8, 1e-3, 0.3, 0.999, 1.0, 1.7, 5.0, 30.0, 200.0])
def test_exp1_matches_scipy(x):
    assert exp1(x) == pytest.approx(float(special.exp1(x)), rel=1e-10)


def _lsa_oracle(power, init, params):
    """Frame by frame in numpy, vectorised over bins, as the kernel's docstring states."""
    frames, bins = power.shape
    noise, smooth, smin, stmp = (init.copy() for _ in range(4))
    presence, clean = np.zeros(bins), np.zeros(bins)
    count = 0
    gains = np.empty(power.shape)
    gap, span, cap = int(params[P_SIDE_GAP]), int(params[P_SIDE_SPAN]), params[P_TONAL_CAP]
    for f in range(frames):
        y = power[f]
        padded = np.concatenate(([y[0]], y, [y[-1]]))
        sf = 0.25 * padded[:-2] + 0.5 * y + 0.25 * padded[2:]
        smooth = params[P_ALPHA_S] * smooth + (1 - params[P_ALPHA_S]) * sf
        smin, stmp = np.minimum(smin, smooth), np.minimum(stmp, smooth)
        count += 1
        if count >= int(params[P_WINDOW]):
            smin, stmp, count = np.minimum(stmp, smooth), smooth.copy(), 0
        presence = params[P_ALPHA_P] * presence + (1 - params[P_ALPHA_P]) * (smooth > params[P_DELTA] * np.maximum(smin, 1e-30))
        a = params[P_ALPHA_D] + (1 - params[P_ALPHA_D]) * presence
        noise = a * noise + (1 - a) * y
        used = noise.copy()
        for k in range(bins):
            sides = [noise[max(0, k - span):max(0, k - gap + 1)], noise[k + gap:k + span + 1]]
            means = [s.mean() for s in sides if s.size]
            if means and used[k] > cap * max(means):
                used[k] = cap * max(means)
        used = np.maximum(used, 1e-30)
        gamma = y / used
        xi = np.maximum(params[P_ALPHA_DD] * clean / used + (1 - params[P_ALPHA_DD]) * np.maximum(gamma - 1, 0),
                        params[P_XI_MIN])
        v = np.maximum(xi / (1 + xi) * gamma, 1e-10)
        g = np.clip(xi / (1 + xi) * np.exp(0.5 * special.exp1(v)), params[P_GAIN_MIN], 1.0)
        clean = g * g * y
        gains[f] = g
    return gains


def test_lsa_gains_match_the_oracle():
    rng = np.random.default_rng(0)
    bins, frames = 40, 300
    shape = 1.0 / (1.0 + np.arange(bins))
    power = rng.exponential(1.0, (frames, bins)) * shape
    power[100:140, 10:14] *= 50.0  # a burst of "speech"
    power[:, 25] *= 30.0  # a steady tone
    params = _params(16000, 128, 512, 20.0)
    params[P_WINDOW] = 37
    params[P_SIDE_GAP], params[P_SIDE_SPAN] = 3, 8
    state = np.zeros((STATE_ROWS, bins))
    state[:4] = power[0]
    got = lsa_gains(power, state, np.zeros(1, dtype=np.int64), params, np.empty(power.shape, dtype=np.float32))
    np.testing.assert_allclose(got, _lsa_oracle(power, power[0], params), rtol=1e-5, atol=1e-6)


def test_overlap_add_and_block_gains_match_naive_loops():
    rng = np.random.default_rng(1)
    frames = rng.standard_normal((9, 16))
    out = overlap_add(frames, 4, np.zeros(40), -3)
    naive = np.zeros(60)
    for f in range(9):
        naive[f * 4:f * 4 + 16] += frames[f]
    np.testing.assert_allclose(out, naive[3:43], atol=1e-12)
    x = rng.standard_normal((2, 1000)).astype(np.float32)
    gains_db = rng.uniform(-6, 6, 9)
    got = apply_block_gains(x, gains_db, 100.0, 50.0, np.empty_like(x))
    curve = np.interp(np.arange(1000), 50.0 + 100.0 * np.arange(9), gains_db)
    np.testing.assert_allclose(got, x * (10 ** (curve / 20)).astype(np.float32), rtol=1e-5)
    assert math.isfinite(float(got.sum()))
