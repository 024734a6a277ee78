"""The enhance job: every stage's promise on synthesized signals (alignment and length at every
rate, silence, a clean tone, hum found and notched only when present, clicks repaired, sibilance
reduced and vowels left alone, level evened without raising pauses), the podcast loudness read by
libebur128, the denoiser registry and the resampling path, presets."""

import dataclasses

import numpy as np
import pytest

from refsignals import ENHANCE_RATES, band_noise, pink_noise, silence, sine, speech_like, vowel
from roomtone.enhance import enhance
from roomtone.enhance.classic import ClassicDenoiser
from roomtone.enhance.denoisers import (available_denoisers, default_denoiser, get_denoiser, register_denoiser,
                                        registered_denoisers)
from roomtone.enhance.presets import load_preset, parse_preset
from roomtone.enhance.processors import Denoise
from roomtone.plugins import Declick, DeEsser, Dehum, Leveler
from roomtone.errors import PresetError
from roomtone.testing import libebur128


def _rms_db(x):
    return 10 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2) + 1e-30)


def _lag(x, y, span=200):
    """The lag (samples) of ``y`` against ``x`` maximising their correlation."""
    n = x.size
    spec = np.fft.rfft(y, 2 * n) * np.conj(np.fft.rfft(x, 2 * n))
    corr = np.fft.irfft(spec)
    lags = np.concatenate((np.arange(0, span + 1), np.arange(-span, 0)))
    values = np.concatenate((corr[:span + 1], corr[-span:]))
    return int(lags[np.argmax(values)])


def _noisy_speech(seconds, sample_rate, channels, noise_rms=0.005, seed=3):
    speech, active = speech_like(seconds, sample_rate, channels=channels, seed=seed)
    noise = band_noise(seconds, sample_rate, 80, 0.45 * sample_rate, rms=noise_rms, channels=channels, seed=seed + 1)
    return speech, noise, active


@pytest.mark.parametrize("sample_rate", ENHANCE_RATES)
@pytest.mark.parametrize("channels", (1, 2))
def test_denoise_keeps_length_and_alignment(sample_rate, channels):
    speech, noise, _ = _noisy_speech(2.0, sample_rate, channels)
    out, report = enhance(speech + noise, sample_rate, preset="denoise", model="classic")
    assert out.shape == speech.shape and out.dtype == np.float32
    for c in range(channels):
        assert _lag(speech[c], out[c]) == 0
    assert _rms_db(out - speech) < _rms_db(noise) - 3.0  # closer to the clean speech than the input
    assert report["model"] == "classic" and report["target"] is None


def test_silence_in_silence_out():
    for preset in ("denoise",):
        out, _ = enhance(silence(1.0, 48000), 48000, preset=preset, model="classic")
        assert not np.any(out)
    assert not np.any(Denoise(model="classic")(silence(0.5, 16000, channels=1), 16000))


@pytest.mark.parametrize("sample_rate", (16000, 48000))
def test_clean_tone_passes_almost_unchanged(sample_rate):
    tone = sine(440.0, 2.0, sample_rate, amplitude=0.3, channels=1)
    out = Denoise(model="classic")(tone, sample_rate)
    mid = slice(sample_rate // 2, -sample_rate // 2)
    assert abs(_rms_db(out[:, mid]) - _rms_db(tone[:, mid])) < 0.1
    assert _rms_db(out[:, mid] - tone[:, mid]) < _rms_db(tone) - 40.0


def test_noise_reduction_respects_the_attenuation_limit():
    sample_rate = 16000
    noise = band_noise(3.0, sample_rate, 100, 7000, rms=0.01, seed=5)
    tail = slice(sample_rate, None)
    free = _rms_db(Denoise(model="classic")(noise, sample_rate)[:, tail]) - _rms_db(noise[:, tail])
    limited = _rms_db(Denoise(model="classic", atten_lim_db=6.0)(noise, sample_rate)[:, tail]) - _rms_db(noise[:, tail])
    assert free < -9.0
    assert -6.5 < limited < -2.0


def test_denoiser_chunked_equals_whole():
    speech, noise, _ = _noisy_speech(2.0, 22050, 1)
    x = speech + noise
    whole = ClassicDenoiser(chunk_frames=100000)(x, sample_rate=22050)
    for chunk in (7, 64):
        np.testing.assert_allclose(ClassicDenoiser(chunk_frames=chunk)(x, sample_rate=22050), whole, atol=1e-6)


def _hum(seconds, sample_rate, mains_hz, harmonics=6, amplitude=0.02):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    row = sum(amplitude / h * np.sin(2 * np.pi * h * mains_hz * t + h) for h in range(1, harmonics + 1))
    return row[None].astype(np.float32)


def _tone_level_db(x, sample_rate, freq_hz):
    """Level of the component at ``freq_hz`` (a 1 s Hann-windowed FFT bin, averaged)."""
    n = sample_rate
    frames = [x[0, s:s + n] for s in range(n // 2, x.shape[1] - n - n // 2, n)]
    win = np.hanning(n)
    k = int(round(freq_hz))
    return 10 * np.log10(np.mean([np.abs(np.fft.rfft(f * win))[k] ** 2 for f in frames]) + 1e-30)


@pytest.mark.parametrize("mains_hz", (50.0, 60.0))
def test_hum_is_found_and_removed(mains_hz):
    sample_rate = 16000
    speech, _ = speech_like(6.0, sample_rate, seed=4)
    x = speech + _hum(6.0, sample_rate, mains_hz)
    out, info = Dehum().run(x, sample_rate)
    assert info["hum_found"] and info["mains_hz"] == mains_hz
    assert info["harmonics"] >= 4
    assert abs(info["fundamental_hz"] - mains_hz) < 0.1
    for h in (1, 2, 3):
        assert _tone_level_db(out, sample_rate, h * mains_hz) < _tone_level_db(x, sample_rate, h * mains_hz) - 20.0
    assert out.shape == x.shape and _lag(x[0], out[0]) == 0


def test_hum_free_recording_is_left_alone():
    sample_rate = 22050
    speech, _ = speech_like(6.0, sample_rate, seed=6)
    x = speech + band_noise(6.0, sample_rate, 80, 9000, rms=0.003, seed=2)
    out, info = Dehum().run(x, sample_rate)
    assert not info["hum_found"] and info["notched_hz"] == []
    assert np.array_equal(out, x)


def test_clicks_are_repaired():
    sample_rate = 44100
    clean = (vowel(2.0, sample_rate, amplitude=0.2) + pink_noise(2.0, sample_rate, rms=0.003, channels=1, seed=3))
    x = clean.copy()
    rng = np.random.default_rng(1)
    spots = np.sort(rng.choice(np.arange(2000, x.shape[1] - 2000, 3000), 12, replace=False))
    for i, at in enumerate(spots):
        x[0, at:at + 1 + i % 3] += 0.6 * (-1) ** i
    out, info = Declick().run(x, sample_rate)
    assert info["clicks_repaired"] >= len(spots) - 1  # one on a glide of the vowel may read as programme
    fixed = [np.abs(out[0, at - 10:at + 13] - clean[0, at - 10:at + 13]).max()
             < 0.1 * np.abs(x[0, at - 10:at + 13] - clean[0, at - 10:at + 13]).max() for at in spots]
    assert sum(fixed) >= len(spots) - 1
    # away from the clicks the signal is untouched
    untouched = np.ones(x.shape[1], dtype=bool)
    for at in spots:
        untouched[at - 60:at + 60] = False
    assert np.array_equal(out[0, untouched], x[0, untouched])


def test_clean_speech_has_no_clicks():
    speech, _ = speech_like(3.0, 48000, seed=8)
    x = speech + band_noise(3.0, 48000, 80, 20000, rms=0.002, seed=9)
    out, info = Declick().run(x, 48000)
    # a few syllable onsets may look impulsive; what is changed is negligible
    assert info["clicks_repaired"] <= 10
    assert _rms_db(out - x) < _rms_db(x) - 40.0


def test_deesser_reduces_sibilance_and_leaves_vowels_alone():
    sample_rate = 48000
    vowel_only = vowel(1.0, sample_rate, amplitude=0.3)
    out, info = DeEsser().run(vowel_only, sample_rate)
    assert info["max_reduction_db"] == 0.0
    np.testing.assert_array_equal(out, vowel_only)
    burst = np.concatenate([vowel(0.5, sample_rate, amplitude=0.3),
                            band_noise(0.3, sample_rate, 5000, 9000, rms=0.1, seed=1),
                            vowel(0.5, sample_rate, amplitude=0.3, seed=2)], axis=1)
    out, info = DeEsser().run(burst, sample_rate)
    sib = slice(int(0.55 * sample_rate), int(0.75 * sample_rate))
    assert info["max_reduction_db"] > 3.0
    assert _rms_db(out[:, sib]) < _rms_db(burst[:, sib]) - 3.0
    late = slice(int(1.0 * sample_rate), None)  # released by then
    assert abs(_rms_db(out[:, late]) - _rms_db(burst[:, late])) < 0.1


def test_deesser_in_blocks_equals_one_pass():
    x = np.concatenate([vowel(0.3, 44100), band_noise(0.2, 44100, 5000, 9000, rms=0.1)], axis=1)
    x = np.concatenate([x, x[:, ::-1]])
    deesser = DeEsser()
    whole = deesser(x, 44100)
    state = deesser.new_state(2)
    parts = [deesser.run_block(x[:, s:s + 1000], 44100, state) for s in range(0, x.shape[1], 1000)]
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)


def test_leveler_evens_loud_and_quiet_without_raising_pauses():
    sample_rate = 16000
    speech, active = speech_like(16.0, sample_rate, seed=5, phrase_s=3.0, pause_s=1.0)
    quiet = (np.arange(speech.shape[1]) // (4 * sample_rate)) % 2 == 1  # 4 s loud, 4 s quiet...
    x = speech * np.where(quiet, 10 ** (-10 / 20), 1.0).astype(np.float32)
    x = x + band_noise(16.0, sample_rate, 100, 7000, rms=0.0005, seed=1)
    out, info = Leveler().run(x, sample_rate)

    def spread(y):
        loud_db = _rms_db(y[:, active & ~quiet])
        quiet_db = _rms_db(y[:, active & quiet])
        return loud_db - quiet_db

    assert spread(x) == pytest.approx(10.0, abs=1.0)
    assert spread(out) < spread(x) - 4.0
    assert info["gain_max_db"] <= 6.0 and info["gain_min_db"] >= -6.0
    pauses = ~active
    pauses[: sample_rate] = False
    # never raised in a pause: away from its edges (a 400 ms block touching speech is speech, and
    # the gain ramps over 100 ms between block centres)
    edges = np.convolve(active.astype(float), np.ones(int(0.6 * sample_rate)), mode="same") > 0
    inner = pauses & ~edges
    assert inner.sum() > sample_rate
    assert _rms_db(out[:, inner]) <= _rms_db(x[:, inner]) + 0.05


@pytest.mark.parametrize("channels, target", [(2, -16.0), (1, -19.0)])
def test_podcast_hits_the_target_under_the_ceiling(channels, target):
    sample_rate = 44100
    speech, noise, _ = _noisy_speech(6.0, sample_rate, channels, noise_rms=0.003)
    out, report = enhance(speech * 0.3 + noise, sample_rate)
    lufs, tp = libebur128(out, sample_rate)
    assert abs(lufs - target) <= 0.1
    assert tp <= -1.0
    assert report["target"]["integrated_lufs"] == target
    assert out.shape == speech.shape
    kinds = [s["stage"] for s in report["stages"]]
    assert kinds == ["highpass", "dehum", "declick", "denoise", "deess", "leveler", "loudness_gain", "limiter"]


def test_podcast_reports_hum_and_bit_depth():
    sample_rate = 48000
    speech, _ = speech_like(5.0, sample_rate, seed=2)
    x = speech * 0.5 + _hum(5.0, sample_rate, 60.0, amplitude=0.01)
    out, report = enhance(x, sample_rate, bit_depth="16", atten_lim_db=20.0)
    hum = next(s for s in report["stages"] if s["stage"] == "dehum")
    assert hum["hum_found"] and hum["mains_hz"] == 60.0
    assert report["dither"] == "tpdf"
    np.testing.assert_array_equal(np.round(out * 32768), out * 32768)  # on the 16-bit grid
    denoise = next(s for s in report["stages"] if s["stage"] == "denoise")
    assert denoise["atten_lim_db"] == 20.0


class _At16k:
    """A stand-in for a 16 kHz neural model: the classic denoiser run at 16 kHz only."""

    name = "test-16k"
    sample_rate = 16000
    calls = []

    def __call__(self, audio, atten_lim_db=None):
        assert audio.dtype == np.float32 and audio.ndim == 2
        _At16k.calls.append(audio.shape)
        return ClassicDenoiser()(audio, atten_lim_db, sample_rate=16000)


def _make_at16k():
    return _At16k()


register_denoiser("test-16k", _make_at16k, rank=-1)


def test_a_model_at_a_lower_rate_keeps_the_full_band():
    sample_rate = 48000
    speech, _ = speech_like(3.0, sample_rate, channels=2, seed=7)
    noise = band_noise(3.0, sample_rate, 100, 20000, rms=0.003, channels=2, seed=3)
    x = speech + noise
    out, info = Denoise(model="test-16k").run(x, sample_rate)
    assert out.shape == x.shape
    assert _At16k.calls and _At16k.calls[-1][1] == 16000 * 3  # the model ran at its own rate
    assert info["band_kept_above_hz"] == 8000
    for c in range(2):
        assert _lag(x[c], out[c]) == 0
    high = band_noise(3.0, sample_rate, 10000, 20000, rms=1.0, seed=0)  # a probe of the band above 8 kHz
    spec_in = np.abs(np.fft.rfft(x[0])) ** 2
    spec_out = np.abs(np.fft.rfft(out[0])) ** 2
    freqs = np.fft.rfftfreq(x.shape[1], 1 / sample_rate)
    band = (freqs > 10000) & (freqs < 20000)
    ratio_db = 10 * np.log10(spec_out[band].sum() / spec_in[band].sum())
    assert -30.0 < ratio_db < -2.0  # kept, and the noise there reduced
    del high


def test_registry_names_orders_and_refuses_duplicates():
    assert "classic" in available_denoisers()
    assert default_denoiser() == available_denoisers()[0]
    assert registered_denoisers().index("classic") < registered_denoisers().index("test-16k")
    assert get_denoiser("auto").name == default_denoiser()
    with pytest.raises(PresetError, match="unknown denoiser model 'nope'; available: .*classic"):
        get_denoiser("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_denoiser("classic", lambda: None)
    register_denoiser("test-16k", _make_at16k, rank=-1)  # the same factory again is fine
    with pytest.raises(PresetError, match="available"):
        enhance(silence(1.0, 16000), 16000, preset="denoise", model="dfn-missing")


def test_presets_load_and_refuse_unknown_keys(tmp_path):
    podcast = load_preset("Podcast")
    assert podcast.loudness.platform == "podcast" and load_preset("denoise").loudness is None
    assert parse_preset(podcast.to_dict(), source="x").chain == podcast.chain
    bad = tmp_path / "mine.toml"
    bad.write_text('schema_version = 1\nname = "mine"\ndescription = "d"\ncolour = 1\n')
    with pytest.raises(PresetError, match=r"mine\.toml: unknown key 'colour'"):
        load_preset(bad)
    bad.write_text('schema_version = 1\nname = "mine"\ndescription = "d"\n[[chain]]\nkind = "denoise"\nloud = 1\n')
    with pytest.raises(PresetError, match=r"mine\.toml: chain\[0\] \(denoise\).*unknown parameter 'loud'"):
        load_preset(bad)
    with pytest.raises(PresetError, match=r"denoise\.atten_lim_db=120 dB is outside 0\.\.100 dB"):
        Denoise(atten_lim_db=120.0)
    with pytest.raises(PresetError, match="unknown preset"):
        load_preset("shouting")
    assert dataclasses.replace(podcast).name == "podcast"


def test_podcast_delivered_in_place_is_the_same_job(monkeypatch):
    """Long recordings are delivered over the chain's own output (one whole copy fewer); the result
    is on target under the ceiling as the beside delivery, and the caller's array is untouched."""
    import roomtone.loudness
    from roomtone.testing import libebur128

    sample_rate = 16000
    speech, noise, _ = _noisy_speech(4.0, sample_rate, 1)
    x = speech + noise
    before = x.copy()
    beside, _ = enhance(x, sample_rate, model="classic")
    monkeypatch.setattr(roomtone.loudness, "IN_PLACE_MIN_BYTES", 0)
    over, report = enhance(x, sample_rate, model="classic")
    np.testing.assert_array_equal(x, before)
    lufs, peak = libebur128(over, sample_rate)
    assert abs(lufs + 19.0) <= 0.1 and peak <= -1.0
    assert report["after"]["true_peak_dbtp"] <= -1.0
    assert np.max(np.abs(over - beside)) < 0.01
