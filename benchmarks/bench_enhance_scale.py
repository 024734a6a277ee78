#!/usr/bin/env python
"""How ``enhance`` scales with length: peak memory and wall time of the whole CLI on long interviews.

A speech-plus-noise programme (the 48 kHz clean speech of ``../shared/data/speech/fullband/`` with
pauses, over a real street-and-forest recording of ``speech/more/noise/``, and a faint 50 Hz hum
series so the hum stage has work; synthetic speech from ``tests/refsignals.py`` where the data are
absent) is repeated to each row's length and written as a 16-bit WAV in a temporary folder; then
``enhance IN -o DIR`` (podcast preset) runs once on it as its own process, peak RSS read by
``os.wait4`` (``bench_master.run_measured``: a small launcher starts the child, so about 12 MiB of
launcher is the floor of every reading). Peak RSS is given in MiB, as a multiple of the input's
float32 size (channels x samples x 4 bytes), and, after the process's own constant (the peak of the
same command on a 61 s file: imports, the model at its full segment size, compiled code) is taken
off, as that multiple again: the measure the enhance issue bounds (about 3).

``--stages`` adds a table of each stage's own peak (VmHWM, reset between stages through
``/proc/self/clear_refs``, Linux only), from one more run in a child process.

    python benchmarks/bench_enhance_scale.py                       # 3 and 30 min mono, 60 min stereo
    python benchmarks/bench_enhance_scale.py --rows 3:1 --stages   # one short row, per-stage peaks
    python benchmarks/bench_enhance_scale.py --enhance-cmd "/other/venv/bin/enhance"   # another build
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
from bench_master import Run, find_command, run_measured  # noqa: E402

SPEECH_DIR = HERE.parents[1] / "shared" / "data" / "speech"
SPEECH_FILES = ("fullband/freesound_33711_clean_48k.flac", "fullband/vctk_p286_011_48k.flac")
NOISE_FILE = "more/noise/berlin_potsdam_forest_highway.flac"
SAMPLE_RATE = 48000
CONSTANT_S = 61.0  # the short run that gives the process's own constant (model segments of full size)
WRITE_CHUNK_S = 10.0


def _read(path):
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        from roomtone.resample import resample

        data = resample(data.T, rate, SAMPLE_RATE).T
    return data.mean(axis=1)


def programme():
    """``(speech, noise, source)``: one period of clean speech with pauses and one of noise,
    float32 (samples,) at 48 kHz, and where they came from."""
    paths = [SPEECH_DIR / name for name in SPEECH_FILES]
    pause = np.zeros(int(0.7 * SAMPLE_RATE), np.float32)
    if all(p.exists() for p in paths) and (SPEECH_DIR / NOISE_FILE).exists():
        parts = []
        for p in paths:
            parts += [_read(p), pause]
        speech = np.concatenate(parts)
        speech *= 0.25 / np.abs(speech).max()
        noise = _read(SPEECH_DIR / NOISE_FILE)
        noise *= 0.006 / np.sqrt(np.mean(noise.astype(np.float64) ** 2))
        return speech, noise, f"{', '.join(SPEECH_FILES)} over {NOISE_FILE} ({SPEECH_DIR})"
    from roomtone.testing import band_noise, speech_like

    speech = speech_like(20.0, SAMPLE_RATE, seed=3, level=0.25)[0][0]
    noise = band_noise(37.0, SAMPLE_RATE, 80, 20000, rms=0.006, seed=4)[0]
    return speech, noise, "roomtone.testing speech_like over band noise (speech data not found)"


def write_interview(path, minutes, channels):
    """A ``minutes`` long 16-bit WAV of the programme repeated, ``channels`` channels (the second
    one the same voice 6 dB down and 0.3 ms late, over another stretch of the noise). Returns the
    number of samples per channel."""
    import soundfile as sf

    speech, noise, _ = programme()
    n = int(round(minutes * 60 * SAMPLE_RATE))
    chunk = int(WRITE_CHUNK_S * SAMPLE_RATE)
    hum_rows = [(0.004 / h, 50.0 * h) for h in range(1, 6)]
    with sf.SoundFile(str(path), "w", SAMPLE_RATE, channels, "PCM_16") as out:
        for start in range(0, n, chunk):
            idx = np.arange(start, min(n, start + chunk))
            t = idx / SAMPLE_RATE
            hum = sum(a * np.sin(2 * np.pi * f * t) for a, f in hum_rows)
            frame = np.empty((idx.size, channels), np.float32)
            for c in range(channels):
                delay = 15 * c
                voice = speech[(idx - delay) % speech.size] * (0.5 if c else 1.0)
                frame[:, c] = voice + noise[(idx + c * noise.size // 2) % noise.size] + hum
            out.write(frame)
    return n



def measure_row(enhance, minutes, channels, work, options):
    path = work / f"interview_{minutes:g}min_{channels}ch.wav"
    n = write_interview(path, minutes, channels)
    out_dir = work / "out"
    out_dir.mkdir(exist_ok=True)
    run = Run()
    run_measured([*enhance, path, "-o", out_dir, "-q", *options], work / "enhance.log", run)
    path.unlink()
    for f in out_dir.iterdir():
        f.unlink()
    if not run.ok:
        raise SystemExit(f"enhance failed on {minutes:g} min x {channels} ch: {run.error}")
    return {"minutes": minutes, "channels": channels, "input_mib": n * channels * 4 / 2 ** 20,
            "wall_s": run.wall_s, "rss_mib": run.max_rss_kib / 1024}


# --------------------------------------------------------------------------- per-stage peaks (child)

def _status_kib(key):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _reset_hwm():
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def stages_child(inp, out_dir, options):
    """Run ``enhance_file`` here, printing one JSON line: ``[stage, RSS at its start, its peak RSS]``
    (KiB) for each stage."""
    from roomtone.enhance.api import enhance_file

    peaks = []
    current = ["start", _status_kib("VmRSS")]

    def progress(message):
        peaks.append((*current, _status_kib("VmHWM")))
        _reset_hwm()
        current[:] = [message, _status_kib("VmRSS")]

    kwargs = {"model": options.get("model"), "preset": options.get("preset", "podcast")}
    enhance_file(inp, Path(out_dir) / Path(inp).name, progress=progress, **kwargs)
    peaks.append((*current, _status_kib("VmHWM")))
    print(json.dumps(peaks))


def measure_stages(minutes, channels, work, model, preset):
    import subprocess

    path = work / "stages.wav"
    n = write_interview(path, minutes, channels)
    out_dir = work / "stages_out"
    out_dir.mkdir(exist_ok=True)
    options = json.dumps({"model": model, "preset": preset})
    done = subprocess.run([sys.executable, __file__, "--child-stages", str(path), str(out_dir), options],
                          capture_output=True, text=True)
    path.unlink()
    if done.returncode:
        raise SystemExit(f"per-stage run failed: {done.stderr.strip()[-500:]}")
    return n * channels * 4 / 2 ** 20, json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=["3:1", "30:1", "60:2"], metavar="MINUTES:CHANNELS")
    parser.add_argument("--model", default="roomtone", help="denoiser (default: roomtone, the shipped model)")
    parser.add_argument("--preset", default="podcast")
    parser.add_argument("--enhance-cmd", help="the enhance command (default: beside this Python, else PATH)")
    parser.add_argument("--stages", action="store_true", help="also each stage's own peak, on the first row")
    parser.add_argument("--child-stages", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_stages:
        stages_child(args.child_stages[0], args.child_stages[1], json.loads(args.child_stages[2]))
        return 0
    rows = [(float(r.split(":")[0]), int(r.split(":")[1]) if ":" in r else 1) for r in args.rows]
    enhance = find_command("enhance", args.enhance_cmd)
    if enhance is None:
        raise SystemExit("no enhance command found (install roomtone, or give --enhance-cmd)")
    options = ["--preset", args.preset] + (["--model", args.model] if args.model else [])
    _, _, source = programme()
    with tempfile.TemporaryDirectory(prefix="bench_enhance_scale_") as tmp:
        work = Path(tmp)
        constant = measure_row(enhance, CONSTANT_S / 60, 1, work, options)["rss_mib"]
        results = [measure_row(enhance, minutes, channels, work, options) for minutes, channels in rows]
        print(f"## enhance peak memory against length ({' '.join(enhance)}, --preset {args.preset}"
              f"{' --model ' + args.model if args.model else ''}; 48 kHz 16-bit WAV in, 24-bit WAV out)\n")
        print(f"Programme: {source}. Process constant: {constant:.0f} MiB (the same command on a "
              f"{CONSTANT_S:g} s file).\n")
        print("| minutes | channels | input float32 MiB | wall s | peak RSS MiB | RSS / input | "
              "(RSS - constant) / input |\n|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['minutes']:g} | {r['channels']} | {r['input_mib']:.0f} | {r['wall_s']:.1f} | "
                  f"{r['rss_mib']:.0f} | {r['rss_mib'] / r['input_mib']:.2f} | "
                  f"{(r['rss_mib'] - constant) / r['input_mib']:.2f} |")
        if args.stages:
            minutes, channels = rows[0]
            input_mib, peaks = measure_stages(minutes, channels, work, args.model, args.preset)
            print(f"\n## Each stage's own peak RSS ({minutes:g} min, {channels} channel(s), in process)\n")
            print("| stage | RSS at start MiB | peak RSS MiB | (peak - start) / input |\n|---|---|---|---|")
            for stage, start, peak in peaks:
                print(f"| {stage} | {start / 1024:.0f} | {peak / 1024:.0f} | {(peak - start) / 1024 / input_mib:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
