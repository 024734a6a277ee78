"""Reference matching: roomtone ``master --reference`` against Matchering 2, on the same
(input, reference) pairs in one run.

Pairs: the clips of ``../shared/data/music/`` in name order, each mastered towards the next one
(the last towards the first). Both tools aim at the reference: roomtone at its loudness (the
default with a reference) under -1 dBTP; Matchering at its own RMS match (it has no loudness or
true-peak target).

Measured on every output, by meters independent of the tools where one exists:

- ``dist``: mean 1/3-octave distance to the reference (dB RMS over the 27 bands 40 Hz..16 kHz,
  each curve less its own integrated loudness: :func:`roomtone.mastering.targets.tonal_distance`);
  ``shape``: the same with the mean difference removed (level-free);
- ``I err``: libebur128 integrated loudness of the output minus the reference's (LU);
- ``spread err``: the output's short-term loudness spread (p95 - p5 of the 3 s loudness every
  100 ms, LRA's gates: :func:`roomtone.mastering.targets.short_term_spread`) minus the reference's,
  in LU (``in spread err``: the input's);
- ``TP``: libebur128 true peak (dBTP, 4x); ``time``: wall seconds of the call in this process
  (roomtone's first call includes JAX's compile, or its load from the persistent cache).

Usage: ``python benchmarks/bench_reference.py [--quick] [--json out.json]`` (``--quick`` skips
``long_3min``).
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MUSIC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "music"


def ebur(path):
    import pyebur128
    import soundfile as sf

    frames, sr = sf.read(str(path), dtype="float64", always_2d=True)
    mm = pyebur128.MeasurementMode
    state = pyebur128.R128State(frames.shape[1], sr, mm.MODE_I | mm.MODE_TRUE_PEAK)
    state.add_frames(np.ascontiguousarray(frames).ravel(), frames.shape[0])
    tp = max(pyebur128.get_true_peak(state, c) for c in range(frames.shape[1]))
    return pyebur128.get_loudness_global(state), 20 * np.log10(max(tp, 1e-12))


def curve(path):
    from roomtone.audio import read_audio
    from roomtone.meter import integrated_loudness
    from roomtone.mastering.targets import tonal_curve

    audio, sr, _ = read_audio(path)
    return tonal_curve(audio, sr, integrated_loudness(audio, sr))


def spread(path):
    from roomtone.audio import read_audio
    from roomtone.mastering.targets import short_term_spread

    audio, sr, _ = read_audio(path)
    return short_term_spread(audio, sr)


def distances(out_path, ref_curve):
    from roomtone.mastering.targets import tonal_distance

    c = curve(out_path)
    d = c - ref_curve
    return tonal_distance(c, ref_curve), float(np.sqrt(np.mean((d - d.mean()) ** 2)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip long_3min")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    clips = sorted(p for p in MUSIC.iterdir() if p.suffix in (".ogg", ".flac"))
    if args.quick:
        clips = [p for p in clips if "long_3min" not in p.name]
    from roomtone.mastering.api import master_file, warm_up

    warm_up()
    import matchering as mg

    rows = []
    with tempfile.TemporaryDirectory() as work:
        for i, inp in enumerate(clips):
            ref = clips[(i + 1) % len(clips)]
            ref_i, _ = ebur(ref)
            ref_curve = curve(ref)
            ref_spread = spread(ref)
            in_d = distances(inp, ref_curve)
            in_spread_err = spread(inp) - ref_spread
            for tool in ("roomtone", "matchering"):
                out = os.path.join(work, f"{tool}_{inp.stem}.wav")
                start = time.perf_counter()
                if tool == "roomtone":
                    master_file(inp, out, reference=str(ref))
                else:
                    mg.log(lambda *a: None)
                    mg.process(target=str(inp), reference=str(ref), results=[mg.pcm24(out)])
                seconds = time.perf_counter() - start
                out_i, out_tp = ebur(out)
                dist, shape = distances(out, ref_curve)
                rows.append({"input": inp.stem, "reference": ref.stem, "tool": tool, "dist_db": round(dist, 2),
                             "shape_db": round(shape, 2), "input_dist_db": round(in_d[0], 2),
                             "loudness_err_lu": round(out_i - ref_i, 2), "true_peak_dbtp": round(out_tp, 2),
                             "input_spread_err_lu": round(in_spread_err, 2),
                             "spread_err_lu": round(spread(out) - ref_spread, 2),
                             "seconds": round(seconds, 2)})
                r = rows[-1]
                print(f"{inp.stem[:22]:<23}{ref.stem[:22]:<23}{tool:<11}{r['input_dist_db']:>6.2f}{dist:>7.2f}{shape:>7.2f}"
                      f"{r['loudness_err_lu']:>+8.2f}{out_tp:>+8.2f}{r['input_spread_err_lu']:>+7.2f}"
                      f"{r['spread_err_lu']:>+7.2f}{seconds:>7.2f}", flush=True)
    print()
    print(f"{'tool':<11}{'in dist':>8}{'dist':>7}{'shape':>7}{'|I err| max':>12}{'TP max':>8}"
          f"{'|in spread err|':>16}{'|spread err|':>13}{'time':>7}   (means; dB, LU, dBTP, s)")
    for tool in ("roomtone", "matchering"):
        sel = [r for r in rows if r["tool"] == tool]
        print(f"{tool:<11}{np.mean([r['input_dist_db'] for r in sel]):>8.2f}{np.mean([r['dist_db'] for r in sel]):>7.2f}"
              f"{np.mean([r['shape_db'] for r in sel]):>7.2f}{max(abs(r['loudness_err_lu']) for r in sel):>12.2f}"
              f"{max(r['true_peak_dbtp'] for r in sel):>+8.2f}"
              f"{np.mean([abs(r['input_spread_err_lu']) for r in sel]):>16.2f}{np.mean([abs(r['spread_err_lu']) for r in sel]):>13.2f}"
              f"{np.mean([r['seconds'] for r in sel]):>7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
