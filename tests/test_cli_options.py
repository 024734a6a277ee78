"""One set of options and one way of failing across the commands (issue 24 §7): an output folder
that takes no file is exit status 4 in one line naming the path; a batch's errors name their file
in samples, ms and Hz; --version everywhere; -q prints nothing but errors (and --json); separate's
--format, --report-dir and 24-bit default keep the stems summing to the mix; enhance --help lists
the denoisers; master refuses an unknown preset before reading anything; progress is a status line
on a terminal and plain lines (no carriage return) in a log."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import roomtone
from refsignals import music_like, speech_like
from roomtone.cli_common import Progress
from roomtone.cli_meter import main as meter_cli
from roomtone.enhance.cli import main as enhance_cli
from roomtone.mastering.cli import main as master_cli
from roomtone.separate.cli import main as separate_cli
from sepsignals import mixture

SR = 48000
COMMANDS = {"master": master_cli, "enhance": enhance_cli, "separate": separate_cli, "meter": meter_cli}


def run(cli, args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _write(path, x, sample_rate=SR, subtype="PCM_24"):
    sf.write(path, np.asarray(x).T, sample_rate, subtype=subtype)
    return path


@pytest.fixture
def song(tmp_path):
    return _write(tmp_path / "song.wav", music_like(3.0, SR, seed=4) * 0.3)


@pytest.fixture
def one_sample(tmp_path):
    return _write(tmp_path / "one_sample.wav", np.zeros((2, 1), np.float32))


# ------------------------------------------------------------------ outputs that cannot be written

@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc (a folder that takes no new file)")
@pytest.mark.parametrize("command, output", [
    ("master", "/proc/out.wav"), ("master", "/proc/"), ("enhance", "/proc/"), ("separate", "/proc/"),
])
def test_a_folder_that_takes_no_file_is_exit_4_naming_the_path(song, command, output):
    result = run(COMMANDS[command], [song, "-o", output, "--model", "classic" if command == "enhance" else "dsp"]
                 if command != "master" else [song, "-o", output])
    assert result.exit_code == 4, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: /proc") and "cannot create" in lines[0], lines
    assert "takes no new files" in lines[0] and "No such file" not in lines[0]  # /proc exists: say what it is
    assert "internal error" not in result.stderr and "reading" not in result.stderr  # refused before any work


def test_a_write_refused_after_the_checks_is_exit_4_and_leaves_nothing(song, tmp_path, monkeypatch):
    """The checks passed but the temporary file cannot be made (e.g. the folder's permissions
    changed meanwhile): one line naming the output, exit 4, not 'internal error' (70)."""
    import roomtone.audio

    def refused(path):
        raise PermissionError(13, "Permission denied", os.path.dirname(os.path.abspath(path)) + "/.roomtone-x.part")

    monkeypatch.setattr(roomtone.audio, "_temp_beside", refused)
    out = tmp_path / "out"
    for cli, args in ((master_cli, [song, "-o", out / "m.wav"]),
                      (enhance_cli, [song, "-o", out, "--model", "classic", "--preset", "denoise"])):
        result = run(cli, args)
        assert result.exit_code == 4, result.output
        assert result.stderr.strip().splitlines()[-1].startswith(f"error: {out}") and "cannot create a file in" in \
            result.stderr and "Permission denied" in result.stderr
        assert os.listdir(out) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_the_writer_turns_an_os_refusal_into_an_output_error():
    from roomtone.audio import write_text_atomic
    from roomtone.errors import OutputError

    with pytest.raises(OutputError, match=r"^/proc/r\.json: cannot create a file in /proc \("):
        write_text_atomic("/proc/r.json", "{}")


# ------------------------------------------------------------------ errors name their file

def test_enhance_batch_error_names_the_file_in_samples_ms_and_hz(one_sample, tmp_path):
    good = _write(tmp_path / "phone.wav", speech_like(2.0, SR, seed=1)[0] * 0.3, subtype="PCM_16")
    result = run(enhance_cli, [one_sample, good, "-o", tmp_path / "d", "--model", "classic"])
    assert result.exit_code == 2
    assert (f"error: {one_sample}: input is 1 sample long (0.02 ms at 48000 Hz); the podcast preset's loudness "
            f"stage (one gating block) needs at least 400 ms (19200 samples at 48000 Hz)") in result.stderr
    assert "shape" not in result.stderr and os.listdir(tmp_path / "d") == ["phone.wav"]
    assert "1 of 2 enhanced, 1 failed" in result.stdout


def test_separate_errors_name_the_file_and_who_takes_eight_channels(one_sample, tmp_path):
    eight = _write(tmp_path / "eight.wav", np.repeat(mixture(0.5, SR), 4, axis=0) * 0.2)
    result = run(separate_cli, [one_sample, eight, "-o", tmp_path / "s", "--model", "roomtone", "--json"])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors[0] == (f"error: {one_sample}: input is 1 sample long (0.02 ms at 48000 Hz); separation needs "
                         f"at least 10 ms (480 samples at 48000 Hz)")
    assert errors[1].startswith(f"error: {eight}: the audio has 8 channels; separator 'roomtone' takes stereo or mono")
    assert "--model dsp" in errors[1] and "downmix to stereo" in errors[1]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["input"] for line in lines] == [str(one_sample), str(eight)] and all("error" in line for line in lines)
    # and the separator it names does take them
    result = run(separate_cli, [eight, "-o", tmp_path / "s", "--model", "dsp", "-q"])
    assert result.exit_code == 0 and sf.info(tmp_path / "s" / "eight" / "vocals.wav").channels == 8


def test_master_error_names_the_file_alone_and_in_a_batch(one_sample, song, tmp_path):
    result = run(master_cli, [one_sample, "-o", tmp_path / "o.wav"])
    assert result.exit_code == 2 and result.stderr.strip().splitlines()[-1].startswith(f"error: {one_sample}: ")
    result = run(master_cli, [one_sample, song, "-o", tmp_path / "m"])
    assert result.exit_code == 2 and f"error: {one_sample}: " in result.stderr


# ------------------------------------------------------------------ one set of options

@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_version_and_quiet(command):
    result = run(COMMANDS[command], ["--version"])
    assert result.exit_code == 0 and result.output == f"{command} (roomtone), version {roomtone.__version__}\n"
    assert "-q, --quiet" in run(COMMANDS[command], ["--help"]).output


def test_quiet_prints_nothing_but_errors_in_every_command(song, tmp_path):
    cases = [
        (master_cli, [song, "-o", tmp_path / "m.wav"]),
        (master_cli, [song, tmp_path / "missing.wav", "-o", tmp_path / "m"]),  # a batch with a failure
        (enhance_cli, [song, "-o", tmp_path / "e", "--model", "classic", "--preset", "denoise"]),
        (separate_cli, [song, "-o", tmp_path / "s", "--model", "dsp"]),
        (meter_cli, [song]),
    ]
    for cli, args in cases:
        loud = run(cli, args)
        assert loud.stdout.strip(), (cli.name, loud.output)  # without -q: a table or a line
        quiet = run(cli, args + ["-q"])
        assert quiet.exit_code == loud.exit_code and quiet.stdout == "", (cli.name, quiet.stdout)
        errors = [line for line in quiet.stderr.splitlines() if line]
        assert all(line.startswith("error: ") for line in errors), (cli.name, quiet.stderr)
        assert len(errors) == (loud.exit_code != 0)
    # --json is asked for: it still prints, with -q
    result = run(separate_cli, [song, "-o", tmp_path / "s2", "--model", "dsp", "-q", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["model"] == "dsp" and result.stderr == ""


def test_separate_defaults_to_24_bit_and_the_stems_still_sum_to_the_mix(tmp_path):
    """24-bit PCM like the other commands, with --clip rescale implied: the stems sum to the mix
    times the one reported gain, within the dither of four 24-bit stems; 32f sums exactly."""
    x = mixture(1.0, SR)
    for name, peak in (("soft", 0.3), ("hot", 1.0)):  # hot: the mix at full scale
        mix = (x * (peak / np.abs(x).max())).astype(np.float32)
        path = _write(tmp_path / f"{name}.wav", mix, subtype="FLOAT")
        result = run(separate_cli, [path, "-o", tmp_path / "s", "--model", "dsp", "--json", "-q"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["bit_depth"] == "24" and report["clip"]["policy"] == "rescale"
        stems = [sf.read(p, always_2d=True) for p in report["outputs"].values()]
        assert all(sf.info(p).subtype == "PCM_24" for p in report["outputs"].values())
        total = sum(data for data, _ in stems).T
        gain = 10 ** (report["clip"]["gain_db"] / 20)
        assert np.max(np.abs(total - mix * gain)) <= 4 * 1.5 / 2 ** 23 + 2e-6, name
    result = run(separate_cli, [path, "-o", tmp_path / "f", "--model", "dsp", "--bit-depth", "32f", "-q"])
    assert result.exit_code == 0
    total = sum(sf.read(tmp_path / "f" / "hot" / f"{s}.wav", always_2d=True)[0] for s in ("vocals", "drums", "bass",
                                                                                         "other"))
    assert sf.info(tmp_path / "f" / "hot" / "vocals.wav").subtype == "FLOAT"
    assert np.max(np.abs(total.T - mix)) < 1e-6


def test_separate_format_flac_and_report_dir(tmp_path):
    path = _write(tmp_path / "song.wav", mixture(0.5, SR) * 0.3)
    result = run(separate_cli, [path, "-o", tmp_path / "s", "--model", "dsp", "--format", "FLAC", "--two-stems",
                                "vocals", "--report-dir", tmp_path / "r", "-q"])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "s" / "song")) == ["no_vocals.flac", "vocals.flac"]
    assert sf.info(tmp_path / "s" / "song" / "vocals.flac").subtype == "PCM_24"
    report = json.loads((tmp_path / "r" / "song.json").read_text())
    assert report["outputs"]["vocals"].endswith("vocals.flac") and report["bit_depth"] == "24"
    result = run(separate_cli, [path, "-o", tmp_path / "t", "--format", "flac", "--bit-depth", "32f"])
    assert result.exit_code == 2 and "--format flac takes --bit-depth 16 or 24" in result.stderr
    assert not (tmp_path / "t").exists()


def test_enhance_help_lists_the_denoisers_and_the_default_here():
    from roomtone.enhance.cli import model_rows
    from roomtone.enhance.denoisers import default_denoiser, registered_denoisers

    rows = model_rows()
    assert [name for name, _ in rows] == registered_denoisers()
    assert [name for name, text in rows if text.endswith("[the default on this install]")] == [default_denoiser()]
    assert all(text.endswith(("installed]", "install]")) for _, text in rows)
    help_lines = run(enhance_cli, ["--help"]).output.splitlines()
    start = help_lines.index("Denoiser models (--model NAME, or auto: the best installed):")
    assert [line.split()[0] for line in help_lines[start + 1:] if line.startswith("  ") and not line.startswith("   ")] \
        == registered_denoisers()
    assert "classic" in " ".join(help_lines[start:]) and "any rate, no JAX" in " ".join(" ".join(help_lines).split())


def test_master_refuses_an_unknown_preset_or_platform_before_reading_anything(tmp_path):
    missing = tmp_path / "missing.wav"  # never read: the name is refused first
    result = run(master_cli, [missing, "-o", tmp_path / "o.wav", "--preset", "nonsense"])
    assert result.exit_code == 2 and "no such file" not in result.output
    line = result.stderr.strip()
    assert line.startswith("error: unknown preset 'nonsense'; known: ") and ", auto (or a path" in line
    result = run(master_cli, [missing, "-o", tmp_path / "o.wav", "--platform", "nowhere"])
    assert result.exit_code == 2 and "unknown platform 'nowhere'" in result.output and "no such file" not in result.output
    result = run(master_cli, [missing, "-o", tmp_path / "o.wav", "--target-lufs", "3"])
    assert result.exit_code == 2 and "-40..-5 LUFS" in result.output
    assert not (tmp_path / "o.wav").exists()


# ------------------------------------------------------------------ progress

class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_in_a_log_is_plain_lines_at_most_every_ten_seconds():
    stream, clock = io.StringIO(), _Clock()
    progress = Progress(stream=stream, tty=False, clock=clock, ticker=False)
    progress("reading")
    progress("denoise")
    for seconds in range(1, 43):  # a 42 s stage without a count: the ticker's heartbeat
        clock.now += 1
        progress.tick()
    progress("separating segment 1 of 40")
    for done in range(2, 41):
        clock.now += 0.5
        progress(f"separating segment {done} of 40")
    progress.end()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[:2] == ["  ... reading", "  ... denoise"]
    assert lines[2:6] == [f"  ... denoise ({s} s so far)" for s in (10, 20, 30, 40)]
    assert lines[6] == "  ... separating segment 1 of 40"
    assert len(lines) == 7 + 1 and lines[7].startswith("  ... separating segment 21 of 40")  # 10 s later


def test_progress_on_a_terminal_is_one_status_line_with_time_and_bar():
    stream, clock = io.StringIO(), _Clock()
    progress = Progress(label="[1/2] take.wav: ", stream=stream, tty=True, clock=clock, ticker=False)
    progress("denoise")
    clock.now += 12
    progress.tick()
    assert stream.getvalue().split("\r")[-1].rstrip() == "  ... [1/2] take.wav: denoise  12 s"
    progress("separating segment 3 of 12")
    assert "[######------------------] 3/12" in stream.getvalue().split("\r")[-1]
    progress.end()
    assert "\n" not in stream.getvalue() and stream.getvalue().endswith("\r")  # cleared, the cursor at the start
    quiet = io.StringIO()
    Progress(True, stream=quiet, tty=True)("denoise")
    assert quiet.getvalue() == ""


def test_progress_ticker_redraws_a_long_stage_and_stops():
    stream = io.StringIO()
    progress = Progress(stream=stream, tty=True)
    progress.TICK_S = 0.01
    progress("denoise")
    import time

    time.sleep(0.1)
    progress.end()
    drawn = stream.getvalue().count("\r")
    assert drawn >= 3  # redrawn while the stage ran
    time.sleep(0.05)
    assert stream.getvalue().count("\r") == drawn  # and not after end()


def test_cli_progress_in_a_log_has_no_carriage_return(tmp_path):
    path = _write(tmp_path / "song.wav", mixture(0.5, SR) * 0.3)
    result = run(separate_cli, [path, "-o", tmp_path / "s", "--model", "dsp"])
    assert result.exit_code == 0 and "\r" not in result.stderr and "  ... reading" in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_on_a_terminal_the_status_line_is_drawn_and_cleared(tmp_path):
    import pty

    path = _write(tmp_path / "song.wav", mixture(0.5, SR) * 0.3)
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "roomtone.separate.cli", str(path), "-o", str(tmp_path / "s"),
                               "--model", "dsp"], stderr=follower, stdout=subprocess.PIPE, text=True, timeout=300)
        os.close(follower)
        follower = None
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower is not None:
            os.close(follower)
        os.close(leader)
    terminal = b"".join(chunks).decode()
    assert done.returncode == 0 and "song.wav -> " in done.stdout
    assert "\r  ... reading" in terminal and "\n" not in terminal.replace("\r\n", "")  # one line, redrawn
    assert terminal.rstrip(" ").endswith("\r")
