#!/usr/bin/env python
"""Mastering benchmark: roomtone's ``master`` CLI against its peers, on the same clips, in one run.

Every tool masters every clip to one target (default Spotify: -14 LUFS integrated, -1 dBTP), each
in its own child process so that whole-process wall time and peak RSS are measured the same way for
everyone (``os.wait4``). The outputs are then metered here by independent meters:

- integrated loudness and true peak: libebur128 (PyPI ``pyebur128``);
- true peak 16x: a long linear-phase FIR interpolator (``scipy.signal.resample_poly`` with a
  Kaiser-windowed sinc of +-32 input samples, beta 12), max |.| over channels;
- LRA: ``roomtone.meter.measure`` (EBU Tech 3342, short-term at 10 Hz), pyloudnorm if that fails;
- PLR: true peak (libebur128) minus integrated loudness (libebur128).

Tools (rows):

- ``roomtone <preset>``: ``master IN -o OUT --platform spotify --preset balanced --bit-depth 24``
  (explicit ``--target-lufs/--ceiling-dbtp`` when the target is not Spotify's);
- ``ffmpeg loudnorm``: the documented two-pass use, second pass ``linear=true`` with the first pass'
  measurements, 24-bit WAV resampled back to the input rate (loudnorm works at 192 kHz inside);
- ``pedalboard``: one static gain to the target (libebur128 integrated loudness of the input), then
  ``BrickwallLimiter(ceiling_db=ceiling, true_peak=True)``;
- ``matchering``: Matchering 2 with its defaults and a reference track (it has no loudness target:
  its loudness follows the reference's). The reference is ``maddirtmonkey_electronic`` (the loudest,
  most "commercial" clip we have) and ``fishin`` for maddirtmonkey itself.

Also a meter-speed table: roomtone's true peak and integrated loudness against libebur128 and
pyloudnorm on the longest clip (``long_3min``).

Run ``python benchmarks/bench_master.py --help``; see ``benchmarks/README.md``.
Heavy imports are lazy so that the helper mode (``--peer TOOL IN OUT``) starts like a small script.
"""

import argparse
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
MUSIC_DIR = HERE.parents[2] / "shared" / "data" / "music"
AUDIO_SUFFIXES = (".ogg", ".flac")
LONG_CLIP = "long_3min"
MATCHERING_REFERENCE = MUSIC_DIR / "maddirtmonkey_electronic.flac"
MATCHERING_ALT_REFERENCE = MUSIC_DIR / "fishin.ogg"
KNOWN_TOOLS = ("roomtone", "ffmpeg-loudnorm", "pedalboard", "pedalboard-sp", "pedalboard-chain", "matchering")

# "Hits the target" (DESIGN.md): |I - target| <= 0.1 LU and true peak <= ceiling, on every output.
LOUDNESS_TOLERANCE_LU = 0.1
EPS = 1e-9

# ---------------------------------------------------------------------------------------------
# Helper mode: the Python peers, each run as its own process.
# ---------------------------------------------------------------------------------------------


def ebur128_integrated(frames, sample_rate):
    """Integrated loudness (LUFS) of ``frames`` (samples, channels) by libebur128."""
    from roomtone.testing import libebur128

    return libebur128(frames.T, sample_rate)[0]


def peer_pedalboard(inp, out, target_lufs, ceiling_dbtp, true_peak=True):
    """Static gain to the target, then pedalboard's BrickwallLimiter at the ceiling."""
    import numpy as np
    import soundfile as sf
    from pedalboard import BrickwallLimiter, Gain, Pedalboard

    frames, sr = sf.read(inp, dtype="float32", always_2d=True)  # (samples, channels)
    gain_db = target_lufs - ebur128_integrated(frames, sr)
    board = Pedalboard([
        Gain(gain_db=gain_db),
        BrickwallLimiter(ceiling_db=ceiling_dbtp, true_peak=true_peak),
    ])
    # pedalboard takes (channels, samples); with 2 x N it cannot mistake the layout.
    processed = board(np.ascontiguousarray(frames.T), sr)
    sf.write(out, processed.T, sr, subtype="PCM_24")
    print(json.dumps({"gain_db": gain_db, "in_samples": frames.shape[0],
                      "out_samples": int(processed.shape[1])}))


def peer_pedalboard_chain(inp, out, target_lufs, ceiling_dbtp):
    """A pedalboard chain doing the work roomtone's balanced preset does, as far as pedalboard can:
    low and high shelves (+0.5 dB at 100 Hz / 10 kHz), a single-band compressor (pedalboard has no
    multiband; -20 dB threshold, 1.5:1, 25 ms / 180 ms), soft clipping is left out (pedalboard's
    Distortion has no mix), then loudness measured on the chain's output, one static gain and the
    true-peak BrickwallLimiter. The speed comparison the issue asks for ("faster than the pedalboard
    chain") is against this row; the plain "pedalboard" row is gain + limiter only."""
    import numpy as np
    import soundfile as sf
    from pedalboard import BrickwallLimiter, Compressor, Gain, HighShelfFilter, LowShelfFilter, Pedalboard

    frames, sr = sf.read(inp, dtype="float32", always_2d=True)
    audio = np.ascontiguousarray(frames.T)
    chain = Pedalboard([
        LowShelfFilter(cutoff_frequency_hz=100.0, gain_db=0.5),
        HighShelfFilter(cutoff_frequency_hz=10000.0, gain_db=0.5),
        Compressor(threshold_db=-20.0, ratio=1.5, attack_ms=25.0, release_ms=180.0),
    ])
    shaped = chain(audio, sr)
    gain_db = target_lufs - ebur128_integrated(shaped.T, sr)
    final = Pedalboard([Gain(gain_db=gain_db), BrickwallLimiter(ceiling_db=ceiling_dbtp, true_peak=True)])
    processed = final(shaped, sr)
    sf.write(out, processed.T, sr, subtype="PCM_24")
    print(json.dumps({"gain_db": gain_db}))


def peer_matchering(inp, out, reference):
    """Matchering 2 with its default configuration, 24-bit WAV out."""
    import matchering as mg

    mg.process(target=str(inp), reference=str(reference), results=[mg.pcm24(str(out))])


def run_peer(args):
    tool, inp, out = args.peer
    if tool == "pedalboard":
        peer_pedalboard(inp, out, args.target_lufs, args.ceiling_dbtp, true_peak=True)
    elif tool == "pedalboard-sp":
        peer_pedalboard(inp, out, args.target_lufs, args.ceiling_dbtp, true_peak=False)
    elif tool == "pedalboard-chain":
        peer_pedalboard_chain(inp, out, args.target_lufs, args.ceiling_dbtp)
    elif tool == "matchering":
        if not args.reference:
            raise SystemExit("--peer matchering needs --reference")
        peer_matchering(inp, out, args.reference)
    else:
        raise SystemExit(f"unknown peer {tool!r}; expected pedalboard, pedalboard-sp, pedalboard-chain or matchering")


# ---------------------------------------------------------------------------------------------
# Running a tool: whole-process wall time and peak RSS of each child.
# ---------------------------------------------------------------------------------------------


class Run:
    """What one tool invocation cost: summed over its processes (ffmpeg has two)."""

    def __init__(self):
        self.wall_s = 0.0
        self.cpu_s = 0.0
        self.max_rss_kib = 0
        self.ok = True
        self.error = None
        self.note = None
        self.logs = []
        self.processes = 0
        self.report = None


# The child is started by a fresh, small Python process, not by this one: on Linux a child's
# ru_maxrss starts at the high-water RSS of the process it was (v)forked from (exec keeps the
# maximum), so a child spawned from this process, which holds decoded audio and FIR buffers,
# would report this process' peak. The launcher's own ~10 MiB is then the floor of every reading.
LAUNCHER = r"""
import json, os, subprocess, sys, time
log_path, cmd = sys.argv[1], sys.argv[2:]
with open(log_path, "wb") as log:
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except OSError as exc:
        print(json.dumps({"error": "cannot start %s: %s" % (cmd[0], exc)}))
        sys.exit(0)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
proc.returncode = os.waitstatus_to_exitcode(status)
print(json.dumps({"returncode": proc.returncode, "wall_s": wall, "max_rss_kib": usage.ru_maxrss,
                  "cpu_s": usage.ru_utime + usage.ru_stime}))
"""


def run_measured(cmd, log_path, run):
    """Run ``cmd`` with stdout+stderr to ``log_path``; add its wall time, CPU time and peak RSS
    (``ru_maxrss`` from ``os.wait4``, KiB on Linux) to ``run``. Returns the log text."""
    launched = subprocess.run([sys.executable, "-c", LAUNCHER, str(log_path), *map(str, cmd)],
                              capture_output=True, text=True)
    try:
        usage = json.loads(launched.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        run.ok = False
        run.error = f"launcher failed: {launched.stderr.strip()[-300:]}"
        return ""
    if "error" in usage:
        run.ok = False
        run.error = usage["error"]
        return ""
    run.processes += 1
    run.wall_s += usage["wall_s"]
    run.cpu_s += usage["cpu_s"]
    run.max_rss_kib = max(run.max_rss_kib, usage["max_rss_kib"])
    run.logs.append(str(log_path))
    text = Path(log_path).read_text(errors="replace")
    if usage["returncode"] != 0:
        run.ok = False
        tail = [line.strip() for line in text.strip().splitlines() if line.strip()]
        run.error = f"exit {usage['returncode']}: " + (tail[-1] if tail else "(no output)")
    return text


def find_command(name, override=None):
    """A roomtone console script (``master``, ``enhance``, ...): ``override`` (a command line),
    else the script beside this Python, else on PATH; None when there is none."""
    if override:
        return override.split()
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return [str(beside)]
    found = shutil.which(name)
    return [found] if found else None


def find_master_command(override):
    """The roomtone ``master`` console script: --master-cmd, else beside this Python, else PATH."""
    return find_command("master", override)


def last_json_object(text):
    matches = re.findall(r"\{[^{}]*\}", text)
    if not matches:
        raise ValueError("no JSON object in the output")
    return json.loads(matches[-1])


class Tool:
    """A row of the tables: a name and a way to turn (input, output, workdir) into a Run."""

    def __init__(self, name, fn):
        self.name = name
        self.fn = fn

    def __call__(self, inp, out, work):
        run = Run()
        try:
            self.fn(inp, out, work, run)
        except Exception as exc:  # a peer failing must not stop the benchmark
            run.ok = False
            run.error = f"{type(exc).__name__}: {exc}"
        if run.ok and not Path(out).exists():
            run.ok = False
            run.error = "exited 0 but wrote no output file"
        return run


def make_tools(args):
    tools = []
    target, ceiling = args.target_lufs, args.ceiling_dbtp
    helper = [sys.executable, str(HERE)]
    target_opts = ["--target-lufs", str(target), "--ceiling-dbtp", str(ceiling)]

    master_cmd = find_master_command(args.master_cmd)
    spotify = abs(target - -14.0) < EPS and abs(ceiling - -1.0) < EPS
    for spec in args.roomtone_preset:
        preset, *extra = spec.split()  # "balanced --fit-target": a preset and options of its row

        def roomtone(inp, out, work, run, preset=preset, extra=tuple(extra)):
            if master_cmd is None:
                run.ok = False
                run.error = "roomtone `master` CLI not found (not installed yet?)"
                return
            where = ["--platform", "spotify"] if spotify else list(target_opts)
            report = Path(work) / f"roomtone-{preset}-report.json"
            cmd = master_cmd + [str(inp), "-o", str(out), "--preset", preset, *extra, *where,
                                "--bit-depth", "24", "--report", str(report)]
            run_measured(cmd, Path(work) / f"roomtone-{preset}.log", run)
            if run.ok and report.exists():
                try:
                    run.report = json.loads(report.read_text())
                except ValueError:
                    pass
        tools.append(Tool(f"roomtone {spec}", roomtone))

    def loudnorm(inp, out, work, run):
        import soundfile as sf

        sr = sf.info(str(inp)).samplerate
        base = f"loudnorm=I={target}:TP={ceiling}:LRA={args.loudnorm_lra}"
        ff = [args.ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-y", "-i", str(inp)]
        text = run_measured(ff + ["-af", base + ":print_format=json", "-f", "null", "-"],
                            Path(work) / "loudnorm-pass1.log", run)
        if not run.ok:
            return
        m = last_json_object(text)
        second = (f"{base}:measured_I={m['input_i']}:measured_TP={m['input_tp']}"
                  f":measured_LRA={m['input_lra']}:measured_thresh={m['input_thresh']}"
                  f":offset={m['target_offset']}:linear=true:print_format=json")
        text = run_measured(ff + ["-af", second, "-ar", str(sr), "-c:a", "pcm_s24le", str(out)],
                            Path(work) / "loudnorm-pass2.log", run)
        if run.ok:
            try:
                run.note = last_json_object(text).get("normalization_type")
            except ValueError:
                pass
    if "ffmpeg-loudnorm" in args.tools:
        tools.append(Tool("ffmpeg loudnorm", loudnorm))

    for name in ("pedalboard", "pedalboard-sp", "pedalboard-chain"):
        if name in args.tools:
            def pb(inp, out, work, run, name=name):
                run_measured(helper + ["--peer", name, str(inp), str(out), *target_opts],
                             Path(work) / f"{name}.log", run)
            label = {"pedalboard": "pedalboard", "pedalboard-sp": "pedalboard (sample-peak)",
                     "pedalboard-chain": "pedalboard chain"}[name]
            tools.append(Tool(label, pb))

    if "matchering" in args.tools:
        def matchering(inp, out, work, run):
            ref = matchering_reference(inp, args)
            run.note = f"ref {Path(ref).stem}"
            run_measured(helper + ["--peer", "matchering", str(inp), str(out),
                                   "--reference", str(ref)],
                         Path(work) / "matchering.log", run)
        tools.append(Tool("matchering", matchering))
    return tools


def matchering_reference(inp, args):
    ref = Path(args.matchering_reference)
    if ref.exists() and ref.resolve() == Path(inp).resolve():
        ref = Path(args.matchering_alt_reference)
    return ref


# ---------------------------------------------------------------------------------------------
# Metering the outputs.
# ---------------------------------------------------------------------------------------------


def db(linear):
    return 20.0 * math.log10(linear) if linear > 0 else float("-inf")


def true_peak_16x(frames):
    """Max |x| (dBTP) of ``frames`` (samples, channels) interpolated 16x (:mod:`roomtone.testing`)."""
    from roomtone.testing import true_peak_16x as reference

    return reference(frames.T)


def lra_lu(frames, sr):
    """LRA by roomtone's meter (Tech 3342, 10 Hz short-term); pyloudnorm if roomtone fails."""
    import numpy as np

    try:
        meter = import_roomtone_meter()
        stats = meter.measure(np.ascontiguousarray(frames.T, dtype=np.float32), sr)
        return float(stats.lra_lu), "roomtone", float(stats.integrated_lufs)
    except Exception:
        import pyloudnorm

        return float(pyloudnorm.Meter(sr).loudness_range(frames)), "pyloudnorm", None


def measure_file(path, target_lufs):
    import numpy as np
    import soundfile as sf

    from roomtone.testing import libebur128

    frames, sr = sf.read(str(path), dtype="float64", always_2d=True)
    integrated, tp = libebur128(frames.T, sr)
    lra, lra_meter, roomtone_i = lra_lu(frames, sr)
    info = sf.info(str(path))
    return {
        "integrated_lufs": integrated,
        "loudness_error_lu": integrated - target_lufs,
        "true_peak_ebur128_dbtp": tp,
        "true_peak_16x_dbtp": true_peak_16x(frames),
        "sample_peak_dbfs": db(float(np.abs(frames).max())),
        "lra_lu": lra,
        "lra_meter": lra_meter,
        "plr_lu": tp - integrated,
        "roomtone_meter_integrated_lufs": roomtone_i,
        "sample_rate": sr,
        "channels": frames.shape[1],
        "duration_s": frames.shape[0] / sr,
        "subtype": info.subtype,
    }


def import_roomtone_meter():
    """``roomtone.meter``, imported on first use (the peers' rows need none of roomtone)."""
    import roomtone.meter as meter

    return meter


# ---------------------------------------------------------------------------------------------
# Meter speed.
# ---------------------------------------------------------------------------------------------


def timed(fn, repeat):
    """(first call seconds, median of ``repeat`` later calls, value of the last call)."""
    start = time.perf_counter()
    value = fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), value


def meter_speed(path, repeat):
    import numpy as np
    import pyebur128
    import pyloudnorm
    import soundfile as sf

    frames, sr = sf.read(str(path), dtype="float32", always_2d=True)
    planar = np.ascontiguousarray(frames.T)  # roomtone: (channels, samples) float32
    inter64 = np.ascontiguousarray(frames, dtype=np.float64)  # libebur128 / pyloudnorm
    duration = frames.shape[0] / sr
    mm = pyebur128.MeasurementMode

    def ebur(mode, read):
        def fn():
            state = pyebur128.R128State(inter64.shape[1], sr, mode)
            state.add_frames(inter64.ravel(), inter64.shape[0])
            return read(state)
        return fn

    def ebur_tp(state):
        return db(max(pyebur128.get_true_peak(state, c) for c in range(inter64.shape[1])))

    rows = []
    cases = [("true peak", "scipy resample_poly 16x (reference)", lambda: true_peak_16x(frames)),
             ("true peak", "libebur128 MODE_TRUE_PEAK", ebur(mm.MODE_TRUE_PEAK, ebur_tp)),
             ("integrated", "libebur128 MODE_I", ebur(mm.MODE_I, pyebur128.get_loudness_global)),
             ("integrated", "pyloudnorm",
              lambda: float(pyloudnorm.Meter(sr).integrated_loudness(inter64)))]
    try:
        meter = import_roomtone_meter()
        cases.insert(0, ("true peak", "roomtone.meter.true_peak",
                         lambda: meter.true_peak(planar, sr)))
        cases.insert(3, ("integrated", "roomtone.meter.integrated_loudness",
                         lambda: meter.integrated_loudness(planar, sr)))
    except Exception as exc:
        rows.append({"quantity": "-", "meter": "roomtone.meter", "error": repr(exc)})
    for quantity, name, fn in cases:
        try:
            first, median, value = timed(fn, repeat)
            rows.append({"quantity": quantity, "meter": name, "value": float(value),
                         "first_call_s": first, "median_s": median,
                         "x_realtime": duration / median if median > 0 else float("inf")})
        except Exception as exc:
            rows.append({"quantity": quantity, "meter": name, "error": repr(exc)})
    return {"clip": Path(path).name, "duration_s": duration, "repeat": repeat, "rows": rows}


# ---------------------------------------------------------------------------------------------
# Tables.
# ---------------------------------------------------------------------------------------------


def markdown(headers, rows):
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def f(value, digits=2, signed=False):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "-inf" if value < 0 else "inf"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def meets(m, ceiling, key):
    return (abs(m["loudness_error_lu"]) <= LOUDNESS_TOLERANCE_LU + EPS
            and m[key] <= ceiling + EPS)


def clip_table(clip, rows, ceiling):
    headers = ["tool", "I LUFS", "err LU", "TP ebur128 dBTP", "TP 16x dBTP", "LRA LU", "PLR LU",
               "wall s", "CPU s", "peak RSS MiB", "meets", "note"]
    body = []
    for r in rows:
        m = r.get("metrics")
        cost = [f(r.get("wall_s")), f(r.get("cpu_s")), f(r.get("max_rss_mib"), 0)]
        if r["tool"] == "(input)":
            cost = ["", "", ""]
        if m is None:
            body.append([r["tool"], "ERROR", "", "", "", "", "", *cost, "no", r.get("error", "")])
            continue
        ok = "yes" if meets(m, ceiling, "true_peak_16x_dbtp") else "no"
        body.append([r["tool"], f(m["integrated_lufs"]), f(m["loudness_error_lu"], 3, signed=True),
                     f(m["true_peak_ebur128_dbtp"], 3), f(m["true_peak_16x_dbtp"], 3),
                     f(m["lra_lu"], 1),
                     f(m["plr_lu"], 1), *cost, ok if r["tool"] != "(input)" else "",
                     r.get("note") or ""])
    return f"### {clip}\n\n" + markdown(headers, body)


def summary_table(results, tools, ceiling):
    headers = ["tool", "max abs err LU", "max TP ebur128 dBTP", "max TP 16x dBTP",
               "meets (TP 16x)", "meets (TP ebur128)", "failed", f"{LONG_CLIP} s (warm)",
               f"{LONG_CLIP} peak RSS MiB"]
    body = []
    for tool in tools:
        rows = [r for r in results if r["tool"] == tool.name]
        good = [r["metrics"] for r in rows if r.get("metrics")]
        n = len(rows)
        long_rows = [r for r in rows if Path(r["input"]).stem == LONG_CLIP and r.get("metrics")]
        body.append([
            tool.name,
            f(max((abs(m["loudness_error_lu"]) for m in good), default=None), 3),
            f(max((m["true_peak_ebur128_dbtp"] for m in good), default=None), 3),
            f(max((m["true_peak_16x_dbtp"] for m in good), default=None), 3),
            f"{sum(meets(m, ceiling, 'true_peak_16x_dbtp') for m in good)}/{n}",
            f"{sum(meets(m, ceiling, 'true_peak_ebur128_dbtp') for m in good)}/{n}",
            str(n - len(good)),
            f(long_rows[0]["wall_s"]) if long_rows else "-",
            f(long_rows[0]["max_rss_mib"], 0) if long_rows else "-",
        ])
    return markdown(headers, body)


def meter_table(speed):
    headers = ["quantity", "meter", "value", "first call s", "median s", "x realtime"]
    body = []
    for r in speed["rows"]:
        if "error" in r:
            body.append([r["quantity"], r["meter"], "ERROR", "", "", r["error"]])
        else:
            body.append([r["quantity"], r["meter"], f(r["value"], 3), f(r["first_call_s"], 3),
                         f(r["median_s"], 3), f(r["x_realtime"], 0)])
    return markdown(headers, body)


# ---------------------------------------------------------------------------------------------
# Main.
# ---------------------------------------------------------------------------------------------


def find_inputs(args):
    paths = []
    for item in args.inputs or [MUSIC_DIR]:
        p = Path(item)
        if p.is_dir():
            paths += sorted(q for q in p.iterdir() if q.suffix.lower() in AUDIO_SUFFIXES)
        else:
            paths.append(p)
    if args.quick:
        paths = [p for p in paths if p.stem != LONG_CLIP]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"input not found: {', '.join(missing)}")
    if not paths:
        raise SystemExit(f"no *.ogg or *.flac inputs (looked in {args.inputs or [MUSIC_DIR]})")
    return paths


def versions(args):
    out = {"python": sys.version.split()[0], "platform": platform.platform(),
           "cpu_count": os.cpu_count()}
    for mod in ("numpy", "scipy", "soundfile", "pedalboard", "matchering", "pyloudnorm",
                "pyebur128", "numba"):
        try:
            module = __import__(mod)
            out[mod] = getattr(module, "__version__", "?")
        except Exception as exc:
            out[mod] = f"not importable: {exc}"
    try:
        import pyebur128

        out["libebur128"] = pyebur128.get_libebur128_version()
    except Exception:
        pass
    try:
        meter = import_roomtone_meter()
        import roomtone

        out["roomtone"] = roomtone.__version__
        out["roomtone_meter"] = meter.__file__
    except Exception as exc:
        out["roomtone"] = f"not importable: {exc}"
    try:
        first = subprocess.run([args.ffmpeg, "-version"], capture_output=True, text=True)
        out["ffmpeg"] = first.stdout.splitlines()[0]
    except Exception as exc:
        out["ffmpeg"] = f"not runnable: {exc}"
    master = find_master_command(args.master_cmd)
    out["master_cmd"] = " ".join(master) if master else None
    return out


def bench_clip(clip, tools, args, workroot):
    """Input row plus one row per tool. On long_3min: one untimed warm-up run per tool, then
    ``--repeat`` timed rounds, each running every tool once in turn (so a machine that speeds up or
    slows down over the minutes weighs on every tool alike); median wall time, largest peak RSS."""
    work = workroot / clip.stem
    work.mkdir(parents=True, exist_ok=True)
    rows = [{"tool": "(input)", "input": str(clip),
             "metrics": measure_file(clip, args.target_lufs)}]
    long_clip = clip.stem == LONG_CLIP
    places = []
    for tool in tools:
        slug = re.sub(r"[^a-z0-9]+", "-", tool.name.lower()).strip("-")
        tool_work = work / slug
        tool_work.mkdir(exist_ok=True)
        places.append((work / f"{slug}.wav", tool_work))
    if long_clip:
        for tool, (out, tool_work) in zip(tools, places):
            warm = tool(clip, out, tool_work)
            print(f"  warm-up {tool.name}: {warm.wall_s:.2f} s"
                  + ("" if warm.ok else f" ({warm.error})"), flush=True)
    all_runs = [[] for _ in tools]
    for _ in range(args.repeat if long_clip else 1):
        for tool, (out, tool_work), runs in zip(tools, places, all_runs):
            if out.exists():
                out.unlink()
            runs.append(tool(clip, out, tool_work))
    for tool, (out, tool_work), runs in zip(tools, places, all_runs):
        run = runs[-1]
        started = all(r.processes for r in runs)
        row = {"tool": tool.name, "input": str(clip), "output": str(out),
               "wall_s": statistics.median(r.wall_s for r in runs) if started else None,
               "wall_s_all": [r.wall_s for r in runs] if started else [],
               "cpu_s": statistics.median(r.cpu_s for r in runs) if started else None,
               "max_rss_mib": max(r.max_rss_kib for r in runs) / 1024.0 if started else None,
               "warm": long_clip, "note": run.note, "logs": run.logs, "report": run.report}
        if all(r.ok for r in runs):
            try:
                row["metrics"] = measure_file(out, args.target_lufs)
            except Exception as exc:
                row["error"] = f"cannot meter the output: {type(exc).__name__}: {exc}"
        else:
            row["error"] = next(r.error for r in runs if not r.ok)
        if row.get("metrics") is None:
            print(f"  {tool.name}: ERROR {row['error']}", flush=True)
        else:
            m = row["metrics"]
            print(f"  {tool.name}: I {m['integrated_lufs']:.2f} TP16 {m['true_peak_16x_dbtp']:.3f}"
                  f" in {row['wall_s']:.2f} s", flush=True)
        rows.append(row)
    return rows


def _timed_child(cmd, env):
    """Wall and CPU seconds (``os.wait4``) of one child process; raises on a non-zero exit."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {stderr.decode(errors='replace').strip()[-300:]}")
    return wall, usage.ru_utime + usage.ru_stime


def cold_start(args):
    """First run on a fresh machine: ``master --demo`` and ``master long_3min`` each in a child
    process with ``NUMBA_CACHE_DIR`` an empty folder of its own (so numba compiles every kernel and
    caches it there, nowhere else), then once more on that now-warm cache. Prints a table."""
    master = find_master_command(args.master_cmd)
    if master is None:
        print("master CLI not found (use --master-cmd)", file=sys.stderr)
        return 2
    long_clip = MUSIC_DIR / f"{LONG_CLIP}.flac"
    jobs = [("master --demo", ["--demo"])]
    if long_clip.exists():
        jobs.append((f"master {LONG_CLIP}", [str(long_clip)]))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_cold_") as work:
        for label, job_args in jobs:
            cache = Path(tempfile.mkdtemp(prefix="numba_cache_", dir=work))
            env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
            cmd = [*master, *job_args, "-o", str(Path(work) / "out.wav"), "-q"]
            cold_wall, cold_cpu = _timed_child(cmd, env)
            index_files = sum(1 for path in cache.rglob("*.nbi"))
            warm_wall, warm_cpu = _timed_child(cmd, env)
            rows.append([label, f"{cold_wall:.2f}", f"{cold_cpu:.2f}", f"{warm_wall:.2f}", f"{warm_cpu:.2f}",
                         str(index_files)])
            print(f"{label}: cold {cold_wall:.2f} s, warm {warm_wall:.2f} s", flush=True)
    print(f"\n## First run on an empty numba cache ({platform.node()}, {os.cpu_count()} CPUs)\n")
    print("Whole child process; cold: NUMBA_CACHE_DIR an empty folder (every kernel compiled and "
          "cached); warm: the same command again on that cache.\n")
    print(markdown(["command", "cold wall s", "cold CPU s", "warm wall s", "warm CPU s", "cached kernels"], rows))
    return 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Master every clip with roomtone and its peers (ffmpeg loudnorm, pedalboard, "
                    "Matchering); print loudness error, true peak, LRA, PLR, time and memory.")
    p.add_argument("--inputs", nargs="+", metavar="PATH",
                   help=f"audio files or folders (default: all *.ogg/*.flac in {MUSIC_DIR})")
    p.add_argument("--quick", action="store_true", help=f"skip {LONG_CLIP}")
    p.add_argument("--target-lufs", type=float, default=-14.0, help="default -14 (Spotify)")
    p.add_argument("--ceiling-dbtp", type=float, default=-1.0, help="default -1 (Spotify)")
    p.add_argument("--repeat", type=int, default=1,
                   help=f"timed runs on {LONG_CLIP} after the warm-up (median); default 1")
    p.add_argument("--tools", default="roomtone,ffmpeg-loudnorm,pedalboard,pedalboard-chain,matchering",
                   help="comma list from roomtone, ffmpeg-loudnorm, pedalboard (gain + BrickwallLimiter), "
                        "pedalboard-sp (BrickwallLimiter with its sample-peak detector), pedalboard-chain "
                        "(shelves + compressor + gain + BrickwallLimiter, the chain to compare speed with), "
                        "matchering")
    p.add_argument("--roomtone-preset", action="append", metavar="NAME",
                   help="roomtone --preset (repeat for more rows), optionally with options of its own "
                        "(\"balanced --fit-target\": the fit's cost beside the plain row); default balanced")
    p.add_argument("--master-cmd", help="command for roomtone's master CLI "
                                        "(default: `master` beside this Python, else on PATH)")
    p.add_argument("--ffmpeg", default=shutil.which("ffmpeg") or "ffmpeg")
    p.add_argument("--loudnorm-lra", type=float, default=11.0,
                   help="loudnorm LRA target (default 11, ffmpeg's default)")
    p.add_argument("--matchering-reference", default=str(MATCHERING_REFERENCE))
    p.add_argument("--matchering-alt-reference", default=str(MATCHERING_ALT_REFERENCE),
                   help="reference used when the clip is the reference itself")
    p.add_argument("--skip-meter-speed", action="store_true")
    p.add_argument("--cold-start", action="store_true",
                   help="only measure the first run on an empty numba cache: master --demo and master "
                        f"{LONG_CLIP}, each in a child process with an empty NUMBA_CACHE_DIR, then warm")
    p.add_argument("--json", metavar="OUT.json", help="save the raw results")
    p.add_argument("--keep", metavar="DIR", help="write the outputs to DIR and keep them")
    p.add_argument("--peer", nargs=3, metavar=("TOOL", "IN", "OUT"), help=argparse.SUPPRESS)
    p.add_argument("--reference", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = sorted(set(args.tools) - set(KNOWN_TOOLS))
    if unknown:
        p.error(f"unknown tool(s) {', '.join(unknown)}; choose from {', '.join(KNOWN_TOOLS)}")
    if "roomtone" not in args.tools:
        args.roomtone_preset = []
    elif not args.roomtone_preset:
        args.roomtone_preset = ["balanced"]
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.peer:
        return run_peer(args)
    if args.cold_start:
        return cold_start(args)

    clips = find_inputs(args)
    tools = make_tools(args)
    info = versions(args)
    if args.keep:
        workroot = Path(args.keep).resolve()
        workroot.mkdir(parents=True, exist_ok=True)
    else:
        workroot = Path(tempfile.mkdtemp(prefix="bench_master_"))
    print(f"target {args.target_lufs} LUFS, ceiling {args.ceiling_dbtp} dBTP; "
          f"{len(clips)} clips; tools: {', '.join(t.name for t in tools)}", flush=True)
    print(f"master CLI: {info['master_cmd']}; outputs in {workroot}", flush=True)
    results = []
    speed = None
    try:
        for clip in clips:
            print(f"{clip.name}", flush=True)
            results += bench_clip(clip, tools, args, workroot)
        if not args.skip_meter_speed:
            longest = max(clips, key=lambda c: (c.stem == LONG_CLIP, c.stat().st_size))
            if args.quick and (MUSIC_DIR / f"{LONG_CLIP}.flac").exists():
                longest = MUSIC_DIR / f"{LONG_CLIP}.flac"
            print(f"meter speed on {longest.name}", flush=True)
            speed = meter_speed(longest, max(3, args.repeat))
    finally:
        if not args.keep:
            shutil.rmtree(workroot, ignore_errors=True)

    print()
    print(f"## Mastering to {args.target_lufs:g} LUFS / {args.ceiling_dbtp:g} dBTP\n")
    print("I, TP ebur128: libebur128; TP 16x: +-32-tap Kaiser FIR at 16x; LRA: "
          f"{results[0]['metrics']['lra_meter'] if results else '-'} meter; PLR = TP ebur128 - I; "
          f"meets = |err| <= {LOUDNESS_TOLERANCE_LU} LU and TP 16x <= ceiling. Wall/CPU/RSS: "
          f"whole child processes (ffmpeg: both passes); {LONG_CLIP}: after a warm-up run, "
          f"median of {args.repeat}.\n")
    for clip in clips:
        rows = [r for r in results if r["input"] == str(clip)]
        print(clip_table(clip.name, rows, args.ceiling_dbtp))
        print()
    print("## Summary\n")
    print(summary_table(results, tools, args.ceiling_dbtp))
    print()
    if speed:
        print(f"## Meter speed on {speed['clip']} ({speed['duration_s']:.0f} s stereo), "
              f"median of {speed['repeat']} after one warm-up call\n")
        print(meter_table(speed))
        print()
    if args.json:
        payload = {"target_lufs": args.target_lufs, "ceiling_dbtp": args.ceiling_dbtp,
                   "repeat": args.repeat, "versions": info, "results": results,
                   "meter_speed": speed, "kept_outputs": str(workroot) if args.keep else None}
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str))
        print(f"raw results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
