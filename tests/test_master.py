"""The master job through its Python API: every output at its target by an independent meter
(libebur128), over material that needs +10 dB and material that must come down, mono to 5.1,
44.1 to 96 kHz; clear refusals where the target cannot be met."""

import numpy as np
import pytest

from roomtone.mastering import master
from roomtone.stages import TruePeakLimiter
from refsignals import music_like, pink_noise, silence, sine
from roomtone import meter
from roomtone.errors import InvalidAudioError, PresetError, TargetUnreachableError
from roomtone.testing import libebur128, true_peak_16x


def scaled_to(audio, sample_rate, lufs):
    return (audio * 10 ** ((lufs - meter.integrated_loudness(audio, sample_rate)) / 20)).astype(np.float32)


def quiet_acoustic(sample_rate, channels=2):
    """Peaky, quiet material at -25 LUFS: needs +11 dB for Spotify."""
    return scaled_to(music_like(8.0, sample_rate, channels=channels, seed=5), sample_rate, -25.0)


def clipped_loud_master(sample_rate, channels=2):
    """A brick-walled master: driven into clipping, reads about -7 LUFS with peaks over 0 dBTP."""
    x = music_like(8.0, sample_rate, channels=channels, seed=9, level=1.0) * 4.0
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def assert_on_target(out, sample_rate, target, ceiling):
    integrated, peak = libebur128(out, sample_rate)
    assert abs(integrated - target) <= 0.1, integrated
    assert peak <= ceiling, peak
    assert meter.true_peak(out, sample_rate) <= ceiling


@pytest.mark.parametrize("make", [quiet_acoustic, clipped_loud_master], ids=["quiet+10dB", "clipped-down"])
@pytest.mark.parametrize("platform, target, ceiling", [("spotify", -14.0, -1.0), ("apple", -16.0, -1.0),
                                                       ("atsc-a85", -24.0, -2.0)])
def test_hits_platform_targets_by_libebur128(make, platform, target, ceiling):
    sample_rate = 44100
    x = make(sample_rate)
    out, report = master(x, sample_rate, platform=platform)
    assert out.shape == x.shape and out.dtype == np.float32
    assert_on_target(out, sample_rate, target, ceiling)
    assert report["target"] == {"integrated_lufs": target, "true_peak_dbtp": ceiling, "note": None}
    assert abs(report["after"]["integrated_lufs"] - target) <= 0.02


@pytest.mark.parametrize("sample_rate", [44100, 48000, 96000])
@pytest.mark.parametrize("channels", [1, 2])
def test_rates_and_channel_layouts_kept(sample_rate, channels):
    x = quiet_acoustic(sample_rate, channels=channels)[:, : 5 * sample_rate]
    out, report = master(x, sample_rate, preset="pop")
    assert out.shape == x.shape
    assert report["sample_rate"] == sample_rate and report["channels"] == channels
    assert_on_target(out, sample_rate, -14.0, -1.0)


def test_surround_5_1_uses_channel_weights_and_keeps_lfe():
    sample_rate = 48000
    x = np.concatenate([music_like(5.0, sample_rate, channels=3, seed=2), pink_noise(5.0, sample_rate, channels=3)])
    x = scaled_to(x * np.array([[1.0], [1.0], [1.0], [0.5], [0.3], [0.3]], dtype=np.float32), sample_rate, -22.0)
    out, _ = master(x, sample_rate, platform="ebu-r128")
    assert out.shape == (6, x.shape[1])
    assert_on_target(out, sample_rate, -23.0, -1.0)


def test_outputs_sit_under_the_ceiling_at_16x_too():
    sample_rate = 44100
    for x in (clipped_loud_master(sample_rate), scaled_to(pink_noise(6.0, sample_rate), sample_rate, -20.0)):
        out, _ = master(x, sample_rate, preset="aggressive")
        assert true_peak_16x(out) <= -1.0 + 1e-3


@pytest.mark.parametrize("bit_depth, bits", [("16", 16), ("24", 24)])
def test_quantized_output_is_on_the_grid_and_still_on_target(bit_depth, bits):
    sample_rate = 48000
    out, report = master(quiet_acoustic(sample_rate), sample_rate, bit_depth=bit_depth)
    codes = out.astype(np.float64) * 2 ** (bits - 1)
    np.testing.assert_array_equal(codes, np.round(codes))
    assert report["dither"] == "tpdf"
    assert_on_target(out, sample_rate, -14.0, -1.0)


def test_no_gain_riding_quiet_and_loud_passages_keep_their_distance():
    """A 10 LU step between two passages survives (a normaliser riding the gain would flatten it)."""
    sample_rate = 44100
    base = music_like(16.0, sample_rate, seed=4)
    x = np.concatenate([scaled_to(base[:, : 8 * sample_rate], sample_rate, -30.0),
                        scaled_to(base[:, 8 * sample_rate:], sample_rate, -20.0)], axis=1)
    out, report = master(x, sample_rate, preset="classical", platform="ebu-r128")
    step_in = meter.integrated_loudness(x[:, 9 * sample_rate:], sample_rate) - meter.integrated_loudness(
        x[:, : 7 * sample_rate], sample_rate)
    step_out = meter.integrated_loudness(out[:, 9 * sample_rate:], sample_rate) - meter.integrated_loudness(
        out[:, : 7 * sample_rate], sample_rate)
    assert step_in == pytest.approx(10.0, abs=0.2)
    assert step_out == pytest.approx(step_in, abs=2.0)  # the chain's compression only


def test_report_carries_versions_preset_stages_and_before_after():
    sample_rate = 44100
    out, report = master(quiet_acoustic(sample_rate), sample_rate, preset="warm", platform="apple")
    assert report["versions"]["roomtone"]
    assert report["preset"]["name"] == "warm" and report["preset"]["chain"][0]["kind"] == "eq"
    stages = [s["stage"] for s in report["stages"]]
    assert stages == ["input_trim", "eq", "multiband", "width", "saturation", "loudness_gain", "limiter"]
    total = sum(s["gain_db"] for s in report["stages"])
    assert total == pytest.approx(report["after"]["integrated_lufs"] - report["before"]["integrated_lufs"], abs=0.05)
    for key in ("integrated_lufs", "lra_lu", "true_peak_dbtp", "sample_peak_dbfs", "plr_lu"):
        assert key in report["before"] and key in report["after"]


def test_target_overrides_and_margin():
    sample_rate = 44100
    out, report = master(quiet_acoustic(sample_rate), sample_rate, target_lufs=-18.0, ceiling_dbtp=-3.0)
    assert_on_target(out, sample_rate, -18.0, -3.0)
    assert report["after"]["true_peak_dbtp"] <= -3.0 - TruePeakLimiter.MARGIN_DB + 0.05


def test_unreachable_target_is_refused_not_written():
    sample_rate = 44100
    peaky = scaled_to(music_like(6.0, sample_rate, seed=3), sample_rate, -24.0)
    with pytest.raises(TargetUnreachableError, match=r"reaching -6 LUFS under -1 dBTP needs .* LU of limiting"):
        master(peaky, sample_rate, preset="classical", target_lufs=-6.0)


@pytest.mark.parametrize("make, message", [
    (lambda: silence(2.0, 48000), "input is silent"),
    (lambda: sine(1000.0, 0.3, 48000), "needs at least one 400 ms gating block"),
    (lambda: np.zeros((2, 0), np.float32), "needs at least one 400 ms gating block"),
    (lambda: np.full((2, 48000), np.inf, np.float32), "NaN or infinite"),
])
def test_bad_or_degenerate_input(make, message):
    with pytest.raises(InvalidAudioError, match=message):
        master(make(), 48000)


def test_unknown_preset_and_platform():
    x = quiet_acoustic(44100)
    with pytest.raises(PresetError, match="unknown preset"):
        master(x, 44100, preset="nope")
    with pytest.raises(PresetError, match="unknown platform"):
        master(x, 44100, platform="nope")


@pytest.mark.parametrize("sample_rate", [16000, 22050, 192000])
def test_unusual_sample_rates_keep_their_rate_and_hit_the_target(sample_rate):
    """Corner frequencies above 0.45 fs are pulled down (a 10 kHz shelf at 16 kHz), 192 kHz has no
    oversampling in the meter: the target still holds."""
    x = quiet_acoustic(sample_rate, channels=1)[:, : 4 * sample_rate]
    out, report = master(x, sample_rate, preset="open")
    assert out.shape == x.shape and report["sample_rate"] == sample_rate
    assert_on_target(out, sample_rate, -14.0, -1.0)


def test_file_job_writes_while_metering_and_keeps_only_the_output_that_passed(tmp_path, monkeypatch):
    """master_file starts writing each finished output while it is metered. When the first one's
    reading is refused (simulated here: the true peak is reported 1 dB over), that file is dropped,
    the limiter aims lower, and only the second output lands at the path: no temporary files."""
    import dataclasses

    import roomtone.loudness
    from roomtone.mastering import master_file
    from roomtone.audio import read_audio, write_audio

    sample_rate = 44100
    source = tmp_path / "in.wav"
    write_audio(source, quiet_acoustic(sample_rate), sample_rate, bit_depth="24")
    real_measure = roomtone.loudness.measure
    readings = []

    def measure_once_over(audio, rate, *args, **kwargs):
        stats = real_measure(audio, rate, *args, **kwargs)
        if args:  # the input's reading (passed its loudness): not an output
            return stats
        readings.append(stats)
        if len(readings) == 1:
            return dataclasses.replace(stats, true_peak_dbtp=stats.true_peak_dbtp + 1.0)
        return stats

    monkeypatch.setattr(roomtone.loudness, "measure", measure_once_over)
    report = master_file(source, tmp_path / "out.wav", bit_depth="24")
    assert len(readings) >= 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "out.wav"]
    written, rate, _ = read_audio(tmp_path / "out.wav")
    assert rate == sample_rate
    assert report["after"]["true_peak_dbtp"] <= -1.0
    assert meter.true_peak(written, sample_rate) == pytest.approx(readings[-1].true_peak_dbtp, abs=1e-6)
    assert abs(meter.integrated_loudness(written, sample_rate) - (-14.0)) <= 0.1


@pytest.mark.parametrize("bit_depth", ["16", "32f"])
def test_in_place_delivery_gives_the_same_master(bit_depth, monkeypatch):
    """Long signals are delivered over the job's own signal (the detector freed first); the search
    then reads every step through the gain curve instead of building candidates, so it may stop
    a hair elsewhere, but the master is the same one: same gains within 0.01 dB, on target, under
    the ceiling, its readings its own; the caller's array untouched."""
    import roomtone.loudness

    sample_rate = 44100
    x = clipped_loud_master(sample_rate)
    beside, report_beside = master(x, sample_rate, bit_depth=bit_depth)
    monkeypatch.setattr(roomtone.loudness, "IN_PLACE_MIN_BYTES", 0)
    x_before = x.copy()
    over, report_over = master(x, sample_rate, bit_depth=bit_depth)
    np.testing.assert_array_equal(x, x_before)
    assert not np.shares_memory(over, x)
    gains = lambda report: [s["gain_db"] for s in report["stages"]]
    np.testing.assert_allclose(gains(report_over), gains(report_beside), atol=0.01)
    for out, report in ((over, report_over), (beside, report_beside)):
        assert abs(report["after"]["integrated_lufs"] + 14.0) <= 0.01
        assert report["after"]["true_peak_dbtp"] <= -1.0
        assert meter.true_peak(out, sample_rate) == pytest.approx(report["after"]["true_peak_dbtp"], abs=1e-4)
        assert meter.integrated_loudness(out, sample_rate) == pytest.approx(report["after"]["integrated_lufs"], abs=1e-4)
    assert np.max(np.abs(over - beside)) < 0.01


def test_in_place_search_checks_the_true_peak_through_the_curve_first(tmp_path, monkeypatch):
    """In place, the true peak is read through the gain curve before the signal is overwritten.
    When that reading is over the ceiling (simulated: 1 dB over), the limiter aims lower and
    searches again; the output is built once and written: no temporary files, on target."""
    import roomtone.loudness
    from roomtone.mastering import master_file
    from roomtone.audio import read_audio, write_audio

    monkeypatch.setattr(roomtone.loudness, "IN_PLACE_MIN_BYTES", 0)
    sample_rate = 44100
    source = tmp_path / "in.wav"
    write_audio(source, quiet_acoustic(sample_rate), sample_rate, bit_depth="24")
    real_true_peak = roomtone.loudness.true_peak
    readings, builds = [], []

    def true_peak_once_over(audio, rate, gain=None):
        reading = real_true_peak(audio, rate, gain)
        readings.append(reading)
        return reading + 1.0 if len(readings) == 1 else reading

    monkeypatch.setattr(roomtone.loudness, "true_peak", true_peak_once_over)
    real_render = roomtone.loudness._render
    monkeypatch.setattr(roomtone.loudness, "_render", lambda *a: builds.append(a[3]) or real_render(*a))
    report = master_file(source, tmp_path / "out.wav", bit_depth="24")
    assert len(readings) == 2 and builds == [True]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "out.wav"]
    written, rate, _ = read_audio(tmp_path / "out.wav")
    assert rate == sample_rate
    assert report["after"]["true_peak_dbtp"] <= -1.0
    assert meter.true_peak(written, sample_rate) == pytest.approx(report["after"]["true_peak_dbtp"], abs=1e-4)
    assert abs(meter.integrated_loudness(written, sample_rate) - (-14.0)) <= 0.1


def test_in_place_job_whose_final_reading_fails_leaves_no_file(tmp_path, monkeypatch):
    """In place there is no signal left to retry from; should the output's own reading fail (the
    quantizer's bound forbids it: simulated here), the job stops with an error and the file being
    written is removed: nothing at the path, no temporary file."""
    import dataclasses

    import roomtone.loudness
    from roomtone.errors import TargetUnreachableError
    from roomtone.mastering import master_file
    from roomtone.audio import write_audio

    monkeypatch.setattr(roomtone.loudness, "IN_PLACE_MIN_BYTES", 0)
    sample_rate = 44100
    source = tmp_path / "in.wav"
    write_audio(source, quiet_acoustic(sample_rate), sample_rate, bit_depth="24")
    real_measure = roomtone.loudness.measure

    def measure_over(audio, rate, *args, **kwargs):
        stats = real_measure(audio, rate, *args, **kwargs)
        return dataclasses.replace(stats, true_peak_dbtp=stats.true_peak_dbtp + 1.0)

    monkeypatch.setattr(roomtone.loudness, "measure", measure_over)
    with pytest.raises(TargetUnreachableError, match="dBTP"):
        master_file(source, tmp_path / "out.wav", bit_depth="24")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


def test_limiter_report_gives_its_real_gain_reduction():
    """A clipped, loud master brought to -14 LUFS: the limiter shaves its peaks, which costs little
    integrated loudness but several dB at the peaks; the report says both (max and mean)."""
    sample_rate = 44100
    x = clipped_loud_master(sample_rate)
    out, report = master(x, sample_rate, platform="spotify", bit_depth="32f")
    (limiter,) = [s for s in report["stages"] if s["stage"] == "limiter"]
    gain_db = next(s["gain_db"] for s in report["stages"] if s["stage"] == "loudness_gain")
    # independent of the job: the output over the pre-limiter signal is the limiter's gain
    assert limiter["gain_reduction_max_db"] > 0.5
    assert 0.0 < limiter["gain_reduction_mean_db"] <= limiter["gain_reduction_max_db"]
    assert 0.0 < limiter["limited_percent"] <= 100.0
    assert limiter["gain_reduction_max_db"] > -limiter["gain_db"]  # peaks lose more than the loudness does
    assert gain_db > 0


def test_limiter_report_is_zero_when_nothing_is_limited():
    sample_rate = 44100
    x = pink_noise(5.0, sample_rate, rms=0.02)  # crest about 12 dB: -14 LUFS leaves the peaks under -1 dBTP
    out, report = master(x, sample_rate, preset="balanced", target_lufs=-24.0, ceiling_dbtp=-1.0)
    (limiter,) = [s for s in report["stages"] if s["stage"] == "limiter"]
    assert limiter["gain_reduction_max_db"] == 0.0 and limiter["limited_percent"] == 0.0


@pytest.mark.parametrize("channels, expected", [(1, -19.0), (2, -16.0)])
def test_podcast_mono_is_minus_19_unless_a_target_is_given(channels, expected):
    sample_rate = 48000
    x = music_like(6.0, sample_rate, channels=channels)
    out, report = master(x, sample_rate, platform="podcast")
    assert_on_target(out, sample_rate, expected, -1.0)
    assert report["target"]["integrated_lufs"] == expected
    assert (report["target"]["note"] is not None) == (channels == 1)
    out, report = master(x, sample_rate, platform="Podcast", target_lufs=-16.0)  # names: any case
    assert report["target"]["integrated_lufs"] == -16.0 and report["target"]["note"] is None
