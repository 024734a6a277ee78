"""The ``master`` and ``meter`` commands: tables and JSON, and every bad input answered with one
line and a non-zero exit, no traceback, the input unchanged and no partial output left."""

import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import roomtone
from refsignals import music_like, silence, sine
from roomtone.cli_meter import main as meter_cli
from roomtone.mastering.cli import main as master_cli
from roomtone.testing import libebur128

SR = 44100


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def song(tmp_path):
    path = tmp_path / "song.wav"
    x = music_like(5.0, SR, seed=2) * 0.3
    sf.write(path, x.T, SR, subtype="PCM_24")
    return path


def run(cli, args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def _only_expected_files(directory, expected):
    assert sorted(os.listdir(directory)) == sorted(expected)


def test_master_writes_output_table_and_report(song, tmp_path):
    out = tmp_path / "song_master.flac"
    report = tmp_path / "r.json"
    before = _digest(song)
    result = run(master_cli, [song, "-o", out, "--preset", "warm", "--platform", "apple", "--report", report])
    assert result.exit_code == 0, result.output
    assert "I (LUFS)" in result.output and "-16.0" in result.output
    data = json.loads(report.read_text())
    assert data["platform"] == "apple" and data["preset"]["name"] == "warm"
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.subtype) == (SR, 2, "PCM_24")
    assert _digest(song) == before
    _only_expected_files(tmp_path, ["song.wav", "song_master.flac", "r.json"])


@pytest.mark.parametrize("bit_depth, subtype", [("16", "PCM_16"), ("24", "PCM_24"), ("32f", "FLOAT")])
def test_bit_depths(song, tmp_path, bit_depth, subtype):
    out = tmp_path / "o.wav"
    result = run(master_cli, [song, "-o", out, "--bit-depth", bit_depth, "-q"])
    assert result.exit_code == 0, result.output
    assert sf.info(out).subtype == subtype


def test_json_output_and_explicit_target(song, tmp_path):
    result = run(master_cli, [song, "-o", tmp_path / "o.wav", "--target-lufs", "-20", "--ceiling-dbtp", "-3",
                              "--json", "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["target"] == {"integrated_lufs": -20.0, "true_peak_dbtp": -3.0, "note": None}
    assert abs(data["after"]["integrated_lufs"] + 20.0) <= 0.05


def test_demo_and_list_presets(tmp_path):
    result = run(master_cli, ["--demo", "-o", tmp_path / "demo_master.wav", "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "demo_master_mix.wav").exists() and (tmp_path / "demo_master.wav").exists()
    listing = run(master_cli, ["--list-presets"])
    assert listing.exit_code == 0
    for name in ("balanced", "warm", "open", "aggressive", "jazz", "spotify", "atsc-a85"):
        assert name in listing.output


def test_help_explains_units():
    text = run(master_cli, ["--help"]).output
    for unit in ("LUFS", "dBTP", "TPDF"):
        assert unit in text
    flat = " ".join(text.split())
    for words in ("--album", "difference (LU)", "--plot PATH", "short-term loudness (LUFS, 3 s)",
                  "PATH/<output name>.png", "roomtone[plot]"):
        assert words in flat, words
    assert "LUFS" in run(meter_cli, ["--help"]).output


def _write(path, audio, sr=SR, subtype="PCM_16"):
    sf.write(path, np.asarray(audio).T, sr, subtype=subtype)
    return path


def bad_inputs(tmp_path):
    cases = {}
    cases["missing"] = (tmp_path / "nope.wav", "no such file")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    cases["empty"] = (empty, "file is empty")
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n" * 10)
    cases["non-audio"] = (text, "not a readable audio file")
    whole = _write(tmp_path / "whole.wav", music_like(2.0, SR))
    data = whole.read_bytes()
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(data[: len(data) // 2])
    cases["truncated"] = (truncated, "truncated")
    nan = np.array(music_like(1.0, SR), dtype=np.float32)
    nan[0, 100] = np.nan
    cases["nan"] = (_write(tmp_path / "nan.wav", nan, subtype="FLOAT"), "NaN or infinite")
    cases["silence"] = (_write(tmp_path / "silence.wav", silence(2.0, SR)), "input is silent")
    cases["short"] = (_write(tmp_path / "short.wav", sine(1000.0, 0.3, SR)), "needs at least 400 ms")
    return cases


CASES = ["missing", "empty", "non-audio", "truncated", "nan", "silence", "short"]


@pytest.mark.parametrize("case", CASES)
def test_master_bad_input_one_line_error_nothing_written(tmp_path, case):
    path, message = bad_inputs(tmp_path)[case]
    before = sorted(os.listdir(tmp_path))
    digest = _digest(path) if path.exists() else None
    result = run(master_cli, [path, "-o", tmp_path / "out.wav", "-q"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert "Traceback" not in result.output
    assert sorted(os.listdir(tmp_path)) == before  # no output, no temporary file
    if digest:
        assert _digest(path) == digest


@pytest.mark.parametrize("args, code, message", [
    (["--preset", "loud"], 2, "unknown preset 'loud'"),
    (["--platform", "myspace"], 2, "unknown platform 'myspace'"),
    (["--target-lufs", "-6", "--preset", "classical"], 3, "LU of limiting"),
    (["--target-lufs", "3"], 2, "outside -40..-5 LUFS"),
    (["--ceiling-dbtp", "1"], 2, "outside -12..0 dBTP"),
])
def test_master_bad_options(song, tmp_path, args, code, message):
    result = run(master_cli, [song, "-o", tmp_path / "o.wav", "-q", *args])
    assert result.exit_code == code, result.output
    assert result.output.startswith("error: ") and message in result.output
    assert not (tmp_path / "o.wav").exists()


def test_bad_preset_file_names_file_and_key(song, tmp_path):
    preset = tmp_path / "mine.toml"
    preset.write_text(open(os.path.join(os.path.dirname(__file__), "..", "presets", "styles", "warm.toml")).read()
                      .replace("knee_db = 8.0", "knee_db = 80.0"))
    result = run(master_cli, [song, "-o", tmp_path / "o.wav", "--preset", preset, "-q"])
    assert result.exit_code == 2
    assert "mine.toml" in result.output and "knee_db" in result.output


def test_output_equal_to_input_is_refused_unless_asked(song, tmp_path):
    digest = _digest(song)
    result = run(master_cli, [song, "-o", song, "-q"])
    assert result.exit_code == 4 and "output is the input" in result.output
    assert _digest(song) == digest
    result = run(master_cli, [song, "-o", song, "--overwrite-input", "-q"])
    assert result.exit_code == 0 and _digest(song) != digest


def test_unwritable_or_missing_directory(song, tmp_path, monkeypatch):
    result = run(master_cli, [song, "-o", tmp_path / "no" / "such" / "dir.wav", "-q"])
    assert result.exit_code == 0 and (tmp_path / "no" / "such" / "dir.wav").is_file()  # folders are created
    locked = tmp_path / "locked"
    locked.mkdir()
    # CI runs as root, which ignores permission bits: make the access check itself say no.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(locked) else real_access(path, mode))
    result = run(master_cli, [song, "-o", locked / "o.wav", "-q"])
    assert result.exit_code == 4 and "not writable" in result.output
    assert os.listdir(locked) == []


def test_unsupported_extension_or_bit_depth_is_a_bad_option(song, tmp_path):
    result = run(master_cli, [song, "-o", tmp_path / "o.xyz", "-q"])
    assert result.exit_code == 2 and "unsupported output extension" in result.output
    result = run(master_cli, [song, "-o", tmp_path / "o.flac", "--bit-depth", "32f", "-q"])
    assert result.exit_code == 2 and "not available for .flac" in result.output
    _only_expected_files(tmp_path, ["song.wav"])


def test_failed_write_leaves_no_partial_file(song, tmp_path, monkeypatch):
    """A crash in the middle of writing leaves neither the output nor the temporary file."""
    import roomtone.audio

    def broken_write(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(roomtone.audio.sf.SoundFile, "write", broken_write)
    result = run(master_cli, [song, "-o", tmp_path / "o.wav", "-q"])
    assert result.exit_code == 4 and "disk full" in result.output
    _only_expected_files(tmp_path, ["song.wav"])


def test_meter_table_and_json(song, tmp_path):
    result = run(meter_cli, [song])
    assert result.exit_code == 0
    for label in ("I (LUFS)", "LRA (LU)", "max M", "max S", "TP (dBTP)", "SP (dBFS)", "PLR (LU)"):
        assert label in result.output
    result = run(meter_cli, ["--json", song, song])
    rows = [json.loads(line) for line in result.output.strip().splitlines()]
    assert len(rows) == 2
    assert set(rows[0]) == {"path", "integrated_lufs", "lra_lu", "max_momentary_lufs", "max_short_term_lufs",
                            "true_peak_dbtp", "sample_peak_dbfs", "plr_lu", "sample_rate", "channels", "duration_s",
                            "short_term_spread_lu"}


def test_meter_silence_reads_null_and_bad_files_fail_with_one_line_each(tmp_path):
    quiet = _write(tmp_path / "quiet.wav", silence(1.0, SR))
    result = run(meter_cli, ["--json", quiet])
    assert result.exit_code == 0
    reading = json.loads(result.output)
    assert reading["integrated_lufs"] is None and reading["lra_lu"] is None  # undefined, not 0 LU
    cases = bad_inputs(tmp_path)
    paths = [cases[c][0] for c in ("missing", "empty", "non-audio", "truncated")]
    result = run(meter_cli, [*paths, quiet])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 4


def test_meter_json_gives_an_object_for_every_file_even_unreadable_ones(tmp_path):
    quiet = _write(tmp_path / "quiet.wav", silence(1.0, SR))
    missing = tmp_path / "missing.wav"
    result = CliRunner().invoke(meter_cli, ["--json", str(missing), str(quiet)])  # stdout and stderr apart
    assert result.exit_code == 2
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["path"] for row in rows] == [str(missing), str(quiet)]
    assert "no such file" in rows[0]["error"] and "error" not in rows[1]


def test_console_scripts_run_without_traceback(tmp_path):
    """The installed entry points, end to end in a fresh process."""
    bindir = os.path.dirname(sys.executable)
    result = subprocess.run([os.path.join(bindir, "master"), str(tmp_path / "missing.wav"), "-o",
                             str(tmp_path / "o.wav")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'missing.wav'}: no such file"


def test_report_path_is_checked_before_any_work(song, tmp_path):
    digest = _digest(song)
    result = run(master_cli, [song, "-o", tmp_path / "o.wav", "--report", song, "-q"])
    assert result.exit_code == 4 and "output is the input" in result.output
    assert _digest(song) == digest
    result = run(master_cli, [song, "-o", tmp_path / "o.wav", "--report", tmp_path / "o.wav", "-q"])
    assert result.exit_code == 4 and "report path is the output path" in result.output
    _only_expected_files(tmp_path, ["song.wav"])


def test_demo_with_a_bad_format_writes_nothing(tmp_path):
    result = run(master_cli, ["--demo", "-o", tmp_path / "x.flac", "--bit-depth", "32f", "-q"])
    assert result.exit_code == 2 and "not available for .flac" in result.output
    assert os.listdir(tmp_path) == []


def test_outputs_follow_the_umask(song, tmp_path):
    old = os.umask(0o022)
    try:
        result = run(master_cli, [song, "-o", tmp_path / "o.wav", "--report", tmp_path / "r.json", "-q"])
    finally:
        os.umask(old)
    assert result.exit_code == 0
    assert (tmp_path / "o.wav").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644


def test_unreadable_file_is_a_one_line_error(tmp_path, monkeypatch):
    path = _write(tmp_path / "locked.wav", music_like(1.0, SR))
    real = os.path.getsize

    def denied(p):
        if str(p) == str(path):
            raise PermissionError(13, "Permission denied")
        return real(p)

    monkeypatch.setattr(os.path, "getsize", denied)
    result = run(meter_cli, [path])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {path}: cannot read (Permission denied)"


def test_meter_table_says_n_a_for_undefined_plr(tmp_path):
    quiet = _write(tmp_path / "quiet.wav", silence(1.0, SR))
    lines = run(meter_cli, [quiet]).output.splitlines()
    assert any("PLR" in line and line.strip().endswith("n/a") for line in lines)
    assert any(line.strip().startswith("I (LUFS)") and line.strip().endswith("-inf") for line in lines)


def test_closed_stdout_is_not_an_internal_error():
    """``master --list-presets | true``: the reader is gone before the first write (EPIPE); no
    traceback, no 'internal error' line, exit status 141 like other Unix tools."""
    bindir = os.path.dirname(sys.executable)
    result = subprocess.run(f"'{os.path.join(bindir, 'master')}' --list-presets | true; echo $((PIPESTATUS[0]))",
                            shell=True, executable="/bin/bash", capture_output=True, text=True)
    assert result.stderr == ""
    assert result.stdout.strip() == "141"


def test_console_scripts_master_and_meter_a_file_in_a_fresh_process(song, tmp_path):
    """The installed scripts, each in a new process (numba's first kernel load happens inside): a
    master that hits its target and a meter that reads it."""
    bindir = os.path.dirname(sys.executable)
    out = tmp_path / "o.wav"
    done = subprocess.run([os.path.join(bindir, "master"), str(song), "-o", str(out), "-q", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert abs(json.loads(done.stdout)["after"]["integrated_lufs"] + 14.0) <= 0.05
    read = subprocess.run([os.path.join(bindir, "meter"), "--json", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert read.returncode == 0, read.stderr
    assert abs(json.loads(read.stdout)["integrated_lufs"] + 14.0) <= 0.05


@pytest.mark.parametrize("options", [["--preset", "auto"], ["--preset", "auto", "--fit-target"], ["--fit-target"]])
def test_jax_jobs_in_a_fresh_process(song, tmp_path, options):
    """The assistant and the fit in a new process, where JAX is imported by a background thread
    while the job runs: the job's own first JAX call waits for that import (one in the job's
    thread at the same time met half-initialised modules: ``cannot import name 'iinfo' from
    partially initialized module 'jax._src.dtypes'``, exit 70)."""
    master = os.path.join(os.path.dirname(sys.executable), "master")
    done = subprocess.run([master, str(song), "-o", str(tmp_path / "o.wav"), "-q", "--json", *options],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert abs(report["after"]["integrated_lufs"] + 14.0) <= 0.05
    assert ("assistant" in report) == ("auto" in options) and ("fit" in report) == ("--fit-target" in options)


def test_many_files_into_a_folder_one_bad_file_reported_rest_go_on(tmp_path):
    sources = tmp_path / "in"
    sources.mkdir()
    a = _write(sources / "a.wav", music_like(3.0, SR, seed=3) * 0.2, subtype="PCM_24")
    b = _write(sources / "b.flac", music_like(3.0, SR, seed=4) * 0.2, subtype="PCM_24")
    bad = sources / "c.wav"
    bad.write_text("not audio\n")
    c = _write(sources / "d.ogg", music_like(3.0, SR, seed=5) * 0.2, subtype="VORBIS")
    out = tmp_path / "out" / "masters"  # created
    result = CliRunner().invoke(master_cli, [str(a), str(b), str(bad), str(c), "-o", str(out), "-q", "--json",
                                             "--report-dir", str(tmp_path / "reports")])
    assert result.exit_code == 2, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [os.path.basename(r["input"]) for r in rows] == ["a.wav", "b.flac", "c.wav", "d.ogg"]
    assert "error" in rows[2] and "not a readable audio file" in rows[2]["error"]
    # outputs keep WAV/FLAC, anything else becomes WAV
    assert sorted(os.listdir(out)) == ["a.wav", "b.flac", "d.wav"]
    assert sorted(os.listdir(tmp_path / "reports")) == ["a.json", "b.json", "d.json"]
    for row in (rows[0], rows[1], rows[3]):
        assert abs(libebur128(sf.read(row["output"], always_2d=True)[0].T, SR)[0] + 14.0) <= 0.1
    assert result.stderr.count("error: ") == 1


def test_many_files_summary_table_and_format(tmp_path):
    files = [_write(tmp_path / f"t{i}.wav", music_like(3.0, SR, seed=i) * 0.2, subtype="PCM_24") for i in range(2)]
    result = run(master_cli, [*files, "-o", tmp_path / "out", "--format", "FLAC"])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "out")) == ["t0.flac", "t1.flac"]
    assert "2 of 2 mastered" in result.output and "t0.wav" in result.output


def test_many_files_refuse_clashing_names_and_a_single_report_before_any_work(tmp_path):
    a = _write(tmp_path / "x.wav", music_like(1.0, SR))
    b = _write(tmp_path / "x.flac", music_like(1.0, SR), subtype="PCM_16")
    result = run(master_cli, [a, b, "-o", tmp_path / "out", "--format", "wav", "-q"])
    assert result.exit_code == 2 and "would both be written" in result.output
    result = run(master_cli, [a, b, "-o", tmp_path / "out2", "--report", tmp_path / "r.json", "-q"])
    assert result.exit_code == 2 and "--report-dir" in result.output
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_version_and_names_in_any_case(song, tmp_path):
    result = run(master_cli, ["--version"])
    assert result.exit_code == 0 and roomtone.__version__ in result.output
    result = run(master_cli, [song, "-o", tmp_path / "o.wav", "--preset", "Warm", "--platform", "APPLE", "--json", "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["preset"]["name"] == "warm" and report["platform"] == "apple"
    assert report["target"]["integrated_lufs"] == -16.0


def test_an_edited_preset_reports_its_own_name_and_path(song, tmp_path):
    warm = os.path.join(os.path.dirname(__file__), "..", "presets", "styles", "warm.toml")
    mine = tmp_path / "mine.toml"
    mine.write_text(open(warm).read().replace("knee_db = 8.0", "knee_db = 7.0"))
    result = run(master_cli, [song, "-o", tmp_path / "o.wav", "--preset", mine, "--json", "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["preset"]["name"] == "mine" and report["preset"]["source"] == str(mine)


def test_mono_podcast_says_why_it_aims_at_minus_19(tmp_path):
    mono = _write(tmp_path / "voice.wav", music_like(4.0, SR, channels=1) * 0.2, subtype="PCM_24")
    result = run(master_cli, [mono, "-o", tmp_path / "o.wav", "--platform", "podcast"])
    assert result.exit_code == 0, result.output
    assert "-19 LUFS" in result.output and "mono" in result.output


_SIGINT_SCRIPT = r"""
import os, signal, sys, threading, time
from roomtone.mastering.cli import main
delay = float(sys.argv[1])
timer = threading.Timer(delay, lambda: os.kill(os.getpid(), signal.SIGINT))
timer.daemon = True
timer.start()
try:
    main.main(sys.argv[2:])
except SystemExit as exc:
    sys.exit(exc.code)
"""


def test_ctrl_c_at_any_moment_is_interrupted_130_and_leaves_nothing(tmp_path):
    """A real SIGINT at moments spread over a job (decoding, chain, search, writing): always
    ``interrupted`` with exit 130, no traceback, no internal error, and nothing in the output folder
    (no output, no hidden temporary file)."""
    source = _write(tmp_path / "long.wav", music_like(60.0, SR, seed=9) * 0.3, subtype="PCM_24")
    # how long a whole job takes here, to spread the interrupts over it
    out_dir = tmp_path / "out"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _SIGINT_SCRIPT, "1000", str(source), "-o", str(out_dir / "o.wav"), "-q"],
                          capture_output=True, text=True, timeout=300)
    total = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    (out_dir / "o.wav").unlink()
    for fraction in (0.05, 0.2, 0.35, 0.5, 0.6, 0.7, 0.8, 0.9):
        result = subprocess.run([sys.executable, "-c", _SIGINT_SCRIPT, str(total * fraction), str(source),
                                 "-o", str(out_dir / "o.wav"), "-q"], capture_output=True, text=True, timeout=300)
        if result.returncode == 0:  # the job finished before the signal: a whole, valid output
            assert sf.info(str(out_dir / "o.wav")).frames == sf.info(str(source)).frames
            (out_dir / "o.wav").unlink()
            continue
        assert result.returncode == 130, (fraction, result.stderr)
        assert result.stderr.strip().splitlines() == ["error: interrupted; no partial output was written"]
        assert os.listdir(out_dir) == [], (fraction, os.listdir(out_dir))


@pytest.mark.parametrize("ext", ["mp3", "ogg", "opus"])
def test_lossy_output_hits_the_target_as_decoded(song, tmp_path, ext):
    out = tmp_path / f"o.{ext}"
    result = run(master_cli, [song, "-o", out, "--json", "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    decoded, rate = sf.read(str(out), always_2d=True)
    integrated, peak = libebur128(decoded.T, rate)
    assert abs(integrated + 14.0) <= 0.1 and peak <= -1.0
    assert report["after_encoding"]["attempts"] >= 1
    _only_expected_files(tmp_path, ["song.wav", f"o.{ext}"])


def test_sample_rate_option_resamples_and_bad_rates_are_bad_options(song, tmp_path):
    result = run(master_cli, [song, "-o", tmp_path / "o.wav", "--sample-rate", "96000", "-q"])
    assert result.exit_code == 0, result.output
    audio, rate = sf.read(str(tmp_path / "o.wav"), always_2d=True)
    assert rate == 96000
    integrated, peak = libebur128(audio.T, rate)
    assert abs(integrated + 14.0) <= 0.1 and peak <= -1.0
    result = run(master_cli, [song, "-o", tmp_path / "p.wav", "--sample-rate", "32000", "-q"])
    assert result.exit_code == 2 and "44100, 48000, 88200, 96000" in result.output
    assert not (tmp_path / "p.wav").exists()


def test_first_run_says_once_that_it_compiles_the_kernels(song, tmp_path):
    """With an empty numba cache the command says it is compiling (a first run is silent for
    seconds otherwise); the next run, with the cache filled, does not say it again."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    master = os.path.join(os.path.dirname(sys.executable), "master")
    first = subprocess.run([master, str(song), "-o", str(tmp_path / "a.wav")], env=env, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("compiling the audio kernels") == 1
    second = subprocess.run([master, str(song), "-o", str(tmp_path / "b.wav")], env=env, capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "compiling" not in second.stderr


# ---------------------------------------------------------------- --album and --plot

def _album_files(folder, levels=(-12.0, -19.0, -24.0), seconds=4.0):
    from roomtone import meter

    folder.mkdir(exist_ok=True)
    paths = []
    for index, lufs in enumerate(levels):
        x = music_like(seconds, SR, seed=30 + index)
        x = (x * 10 ** ((lufs - meter.integrated_loudness(x, SR)) / 20)).astype(np.float32)
        paths.append(_write(folder / f"{index + 1:02d}.wav", x, subtype="FLOAT"))
    return paths


def test_album_table_reports_and_one_bad_track(tmp_path):
    """--album: tracks of one character on the target whatever their mix levels (independent
    meter); a bad file is reported and the rest go on (exit status of the failure); a report per
    track and album.json; the table gives each track's place."""
    a, b, c = _album_files(tmp_path / "in")
    bad = tmp_path / "in" / "bad.wav"
    bad.write_text("not audio\n")
    out, reports = tmp_path / "album", tmp_path / "reports"
    result = run(master_cli, [a, bad, b, c, "-o", out, "--album", "--report-dir", reports])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("error: ") == 1 and "bad.wav: not a readable audio file" in result.stderr
    for text in ("album: 4 tracks, placed by their loud passages: the densest (", "on -14.0 LUFS (spotify)", "place LU",
                 "failed: ", "album as one programme:", "shared chain: balanced, each track trimmed to its place",
                 "note: the inputs' loudness spreads 12.0 LU (mix levels, not music)", "3 of 4 mastered"):
        assert text in result.stdout, (text, result.stdout)
    assert sorted(os.listdir(out)) == ["01.wav", "02.wav", "03.wav"]
    assert sorted(os.listdir(reports)) == ["01.json", "02.json", "03.json", "album.json"]
    ins = [libebur128(sf.read(p, always_2d=True)[0].T, SR)[0] for p in (a, b, c)]
    outs = [libebur128(sf.read(out / p.name, always_2d=True)[0].T, SR) for p in (a, b, c)]
    assert max(ins) - min(ins) > 11.0
    summary = json.loads((reports / "album.json").read_text())
    for (lufs, peak), row in zip(outs, [r for r in summary["rows"] if r["error"] is None]):
        assert abs(lufs - (-14.0 + row["placed_offset_lu"])) <= 0.1 and row["placed_offset_lu"] >= -4.0
    assert all(peak <= -1.0 for _, peak in outs)
    assert [row["error"] is None for row in summary["rows"]] == [True, False, True, True]
    track = json.loads((reports / "02.json").read_text())
    assert track["album"]["input_lufs"] == pytest.approx(-19.0, abs=0.01)
    assert track["preset"] == json.loads((reports / "01.json").read_text())["preset"] == summary["preset"]


def test_album_json_lines_end_with_the_album(tmp_path):
    files = _album_files(tmp_path / "in", levels=(-15.0, -20.0), seconds=3.0)
    result = run(master_cli, [*files, "-o", tmp_path / "out", "--album", "--json", "-q", "--platform", "apple"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [os.path.basename(line["input"]) for line in lines[:2]] == ["01.wav", "02.wav"]
    assert lines[1]["album"]["placed_lufs"] == pytest.approx(-16.0 + lines[1]["album"]["placed_offset_lu"], abs=0.01)
    assert lines[1]["album"]["placed_offset_lu"] >= -4.0
    album = lines[2]["album"]
    assert album["target"]["integrated_lufs"] == -16.0 and album["relations_kept"] and album["mastered"] == 2


def test_album_of_one_file_is_a_normal_master(song, tmp_path):
    result = run(master_cli, [song, "-o", tmp_path / "album.wav", "--album"])
    assert result.exit_code == 0, result.output
    assert "album: 1 track," in result.output
    assert run(master_cli, [song, "-o", tmp_path / "plain.wav", "-q"]).exit_code == 0
    assert np.array_equal(sf.read(tmp_path / "album.wav")[0], sf.read(tmp_path / "plain.wav")[0])


def test_album_report_dir_refuses_an_output_named_album(tmp_path):
    files = _album_files(tmp_path / "in", levels=(-15.0,), seconds=1.0)
    named = tmp_path / "in" / "album.wav"
    os.rename(files[0], named)
    result = run(master_cli, [named, files[0].with_name("x.wav"), "-o", tmp_path / "out", "--album",
                              "--report-dir", tmp_path / "r"])
    assert result.exit_code == 2 and "album.json" in result.output


def _png_size(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_one_file_and_a_folder_of_plots_for_many(song, tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs the optional extra roomtone[plot] (matplotlib)")
    result = run(master_cli, [song, "-o", tmp_path / "o.wav", "--plot", tmp_path / "o.png"])
    assert result.exit_code == 0, result.output
    assert f"plot: {tmp_path / 'o.png'}" in result.output and _png_size(tmp_path / "o.png") == (1000, 750)
    files = _album_files(tmp_path / "in", levels=(-15.0, -20.0), seconds=3.0)
    result = run(master_cli, [*files, "-o", tmp_path / "out", "--album", "--plot", tmp_path / "plots", "-q"])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "plots")) == ["01.png", "02.png"]
    result = run(master_cli, [*files, "-o", tmp_path / "out2", "--plot", tmp_path / "p.png", "-q"])
    assert result.exit_code == 2 and "--plot names a folder" in result.output
    result = run(master_cli, [song, "-o", tmp_path / "o2.wav", "--plot", tmp_path / "o2.jpg", "-q"])
    assert result.exit_code == 2 and "name it .png" in result.output
    assert not (tmp_path / "out2").exists() or not os.listdir(tmp_path / "out2")


def test_plot_without_matplotlib_is_one_line_naming_the_extra(song, tmp_path, no_matplotlib):
    result = run(master_cli, [song, "-o", tmp_path / "o.wav", "--plot", tmp_path / "o.png"])
    assert result.exit_code == 2
    assert result.output == "error: --plot needs matplotlib, which is not installed: pip install 'roomtone[plot]'\n"
    _only_expected_files(tmp_path, ["song.wav"])


def test_album_of_lossy_files_reports_them_as_decoded(tmp_path):
    files = _album_files(tmp_path / "in", levels=(-13.0, -21.0), seconds=3.0)
    result = run(master_cli, [*files, "-o", tmp_path / "out", "--album", "--format", "ogg", "--json", "-q"])
    assert result.exit_code == 0, result.output
    *tracks, last = [json.loads(line) for line in result.stdout.splitlines()]
    for track, row in zip(tracks, last["album"]["rows"]):
        assert row["output_lufs"] == track["after_encoding"]["integrated_lufs"]
        assert track["album"]["output_lufs"] == pytest.approx(row["output_lufs"], abs=1e-3)
        assert row["true_peak_dbtp"] == track["after_encoding"]["true_peak_dbtp"] <= -1.0
    decoded = [libebur128(sf.read(tmp_path / "out" / f"{i:02d}.ogg", always_2d=True)[0].T, SR)[0] for i in (1, 2)]
    placed = [row["placed_offset_lu"] for row in last["album"]["rows"]]
    assert abs((decoded[1] - decoded[0]) - (placed[1] - placed[0])) <= 0.1
