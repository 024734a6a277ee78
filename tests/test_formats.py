"""Output formats beyond WAV/FLAC (MP3, OGG Vorbis, Opus), output resampling and AAC/M4A input.

A lossy file is held to the same promise as any output, read as a player reads it: the decoded file
hits the target loudness within 0.1 LU and its true peak sits at or under the ceiling by an
independent meter (libebur128) and by roomtone's. The job gets there by decoding and metering the
encoded temporary file, and encoding again with the limiter aiming lower when the codec's
overshoot pushed the peaks over.
"""

import dataclasses
import sys

import numpy as np
import pytest
import soundfile as sf

import roomtone.mastering.api as api
from refsignals import music_like, sine
from roomtone import meter
from roomtone.audio import (AAC_HINT, LOSSY_CODECS, PendingWrite, delivery_sample_rate, output_format, read_audio,
                            write_audio)
from roomtone.errors import InvalidAudioError, OutputError, TargetUnreachableError
from roomtone.mastering import master, master_file
from roomtone.resample import OUTPUT_SAMPLE_RATES, resample
from roomtone.testing import libebur128

LOUDNESS_TOLERANCE_LU = 0.1  # DESIGN.md's promise holds for the decoded lossy files too


def scaled_to(audio, sample_rate, lufs):
    return (audio * 10 ** ((lufs - meter.integrated_loudness(audio, sample_rate)) / 20)).astype(np.float32)


def quiet_mix(sample_rate, seconds=6.0, channels=2):
    """Peaky material at -25 LUFS (drum hits over a pad): needs +11 dB and real limiting for -14 LUFS."""
    return scaled_to(music_like(seconds, sample_rate, channels=channels, seed=5), sample_rate, -25.0)


def source_file(tmp_path, sample_rate, **kwargs):
    path = tmp_path / "in.wav"
    write_audio(path, quiet_mix(sample_rate, **kwargs), sample_rate, bit_depth="24")
    return path


def assert_file_on_target(path, target, ceiling):
    audio, rate, _ = read_audio(path)
    integrated, peak = libebur128(audio, rate)
    assert abs(integrated - target) <= LOUDNESS_TOLERANCE_LU, integrated
    assert peak <= ceiling, peak
    assert meter.true_peak(audio, rate) <= ceiling
    return audio, rate


def names(directory):
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("ext, sample_rate", [(".mp3", 44100), (".mp3", 48000), (".ogg", 44100), (".ogg", 48000),
                                              (".opus", 48000)])
@pytest.mark.parametrize("platform, target, ceiling", [("spotify", -14.0, -1.0), ("atsc-a85", -24.0, -2.0)])
def test_lossy_round_trip_hits_the_target_as_decoded(tmp_path, ext, sample_rate, platform, target, ceiling):
    codec = LOSSY_CODECS[ext]
    source = source_file(tmp_path, sample_rate)
    out = tmp_path / f"out{ext}"
    report = master_file(source, out, platform=platform)
    info = sf.info(out)
    assert (info.format, info.subtype, info.samplerate) == (codec.format, codec.subtype, sample_rate)
    audio, rate = assert_file_on_target(out, target, ceiling)
    encoded = report["after_encoding"]
    assert encoded["codec"] == codec.name and 1 <= encoded["attempts"] <= api.ENCODE_ATTEMPTS
    # the report gives the delivered file's readings, not the float master's
    assert encoded["integrated_lufs"] == pytest.approx(meter.integrated_loudness(audio, rate), abs=1e-3)
    assert encoded["true_peak_dbtp"] == pytest.approx(meter.true_peak(audio, rate), abs=1e-3)
    assert report["bit_depth"] is None and report["dither"] is None and report["resampled_to"] is None
    assert report["output_format"] == {"format": codec.format, "subtype": codec.subtype}
    assert names(tmp_path) == ["in.wav", f"out{ext}"]


def test_opus_from_44_1_khz_is_resampled_to_48_khz_and_says_so(tmp_path):
    source = source_file(tmp_path, 44100)
    report = master_file(source, tmp_path / "out.opus")
    assert sf.info(tmp_path / "out.opus").samplerate == 48000
    assert report["resampled_to"] == 48000 and report["sample_rate"] == 48000
    assert "opus takes 8000, 12000, 16000, 24000, 48000 Hz, not 44100 Hz" in report["resampled_reason"]
    assert report["before"]["sample_rate"] == 44100
    assert_file_on_target(tmp_path / "out.opus", -14.0, -1.0)


def fake_over_first(monkeypatch, over_db, times=1):
    """Make the first ``times`` readings of a decoded file report its true peak ``over_db`` higher."""
    real = api._meter_encoded
    readings = []

    def meter_encoded(audio, sample_rate):
        stats = real(audio, sample_rate)
        readings.append(stats)
        if len(readings) <= times:
            return dataclasses.replace(stats, true_peak_dbtp=stats.true_peak_dbtp + over_db)
        return stats

    monkeypatch.setattr(api, "_meter_encoded", meter_encoded)
    return readings


def test_an_encoding_over_the_ceiling_is_encoded_again_lower_and_only_that_file_lands(tmp_path, monkeypatch):
    source = source_file(tmp_path, 44100)
    readings = fake_over_first(monkeypatch, 0.5)
    report = master_file(source, tmp_path / "out.ogg")
    encoded = report["after_encoding"]
    assert encoded["attempts"] == 2 and len(readings) == 2
    # the limiter aimed lower by the (simulated) overshoot plus the margin
    first_over = readings[0].true_peak_dbtp + 0.5 - (-1.0)
    assert encoded["limiter_ceiling_dbtp"] == pytest.approx(-1.0 - first_over - api.ENCODE_MARGIN_DB, abs=1e-3)
    assert report["after"]["true_peak_dbtp"] <= encoded["limiter_ceiling_dbtp"]
    assert names(tmp_path) == ["in.wav", "out.ogg"]  # the first encoding's temporary file is gone
    audio, rate = assert_file_on_target(tmp_path / "out.ogg", -14.0, -1.0)
    assert meter.true_peak(audio, rate) == pytest.approx(readings[-1].true_peak_dbtp, abs=1e-6)


def test_an_encoding_that_never_passes_is_refused_and_nothing_lands(tmp_path, monkeypatch):
    source = source_file(tmp_path, 44100)
    (tmp_path / "out.mp3").write_bytes(b"old")
    readings = []

    def always_over(audio, sample_rate):  # whatever is encoded, the decoded file reads 0.3 dB over
        readings.append(meter.measure(audio, sample_rate))
        return dataclasses.replace(readings[-1], true_peak_dbtp=-0.7)

    monkeypatch.setattr(api, "_meter_encoded", always_over)
    with pytest.raises(TargetUnreachableError, match=r"after 4 mp3 encodings the decoded file reads -1\d\.\d\d LUFS "
                                                     r"and -0.70 dBTP; the target is -14 LUFS under -1 dBTP") as caught:
        master_file(source, tmp_path / "out.mp3")
    assert "\n" not in str(caught.value)
    assert len(readings) == api.ENCODE_ATTEMPTS
    assert names(tmp_path) == ["in.wav", "out.mp3"] and (tmp_path / "out.mp3").read_bytes() == b"old"


def test_an_interrupt_while_metering_the_encoding_leaves_nothing(tmp_path, monkeypatch):
    source = source_file(tmp_path, 48000)

    def interrupted(audio, sample_rate):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "_meter_encoded", interrupted)
    with pytest.raises(KeyboardInterrupt):
        master_file(source, tmp_path / "out.opus")
    assert names(tmp_path) == ["in.wav"]


@pytest.mark.parametrize("rate_out", OUTPUT_SAMPLE_RATES)
def test_output_resampling_hits_the_target_at_each_rate(tmp_path, rate_out):
    source = source_file(tmp_path, 44100, seconds=5.0)
    report = master_file(source, tmp_path / "out.wav", output_sample_rate=rate_out)
    audio, rate = assert_file_on_target(tmp_path / "out.wav", -14.0, -1.0)
    assert rate == rate_out and report["sample_rate"] == rate_out
    assert abs(audio.shape[1] - 5 * rate_out) <= 1
    assert report["resampled_to"] == (None if rate_out == 44100 else rate_out)
    stages = [s["stage"] for s in report["stages"]]
    assert ("resample" in stages) == (rate_out != 44100)
    # the per-stage gains still add up to the loudness change, the resampler's included
    total = sum(s["gain_db"] for s in report["stages"])
    assert total == pytest.approx(report["after"]["integrated_lufs"] - report["before"]["integrated_lufs"], abs=0.05)


def test_master_resamples_arrays_before_the_loudness_stage():
    x = quiet_mix(96000, seconds=4.0)
    out, report = master(x, 96000, output_sample_rate=44100, preset="pop", platform="apple")
    assert out.shape == (2, 4 * 44100) and out.dtype == np.float32
    integrated, peak = libebur128(out, 44100)
    assert abs(integrated - -16.0) <= LOUDNESS_TOLERANCE_LU and peak <= -1.0
    assert report["after"]["sample_rate"] == 44100 and report["resampled_to"] == 44100


def test_lossy_output_at_a_requested_rate(tmp_path):
    source = source_file(tmp_path, 96000, seconds=4.0)
    report = master_file(source, tmp_path / "out.mp3", output_sample_rate=44100)
    assert sf.info(tmp_path / "out.mp3").samplerate == 44100 and report["resampled_reason"] == "requested"
    assert_file_on_target(tmp_path / "out.mp3", -14.0, -1.0)


@pytest.mark.parametrize("ext, rate, message", [
    (".wav", 22050, r"output_sample_rate=22050 Hz must be one of 44100, 48000, 88200, 96000 Hz"),
    (".flac", "fast", r"output_sample_rate='fast' must be one of 44100, 48000, 88200, 96000 Hz"),
    (".opus", 44100, r"not available for opus, which takes 8000, 12000, 16000, 24000, 48000 Hz; choose 48000 Hz"),
    (".mp3", 96000, r"not available for mp3, .*; choose 44100 or 48000 Hz"),
])
def test_a_bad_output_rate_is_refused_before_any_work(tmp_path, ext, rate, message):
    missing = tmp_path / "not-read.wav"  # the input is never opened: the rate is refused first
    with pytest.raises(OutputError, match=message) as caught:
        master_file(missing, tmp_path / f"out{ext}", output_sample_rate=rate)
    assert "\n" not in str(caught.value)
    assert names(tmp_path) == []
    with pytest.raises(OutputError, match="must be one of 44100, 48000, 88200, 96000 Hz"):
        master(np.zeros((2, 10)), 44100, output_sample_rate=32000)  # refused before any metering


@pytest.mark.parametrize("ext, rate, expected", [
    (".opus", 44100, 48000), (".opus", 16000, 16000), (".opus", 22050, 48000), (".mp3", 88200, 44100),
    (".mp3", 96000, 48000), (".mp3", 32000, 32000), (".ogg", 384000, 96000), (".ogg", 96000, 96000),
    (".wav", 22050, 22050), (".flac", 192000, 192000),
])
def test_the_delivery_rate_keeps_the_input_rate_where_the_format_takes_it(ext, rate, expected):
    assert delivery_sample_rate(f"x{ext}", rate) == expected


@pytest.mark.parametrize("bit_depth", [None, "16", "24", "32f"])
def test_a_bit_depth_does_not_apply_to_lossy_formats(bit_depth):
    assert output_format("x.opus", bit_depth) == ("OGG", "OPUS")
    assert output_format("x.mp3", bit_depth) == ("MP3", "MPEG_LAYER_III")


def test_a_value_that_is_no_bit_depth_is_refused_for_lossy_formats_too(tmp_path):
    with pytest.raises(OutputError, match=r"bit depth 20 is not one of 16, 24, 32f; for .ogg \(lossy\) no bit depth"):
        master_file(tmp_path / "in.wav", tmp_path / "out.ogg", bit_depth="20")


def test_mp3_refuses_more_than_two_channels_before_mastering(tmp_path, monkeypatch):
    path = tmp_path / "in.wav"
    write_audio(path, quiet_mix(48000, seconds=2.0, channels=6), 48000, bit_depth="24")
    monkeypatch.setattr(api, "_prepare", lambda *a, **k: pytest.fail("mastering started"))
    with pytest.raises(OutputError, match="mp3 holds at most 2 channels; the audio has 6"):
        master_file(path, tmp_path / "out.mp3")
    assert names(tmp_path) == ["in.wav"]


def test_write_audio_refuses_a_rate_the_codec_does_not_take(tmp_path):
    with pytest.raises(OutputError, match=r"opus takes 8000, 12000, 16000, 24000, 48000 Hz, not 44100 Hz"):
        write_audio(tmp_path / "a.opus", sine(440.0, 0.5, 44100), 44100)
    assert names(tmp_path) == []


def test_pending_lossy_write_reads_back_what_the_encoder_wrote(tmp_path):
    x = sine(997.0, 1.0, 48000, amplitude=0.5)
    pending = PendingWrite(tmp_path / "o.ogg", x, 48000, None)
    decoded, rate = pending.read_back()
    assert rate == 48000 and decoded.shape == x.shape
    error_db = 10 * np.log10(np.mean((decoded - x) ** 2) / np.mean(x ** 2))
    assert error_db < -30.0  # a tone survives Vorbis q8 closely, but not bit for bit
    assert not np.array_equal(decoded, x)
    assert not (tmp_path / "o.ogg").exists()
    pending.commit()
    np.testing.assert_array_equal(read_audio(tmp_path / "o.ogg")[0], decoded)


@pytest.mark.parametrize("freq_hz", [1000.0, 18000.0])
def test_resampling_keeps_level_and_timing(freq_hz):
    """soxr VHQ from 44.1 to 48 kHz: a tone keeps its amplitude (0.01 dB) and its phase (no delay)."""
    x = sine(freq_hz, 1.0, 44100, amplitude=0.5, channels=1)
    y = resample(x, 44100, 48000)
    assert y.shape == (1, 48000) and y.dtype == np.float32
    expected = sine(freq_hz, 1.0, 48000, amplitude=0.5, channels=1)
    core = slice(2000, -2000)  # away from the edges, where the filter has no signal on one side
    assert 20 * np.log10(np.abs(y[0, core]).max() / 0.5) == pytest.approx(0.0, abs=0.01)
    assert np.abs(y[0, core] - expected[0, core]).max() < 1e-3


def test_aac_input_without_the_decoder_says_how_to_install_it(tmp_path, monkeypatch):
    path = tmp_path / "song.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(64))
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    with pytest.raises(InvalidAudioError) as caught:
        read_audio(path)
    assert str(caught.value) == f"{path}: AAC/M4A input needs the optional decoder: pip install 'roomtone[aac]'"
    assert AAC_HINT in str(caught.value)


def write_m4a(path, audio, sample_rate):
    """Encode (channels, samples) float32 as AAC in an MP4 container with PyAV's encoder."""
    av = pytest.importorskip("av")
    layout = {1: "mono", 2: "stereo"}[audio.shape[0]]
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=sample_rate)
        stream.layout = layout
        stream.bit_rate = 256000
        for start in range(0, audio.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, start:start + 1024]), format="fltp",
                                               layout=layout)
            frame.sample_rate = sample_rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_aac_input_decodes_with_its_rate_layout_and_level(tmp_path):
    pytest.importorskip("av")
    sample_rate = 48000
    x = np.concatenate([sine(440.0, 2.0, sample_rate, amplitude=0.5, channels=1),
                        sine(880.0, 2.0, sample_rate, amplitude=0.25, channels=1)])
    write_m4a(tmp_path / "in.m4a", x, sample_rate)
    audio, rate, info = read_audio(tmp_path / "in.m4a")
    assert rate == sample_rate and audio.dtype == np.float32 and audio.shape == x.shape
    assert (info.channels, info.subtype) == (2, "AAC")
    core = slice(4800, -4800)
    level_db = 20 * np.log10(np.sqrt(np.mean(audio[:, core] ** 2, axis=1)) / np.sqrt(np.mean(x[:, core] ** 2, axis=1)))
    np.testing.assert_allclose(level_db, 0.0, atol=0.2)  # each channel keeps its level: order kept
    spectrum = np.abs(np.fft.rfft(audio[:, core], axis=1))
    freqs = np.fft.rfftfreq(audio[:, core].shape[1], 1 / sample_rate)
    assert list(freqs[spectrum.argmax(axis=1)].round()) == [440.0, 880.0]


def test_master_file_from_m4a_to_flac_hits_the_target(tmp_path):
    pytest.importorskip("av")
    write_m4a(tmp_path / "in.m4a", quiet_mix(44100, seconds=4.0), 44100)
    before = (tmp_path / "in.m4a").read_bytes()
    report = master_file(tmp_path / "in.m4a", tmp_path / "out.flac")
    assert report["input_format"]["subtype"] == "AAC"
    assert_file_on_target(tmp_path / "out.flac", -14.0, -1.0)
    assert (tmp_path / "in.m4a").read_bytes() == before  # the input is never modified
