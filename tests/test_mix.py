"""The mix job: the YIN kernel against its numpy oracle, the refined loudness, classes from names,
a rendered session against the sum of its processed tracks, stems, the CLI and bad input
(synthetic tracks only)."""

import json

import numpy as np
import pytest
import soundfile as sf

from roomtone.errors import InvalidAudioError
from roomtone.kernels.f0 import yin
from roomtone.mix import mix
from roomtone.mix.analysis import ANALYSIS_RATE, analyse, band_loudness, excerpt
from roomtone.mix.api import level_gain_db, load_rules, plan_tracks, sources_of, track_chain
from roomtone.mix.groups import class_from_name, load_groups, words
from roomtone.meter import integrated_loudness


def yin_oracle(x, sample_rate, frame, hop, tau_min, tau_max, threshold):
    """Plain numpy YIN (de Cheveigne and Kawahara 2002, steps 2-5)."""
    count = (x.size - frame - tau_max) // hop + 1
    f0, ap = np.zeros(count), np.ones(count)
    for i in range(count):
        t = i * hop
        w = x[t:t + frame]
        d = np.array([np.sum((w - x[t + tau:t + tau + frame]) ** 2) for tau in range(tau_max + 1)])
        c = np.ones(tau_max + 1)
        cs = np.cumsum(d[1:])
        c[1:] = np.where(cs > 0, d[1:] * np.arange(1, tau_max + 1) / np.where(cs > 0, cs, 1), 1.0)
        below = [tau for tau in range(tau_min, tau_max + 1) if c[tau] < threshold]
        if not below:
            f0[i], ap[i] = 0.0, min(c[tau_min:].min(), 1.0)
            continue
        tau = below[0]
        while tau + 1 <= tau_max and c[tau + 1] < c[tau]:
            tau += 1
        lag = float(tau)
        if tau_min < tau < tau_max:
            den = c[tau - 1] - 2 * c[tau] + c[tau + 1]
            if den > 0:
                lag += 0.5 * (c[tau - 1] - c[tau + 1]) / den
        f0[i], ap[i] = sample_rate / lag, c[tau]
    return f0, ap


def _run_yin(x, rate=ANALYSIS_RATE, frame=256, hop=128, tau_min=11, tau_max=276, threshold=0.15):
    count = (x.size - frame - tau_max) // hop + 1
    f0, ap = np.zeros(count), np.ones(count)
    assert yin(np.ascontiguousarray(x, np.float64), float(rate), frame, hop, tau_min, tau_max, threshold, f0, ap) == count
    return f0, ap, yin_oracle(x, rate, frame, hop, tau_min, tau_max, threshold)


@pytest.mark.parametrize("freq_hz", [55.0, 110.0, 233.0, 440.0, 880.0])
def test_yin_finds_a_sine_and_matches_its_oracle(freq_hz):
    t = np.arange(int(0.5 * ANALYSIS_RATE)) / ANALYSIS_RATE
    x = np.sin(2 * np.pi * freq_hz * t) + 0.3 * np.sin(2 * np.pi * 2 * freq_hz * t)
    f0, ap, (want_f0, want_ap) = _run_yin(x)
    np.testing.assert_allclose(f0, want_f0, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ap, want_ap, rtol=1e-9, atol=1e-9)
    assert np.median(np.abs(f0 / freq_hz - 1)) < 0.01


def test_yin_follows_vibrato_and_calls_noise_unvoiced():
    t = np.arange(ANALYSIS_RATE) / ANALYSIS_RATE
    inst = 220.0 * 2 ** (0.5 / 12 * np.sin(2 * np.pi * 5 * t))  # +-50 cents at 5 Hz
    x = np.sin(2 * np.pi * np.cumsum(inst) / ANALYSIS_RATE)
    f0, ap, (want_f0, want_ap) = _run_yin(x)
    np.testing.assert_allclose(f0, want_f0, rtol=1e-9, atol=1e-9)
    centre = (np.arange(f0.size) * 128 + 128) / ANALYSIS_RATE
    truth = 220.0 * 2 ** (0.5 / 12 * np.sin(2 * np.pi * 5 * centre))
    assert np.median(np.abs(np.log2(f0 / truth))) * 1200 < 25  # cents
    noise = np.random.default_rng(0).standard_normal(ANALYSIS_RATE // 2)
    f0, ap, (want_f0, want_ap) = _run_yin(noise)
    np.testing.assert_allclose(f0, want_f0, atol=1e-9)
    assert np.mean(f0 == 0) > 0.9 and np.median(ap) > 0.5
    silent = np.zeros(4000)
    f0, ap, _ = _run_yin(silent)
    assert np.all(f0 == 0) and np.all(ap == 1.0)


def _harmonic(f0_hz, seconds, rate, amplitude=0.2, harmonics=12):
    t = np.arange(int(seconds * rate)) / rate
    x = sum(amplitude / k * np.sin(2 * np.pi * k * f0_hz * t) for k in range(1, harmonics + 1) if k * f0_hz < rate / 2)
    return np.asarray(x, np.float32)[None]


@pytest.mark.parametrize("rate", [44100, 48000])
def test_refined_loudness_reads_the_band_from_two_to_four_times_f0(rate):
    x = _harmonic(110.0, 3.0, rate)
    a = analyse(x, rate)
    assert a.f0_hz == pytest.approx(110.0, rel=0.01)
    assert a.band_hz == pytest.approx((220.0, 440.0), rel=0.01)
    stereo = np.repeat(x, 2, axis=0)
    assert a.loudness_lufs == pytest.approx(integrated_loudness(stereo, rate), abs=1e-6)
    # the harmonics 2-4 hold less than the whole: the refined reading is lower, by that share
    assert a.refined_lufs < a.loudness_lufs - 1.0
    assert a.refined_lufs == pytest.approx(band_loudness(excerpt(stereo, rate), rate, a.band_hz, a.loudness_lufs), abs=1e-6)
    noise = np.random.default_rng(1).standard_normal((2, 3 * rate)).astype(np.float32) * 0.05
    n = analyse(noise, rate)
    assert n.f0_hz == 0.0 and n.band_hz == (50.0, 10000.0)
    assert analyse(np.zeros((2, rate), np.float32), rate) is None


@pytest.mark.parametrize("name, cls", [("01_KickIn.wav", "kick"), ("Glitch HH.flac", "hats"), ("BGVOX 2", "backing_vocals"),
                                       ("Lead Vox", "lead_vocals"), ("Melody Break", "synth"), ("Pad + Bass", "bass"),
                                       ("OH L", "cymbals"), ("gtr_amp.wav", "guitar"), ("track 7", None)])
def test_track_names_give_their_class(name, cls):
    assert class_from_name(name, load_groups()) == cls


def test_a_users_group_file_comes_first(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text('[[class]]\nname = "lead_vocals"\ngroup = "vocals"\npatterns = ["track 7"]\n')
    assert class_from_name("track 7", load_groups(path)) == "lead_vocals"
    assert words("My-Track_07") == ("my", "track", "07")


def _session(rate=48000, seconds=2.0):
    rng = np.random.default_rng(3)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    return {"kick": (0.6 * np.sin(2 * np.pi * 55 * t) * np.exp(-(t % 0.5) * 25)).astype(np.float32)[None],
            "bass": _harmonic(55.0, seconds, rate, 0.3),
            "lead vox": _harmonic(220.0, seconds * 0.75, rate, 0.1),  # shorter: padded
            "pad": (0.03 * rng.standard_normal((2, n))).astype(np.float32),
            "mute": np.zeros((1, n), np.float32)}


def test_a_session_renders_as_the_sum_of_its_processed_tracks_and_stems_sum_to_it():
    rate = 48000
    tracks = _session(rate)
    out, report = mix(tracks, rate, stems=True)
    assert out.shape == (2, int(2.0 * rate)) and out.dtype == np.float32
    assert report["silent_tracks"] == ["mute"]
    rules = load_rules()
    plans, _, longest = plan_tracks(sources_of(tracks, rate), rate, rules, load_groups())
    want = np.zeros((2, longest), np.float32)
    for plan in plans:
        x = tracks[plan["name"]]
        y = track_chain(plan)(np.repeat(x, 2, axis=0) if x.shape[0] == 1 else x, rate)
        want[:, :y.shape[1]] += y
    want *= np.float32(10 ** (level_gain_db(want, rate, rules) / 20))
    np.testing.assert_allclose(out, want, atol=1e-6)
    np.testing.assert_allclose(sum(report["stems"].values()), out, atol=1e-5)
    assert set(report["stems"]) == {"drums", "bass", "vocals", "keys"}
    assert report["mix"]["true_peak_dbtp"] <= rules.mix_peak_dbtp + 0.05
    assert report["mix"]["integrated_lufs"] <= rules.mix_lufs + 0.05
    by_name = {t["name"]: t for t in report["tracks"]}
    assert by_name["lead vox"]["f0_hz"] == pytest.approx(220.0, rel=0.01)
    # the rules put each class at its offset: the vocal over the pad by their offsets' difference
    lead, pad = by_name["lead vox"], by_name["pad"]
    offsets = rules.classes
    assert lead["target_lufs"] - pad["target_lufs"] == pytest.approx(
        offsets["lead_vocals"]["offset_lu"] - offsets["pad"]["offset_lu"], abs=0.01)


def test_bad_input_names_the_track():
    with pytest.raises(InvalidAudioError, match="empty"):
        mix({"kick": np.zeros((1, 0), np.float32)}, 48000)
    with pytest.raises(InvalidAudioError, match="silent"):
        mix({"a": np.zeros((1, 4800), np.float32)}, 48000)


def test_the_cli_mixes_a_folder_writes_stems_and_a_report_and_refuses_bad_input(tmp_path):
    from click.testing import CliRunner

    from roomtone.mix.cli import main

    rate = 44100
    session = tmp_path / "session"
    session.mkdir()
    for name, x in _session(rate, 1.5).items():
        sf.write(session / f"{name}.wav", x.T, rate if name != "pad" else 48000)  # one track at another rate
    out, stems, report = tmp_path / "mix.wav", tmp_path / "stems", tmp_path / "r.json"
    result = CliRunner().invoke(main, [str(session), "-o", str(out), "--stems-dir", str(stems), "--report", str(report),
                                       "--explain"])
    assert result.exit_code == 0, result.output
    assert "kick" in result.output and "left out (silent): mute.wav" in result.output
    audio, got_rate = sf.read(out, always_2d=True)
    assert got_rate == rate and audio.shape == (int(1.5 * rate), 2)
    stem_sum = sum(sf.read(p, always_2d=True)[0] for p in stems.glob("*.wav"))
    np.testing.assert_allclose(stem_sum, audio, atol=2e-4)  # 24-bit dithered mix against float stems
    assert json.loads(report.read_text())["sample_rate"] == rate
    (session / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    bad = CliRunner().invoke(main, [str(session), "-o", str(tmp_path / "m2.wav")])
    assert bad.exit_code == 2 and "broken.wav" in bad.output
    assert not (tmp_path / "m2.wav").exists()
    none = CliRunner().invoke(main, [str(tmp_path / "nothing"), "-o", str(tmp_path / "m3.wav")])
    assert none.exit_code == 2 and "no such file or folder" in none.output


def test_the_reference_fit_reduces_its_loss_and_moves_the_balance_towards_the_reference():
    from roomtone.mix.fit import MAX_GROUP_DB, band_powers, features_db

    rate = 44100
    t = np.arange(3 * rate) / rate
    rng = np.random.default_rng(4)
    tracks = {"kick": (0.6 * np.sin(2 * np.pi * 55 * t) * np.exp(-(t % 0.5) * 25)).astype(np.float32)[None],
              "bass": _harmonic(55.0, 3.0, rate, 0.3), "lead vox": _harmonic(220.0, 3.0, rate, 0.1),
              "pad": (0.03 * rng.standard_normal((2, t.size))).astype(np.float32)}
    true_db = {"kick": 0.0, "bass": -6.0, "lead vox": 4.0, "pad": -3.0}
    reference = sum(np.repeat(x, 2, axis=0) * np.float32(10 ** (true_db[k] / 20)) if x.shape[0] == 1 else
                    x * np.float32(10 ** (true_db[k] / 20)) for k, x in tracks.items())
    plain, plain_report = mix(tracks, rate)
    fitted, report = mix(tracks, rate, reference=reference)
    assert report["fit"]["loss_after"] < 0.5 * report["fit"]["loss_before"]
    assert all(abs(v) <= MAX_GROUP_DB + 1e-6 for v in report["fit"]["track_offsets_db"].values())

    def balance_error(rep):
        g = {x["name"]: x["gain_db"] for x in rep["tracks"]}
        d = np.array([g[k] - g["kick"] - (true_db[k] - true_db["kick"]) for k in tracks])
        return float(np.sqrt(np.mean(d ** 2)))

    assert balance_error(report) < 0.6 * balance_error(plain_report)
    distance = lambda out: np.sqrt(np.mean((features_db(band_powers(out, rate)) -
                                            features_db(band_powers(reference, rate))) ** 2))
    assert distance(fitted) < 0.6 * distance(plain)


def test_the_high_pass_stays_under_each_tracks_own_range():
    rate = 44100
    tracks = {"synth low": _harmonic(45.0, 2.0, rate, 0.2), "lead vox": _harmonic(220.0, 2.0, rate, 0.1)}
    plans, _, _ = plan_tracks(sources_of(tracks, rate), rate, load_rules(), load_groups())
    by_name = {p["name"]: p for p in plans}
    assert by_name["synth low"]["class"] == "synth" and by_name["synth low"]["highpass_hz"] == 0.0
    assert by_name["lead vox"]["highpass_hz"] == load_rules().classes["lead_vocals"]["highpass_hz"]
