#!/usr/bin/env python
"""How ``master`` scales: many files in one call against one call per file, and peak memory
against input length.

1. Batch: every clip of ``../shared/data/music/`` mastered by ``master A B ... -o DIR`` (one
   process) and by one ``master IN -o OUT`` per clip, each timed as whole processes (wall, CPU,
   peak RSS by ``os.wait4``), ``--repeat`` rounds interleaved, median reported.
2. Memory: ``long_3min`` repeated to 3, 20 and 60 minutes (``--minutes``), written as 16-bit WAV in
   a temporary folder, mastered once each; peak RSS is reported in MiB and as a multiple of the
   input's float32 size (channels x samples x 4 bytes), the measure the issue bounds (at most 3).

    python benchmarks/bench_scale.py                    # both parts
    python benchmarks/bench_scale.py --skip-memory --repeat 5
    python benchmarks/bench_scale.py --minutes 3 20     # shorter memory run
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from bench_master import LONG_CLIP, MUSIC_DIR, Run, find_master_command, run_measured  # noqa: E402


def _measure(cmd, log):
    run = Run()
    run_measured(cmd, log, run)
    if not run.ok:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}: {run.error}")
    return run


def batch(master, clips, work, repeat):
    """Median (wall, CPU, peak RSS MiB) of one call for all clips and of one call per clip."""
    one_call, per_file = [], []
    for round_ in range(repeat + 1):  # round 0 warms the file cache and the numba cache
        run = _measure([*master, *clips, "-o", work / "batch", "-q"], work / "batch.log")
        calls = [_measure([*master, clip, "-o", work / "single" / (clip.stem + ".wav"), "-q"], work / "one.log")
                 for clip in clips]
        if round_:
            one_call.append((run.wall_s, run.cpu_s, run.max_rss_kib / 1024))
            per_file.append((sum(c.wall_s for c in calls), sum(c.cpu_s for c in calls),
                             max(c.max_rss_kib for c in calls) / 1024))
    med = lambda rows: tuple(statistics.median(r[i] for r in rows) for i in range(3))
    return med(one_call), med(per_file)


def memory(master, minutes_list, work):
    import soundfile as sf

    base, sample_rate = sf.read(str(MUSIC_DIR / f"{LONG_CLIP}.flac"), dtype="float32", always_2d=True)
    rows = []
    for minutes in minutes_list:
        n = int(minutes * 60 * sample_rate)
        path = work / f"long_{minutes}min.wav"
        with sf.SoundFile(str(path), "w", sample_rate, base.shape[1], "PCM_16") as out:
            for start in range(0, n, base.shape[0]):
                out.write(base[: min(base.shape[0], n - start)])
        run = _measure([*master, path, "-o", work / f"long_{minutes}min_master.wav", "-q"], work / "mem.log")
        input_mib = n * base.shape[1] * 4 / 2**20
        rows.append((minutes, input_mib, run.wall_s, run.max_rss_kib / 1024))
        path.unlink()
        (work / f"long_{minutes}min_master.wav").unlink()
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--minutes", type=float, nargs="+", default=[3, 20, 60])
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--master-cmd")
    args = parser.parse_args(argv)
    master = find_master_command(args.master_cmd)
    if master is None:
        raise SystemExit("no master command found (install roomtone, or give --master-cmd)")
    clips = sorted(p for p in MUSIC_DIR.iterdir() if p.suffix in (".ogg", ".flac"))
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        work = Path(tmp)
        (work / "single").mkdir()
        if not args.skip_batch:
            (wall1, cpu1, rss1), (walln, cpun, rssn) = batch(master, clips, work, args.repeat)
            print(f"## {len(clips)} clips of {MUSIC_DIR}: one call against one call per clip "
                  f"(whole processes, median of {args.repeat} rounds)\n")
            print("| how | wall s | CPU s | peak RSS MiB |\n|---|---|---|---|")
            print(f"| `master {len(clips)} files -o DIR` (one process) | {wall1:.2f} | {cpu1:.2f} | {rss1:.0f} |")
            print(f"| {len(clips)} x `master IN -o OUT` | {walln:.2f} | {cpun:.2f} | {rssn:.0f} (max) |\n")
        if not args.skip_memory:
            rows = memory(master, args.minutes, work)
            print(f"## Peak memory against length ({LONG_CLIP} repeated, 44.1 kHz stereo 16-bit WAV in)\n")
            print("| minutes | input float32 MiB | wall s | peak RSS MiB | RSS / input float32 |\n|---|---|---|---|---|")
            for minutes, input_mib, wall, rss in rows:
                print(f"| {minutes:g} | {input_mib:.0f} | {wall:.1f} | {rss:.0f} | {rss / input_mib:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
