#!/usr/bin/env python
"""The mix job side by side with its baselines: balance restoration on real multitracks, and scale.

Balance restoration (issue 26): a real multitrack whose original mix is the sum of its tracks; each
track's gain changed at random (+-10 dB, seeded); the tracks mixed; each track's gain in the output
estimated by least squares (the output's mid against the original tracks' mids); the error is the
loudness-weighted RMS deviation of the recovered balance from the original one, in dB (the common
offset removed; weights: each track's loudness power in the original mix). Rows:

- ``plain sum``: the changed tracks summed as they are,
- ``equal LUFS``: every track at one BS.1770-4 loudness,
- ``stage 1 (f0 band)``: every track at one refined loudness (the paper's stage 1 without offsets),
- ``stage 1 (centroid band)``: its centroid variant,
- ``rule gains (measure, share, shrink)``: the stage-1 rule's gains alone (no high-pass or pan), with
  class offsets fitted on the *other* songs (leave one song out): each loudness measure (refined
  f0 band, centroid band, plain), share exponent (0, 0.5, 1: how several tracks of a class split its
  place) and shrinkage of the class offsets towards their overall median (0.25-1; 0 would be the
  equal-loudness rule);
- ``roomtone mix (...)``: the grid's best configuration by the leave-one-out mean (chosen on these
  same songs: a development figure, not a test), through ``roomtone.mix.mix`` itself (high-pass and
  pan rendered); the shipped rules are fitted on all five songs with it (``--fit-rules``);
- ``... + reference``: stage 2 fitted to a reference: another 30 s section of the same song's
  original mix (same production, other notes), plus the loudness-normalised 1/3-octave distances
  (dB) of the plain sum, stage 1 and stage 2 to that reference and to the original excerpt.

Songs: the development songs 1-5 of the CC0 multitrack repository ``ichbinsoftware/everythingisremixed``
(decoded once into ``~/.cache/roomtone/mix``): a 45 s excerpt where most tracks play. Songs 6 and 7
are reserved for evaluation and are never read here.

Scale: ``--scale`` times the whole ``mix`` process on 128 synthetic mono tracks of 60 s and of
3 minutes (wall seconds, peak RSS).

    python benchmarks/bench_mix.py
    python benchmarks/bench_mix.py --fit-rules presets/mix/rules.toml
    python benchmarks/bench_mix.py --scale
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

CACHE = Path(os.path.expanduser("~")) / ".cache" / "roomtone" / "mix"
REPO = "/work/.mirror/ichbinsoftware+everythingisremixed/repo"
SONGS = ("1.Hydrogen", "2.Lithium", "3.Sodium", "4.Potassium", "5.Rubidium")
EXCERPT_S = 45.0
REFERENCE_S = 30.0
RATE = 44100


def song_tracks(song):
    """``{stem name: (2, n) float32}`` of ``song``'s excerpt (decoded once, cached as .npz)."""
    from roomtone.separate.training.multitrack import RESERVED, decode, song_stems

    if song.split(".")[0] in RESERVED:
        raise ValueError(f"{song} is reserved for evaluation")
    path = CACHE / f"{song}.npz"
    if not path.exists():
        stems = {name: decode(REPO, blob) for name, blob, _ in song_stems(REPO, song)}
        n = max(x.shape[1] for x in stems.values())
        full = {k: np.pad(v, ((0, 0), (0, n - v.shape[1]))) for k, v in stems.items()}
        hop = RATE
        active = np.stack([np.sqrt(np.mean(v[:, :n // hop * hop].reshape(2, -1, hop) ** 2, axis=(0, 2))) > 1e-3
                           for v in full.values()])
        k = int(EXCERPT_S)
        score = np.convolve(active.sum(axis=0), np.ones(k), mode="valid")
        start = int(np.argmax(score)) * hop
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{k: v[:, start:start + int(EXCERPT_S * RATE)] for k, v in full.items()})
        # the reference: the densest other stretch of the original mix, not overlapping the excerpt
        total = sum(full.values())
        ref_len = int(REFERENCE_S) * hop
        score = np.convolve(active.sum(axis=0), np.ones(int(REFERENCE_S)), mode="valid").astype(float)
        first, last = start // hop, start // hop + k
        for i in range(score.size):
            if i + int(REFERENCE_S) > first and i < last:
                score[i] = -1
        ref_start = int(np.argmax(score)) * hop
        np.save(CACHE / f"{song}.reference.npy", total[:, ref_start:ref_start + ref_len])
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def song_reference(song):
    """Another section of ``song``'s original mix (the sum of its tracks): (2, n) float32."""
    return np.load(CACHE / f"{song}.reference.npy")


def balance_error(out, tracks, weights):
    """The loudness-weighted RMS deviation (dB) of the least-squares balance of ``tracks`` in
    ``out`` from equal (the original mix), the common offset removed."""
    names = list(tracks)
    x = np.stack([tracks[k].mean(axis=0) for k in names], axis=1).astype(np.float64)
    y = out.mean(axis=0).astype(np.float64)[:x.shape[0]]
    h, *_ = np.linalg.lstsq(x, y, rcond=None)
    r = 20 * np.log10(np.maximum(np.abs(h), 1e-6))
    w = np.array([weights[k] for k in names])
    w = w / w.sum()
    mean = np.sum(w * r)
    return float(np.sqrt(np.sum(w * (r - mean) ** 2)))


def third_octave_distance(a, b):
    """RMS dB distance of the loudness-normalised 1/3-octave mid/side features
    (:func:`roomtone.mix.fit.features_db`)."""
    from roomtone.mix.fit import band_powers, features_db

    return float(np.sqrt(np.mean((features_db(band_powers(a, RATE)) - features_db(band_powers(b, RATE))) ** 2)))


def track_weights(tracks):
    from roomtone.meter import integrated_loudness

    out = {}
    for k, v in tracks.items():
        lufs = integrated_loudness(np.ascontiguousarray(v), RATE)
        out[k] = 10 ** (lufs / 10) if np.isfinite(lufs) else 0.0
    return out


def fit_offsets(analysed, measure, share, shrink=1.0):
    """``(class offsets, default)`` in LU against the mix: per class the median over the given
    songs' tracks of its loudness (``measure``) plus its share, less its mix's loudness, pulled
    towards the median over every track by ``1 - shrink`` (0: every class alike, the equal-loudness
    rule; 1: each class's own median); ``default`` (that overall median) for a class not seen."""
    per_class = {}
    for song in analysed.values():
        counts = {}
        for t in song["tracks"].values():
            counts[t["class"]] = counts.get(t["class"], 0) + 1
        for t in song["tracks"].values():
            value = t["analysis"].loudness(measure)
            per_class.setdefault(t["class"], []).append(value + share * 10 * np.log10(counts[t["class"]])
                                                        - song["mix_lufs"])
    default = float(np.median([v for values in per_class.values() for v in values]))
    return {c: float(default + shrink * (np.median(v) - default)) for c, v in per_class.items()}, default


def rule_gains(analysed, perturbed_db, offsets, default, measure, share):
    """The stage-1 rule's gains (dB) for the changed tracks, without rendering: each track to its
    class's offset (less its share) from its measured loudness."""
    counts = {}
    for t in analysed["tracks"].values():
        counts[t["class"]] = counts.get(t["class"], 0) + 1
    return {k: offsets.get(t["class"], default) - share * 10 * np.log10(counts[t["class"]])
            - (t["analysis"].loudness(measure) + perturbed_db[k]) for k, t in analysed["tracks"].items()}


def analyse_song(song, tracks):
    from roomtone.meter import integrated_loudness
    from roomtone.mix.analysis import analyse
    from roomtone.mix.groups import classify, load_groups

    table = load_groups()
    out = {"tracks": {}, "mix_lufs": float(integrated_loudness(sum(tracks.values()), RATE))}
    for name, audio in tracks.items():
        a = analyse(audio, RATE)
        if a is None:
            continue
        cls, group, how = classify(name, a, table)
        out["tracks"][name] = {"analysis": a, "class": cls, "group": group, "how": how}
    return out


def rules_with(offsets, measure, share, default=None):
    from roomtone.mix.api import load_rules

    base = load_rules()
    classes = {c: {**r, "offset_lu": offsets.get(c, r["offset_lu"] if default is None else default)}
               for c, r in base.classes.items()}
    return load_rules(classes=classes, measure=measure, share_exponent=share)


def baseline_gains(analysed, perturbed_db, attribute):
    """Gains (dB) that put every changed track at one loudness (``attribute`` of its analysis)."""
    return {k: -(getattr(t["analysis"], attribute) + perturbed_db[k]) for k, t in analysed["tracks"].items()}


def run_balance(args):
    from roomtone.mix import mix

    rng = np.random.default_rng(args.seed)
    songs = {}
    for song in SONGS:
        tracks = {k: v for k, v in song_tracks(song).items() if np.abs(v).max() > 1e-4}
        songs[song] = {"tracks": tracks, "analysed": analyse_song(song, tracks), "weights": track_weights(tracks)}
        print(f"{song}: {len(tracks)} tracks, classes "
              + ", ".join(f"{k}={t['class']}({t['how'][0]})" for k, t in songs[song]["analysed"]["tracks"].items()),
              file=sys.stderr, flush=True)
    from roomtone.mix.analysis import TrackAnalysis

    grid = [(m, s_, k) for m in TrackAnalysis.MEASURES for s_ in (0.0, 0.5, 1.0) for k in (0.25, 0.5, 0.75, 1.0)]
    perturbed = {song: {k: float(rng.uniform(-10, 10)) for k in songs[song]["tracks"]} for song in songs}
    rows = {song: {} for song in songs}
    # the rule's gains over the grid, leave one song out (gains only: no high-pass or pan rendered)
    for song, data in songs.items():
        tracks, analysed, weights = data["tracks"], data["analysed"], data["weights"]
        changed = {k: v * np.float32(10 ** (perturbed[song][k] / 20)) for k, v in tracks.items()}
        live = [k for k in tracks if k in analysed["tracks"]]

        def direct(gains_db):
            out = sum(_stereo(changed[k]) * np.float32(10 ** (gains_db.get(k, 0.0) / 20)) for k in live)
            return balance_error(out, {k: tracks[k] for k in live}, weights)

        results = rows[song]
        results["plain sum"] = direct({})
        results["equal LUFS"] = direct(baseline_gains(analysed, perturbed[song], "loudness_lufs"))
        results["stage 1 (f0 band)"] = direct(baseline_gains(analysed, perturbed[song], "refined_lufs"))
        results["stage 1 (centroid band)"] = direct(baseline_gains(analysed, perturbed[song], "centroid_lufs"))
        others = {s_: songs[s_]["analysed"] for s_ in songs if s_ != song}
        for measure, share, shrink in grid:
            offsets, default = fit_offsets(others, measure, share, shrink)
            gains = rule_gains(analysed, perturbed[song], offsets, default, measure, share)
            results[f"rule gains ({measure}, share {share:g}, shrink {shrink:g})"] = direct(gains)
    best = min(grid, key=lambda c: np.mean([rows[s_][f"rule gains ({c[0]}, share {c[1]:g}, shrink {c[2]:g})"]
                                            for s_ in songs]))
    measure, share, shrink = best
    print(f"chosen on the leave-one-out mean: {best}", file=sys.stderr, flush=True)
    # the chosen rule through the real job (high-pass and pan rendered), then with a reference
    for song, data in songs.items():
        tracks, analysed, weights = data["tracks"], data["analysed"], data["weights"]
        changed = {k: v * np.float32(10 ** (perturbed[song][k] / 20)) for k, v in tracks.items()}
        live = [k for k in tracks if k in analysed["tracks"]]
        others = {s_: songs[s_]["analysed"] for s_ in songs if s_ != song}
        offsets, default = fit_offsets(others, measure, share, shrink)
        rules = rules_with(offsets, measure, share, default)
        out_noref, _ = mix({k: changed[k] for k in live}, RATE, rules=rules)
        label = f"roomtone mix ({measure}, share {share:g}, shrink {shrink:g})"
        rows[song][label] = balance_error(out_noref, {k: tracks[k] for k in live}, weights)
        reference = song_reference(song) if (CACHE / f"{song}.reference.npy").exists() else None
        if reference is not None and not args.no_reference:
            out_ref, _ = mix({k: changed[k] for k in live}, RATE, rules=rules, reference=reference)
            rows[song][label + " + reference"] = balance_error(out_ref, {k: tracks[k] for k in live}, weights)
            plain = sum(_stereo(changed[k]) for k in live)
            original = sum(_stereo(tracks[k]) for k in live)
            for name, out in (("plain sum", plain), ("roomtone", out_noref), ("roomtone + reference", out_ref)):
                rows[song][f"1/3-oct dist to reference: {name}"] = third_octave_distance(out, reference)
                rows[song][f"1/3-oct dist to original: {name}"] = third_octave_distance(out, original)
        print(f"{song}: " + json.dumps({k: round(v, 2) for k, v in rows[song].items() if "rule gains" not in k}),
              file=sys.stderr, flush=True)
    return rows


def _stereo(x):
    return x if x.shape[0] == 2 else np.repeat(x, 2, axis=0)


def table(rows):
    methods = list(next(iter(rows.values())))
    lines = ["| method | " + " | ".join(s.split(".", 1)[1] for s in rows) + " | mean | spread (sd) |",
             "|---|" + "---|" * (len(rows) + 2)]
    for m in methods:
        vals = [rows[s][m] for s in rows]
        lines.append(f"| {m} | " + " | ".join(f"{v:.2f}" for v in vals) + f" | {np.mean(vals):.2f} | {np.std(vals):.2f} |")
    return "\n".join(lines)


def fit_rules(path, measure, share, shrink=1.0):
    """Write the class offsets fitted on every development song into the rules file ``path``."""
    import re

    analysed = {song: analyse_song(song, {k: v for k, v in song_tracks(song).items() if np.abs(v).max() > 1e-4})
                for song in SONGS}
    offsets, default = fit_offsets(analysed, measure, share, shrink)
    from roomtone.mix.api import load_rules

    offsets = {c: offsets.get(c, default) for c in load_rules(path).classes}  # unseen classes: the overall median
    text = Path(path).read_text()
    for cls, value in offsets.items():
        text = re.sub(rf"(\[class\.{cls}\]\noffset_lu = )[-0-9.]+", rf"\g<1>{value:.1f}", text)
    text = re.sub(r"share_exponent = [-0-9.]+", f"share_exponent = {share:g}", text)
    text = re.sub(r'measure = "[a-z]+"', f'measure = "{measure}"', text)
    Path(path).write_text(text)
    print(json.dumps({"measure": measure, "share": share, "shrink": shrink,
                      "offsets": {k: round(v, 1) for k, v in offsets.items()}}))


def run_scale(minutes_list=(1.0, 3.0), count=128):
    import subprocess
    import tempfile

    import soundfile as sf

    lines = ["| tracks | length | wall s | peak RSS MiB |", "|---|---|---|---|"]
    for minutes in minutes_list:
        with tempfile.TemporaryDirectory() as tmp:
            rng = np.random.default_rng(0)
            n = int(minutes * 60 * RATE)
            names = ["kick", "snare", "hats", "bass", "vox", "bgv", "gtr", "keys", "pad", "synth", "fx", "perc"]
            for i in range(count):
                t = np.arange(n) / RATE
                tone = 0.1 * np.sin(2 * np.pi * (55 + 20 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
                x = (tone + 0.01 * rng.standard_normal(n)).astype(np.float32)
                sf.write(f"{tmp}/{i:03d}_{names[i % len(names)]}.flac", x, RATE)
            start = time.time()
            proc = subprocess.Popen([sys.executable, "-m", "roomtone.mix.cli", tmp, "-o", f"{tmp}/out.wav", "-q"])
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.time() - start
            if status:
                raise SystemExit(f"mix failed on the {minutes} min session")
            lines.append(f"| {count} mono | {minutes:g} min | {wall:.1f} | {usage.ru_maxrss / 1024:.0f} |")
            print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--fit-rules", help="fit the class offsets on every development song into this rules file")
    p.add_argument("--measure", default="refined", choices=("refined", "centroid", "plain"))
    p.add_argument("--share", type=float, default=0.5)
    p.add_argument("--shrink", type=float, default=1.0, help="with --fit-rules: pull of the class offsets to their median")
    p.add_argument("--scale", action="store_true", help="time 128-track sessions instead")
    p.add_argument("--no-reference", action="store_true", help="skip the stage-2 rows (no JAX)")
    args = p.parse_args()
    if args.fit_rules:
        return fit_rules(args.fit_rules, args.measure, args.share, args.shrink)
    if args.scale:
        print(run_scale())
        return None
    rows = run_balance(args)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return None


if __name__ == "__main__":
    sys.exit(main())
