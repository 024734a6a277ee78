"""Sample-rate conversion: the streaming resampler in pieces is the one-shot resampler, and
:func:`roomtone.resample.resampled_length` counts its output."""

import numpy as np
import pytest

from refsignals import band_noise
from roomtone.resample import resample, resample_pieces, resampled_length


@pytest.mark.parametrize("rates", [(48000, 16000), (44100, 16000), (16000, 48000), (22050, 16000), (16000, 44100),
                                   (16000, 16000)])
@pytest.mark.parametrize("block", [1, 7, 4093, 10 ** 7])
def test_resampling_in_pieces_is_the_one_shot_resampler(rates, block):
    x = band_noise(0.6, rates[0], 20, 0.45 * rates[0], rms=0.1, channels=2, seed=1)
    x[1] *= 0.5
    whole = resample(x, *rates)
    pieces = list(resample_pieces(x, *rates, block_samples=block))
    assert [start for start, _ in pieces] == list(np.cumsum([0] + [p.shape[1] for _, p in pieces[:-1]]))
    np.testing.assert_array_equal(np.concatenate([p for _, p in pieces], axis=1), whole)
    assert whole.shape[1] == resampled_length(x.shape[1], *rates)


@pytest.mark.parametrize("samples", [0, 1, 2, 3])
def test_resampled_length_for_tiny_inputs(samples):
    x = np.zeros((1, samples), np.float32)
    assert resample(x, 48000, 16000).shape[1] == resampled_length(samples, 48000, 16000)
    got = sum(p.shape[1] for _, p in resample_pieces(x, 48000, 16000, block_samples=1))
    assert got == resampled_length(samples, 48000, 16000)
