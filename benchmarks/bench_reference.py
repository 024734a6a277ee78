"""Reference matching: roomtone ``master --reference`` against Matchering 2, on the same
(input, reference) pairs in one run, over named pair sets reported apart.

Sets (:mod:`reference_pairs` builds them, and the excerpts they need, under
``~/.cache/roomtone-bench/``):

- ``music``: the clips of ``../shared/data/music/`` in name order, each towards the next one. The
  reference fit is tuned on these: the DEVELOPMENT set, not a test.
- ``games``: Debian's game music (Wesnoth, Singularity, HyperRogue, Nexuiz), 12 pairs whose input and
  reference come from different packages (composers, genres), 30 s middle excerpts.
- ``unmastered``: references that are real unmastered mixes (stem sums of songs 2-5 of the CC0
  multitrack ``ichbinsoftware/everythingisremixed``) from music clips and game music of other genres,
  and loud clipped masters towards them.
- ``clipped``: loud masters pushed +6 dB and hard clipped, towards mastered and unmastered references.

roomtone runs as ``master IN -o OUT --reference REF`` would (``master_file(IN, OUT,
reference=REF)``, in this process: no platform, so the reference's loudness where the reference is
a master, else spotify's -14 LUFS; -1 dBTP); Matchering 2 with its defaults (its own RMS match, no
loudness or true-peak target).

Measured on every output, by meters independent of the tools where one exists:

- ``dist``: mean 1/3-octave distance to the reference (dB RMS over the 27 bands 40 Hz..16 kHz,
  each curve less its own integrated loudness: :func:`roomtone.mastering.targets.tonal_distance`);
  ``shape``: the same with the mean difference removed (level-free);
- ``wrong``: the bands where the output moved away from the reference against the direction the
  reference asks: on the curves smoothed to octaves (each band averaged with its neighbours),
  ``ask = ref - input`` and ``moved = output - input``, a band counts when ``|ask| > 1 dB`` and
  ``moved * sign(ask) < -1 dB``; ``worst``: the least ``moved * sign(ask)`` over the bands where
  ``|ask| > 1 dB`` (dB; negative: moved the wrong way; positive: every asked band moved towards);
- ``I err``: libebur128 integrated loudness of the output minus the reference's (LU);
- ``spread err``: the output's short-term loudness spread (p95 - p5 of the 3 s loudness every
  100 ms, LRA's gates: :func:`roomtone.mastering.targets.short_term_spread`) minus the reference's,
  in LU (``in spread err``: the input's);
- ``TP``: libebur128 true peak (dBTP, 4x); ``time``: wall seconds of the call in this process
  (roomtone's first call includes JAX's compile, or its load from the persistent cache).

Each set prints a row per pair and tool (``worst`` with its band's centre where a band went the
wrong way), then mean, median, min, max and standard deviation per tool over the pairs both tools
ran (``abs``: spread and loudness errors as absolute values); a pair a tool refuses is listed with
its error and counts as a loss.

Usage: ``python benchmarks/bench_reference.py [--sets music,games,unmastered,clipped] [--quick]
[--json out.json] [--markdown out.md] [--prepare]`` (``--quick``: ``music`` without ``long_3min``,
every other pair of the other sets; ``--prepare``: make the excerpts and list the pairs, run nothing).
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import reference_pairs  # noqa: E402

TOOLS = ("roomtone", "matchering")
ASK_DB = 1.0  # a band the reference asks to move: |ref - input| over this (octave-smoothed)
WRONG_DB = 1.0  # ... moved against the ask by more than this


def ebur(path):
    import pyebur128
    import soundfile as sf

    frames, sr = sf.read(str(path), dtype="float64", always_2d=True)
    mm = pyebur128.MeasurementMode
    state = pyebur128.R128State(frames.shape[1], sr, mm.MODE_I | mm.MODE_TRUE_PEAK)
    state.add_frames(np.ascontiguousarray(frames).ravel(), frames.shape[0])
    tp = max(pyebur128.get_true_peak(state, c) for c in range(frames.shape[1]))
    return pyebur128.get_loudness_global(state), 20 * np.log10(max(tp, 1e-12))


def peak_dbfs(path):
    import soundfile as sf

    frames, _ = sf.read(str(path), dtype="float32", always_2d=True)
    return 20 * np.log10(max(float(np.abs(frames).max()), 1e-12))


def code_state():
    """The commit measured, and the files under mastering/ that differ from it (the fit as it
    stood in the working tree)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "mastering"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "mastering_modified": []}
    return {"commit": head, "mastering_modified": [line[3:] for line in dirty if line.strip()]}


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


def distances(out_curve, ref_curve):
    from roomtone.mastering.targets import tonal_distance

    d = out_curve - ref_curve
    return tonal_distance(out_curve, ref_curve), float(np.sqrt(np.mean((d - d.mean()) ** 2)))


def wrong_way(in_curve, ref_curve, out_curve):
    """``(wrong, worst, worst_hz)``: the bands moved against the reference's ask by more than
    WRONG_DB where it asks more than ASK_DB, the least ``moved * sign(ask)`` over the asked bands
    (dB; None when the reference asks nothing), and that band's centre (Hz)."""
    from roomtone.mastering.targets import THIRD_OCTAVE_HZ, octave_smoothed

    i, r, o = octave_smoothed(in_curve), octave_smoothed(ref_curve), octave_smoothed(out_curve)
    ask, moved = r - i, o - i
    asked = np.flatnonzero(np.abs(ask) > ASK_DB)
    if not asked.size:
        return 0, None, None
    along = moved[asked] * np.sign(ask[asked])
    k = int(np.argmin(along))
    return int(np.sum(along < -WRONG_DB)), float(along[k]), float(THIRD_OCTAVE_HZ[asked[k]])


def run_tool(tool, inp, ref, out):
    if tool == "roomtone":
        from roomtone.mastering.api import master_file

        master_file(inp, out, reference=str(ref))
    else:
        import matchering as mg

        mg.log(lambda *a: None)
        mg.process(target=str(inp), reference=str(ref), results=[mg.pcm24(out)])


def measure_set(name, pairs, work):
    rows = []
    refs = {}
    print(f"\n== {name} ({len(pairs)} pairs)")
    print(f"{'input':<34}{'reference':<28}{'tool':<11}{'in dist':>8}{'dist':>7}{'shape':>7}{'wrong':>6}{'worst':>13}"
          f"{'I err':>7}{'TP':>7}{'in spr':>7}{'spread':>7}{'time':>7}")
    for k, pair in enumerate(pairs):
        if pair.reference not in refs:
            ref_i, _ = ebur(pair.reference)
            refs[pair.reference] = (ref_i, curve(pair.reference), spread(pair.reference), peak_dbfs(pair.reference))
        ref_i, ref_curve, ref_spread, ref_peak = refs[pair.reference]
        in_curve = curve(pair.input)
        in_dist = distances(in_curve, ref_curve)[0]
        in_spread_err = spread(pair.input) - ref_spread
        for tool in TOOLS:
            out = os.path.join(work, f"{name}_{k}_{tool}.wav")
            row = {"set": name, "input": pair.input_label, "reference": pair.reference_label, "tool": tool,
                   "reference_lufs": round(ref_i, 2), "reference_peak_dbfs": round(ref_peak, 2),
                   "input_dist_db": round(in_dist, 2), "input_spread_err_lu": round(in_spread_err, 2)}
            start = time.perf_counter()
            try:
                run_tool(tool, pair.input, pair.reference, out)
            except Exception as exc:  # a tool that refuses a pair is a row, not the end of the run
                row["error"] = f"{type(exc).__name__}: {exc}"
                rows.append(row)
                print(f"{pair.input_label[:33]:<34}{pair.reference_label[:27]:<28}{tool:<11} FAILED {row['error']}",
                      flush=True)
                continue
            seconds = time.perf_counter() - start
            out_i, out_tp = ebur(out)
            out_curve = curve(out)
            dist, shape = distances(out_curve, ref_curve)
            wrong, worst, worst_hz = wrong_way(in_curve, ref_curve, out_curve)
            row.update({"dist_db": round(dist, 2), "shape_db": round(shape, 2), "wrong_bands": wrong,
                        "worst_db": None if worst is None else round(worst, 2), "worst_band_hz": worst_hz,
                        "loudness_err_lu": round(out_i - ref_i, 2), "true_peak_dbtp": round(out_tp, 2),
                        "spread_err_lu": round(spread(out) - ref_spread, 2), "seconds": round(seconds, 2)})
            rows.append(row)
            r = row
            worst_text = "-" if worst is None else f"{worst:+.1f}"
            if wrong:
                worst_text += f" @{worst_hz:.0f}"
            print(f"{pair.input_label[:33]:<34}{pair.reference_label[:27]:<28}{tool:<11}{in_dist:>8.2f}{dist:>7.2f}"
                  f"{shape:>7.2f}{wrong:>6d}{worst_text:>13}{r['loudness_err_lu']:>+7.2f}{out_tp:>+7.2f}"
                  f"{in_spread_err:>+7.2f}{r['spread_err_lu']:>+7.2f}{seconds:>7.2f}", flush=True)
    return rows


# (column, row key, transform) of the summary
SUMMARY = (("in dist", "input_dist_db", None), ("dist", "dist_db", None), ("shape", "shape_db", None),
           ("wrong", "wrong_bands", None), ("worst", "worst_db", None), ("abs I err", "loudness_err_lu", abs),
           ("TP", "true_peak_dbtp", None), ("abs in spread err", "input_spread_err_lu", abs),
           ("abs spread err", "spread_err_lu", abs), ("time", "seconds", None))
STATS = (("mean", np.mean), ("median", np.median), ("min", np.min), ("max", np.max), ("std", np.std))


def summary(rows):
    """``{tool: {stat: {column: value}}}`` over the pairs both tools ran (a pair one tool refused
    is listed under ``failed``, and counts as a loss for it), and the pairs roomtone is nearer the
    reference on."""
    out = {}
    ran = {}
    for r in rows:
        ran.setdefault((r["input"], r["reference"]), set()).add(r["tool"] if "error" not in r else None)
    both = {key for key, tools in ran.items() if tools >= set(TOOLS)}
    for tool in TOOLS:
        sel = [r for r in rows if r["tool"] == tool and (r["input"], r["reference"]) in both]
        out[tool] = {"pairs": len(sel), "failed": [f"{r['input']} -> {r['reference']}: {r['error']}"
                                                   for r in rows if r["tool"] == tool and "error" in r]}
        for stat, fn in STATS:
            values = {}
            for column, key, transform in SUMMARY:
                vals = [r[key] for r in sel if r.get(key) is not None]
                vals = [transform(v) for v in vals] if transform else vals
                values[column] = round(float(fn(vals)), 2) if vals else None
            out[tool][stat] = values
    by_pair = {}
    for r in rows:
        if "error" not in r:
            by_pair.setdefault((r["input"], r["reference"]), {})[r["tool"]] = r["dist_db"]
    both = [d for d in by_pair.values() if len(d) == len(TOOLS)]
    out["roomtone_nearer"] = sum(1 for d in both if d["roomtone"] < d["matchering"])
    out["compared"] = len(both)
    out["pairs"] = len(by_pair) + sum(1 for tools in ran.values() if not tools - {None})
    return out


def print_summary(name, summ):
    print(f"\n{name}: roomtone nearer the reference on {summ['roomtone_nearer']} of the {summ['compared']} pairs "
          f"both tools ran (statistics over those)")
    print(f"{'tool':<11}{'stat':<8}" + "".join(f"{c:>{max(8, len(c) + 2)}}" for c, _, _ in SUMMARY)
          + "   (dB, bands, LU, dBTP, s)")
    for tool in TOOLS:
        for stat, _ in STATS:
            v = summ[tool][stat]
            print(f"{tool:<11}{stat:<8}" + "".join(
                f"{'-' if v[c] is None else format(v[c], '.2f'):>{max(8, len(c) + 2)}}" for c, _, _ in SUMMARY))
        for failure in summ[tool]["failed"]:
            print(f"{tool:<11}FAILED {failure}")


def markdown(results):
    """The README's tables: per set, a row per pair (both tools side by side), then the summary."""
    lines = []
    for name, (rows, summ) in results.items():
        failed = {t: summ[t]["failed"] for t in TOOLS if summ[t]["failed"]}
        lines += [f"### `{name}`: roomtone nearer the reference on {summ['roomtone_nearer']} of the "
                  f"{summ['compared']} pairs both tools ran" + "".join(f"; {t} failed on {len(f)}"
                                                                      for t, f in failed.items()), "",
                  "| input -> reference | in dist | dist rt / mg | shape rt / mg | wrong rt / mg | worst rt / mg "
                  "| I err rt / mg | TP rt / mg | in spread err | spread err rt / mg |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        by_pair = {}
        for r in rows:
            by_pair.setdefault((r["input"], r["reference"]), {})[r["tool"]] = r

        def cell(pair, key, fmt, bold_low=False):
            vals = [pair.get(t, {}).get(key) for t in TOOLS]
            text = ["fail" if "error" in pair.get(t, {}) else ("-" if v is None else format(v, fmt))
                    for t, v in zip(TOOLS, vals)]
            if bold_low and None not in vals and vals[0] != vals[1]:
                best = int(np.argmin(vals))
                text[best] = f"**{text[best]}**"
            return " / ".join(text)

        def worst_cell(pair):
            text = []
            for t in TOOLS:
                r = pair.get(t, {})
                w = r.get("worst_db")
                text.append("fail" if "error" in r else "-" if w is None else
                            f"{w:+.1f}" + (f" @{r['worst_band_hz']:.0f}" if r.get("wrong_bands") else ""))
            return " / ".join(text)

        for (inp, ref), pair in by_pair.items():
            any_row = next(iter(pair.values()))
            lines.append(f"| {inp} -> {ref} | {any_row['input_dist_db']:.2f} | {cell(pair, 'dist_db', '.2f', True)} "
                         f"| {cell(pair, 'shape_db', '.2f', True)} | {cell(pair, 'wrong_bands', 'd')} "
                         f"| {worst_cell(pair)} | {cell(pair, 'loudness_err_lu', '+.2f')} "
                         f"| {cell(pair, 'true_peak_dbtp', '+.2f')} | {any_row['input_spread_err_lu']:+.2f} "
                         f"| {cell(pair, 'spread_err_lu', '+.2f')} |")
        for tool, failures in failed.items():
            lines += [""] + [f"{tool} failed: {f}" for f in failures]
        lines += ["", "| tool | stat | " + " | ".join(c for c, _, _ in SUMMARY) + " |",
                  "|---|---|" + "---|" * len(SUMMARY)]
        for tool in TOOLS:
            for stat, _ in STATS:
                v = summ[tool][stat]
                lines.append(f"| {tool} | {stat} | " + " | ".join("-" if v[c] is None else f"{v[c]:.2f}"
                                                                  for c, _, _ in SUMMARY) + " |")
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default=",".join(reference_pairs.SETS),
                        help=f"comma-separated pair sets (default all: {','.join(reference_pairs.SETS)})")
    parser.add_argument("--quick", action="store_true",
                        help="music without long_3min, every other pair of the other sets")
    parser.add_argument("--json", help="write the rows and summaries here")
    parser.add_argument("--markdown", help="write the README's tables here")
    parser.add_argument("--prepare", action="store_true", help="make the excerpts, list the pairs, run nothing")
    args = parser.parse_args()
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    try:
        sets = reference_pairs.pair_sets(names, quick=args.quick)
    except ValueError as exc:
        parser.error(str(exc))
    if args.prepare:
        for name, pairs in sets.items():
            print(f"{name} ({len(pairs)} pairs)")
            for p in pairs:
                print(f"  {p.name}")
        return 0
    from roomtone import startup
    from roomtone.mastering.api import master

    startup.use_compilation_cache()  # as the master command runs: JAX's compilation cache, the kernels loaded
    startup.warm_up_master(master)
    import matchering  # noqa: F401  (imported before the first timed call)

    import roomtone.mastering.fit  # noqa: F401  (JAX: imported before the first timed call, as matchering)

    state = code_state()
    print(f"commit {state['commit']}; mastering/ modified in the working tree: "
          f"{', '.join(state['mastering_modified']) or 'nothing'}")
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for name, pairs in sets.items():
            rows = measure_set(name, pairs, work)
            results[name] = (rows, summary(rows))
            print_summary(name, results[name][1])
    print()
    for name, (_, summ) in results.items():
        print_summary(name, summ)
    if args.json:
        Path(args.json).write_text(json.dumps({"code": state, "sets": {n: {"rows": r, "summary": s}
                                                                       for n, (r, s) in results.items()}},
                                              indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
