"""The mastering assistant (``--preset auto``) on held-out clips with known degradations, against
``--preset balanced``, against fitting alone (``--preset balanced --fit-target``: the preset's
fixed target curve) and the assistant refined by fitting (``--preset auto --fit-target``: its own
prediction as the target), in one run.

Clips: the real music of ``../shared/data/music/`` (never read by the assistant's training,
which uses Debian's game music), a 30 s excerpt of each from its middle. Each is degraded
``--cases`` times (seeded) in the time domain by the numba chain's own processors: an EQ of two
shelves (+-6 dB at 80-300 Hz and 3-12 kHz) and two bells (+-8 dB, 100 Hz-8 kHz, Q 0.7-2),
a width change (x0.5..x1.5) and a level change (-12..0 dB). A different family from the smooth
curves the assistant was trained on, on music it never heard.

Measured on each output (the same meters as the fitter's report and bench_reference):

- ``dist``: loudness-normalised 1/3-octave distance to the undegraded clip (dB RMS, 27 bands
  40 Hz..16 kHz: :func:`roomtone.mastering.targets.tonal_distance`); the degraded input's is the
  ``input`` row;
- ``width err``: mean absolute side/mid difference to the clip over the four groups (dB);
- ``EQ err``: for the assistant, its EQ curve against the inverse of the degradation's EQ, both
  less their K-weighted mean, dB RMS over the bands (parameter error);
- ``I err``: integrated loudness minus the -14 LUFS target (LU), ``TP``: true peak (dBTP);
- ``time``: wall seconds per track of the whole ``master`` call, median (the first call of each
  tool, which pays the JIT compile or its load from the cache, is left out of the median and shown).

    python benchmarks/bench_assistant.py [--cases 3] [--json out.json]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
from bench_master import markdown  # noqa: E402

MUSIC = HERE.parents[0].parent / "shared" / "data" / "music"
EXCERPT_S = 30.0
TOOLS = {"balanced": {"preset": "balanced"}, "fit alone": {"preset": "balanced", "fit_target": True},
         "auto": {"preset": "auto"}, "auto + fit": {"preset": "auto", "fit_target": True}}


def clips():
    from roomtone.audio import read_audio

    out = []
    for path in sorted(MUSIC.glob("*")):
        if path.suffix.lower() not in (".ogg", ".flac", ".wav") or path.stem == "long_3min":
            continue
        audio, rate, _ = read_audio(path)
        n = int(EXCERPT_S * rate)
        start = max(0, (audio.shape[1] - n) // 2)
        out.append((path.stem, np.ascontiguousarray(audio[:, start:start + n]), rate))
    return out


def degradation(rng):
    from roomtone.plugins import Equalizer, StereoWidth

    eq = Equalizer(low_shelf_hz=float(rng.uniform(80, 300)), low_shelf_db=float(rng.uniform(-6, 6)),
                   high_shelf_hz=float(rng.uniform(3000, 12000)), high_shelf_db=float(rng.uniform(-6, 6)),
                   bands=tuple((float(np.exp(rng.uniform(np.log(100), np.log(8000)))), float(rng.uniform(-8, 8)),
                                float(rng.uniform(0.7, 2.0))) for _ in range(2)))
    return eq, StereoWidth(width=float(rng.uniform(0.5, 1.5))), float(rng.uniform(-12.0, 0.0))


def features(audio, rate):
    from roomtone.mastering import targets as tg

    return tg.measure_features(audio, rate)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=3, help="degradations per clip")
    p.add_argument("--json", metavar="OUT.json")
    args = p.parse_args(argv)

    from roomtone.mastering import assistant, master
    from roomtone.mastering import targets as tg
    from roomtone.plugins import Equalizer
    from roomtone.meter import integrated_loudness, true_peak

    rng = np.random.default_rng(2026)
    results = {name: {"dist": [], "width": [], "ierr": [], "tp": [], "time": [], "eq": []} for name in ["input", *TOOLS]}
    first = {}
    for name, audio, rate in clips():
        original = features(audio, rate)
        for case in range(args.cases):
            eq, width, level_db = degradation(rng)
            degraded = eq.process(audio, rate)
            if degraded.shape[0] >= 2:
                degraded = width.process(degraded, rate)
            degraded = (degraded * np.float32(10 ** (level_db / 20))).astype(np.float32)
            f_in = features(degraded, rate)
            results["input"]["dist"].append(tg.tonal_distance(f_in.tonal_db, original.tonal_db))
            if original.width_db is not None:
                results["input"]["width"].append(float(np.mean(np.abs(f_in.width_db - original.width_db))))
            for tool, kwargs in TOOLS.items():
                started = time.perf_counter()
                out, report = master(degraded, rate, platform="spotify", **kwargs)
                seconds = time.perf_counter() - started
                f_out = features(out, rate)
                r = results[tool]
                r["dist"].append(tg.tonal_distance(f_out.tonal_db, original.tonal_db))
                if original.width_db is not None:
                    r["width"].append(float(np.mean(np.abs(f_out.width_db - original.width_db))))
                r["ierr"].append(integrated_loudness(out, rate) + 14.0)
                r["tp"].append(true_peak(out, rate))
                if tool in first:
                    r["time"].append(seconds)
                else:
                    first[tool] = seconds
                if tool == "auto":  # the EQ the proposal applied, as the report gives it
                    a = assistant.analysis(rate)
                    applied = next(p for p in report["preset"]["chain"] if p["kind"] == "eq")
                    applied = Equalizer(**{k: tuple(map(tuple, v)) if k == "bands" else v
                                           for k, v in applied.items() if k != "kind"})
                    predicted = _processor_curve_db(applied, a, rate)
                    deg_db = _processor_curve_db(eq, a, rate)
                    k = a.k2 / a.k2.sum()
                    err = (predicted - predicted @ k) + (deg_db - deg_db @ k)
                    r["eq"].append(float(np.sqrt(np.mean(err ** 2))))
            print(f"{name} case {case}: " + ", ".join(f"{t} {results[t]['dist'][-1]:.2f}" for t in results), flush=True)

    def mean(values):
        return f"{np.mean(values):.2f}" if values else "-"

    rows = []
    for tool, r in results.items():
        rows.append([tool, mean(r["dist"]), mean(r["width"]), mean(r["eq"]),
                     f"{max(np.abs(r['ierr'])):.3f}" if r["ierr"] else "-", f"{max(r['tp']):.2f}" if r["tp"] else "-",
                     f"{np.median(r['time']):.2f}" if r["time"] else "-",
                     f"{first[tool]:.2f}" if tool in first else "-"])
    n = len(results["input"]["dist"])
    print(f"\n## Assistant on {n} degraded held-out clips ({EXCERPT_S:g} s each, -14 LUFS / -1 dBTP)\n")
    print(markdown(["tool", "dist dB", "width err dB", "EQ err dB", "max abs I err LU", "max TP dBTP",
                    "time s (median)", "first call s"], rows))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def _processor_curve_db(eq, a, rate):
    """The numba EQ's power response in dB averaged over each band's bins."""
    import jax.numpy as jnp

    from roomtone.plugins import twin as jax_chain
    from roomtone.processor import Chain

    h2 = np.abs(np.asarray(jax_chain.eq_response(jax_chain.params_from_chain(Chain([eq]))["0:eq"], rate,
                                                 jnp.asarray(a.z1), jnp.asarray(a.z2)))) ** 2
    return 10 * np.log10((a.bands @ h2) / a.bands.sum(1))


if __name__ == "__main__":
    main()
