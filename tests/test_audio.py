"""File boundary: reading, validation, TPDF dither, atomic writes."""

import numpy as np
import pytest
import soundfile as sf

from roomtone.kernels.pcm import quantize_codes, quantize_grid
from refsignals import sine
from roomtone.audio import (PendingWrite, quantization_error_bound, quantize_to_grid, read_audio, validate_audio,
                            write_audio)
from roomtone.errors import InvalidAudioError, OutputError


def oracle_codes(audio, bits, shift):
    scale = 2.0 ** (bits - 1)
    codes = np.clip(np.floor(audio.astype(np.float64) * scale + 0.5), -scale, scale - 1).astype(np.int64)
    return (codes << shift).astype(np.int32).T


@pytest.mark.parametrize("bits, shift", [(16, 16), (24, 8), (16, 0)])
def test_quantize_codes_without_dither_equals_oracle(bits, shift):
    rng = np.random.default_rng(0)
    x = (rng.uniform(-1.2, 1.2, (2, 5000))).astype(np.float32)  # includes values to clip
    np.testing.assert_array_equal(quantize_codes(x, bits, False, 0, shift), oracle_codes(x, bits, shift))


def test_tpdf_dither_error_statistics():
    """Rounding plus TPDF dither: error mean 0, variance 1/12 + 1/6 = 1/4 LSB^2, never past 1.5 LSB."""
    rng = np.random.default_rng(1)
    x = (rng.uniform(-0.5, 0.5, (1, 200000))).astype(np.float32)
    lsb = 1.0 / 2 ** 15
    error = (quantize_to_grid(x, 16, seed=3) - x.astype(np.float64)) / lsb
    assert abs(error.mean()) < 0.01
    assert error.var() == pytest.approx(0.25, rel=0.03)
    assert np.abs(error).max() <= 1.5 + 1e-6


def test_dither_decorrelates_a_tiny_tone():
    """A 1 kHz tone at 1/4 LSB: undithered it vanishes; dithered it survives (in the average)."""
    sr = 48000
    x = sine(1000.0, 1.0, sr, amplitude=0.25 / 2 ** 15, channels=1)
    plain = quantize_codes(x, 16, False, 0, 0)
    assert np.count_nonzero(plain) == 0
    dithered = quantize_to_grid(x, 16, seed=5)[0].astype(np.float64)
    reference = x[0].astype(np.float64)
    correlation = np.dot(dithered, reference) / np.dot(reference, reference)
    assert correlation == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("bits", [16, 24])
@pytest.mark.parametrize("dither", [False, True])
def test_quantize_grid_is_the_codes_scaled(bits, dither):
    """Same dither sequence, same clipping: the float grid is exactly the file's codes / 2^(bits-1)."""
    x = (np.random.default_rng(2).uniform(-1.2, 1.2, (3, 4000))).astype(np.float32)
    codes = quantize_codes(x, bits, dither, 11, 0)
    grid = quantize_grid(x, bits, dither, 11, np.zeros(0, np.float32), np.empty_like(x))
    assert grid.dtype == np.float32 and grid.shape == x.shape
    np.testing.assert_array_equal(grid.astype(np.float64) * 2 ** (bits - 1), codes.T.astype(np.float64))
    # a per-sample gain is the float32 product, then the same quantization
    gain = np.linspace(0.3, 1.1, x.shape[1]).astype(np.float32)
    scaled = x * gain[None, :]
    none = np.zeros(0, np.float32)
    with_gain = quantize_grid(x, bits, dither, 11, gain, np.empty_like(x))
    np.testing.assert_array_equal(with_gain, quantize_grid(scaled, bits, dither, 11, none, np.empty_like(x)))
    # in place (out is the input) gives the same samples
    copy = x.copy()
    assert quantize_grid(copy, bits, dither, 11, gain, copy) is copy
    np.testing.assert_array_equal(copy, with_gain)
    # every sample within the stated 1.5 LSB of its input, inside the code range
    inside = np.abs(scaled) < 0.99
    assert np.all(np.abs(with_gain - scaled)[inside] <= quantization_error_bound(bits))


def test_quantize_to_grid_in_place():
    x = (np.random.default_rng(4).uniform(-0.9, 0.9, (2, 3000))).astype(np.float32)
    gain = np.linspace(0.5, 1.0, 3000)
    want = quantize_to_grid(x, 16, seed=2, gain=gain)
    got = quantize_to_grid(x, 16, seed=2, gain=gain, in_place=True)
    assert got is x
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError):
        quantize_to_grid(x.astype(np.float64), 16, in_place=True)


def test_quantize_is_seeded_and_on_grid():
    x = sine(440.0, 0.1, 44100)
    a = quantize_to_grid(x, 24, seed=9)
    np.testing.assert_array_equal(a, quantize_to_grid(x, 24, seed=9))
    codes = a.astype(np.float64) * 2 ** 23
    np.testing.assert_array_equal(codes, np.round(codes))


@pytest.mark.parametrize("ext, bit_depth, subtype", [(".wav", "16", "PCM_16"), (".wav", "24", "PCM_24"),
                                                      (".wav", "32f", "FLOAT"), (".flac", "16", "PCM_16"),
                                                      (".flac", "24", "PCM_24")])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_write_then_read_round_trip(tmp_path, ext, bit_depth, subtype, channels):
    x = sine(997.0, 0.2, 48000, amplitude=0.7, channels=channels)
    path = tmp_path / f"o{ext}"
    if bit_depth == "32f":
        write_audio(path, x, 48000, bit_depth=bit_depth)
        expected = x
    else:
        expected = quantize_to_grid(x, int(bit_depth))
        write_audio(path, expected, 48000, bit_depth=bit_depth, dither=False)
    y, sr, info = read_audio(path)
    assert (sr, info.channels, info.subtype) == (48000, channels, subtype)
    np.testing.assert_array_equal(y, expected)
    assert [p.name for p in tmp_path.iterdir()] == [f"o{ext}"]


@pytest.mark.parametrize("bit_depth", ["16", "24", "32f"])
def test_pending_write_commits_the_same_file_write_audio_writes(tmp_path, bit_depth):
    x = sine(997.0, 0.2, 48000, amplitude=0.7, channels=2)
    if bit_depth != "32f":
        x = quantize_to_grid(x, int(bit_depth))
    write_audio(tmp_path / "a.wav", x, 48000, bit_depth=bit_depth, dither=False)
    pending = PendingWrite(tmp_path / "b.wav", x, 48000, bit_depth)
    assert not (tmp_path / "b.wav").exists()  # nothing at the path before commit
    pending.commit()
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav"]


@pytest.mark.parametrize("ext, bit_depth", [(".wav", "24"), (".wav", "32f"), (".flac", "16")])
def test_long_writes_in_chunks_round_trip_exactly(tmp_path, ext, bit_depth):
    """Undithered output is converted and written a chunk at a time: across chunk edges the file
    holds exactly the samples given."""
    from roomtone.audio import WRITE_CHUNK

    x = sine(997.0, (2.5 * WRITE_CHUNK) / 48000, 48000, amplitude=0.7, channels=2)
    expected = x if bit_depth == "32f" else quantize_to_grid(x, int(bit_depth))
    write_audio(tmp_path / f"o{ext}", expected, 48000, bit_depth=bit_depth, dither=False)
    y, _, _ = read_audio(tmp_path / f"o{ext}")
    np.testing.assert_array_equal(y, expected)


def test_pending_write_discard_leaves_nothing(tmp_path):
    x = sine(997.0, 0.2, 48000, channels=2)
    (tmp_path / "o.wav").write_bytes(b"old")
    PendingWrite(tmp_path / "o.wav", x, 48000, "32f").discard()
    assert [p.name for p in tmp_path.iterdir()] == ["o.wav"]
    assert (tmp_path / "o.wav").read_bytes() == b"old"  # an existing file is untouched


def test_pending_write_failure_is_an_output_error_and_leaves_nothing(tmp_path, monkeypatch):
    import roomtone.audio

    def broken_write(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(roomtone.audio.sf.SoundFile, "write", broken_write)
    pending = PendingWrite(tmp_path / "o.wav", sine(997.0, 0.2, 48000), 48000, "32f")
    with pytest.raises(OutputError, match="disk full"):
        pending.commit()
    assert list(tmp_path.iterdir()) == []


def test_validate_audio_layout_and_values():
    assert validate_audio(np.zeros(10), 48000).shape == (1, 10)
    with pytest.raises(InvalidAudioError, match=r"got shape \(1, 2, 3\)"):
        validate_audio(np.zeros((1, 2, 3)), 48000)
    with pytest.raises(InvalidAudioError, match="outside 8000..768000 Hz"):
        validate_audio(np.zeros((1, 10)), 100)
    with pytest.raises(InvalidAudioError, match="2 NaN or infinite"):
        validate_audio(np.array([[0.0, np.nan, np.inf]]), 48000)


def test_read_refuses_directories_and_truncated_flac(tmp_path):
    with pytest.raises(InvalidAudioError, match="is a directory"):
        read_audio(tmp_path)
    path = tmp_path / "x.flac"
    sf.write(path, np.random.default_rng(0).standard_normal((48000, 2)) * 0.1, 48000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidAudioError, match="truncated or corrupt"):
        read_audio(path)


def test_write_refuses_bad_targets(tmp_path):
    x = sine(440.0, 0.1, 44100)
    with pytest.raises(OutputError, match=r"unsupported output extension .\.aiff.; use one of .wav, .flac, .mp3, .ogg, .opus"):
        write_audio(tmp_path / "a.aiff", x, 44100)
    with pytest.raises(OutputError, match="is a directory"):
        (tmp_path / "d.wav").mkdir()
        write_audio(tmp_path / "d.wav", x, 44100)


def test_rates_below_8_khz_and_complex_samples_are_refused():
    with pytest.raises(InvalidAudioError, match="outside 8000..768000 Hz"):
        validate_audio(np.zeros((1, 10)), 4000)
    with pytest.raises(InvalidAudioError, match="real integer or float"):
        validate_audio(np.zeros((1, 10), dtype=complex), 48000)


@pytest.mark.parametrize("shape", [(48000, 2), (65, 1000), (4410, 1)])
def test_implausible_channel_counts_are_refused_with_the_fix(shape):
    with pytest.raises(InvalidAudioError, match=r"\(channels, samples\).*transpose"):
        validate_audio(np.zeros(shape, dtype=np.float32), 48000)


def test_sixty_four_channels_are_accepted():
    assert validate_audio(np.zeros((64, 10), dtype=np.float32), 48000).shape == (64, 10)
