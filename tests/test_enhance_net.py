"""The ``roomtone`` denoiser: its training step, its mixtures, and the shipped weights."""

import numpy as np
import pytest

pytest.importorskip("jax")  # a declared dependency

from roomtone.enhance import data, net  # noqa: E402

RATE = net.SAMPLE_RATE


def _voice(seconds, seed=0, f0=140.0):
    """A voiced, formant-shaped harmonic signal with syllable-rate amplitude changes and pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    x = sum(np.sin(k * phase) * np.exp(-((k * f0 - 700) / 500) ** 2 - 0.002 * k) for k in range(1, 40))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 6)), 0, None) ** 0.5
    envelope *= (np.sin(2 * np.pi * 0.4 * t) > -0.6)  # pauses
    return (0.1 * x * envelope / np.abs(x).max()).astype(np.float32)


def _fake_pools(seconds=3.0):
    rng = np.random.default_rng(5)
    speech = [(f"s{i}", _voice(seconds, seed=i, f0=100 + 30 * i)) for i in range(4)]
    noise = [(f"n{i}", (rng.standard_normal(int(seconds * RATE)) * 0.05).astype(np.float32)) for i in range(3)]
    rir = np.zeros(2000, np.float32)
    rir[0], rir[400], rir[1500] = 1.0, 0.4, 0.2
    return {"speech": speech, "noise": noise}, [rir]


def test_one_training_step_lowers_nothing_to_nan_and_moves_every_layer():
    """CI's training smoke test: a tiny model, one batch of synthetic mixtures, one AdamW step."""
    import optax
    from flax import nnx

    from roomtone.enhance import train
    from roomtone.models import weights

    pool, rirs = _fake_pools()
    noisy, clean = data.batch(np.random.default_rng(0), pool, rirs, 2, RATE)
    model = net.build_model(net.Architecture(hidden=8, embed=16, layers=1), nnx.Rngs(0))
    before = {k: v.copy() for k, v in weights.model_arrays(model).items()}
    optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)
    loss = float(train.make_step(None)(model, optimizer, noisy, clean))
    assert np.isfinite(loss)
    after = weights.model_arrays(model)
    assert set(after) == set(before)
    moved = [k for k in after if not np.array_equal(after[k], before[k])]
    assert len(moved) == len(after), sorted(set(after) - set(moved))


def test_mixtures_have_the_promised_shape_level_and_cases():
    pool, rirs = _fake_pools()
    rng = np.random.default_rng(1)
    pairs = [data.mixture(rng, pool, rirs, RATE) for _ in range(60)]
    for noisy, target in pairs:
        assert noisy.shape == target.shape == (RATE,) and noisy.dtype == np.float32
        assert np.abs(noisy).max() <= 0.99 + 1e-6
        assert np.all(np.isfinite(noisy)) and np.all(np.isfinite(target))
    assert any(not np.any(t) for _, t in pairs)  # some noise-only items: silence is the target
    snr = [10 * np.log10(np.sum(t ** 2) / np.sum((n - t) ** 2)) for n, t in pairs if np.any(t) and np.any(n - t)]
    assert min(snr) < 5 and max(snr) > 10  # the SNR spread reaches low and high values


def test_held_out_split_is_by_speaker_and_stable():
    assert data.speaker_key("resemblyzer__librispeech_train-clean-100__103-1240-0000.flac") == "libri103"
    assert data.speaker_key("audiomentations__p286_011.flac") == "vctkp286"
    assert data.speaker_key("libritts_8455_210777_000067_000000.flac") == "libri8455"
    assert data.noise_key("maad__indices__S4A03895_20190522_003000.flac") == "maad__indices__S4A03895"
    keys = [f"libri{i}" for i in range(400)]
    held = [k for k in keys if data.held_out_speaker(k)]
    assert 0.05 < len(held) / len(keys) < 0.2
    assert held == [k for k in keys if data.held_out_speaker(k)]  # deterministic


def test_si_sdr_of_a_scaled_copy_is_infinite_and_of_noise_is_low():
    x = np.random.default_rng(2).standard_normal((1, 8000))
    assert data.si_sdr_db(0.3 * x, x)[0] > 100
    assert data.si_sdr_db(np.random.default_rng(3).standard_normal((1, 8000)), x)[0] < -10


@pytest.mark.shared_data
def test_validation_mixtures_use_only_held_out_speakers_and_noises():
    """The validation set is made of speakers and noise scenes no training mixture ever draws."""
    if not data.DATA.exists():
        pytest.skip(f"needs the speech pools in {data.DATA} (../shared/data/speech)")
    pools = data.load_pools()
    train_speakers = {k for k, _ in pools["train"]["speech"]}
    val_speakers = {k for k, _ in pools["val"]["speech"]}
    assert val_speakers and not train_speakers & val_speakers
    train_noises = {k for k, _ in pools["train"]["noise"]}
    val_noises = {k for k, _ in pools["val"]["noise"]}
    assert val_noises and not train_noises & val_noises
