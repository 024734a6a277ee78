"""The ``enhance`` command: batch with a bad file, JSON lines, the input never overwritten, nothing
partial left on failure, and the help's loudness targets."""

import hashlib
import json
import os

import soundfile as sf
from click.testing import CliRunner

from refsignals import band_noise, speech_like
from roomtone.enhance.cli import main as enhance_cli

SR = 16000


def _speech_file(path, channels=1):
    speech, _ = speech_like(3.0, SR, channels=channels, seed=2)
    x = speech * 0.3 + band_noise(3.0, SR, 80, 7000, rms=0.002, channels=channels)
    sf.write(path, x.T, SR, subtype="PCM_16")
    return path


def _run(args):
    return CliRunner().invoke(enhance_cli, [str(a) for a in args])


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_help_gives_units_and_the_podcast_targets():
    result = _run(["--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "-16 LUFS" in text and "-19 LUFS for mono" in text and "-1 dBTP" in text and "dB" in text


def test_batch_with_a_bad_file_goes_on_and_exits_non_zero(tmp_path):
    good = _speech_file(tmp_path / "a.wav")
    stereo = _speech_file(tmp_path / "b.flac", channels=2)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    out = tmp_path / "out"
    result = _run([good, bad, stereo, "-o", out, "--json", "-q", "--model", "classic"])
    assert result.exit_code == 2
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [os.path.basename(r["input"]) for r in lines] == ["a.wav", "bad.wav", "b.flac"]
    assert "error" in lines[1] and "error" not in lines[0]
    assert abs(lines[0]["after"]["integrated_lufs"] + 19.0) < 0.1  # mono
    assert abs(lines[2]["after"]["integrated_lufs"] + 16.0) < 0.1  # stereo
    assert sorted(os.listdir(out)) == ["a.wav", "b.flac"]
    assert sf.info(out / "a.wav").frames == sf.info(good).frames


def test_output_never_overwrites_the_input(tmp_path):
    source = _speech_file(tmp_path / "take.wav")
    before = _digest(source)
    result = _run([source, "-o", tmp_path, "-q"])
    assert result.exit_code == 4 and "output is the input" in result.output
    assert _digest(source) == before and sorted(os.listdir(tmp_path)) == ["take.wav"]


def test_bad_options_and_unknown_model_are_refused_before_any_work(tmp_path):
    source = _speech_file(tmp_path / "take.wav")
    result = _run([source, "-o", tmp_path / "out", "--model", "nope", "-q"])
    assert result.exit_code == 2 and "available: " in result.output and "classic" in result.output
    result = _run([source, "-o", tmp_path / "out", "--atten-lim-db", "200", "-q"])
    assert result.exit_code == 2 and "0..100 dB" in result.output
    assert not os.path.exists(tmp_path / "out") or os.listdir(tmp_path / "out") == []


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    import roomtone.audio

    source = _speech_file(tmp_path / "take.wav")

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(roomtone.audio, "_write_frames", broken)
    out = tmp_path / "out"
    result = _run([source, "-o", out, "--preset", "denoise", "-q", "--report-dir", out / "r"])
    assert result.exit_code == 4 and "No space left" in result.output
    assert [name for name in os.listdir(out) if name != "r"] == []
