"""The ``roomtone`` denoiser: its training step, its mixtures, and the shipped weights."""

import numpy as np
import pytest

from roomtone.enhance import net
from roomtone.enhance.training import data

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

    from roomtone.enhance.training import train
    from roomtone.models import weights

    pool, rirs = _fake_pools()
    noisy, clean = data.batch(np.random.default_rng(0), pool, rirs, 2, RATE)
    model = net.build_model(net.Architecture(hidden=8, embed=16, layers=1), nnx.Rngs(0))
    before = {k: v.copy() for k, v in weights.model_arrays(model).items()}
    optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)
    loss = float(train.make_step()(model, optimizer, noisy, clean))
    assert np.isfinite(loss)
    after = weights.model_arrays(model)
    assert set(after) == set(before)
    moved = [k for k in after if not np.array_equal(after[k], before[k])]
    assert len(moved) == len(after), sorted(set(after) - set(moved))


def test_envelope_correlation_loss_is_zero_for_the_target_and_rises_with_noise():
    """The STOI-like training term: 1 - band-envelope correlation; 0 when the output is the target
    (any scale), larger the more noise is left, and its gradient finite."""
    import jax
    import jax.numpy as jnp

    from refsignals import speech_like
    from roomtone.enhance.training import train
    from roomtone.models import stft

    w = net.window()
    clean = speech_like(2.0, RATE, channels=1, seed=2)[0][0]
    noise = np.random.default_rng(3).standard_normal(clean.size).astype(np.float32) * 0.05
    spec = lambda x: stft.stft(jnp.asarray(x[None]), w, net.HOP)  # noqa: E731
    s = spec(clean)
    assert float(train.envelope_correlation_loss(spec(0.5 * clean), s)) < 1e-4
    losses = [float(train.envelope_correlation_loss(spec(clean + k * noise), s)) for k in (0.3, 1.0, 3.0)]
    assert 0 < losses[0] < losses[1] < losses[2]
    grad = jax.grad(lambda y: train.envelope_correlation_loss(y, s))(spec(clean + noise))
    assert np.all(np.isfinite(np.asarray(grad)))


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


def test_synthetic_transients_are_impulsive_and_every_kind_is_drawn():
    """Taps, clicks and rubs come in bursts: their short-frame energy varies far more than a
    stationary noise's, and each kind appears among a few draws."""
    rng = np.random.default_rng(4)
    frames = lambda x: np.mean(x[: x.size // 160 * 160].reshape(-1, 160) ** 2, axis=1)
    stationary = frames(np.random.default_rng(5).standard_normal(2 * RATE))
    spreads = []
    for _ in range(24):
        x = data._transients(rng, 2 * RATE)
        assert x.shape == (2 * RATE,) and x.dtype == np.float32 and np.all(np.isfinite(x)) and np.any(x)
        e = frames(x.astype(np.float64))
        spreads.append(np.percentile(e, 95) / (np.percentile(e, 50) + 1e-20))
    assert np.median(spreads) > 10 * np.percentile(stationary, 95) / np.percentile(stationary, 50)


def test_real_noise_is_drawn_by_scene_not_by_file():
    """A scene cut into many chunks is drawn as often as a single recording."""
    noises = [("soundscape", np.full(10, 1.0, np.float32)) for _ in range(30)] + [("fan", np.full(10, 2.0, np.float32))]
    rng = np.random.default_rng(6)
    draws = [float(data._real_noise(rng, noises)[0]) for _ in range(400)]
    assert 0.4 < draws.count(2.0) / len(draws) < 0.6


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
    # the held-out keys split in two halves: what picks weights ("select") and what the benchmark's
    # evaluation sets read ("evaluate"), both non-empty, neither seen by the other
    for kind, keys in (("speech", val_speakers), ("noise", val_noises)):
        parts = {part: {k for k in keys if data.held_out_part(k, kind) == part} for part in ("select", "evaluate")}
        assert parts["select"] and parts["evaluate"] and parts["select"].isdisjoint(parts["evaluate"])
        assert parts["select"] | parts["evaluate"] == keys


def test_training_music_leaves_the_evaluation_packages_out_and_opus_keeps_the_length():
    assert set(data.TRAIN_MUSIC).isdisjoint({"hyperrogue-music", "nexuiz-music"})
    x = (0.1 * np.random.default_rng(4).standard_normal(RATE)).astype(np.float32)
    y = data.opus(x, 0.9)
    assert y.shape == x.shape and y.dtype == np.float32 and np.all(np.isfinite(y))
    assert 0.3 < float(np.std(y) / np.std(x)) < 3.0 and not np.array_equal(x, y)


def golden_noisy_voice():
    """The fixed synthetic noisy file of the golden test: 4 s of speech-like sound (formants,
    phrases, pauses) in pink noise at 5 dB SNR, 16 kHz mono. Returns (noisy, clean) (1, samples)."""
    from refsignals import pink_noise, speech_like

    clean, _ = speech_like(4.0, RATE, channels=1, seed=3)
    noise = pink_noise(4.0, RATE, rms=1.0, channels=1, seed=7)
    rms = lambda v: float(np.sqrt(np.mean(np.asarray(v, np.float64) ** 2)))
    noise = noise * (rms(clean) / rms(noise) * 10 ** (-5.0 / 20.0))
    return (clean + noise).astype(np.float32), clean.astype(np.float32)


def golden_figures(denoiser, noisy, clean):
    out = denoiser(noisy)
    rms_db = lambda v: float(10 * np.log10(np.mean(np.asarray(v, np.float64) ** 2) + 1e-20))
    return {"si_sdr_db": round(float(data.si_sdr_db(out, clean)[0]), 3),
            "noisy_si_sdr_db": round(float(data.si_sdr_db(noisy, clean)[0]), 3),
            "output_rms_db": round(rms_db(out), 3)}


# ---- the shipped weights -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped():
    from roomtone.enhance.net import RoomtoneDenoiser

    return RoomtoneDenoiser()


def test_shipped_weights_give_the_committed_golden_figures(shipped):
    """Regenerate with ``PYTHONPATH=tests python tests/golden/make_enhance_golden.py`` after training
    new weights."""
    import hashlib
    import json
    from pathlib import Path

    from roomtone.enhance.net import weights_path

    golden = json.loads((Path(__file__).parent / "golden" / "enhance_roomtone.json").read_text())
    assert hashlib.sha256(Path(weights_path()).read_bytes()).hexdigest() == golden["weights_sha256"]
    noisy, clean = golden_noisy_voice()
    figures = golden_figures(shipped, noisy, clean)
    for key in ("si_sdr_db", "noisy_si_sdr_db", "output_rms_db"):
        assert figures[key] == pytest.approx(golden[key], abs=0.05), key
    assert figures["si_sdr_db"] > figures["noisy_si_sdr_db"] + 1.5  # it does denoise (a signal it never saw)


def test_shipped_config_describes_the_weights(shipped):
    config = shipped.config
    assert config["sample_rate"] == RATE and config["architecture"]["kind"] == "roomtone-bigru"
    assert config["metrics"]["val_si_sdr_db"] > config["metrics"]["val_noisy_si_sdr_db"]
    assert config["data"]["val_speakers"] and config["data"]["val_noises"]
    assert 10_000 < config["parameters"] < 1_000_000


def test_roomtone_silence_in_silence_out_and_length_kept(shipped):
    for samples in (1, 255, 16000, 200_001):
        out = shipped(np.zeros((2, samples), np.float32))
        assert out.shape == (2, samples) and not np.any(np.abs(out) > 1e-7)


def test_roomtone_chunked_equals_whole(shipped):
    """A 72 s input runs in 30 s segments cross-faded over 2 s; a single call over the whole input
    gives nearly the same output (the BiGRU's state carries context across a seam that a segment
    does not see, so the two agree to about 20 dB there and exactly far from it)."""
    import jax

    noisy, _ = golden_noisy_voice()
    long = np.tile(noisy, (1, 18))
    chunked = shipped(long)
    whole = np.asarray(jax.jit(net.denoise_fn(shipped.model, long.shape[1]))(long))
    assert data.si_sdr_db(chunked, whole)[0] > 20.0  # measured 23.4 dB with the shipped weights


def test_roomtone_keeps_alignment_through_the_enhance_job():
    """Through the denoise stage at every supported rate: same length, no lag against the input,
    and the noise in the pauses taken down by 10 dB or more."""
    from roomtone.enhance import enhance
    from refsignals import pink_noise, speech_like

    for rate in (16000, 22050, 44100, 48000):
        clean, active = speech_like(3.0, rate, channels=1, seed=4)
        noise = pink_noise(3.0, rate, rms=0.01, channels=1, seed=8)
        out, report = enhance(clean + noise, rate, preset="denoise", model="roomtone")
        assert out.shape == clean.shape and report["model"] == "roomtone" and np.all(np.isfinite(out))
        corr = np.correlate(out[0, rate:rate + 4000], (clean + noise)[0, rate - 50:rate + 4050], mode="valid")
        assert int(np.argmax(corr)) == 50  # lag 0
        pause = ~active
        pause[: rate // 2] = False  # away from the edges
        pause[-rate // 2:] = False
        drop_db = 10 * np.log10(np.mean(out[0, pause] ** 2) / np.mean(noise[0, pause] ** 2))
        assert drop_db < -10.0, (rate, drop_db)


@pytest.mark.shared_data
def test_speech_above_8_khz_survives_the_16_khz_model():
    """The full-band clean clip of ../shared/data/speech/fullband through the denoise preset with the
    16 kHz model: the band above 8 kHz is kept (the stage carries it over), within 6 dB."""
    from roomtone.audio import read_audio
    from roomtone.enhance import enhance

    folder = data.DATA / "fullband"
    if not folder.exists():
        pytest.skip(f"needs {folder} (../shared/data/speech/fullband)")
    path = sorted(p for p in folder.glob("*.flac") if "clean" in p.name or "vctk" in p.name.lower())[0]
    audio, rate, _ = read_audio(path)
    out, _ = enhance(audio, rate, preset="denoise", model="roomtone")

    def high_db(x):
        spec = np.abs(np.fft.rfft(x[0].astype(np.float64))) ** 2
        f = np.fft.rfftfreq(x.shape[1], 1 / rate)
        return 10 * np.log10(spec[(f > 8500) & (f < 16000)].sum() + 1e-20)

    assert rate > 32000 and high_db(out) > high_db(audio) - 6.0
