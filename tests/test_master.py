"""The master job through its Python API: every output at its target by an independent meter
(libebur128), over material that needs +10 dB and material that must come down, mono to 5.1,
44.1 to 96 kHz; clear refusals where the target cannot be met."""

import numpy as np
import pytest

from roomtone.mastering import master
from roomtone.plugins import TruePeakLimiter
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
    (lambda: sine(1000.0, 0.3, 48000), "gating block. needs at least 400 ms"),
    (lambda: np.zeros((2, 0), np.float32), "gating block. needs at least 400 ms"),
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


# ---------------------------------------------------------------- album mode

ALBUM_RATE = 44100


def album_tracks(levels=(-12.0, -18.0, -23.0), seconds=5.0):
    """A single, a ballad and an interlude: different material, each at its input loudness (LUFS)."""
    return [(scaled_to(music_like(seconds, ALBUM_RATE, seed=20 + i), ALBUM_RATE, lufs), ALBUM_RATE)
            for i, lufs in enumerate(levels)]


def ballad_of(track, quiet_db, seconds_loud):
    """``track`` made a ballad: its first part ``quiet_db`` under the rest (soft verses, a chorus at the
    single's level), with a 0.5 s crossfade. Shape as ``track``."""
    n = track.shape[1]
    ramp = np.clip((np.arange(n) - (n - seconds_loud * ALBUM_RATE)) / (0.5 * ALBUM_RATE), 0.0, 1.0)
    return (track * (10 ** (-quiet_db / 20) + (1 - 10 ** (-quiet_db / 20)) * ramp)).astype(np.float32)


@pytest.fixture(scope="module")
def mastered_album():
    """Issue 24: mix levels are accidents. The same kind of material at -12, -18 and -23 LUFS, then
    a ballad (soft verses 8 dB under its chorus) and a quiet intro (9.5 dB under its last 5 s for
    19 s: BS.1770's relative gate would drop anything 10 LU under), mixed at -30 and -16 LUFS."""
    from roomtone.mastering import master_album

    tracks = album_tracks(seconds=16.0)
    ballad = ballad_of(music_like(16.0, ALBUM_RATE, seed=30), 8.0, 8.0)
    intro = ballad_of(music_like(24.0, ALBUM_RATE, seed=31), 9.5, 5.0)
    tracks += [(scaled_to(ballad, ALBUM_RATE, -30.0), ALBUM_RATE), (scaled_to(intro, ALBUM_RATE, -16.0), ALBUM_RATE)]
    outputs, report = master_album(tracks, platform="spotify")
    return tracks, outputs, report


def test_album_places_tracks_by_the_music_not_by_the_mix_level(mastered_album):
    """The three tracks of one character land together on the target whatever their mix levels (a
    21 LU input spread); the ballad lands under them by what its soft verses take from its integrated
    loudness (its loud passages level with theirs); the intro, whose own dynamics ask more, is held
    at the 4 LU bound and named. Independent meter, every true peak under the ceiling, none above the
    target, and the spread reported."""
    from roomtone.mastering.album import MAX_OFFSET_LU

    tracks, outputs, report = mastered_album
    outs = [libebur128(y, ALBUM_RATE) for y in outputs]
    rows = report["album"]["rows"]
    for i in range(3):
        assert abs(outs[i][0] + 14.0) <= 0.25, outs
    ballad = report["tracks"][3]["album"]
    assert -MAX_OFFSET_LU < ballad["placed_offset_lu"] < -1.0
    assert abs(outs[3][0] - (-14.0 + ballad["placed_offset_lu"])) <= 0.1
    intro = report["tracks"][4]["album"]
    assert intro["musical_offset_lu"] < -MAX_OFFSET_LU and intro["placed_offset_lu"] == -MAX_OFFSET_LU
    assert abs(outs[4][0] - (-14.0 - MAX_OFFSET_LU)) <= 0.1 and "held at 4" in report["tracks"][4]["target"]["note"]
    for y, (integrated, peak) in zip(outputs, outs):
        assert peak <= -1.0 and meter.true_peak(y, ALBUM_RATE) <= -1.0 and true_peak_16x(y) <= -0.9
        assert integrated <= -14.0 + 0.1
    assert all(row["relation_kept"] for row in rows)
    summary = report["album"]
    assert summary["input_spread_lu"] > 13.0 and summary["placed_spread_lu"] == pytest.approx(MAX_OFFSET_LU, abs=0.01)
    assert any("mix levels, not music" in n for n in summary["notes"])
    assert any("held at 4 LU" in n and "track 5" in n for n in summary["notes"])


def test_album_is_one_shared_chain_each_track_entering_at_its_place(mastered_album):
    tracks, outputs, report = mastered_album
    presets = [r["preset"] for r in report["tracks"]]
    assert all(p == presets[0] for p in presets) and presets[0] == report["album"]["preset"]
    for index, r in enumerate(report["tracks"]):
        album = r["album"]
        assert set(album) >= {"index", "track", "loudest", "input_lufs", "input_loud_lufs", "musical_offset_lu",
                              "placed_offset_lu", "placed_lufs", "output_lufs", "output_offset_lu",
                              "album_target_lufs", "trim_db", "relation_kept", "shortfall_lu", "note"}
        assert album["index"] == index and album["loudest"] == (index == report["album"]["loudest"]["index"])
        assert album["placed_lufs"] == pytest.approx(-14.0 + album["placed_offset_lu"], abs=1e-3)
        assert r["target"]["integrated_lufs"] == pytest.approx(album["placed_lufs"], abs=1e-3)
        assert abs(album["output_offset_lu"] - album["placed_offset_lu"]) <= 0.05
        # each track enters the shared chain at the working level plus its place
        trim = next(s["gain_db"] for s in r["stages"] if s["stage"] == "input_trim")
        assert trim == pytest.approx(-18.0 + album["placed_offset_lu"] - album["input_lufs"], abs=0.01)
        assert trim == album["trim_db"] == report["album"]["rows"][index]["trim_db"]
    summary = report["album"]
    assert (summary["tracks"], summary["mastered"], summary["failed"]) == (5, 5, 0)
    assert summary["placement"] == "loud passages" and max(r["placed_offset_lu"] for r in summary["rows"]) == 0.0
    import json

    json.dumps(report)


def test_one_track_album_is_its_own_master():
    from roomtone.mastering import master_album

    (track,) = album_tracks(levels=(-20.0,), seconds=3.0)
    (out,), report = master_album([track], platform="apple", bit_depth="24")
    alone, plain = master(*track, platform="apple", bit_depth="24")
    assert np.array_equal(out, alone)
    assert report["tracks"][0]["stages"] == plain["stages"]


def test_album_track_over_the_limiting_budget_is_delivered_under_its_place_and_says_so():
    """A peaky track whose place needs more limiting than the preset allows: delivered as close under
    its place as the budget lets (within 0.1 LU), under the ceiling, its report and the table's row
    saying by how much; the loudest track stays on the target."""
    import dataclasses

    from roomtone.mastering import master_album
    from roomtone.mastering.presets import load_preset

    steady = scaled_to(sine(220.0, 4.0, ALBUM_RATE) + sine(330.0, 4.0, ALBUM_RATE, amplitude=0.3), ALBUM_RATE, -20.0)
    noise = pink_noise(4.0, ALBUM_RATE, rms=0.1, seed=4)
    gate = (np.arange(noise.shape[1]) % int(0.25 * ALBUM_RATE) < int(0.03 * ALBUM_RATE)).astype(np.float32)
    bursts = scaled_to(noise * (0.02 + gate), ALBUM_RATE, -23.0)  # peaks about 20 dB over its loudness
    preset = dataclasses.replace(load_preset("balanced"), max_limiting_lu=1.0)
    outputs, report = master_album([(steady, ALBUM_RATE), (bursts, ALBUM_RATE)], preset=preset)
    loud, peaky = report["tracks"]
    assert loud["album"]["relation_kept"] and abs(loud["after"]["integrated_lufs"] + 14.0) <= 0.05
    album = peaky["album"]
    assert not album["relation_kept"] and album["shortfall_lu"] > 0.2
    assert album["needed_limiting_lu"] > 1.0 and "LU under its place" in album["note"]
    limiter = next(s for s in peaky["stages"] if s["stage"] == "limiter")
    assert 1.0 - 2 * 0.1 <= -limiter["gain_db"] <= 1.0  # as close to the budget as the bisection gets
    assert peaky["after"]["integrated_lufs"] == pytest.approx(album["placed_lufs"] - album["shortfall_lu"], abs=0.05)
    assert libebur128(outputs[1], ALBUM_RATE)[1] <= -1.0
    assert not report["album"]["relations_kept"]
    assert report["album"]["rows"][1]["shortfall_lu"] == album["shortfall_lu"]


def test_album_loudest_track_that_cannot_reach_the_target_fails_as_a_master_would():
    from roomtone.mastering import master_album

    with pytest.raises(TargetUnreachableError, match="LU of limiting"):
        master_album([(clipped_loud_master(ALBUM_RATE), ALBUM_RATE)] + album_tracks(levels=(-20.0,), seconds=3.0),
                     target_lufs=-6.0)


def test_album_bad_track_is_recorded_with_keep_going_else_raised():
    from roomtone.mastering.album import analyse_album

    tracks = album_tracks(levels=(-16.0, -20.0), seconds=3.0)
    tracks.insert(1, (silence(3.0, ALBUM_RATE), ALBUM_RATE))
    with pytest.raises(InvalidAudioError, match="track 2: silent"):
        analyse_album(tracks)
    album = analyse_album(tracks, keep_going=True)
    assert album.loudest in (0, 2) and album.tracks[1].error is not None and 1 not in album.offsets
    with pytest.raises(InvalidAudioError, match="silent"):
        album.placement(1)
    reports = [album.master(index, *tracks[index])[1] for index in (0, 2)]
    assert reports[1]["album"]["placed_lufs"] == pytest.approx(-14.0 + album.offsets[2][1], abs=0.01)
    summary = album.summary([reports[0], album.tracks[1].error, reports[1]])
    assert summary["rows"][1]["error"].startswith("track 2: silent")
    assert (summary["mastered"], summary["failed"], summary["output_album_tracks"]) == (2, 1, 2)


def test_album_fit_is_one_fit_on_every_track_weighted_by_loudness():
    """--fit-target on an album: one fit on an excerpt of each track at the album's trim (a mono
    track left out and named); every track rendered with those parameters."""
    from roomtone.mastering import master_album

    tracks = album_tracks(levels=(-14.0, -22.0), seconds=4.0)
    mono = (scaled_to(music_like(4.0, 48000, channels=1, seed=7), 48000, -18.0), 48000)
    outputs, report = master_album(tracks + [mono], preset="balanced", fit_target=True)
    fit = report["album"]["fit"]
    assert fit["album_analysis"]["tracks"] == ["track 1", "track 2"]
    assert fit["album_analysis"]["left_out"] == [{"track": "track 3", "why": "1 channels, the album's analysis is 2"}]
    assert len(fit["excerpts_s"]) == 2  # one excerpt of the compressor's effect per track
    chains = [r["preset"]["chain"] for r in report["tracks"]]
    assert chains[0] == chains[1] == chains[2] and report["tracks"][0]["preset"]["name"] == "balanced+fit"
    for r in report["tracks"]:
        assert r["fit"]["tonal_distance_db"]["output"] < r["fit"]["tonal_distance_db"]["input"]
    outs = [libebur128(y, sr)[0] for y, (_, sr) in zip(outputs, tracks + [mono])]
    for out, r in zip(outs, report["tracks"]):
        assert abs(out - r["album"]["placed_lufs"]) <= 0.1


# ---------------------------------------------------------------- --plot: the analysis and the PNG

def test_analysis_gives_the_curves_and_short_term_loudness_a_plot_draws():
    from roomtone.mastering import targets

    sample_rate = 44100
    x = quiet_acoustic(sample_rate)
    out, report = master(x, sample_rate, preset="balanced", analysis=True)
    data = report["analysis"]
    assert len(data["bands_hz"]) == len(data["input_tonal_db"]) == len(data["output_tonal_db"]) == 27
    assert data["target_tonal_db"] is not None and "not fitted" in data["target_source"]  # balanced has a [target]
    assert data["output_tonal_db"] == pytest.approx(
        targets.tonal_curve(out, sample_rate, meter.integrated_loudness(out, sample_rate)), abs=0.01)
    assert data["input_tonal_db"] == pytest.approx(
        targets.tonal_curve(x, sample_rate, meter.integrated_loudness(x, sample_rate)), abs=0.01)
    # reading k is the 3 s window starting at k * 0.5 s, as the meter reads it
    assert (data["short_term_window_s"], data["short_term_hop_s"]) == (3.0, 0.5)
    for key, signal in (("input_short_term_lufs", x), ("output_short_term_lufs", out)):
        expected = meter.short_term_loudness(signal, sample_rate, hop_s=0.5)
        assert data[key] == pytest.approx(expected, abs=0.01)
    _, plain = master(x, sample_rate, preset="jazz", analysis=True)
    assert plain["analysis"]["target_tonal_db"] is None  # jazz has no [target] table
    _, without = master(x, sample_rate)
    assert "analysis" not in without


def _png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_writes_a_png_beside_the_master(tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs the optional extra roomtone[plot] (matplotlib)")
    import soundfile as sf

    from roomtone.mastering import master_file

    source = tmp_path / "mix.wav"
    sf.write(source, quiet_acoustic(44100)[:, :4 * 44100].T, 44100, subtype="PCM_24")
    report = master_file(source, tmp_path / "mix_master.wav", reference=(music_like(4.0, 44100, seed=8), 44100),
                         plot_path=tmp_path / "mix_master.png")
    data = (tmp_path / "mix_master.png").read_bytes()
    assert _png_size(data) == (1000, 750)
    assert report["plot"] == str(tmp_path / "mix_master.png") and report["analysis"]["target_source"].startswith("fit")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix.wav", "mix_master.png", "mix_master.wav"]


def test_plot_without_matplotlib_is_refused_before_any_work(tmp_path, no_matplotlib):
    from roomtone.errors import OptionalDependencyError
    from roomtone.mastering import master_file
    from roomtone.mastering.plot import render_png

    with pytest.raises(OptionalDependencyError, match=r"matplotlib, which is not installed: pip install 'roomtone\[plot\]'"):
        master_file(tmp_path / "not_read.wav", tmp_path / "out.wav", plot_path=tmp_path / "out.png")
    with pytest.raises(OptionalDependencyError, match="roomtone"):
        render_png({})
    assert list(tmp_path.iterdir()) == []
