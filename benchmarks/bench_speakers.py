#!/usr/bin/env python
"""Speakers (issue 28): separation of overlapping voices and who spoke when, on material built
apart from what the models trained on or the settings were chosen on.

Separation: the SI-SDR improvement (dB) of our separator on fully overlapped mixtures of two and
three held-out speakers, beside the mixture itself (0 dB) and the ideal ratio mask on the same
STFT (the oracle of a magnitude mask: what the mask family can reach). Three voices: the model
separates two, so the louder of its two outputs is split again (recursive separation).

Turns: diarization error rate (missed + false alarm + confusion over the scored speaker time,
0.25 s collar, overlaps scored: :func:`roomtone.separate.diarize.diarization_error_rate`) and
whether the speaker count is right, on conversations built from held-out speakers with gaps,
overlaps, and per set reverberation, noise or the telephone band, beside a one-speaker baseline
(every frame our voice activity finds given to one speaker).

============ ===================================================================== ==========
set          what                                                                  role
============ ===================================================================== ==========
``tune``     the "select" half of the held-out speakers (never the benchmark's), 16 kHz settings
``tune-rooms`` the same speakers through measured RIRs, the "select" half of the held-out  settings
             noises at 10-20 dB, 48 kHz input
``clean``    the "evaluate" half of the held-out speakers, 16 kHz                  evaluation
``rooms``    the same speakers, each through a measured RIR, held-out real noise    evaluation
             at 10-20 dB under the voices, 48 kHz input
``phone``    the ``clean`` conversations at 8 kHz (the telephone band)              evaluation
============ ===================================================================== ==========

Settings (the speaker-count threshold per embedding) are chosen on ``tune`` only. The reference
turns are each placed utterance's frames within 40 dB of its loudest 10 ms frame, pauses under
0.3 s bridged.

    python benchmarks/bench_speakers.py                     # every set, 8 conversations each
    python benchmarks/bench_speakers.py --sets tune --thresholds 0.4,0.5,0.6,0.7
    python benchmarks/bench_speakers.py --json speakers.json
"""

import argparse
import json
import sys
import time

import numpy as np

RATE = 16000
SETS = ("tune", "tune-rooms", "clean", "rooms", "phone")
COUNTS = (2, 3, 2, 4, 3, 2, 3, 4)  # speakers per conversation, cycled


def _pools():
    from roomtone.models.training import speech

    pools = speech.load_pools()
    by = {}
    for part in ("train", "select", "evaluate"):
        if part == "train":
            items = pools["train"]["speech"]
        else:
            items = [(k, x) for k, x in pools["val"]["speech"] if speech.held_out_part(k, "speech") == part]
        d = {}
        for k, x in items:
            d.setdefault(k, []).append(x)
        by[part] = d
    noises = {part: [x for k, x in pools["val"]["noise"] if speech.held_out_part(k, "noise") == part]
              for part in ("select", "evaluate")}
    return by, noises, pools["rir"]


def _reference_mask(x, frame=160):
    """10 ms frames of a clean utterance piece within 40 dB of its loudest, pauses < 0.3 s bridged."""
    frames = -(-x.size // frame)
    e = np.zeros(frames * frame)
    e[:x.size] = x.astype(np.float64) ** 2
    e = e.reshape(frames, frame).sum(axis=1)
    on = e > e.max() * 1e-4
    idx = np.flatnonzero(on)
    if idx.size:
        gaps = np.flatnonzero(np.diff(idx) > 1)
        for g in gaps:
            if idx[g + 1] - idx[g] <= 30:
                on[idx[g]:idx[g + 1]] = True
    return on


def conversation(rng, speakers, count, *, seconds=45.0, rirs=None, noises=None):
    """A conversation of ``count`` speakers drawn from ``speakers`` ({id: [arrays]}): turns of
    1.5-6 s in random order (never the same speaker twice running), gaps of 0.1-0.8 s, and 20 %
    of turn changes overlapped by 0.3-1.5 s. Returns (mix (n,), sources (count, n), reference turns)."""
    from roomtone.models.training.speech import reverb, rms
    from roomtone.separate.diarize import Turn

    names = sorted(speakers)
    chosen = [names[int(i)] for i in rng.choice(len(names), size=count, replace=False)]
    n = int(seconds * RATE)
    sources = np.zeros((count, n), np.float32)
    masks = np.zeros((count, -(-n // 160)), bool)
    levels = rng.uniform(-6.0, 6.0, size=count)
    at, last = int(0.3 * RATE), -1
    while at < n - RATE:
        who = int(rng.integers(count))
        if who == last:
            who = (who + 1 + int(rng.integers(count - 1))) % count
        takes = speakers[chosen[who]]
        x = takes[int(rng.integers(len(takes)))]
        length = min(int(rng.uniform(1.5, 6.0) * RATE), x.size, n - at)
        start = int(rng.integers(0, x.size - length + 1))
        piece = x[start:start + length] / (rms(x[start:start + length]) + 1e-9) * 10 ** (levels[who] / 20) * 0.05
        sources[who, at:at + length] += piece
        f0 = at // 160
        m = _reference_mask(piece)
        masks[who, f0:f0 + m.size] |= m[:masks.shape[1] - f0]
        last = who
        if rng.random() < 0.2:
            at += length - int(rng.uniform(0.3, 1.5) * RATE)
        else:
            at += length + int(rng.uniform(0.1, 0.8) * RATE)
    if rirs:
        for k in range(count):
            wet, _ = reverb(rng, rirs, sources[k])
            sources[k] = wet
    mix = sources.sum(axis=0)
    if noises:
        bed = noises[int(rng.integers(len(noises)))]
        reps = -(-n // bed.size)
        bed = np.tile(bed, reps)[:n]
        mix = mix + bed * (rms(mix) / (rms(bed) + 1e-9) * 10 ** (-rng.uniform(10, 20) / 20))
    turns = []
    for k in range(count):
        on = masks[k]
        edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
        for a, b in zip(edges[::2], edges[1::2]):
            turns.append(Turn(a * 0.01, (b - a) * 0.01, f"ref{k}"))
    return mix.astype(np.float32), sources, sorted(turns)


def _at_rate(x, rate):
    from roomtone.resample import resample

    return x if rate == RATE else resample(np.atleast_2d(x).astype(np.float32), RATE, rate)[0]


def turns_table(sets, items, seed, thresholds, embeddings=("ge2e", "mel-stats")):
    from roomtone.separate import speakers_net, voices
    from roomtone.separate.diarize import Turn, diarization_error_rate
    from roomtone.separate.vad import voice_activity

    by, noises, rirs = _pools()
    separator = speakers_net.SpeakerSeparator()
    embedders = {"ge2e": voices.load_embedder(), "mel-stats": voices.MelStatsEncoder()}
    embedders = {k: v for k, v in embedders.items() if k in embeddings}
    rows = []
    for name in sets:
        rng = np.random.default_rng(seed + SETS.index(name))
        part = "select" if name.startswith("tune") else "evaluate"
        rooms = name.endswith("rooms")
        convs = [conversation(rng, by[part], COUNTS[i % len(COUNTS)],
                              rirs=rirs if rooms else None, noises=noises[part] if rooms else None)
                 for i in range(items)]
        rate = 48000 if rooms else (8000 if name == "phone" else RATE)
        for embed_name, embedder in embedders.items():
            for threshold in thresholds or [voices.DISTANCE_THRESHOLDS[embedder.name]]:
                voices.DISTANCE_THRESHOLDS[embedder.name] = threshold
                ders, right, base, seconds = [], 0, [], 0.0
                for mix, sources, ref in convs:
                    x = _at_rate(mix, rate)
                    clock = time.perf_counter()
                    result = voices.speakers(x[None], rate, n="auto", separator=separator, embedder=embedder)
                    seconds += time.perf_counter() - clock
                    ders.append(diarization_error_rate(ref, result.turns)["der"])
                    right += result.report["speakers"] == sources.shape[0]
                    _, speech = voice_activity(x, rate)
                    edges = np.flatnonzero(np.diff(np.concatenate([[0], speech.astype(np.int8), [0]])))
                    one = [Turn(a * 0.01, (b - a) * 0.01, "all") for a, b in zip(edges[::2], edges[1::2])]
                    base.append(diarization_error_rate(ref, one)["der"])
                rows.append({"set": name, "embedding": embed_name, "threshold": threshold, "items": items,
                             "der_mean": float(np.mean(ders)), "der_sd": float(np.std(ders)),
                             "der_max": float(np.max(ders)), "count_right": int(right),
                             "baseline_der_mean": float(np.mean(base)), "seconds": round(seconds, 1)})
                r = rows[-1]
                print(f"{name:6s} {embed_name:9s} thr {threshold:.2f}: DER {100 * r['der_mean']:5.1f} % "
                      f"(sd {100 * r['der_sd']:.1f}, max {100 * r['der_max']:.1f}), count right "
                      f"{right}/{items}; one-speaker baseline {100 * r['baseline_der_mean']:.1f} %  "
                      f"[{seconds:.0f} s]", flush=True)
    return rows


def _stft(x):
    from roomtone.models.stft import sqrt_hann, stft_host

    return stft_host(np.atleast_2d(x).astype(np.float32), sqrt_hann(512), 128)


def _istft(spec, n):
    from roomtone.models.stft import istft_host, sqrt_hann

    return istft_host(spec, sqrt_hann(512), 128, n)


def irm(mix, sources):
    """Ideal ratio mask estimates on the model's STFT: |S_k| / sum_j |S_j| times the mixture."""
    spec = _stft(mix)[0]
    specs = _stft(sources)
    mags = np.abs(specs)
    masks = mags / (mags.sum(axis=0, keepdims=True) + 1e-9)
    return np.stack([_istft(m * spec, mix.size) for m in masks])


def _pit(estimates, sources):
    from itertools import permutations

    from roomtone.enhance.training.data import si_sdr_db

    k = sources.shape[0]
    best = -np.inf
    for p in permutations(range(estimates.shape[0]), k):
        best = max(best, float(np.mean(si_sdr_db(estimates[list(p)], sources))))
    return best


def separation_table(items, seed):
    from roomtone.separate import speakers_net
    from roomtone.separate.training.speakers import validation_set

    from roomtone.models.training import speech
    from roomtone.enhance.training.data import si_sdr_db

    pools = speech.load_pools()
    separator = speakers_net.SpeakerSeparator()
    rows = []
    for count in (2, 3):
        mixes, targets = validation_set(pools, sources=count, items=items, seed=seed, part="evaluate")
        gains = {"mixture": [], "roomtone": [], "irm": []}
        for mix, src in zip(mixes, targets):
            base = float(np.mean(si_sdr_db(np.repeat(mix[None], count, 0), src)))
            out = separator(mix[None])[0, :2]
            if count == 3:
                louder = int(np.argmax((out ** 2).sum(axis=1)))
                again = separator(out[louder][None])[0, :2]
                out = np.concatenate([out[[1 - louder]], again])
            gains["mixture"].append(0.0)
            gains["roomtone"].append(_pit(out, src) - base)
            gains["irm"].append(_pit(irm(mix, src), src) - base)
        for tool, values in gains.items():
            v = np.asarray(values)
            rows.append({"speakers": count, "tool": tool, "items": items, "si_sdri_mean": float(v.mean()),
                         "si_sdri_sd": float(v.std()), "si_sdri_min": float(v.min())})
            print(f"{count} speakers {tool:9s}: SI-SDRi {v.mean():6.2f} dB (sd {v.std():.2f}, min {v.min():.2f})",
                  flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--items", type=int, default=8, help="conversations per set")
    p.add_argument("--sep-items", type=int, default=32, help="mixtures per speaker count")
    p.add_argument("--seed", type=int, default=28)
    p.add_argument("--thresholds", default=None, help="speaker-count thresholds to try (default: the shipped)")
    p.add_argument("--no-separation", action="store_true")
    p.add_argument("--embeddings", default="ge2e,mel-stats", help="speaker embeddings to score (ge2e, mel-stats)")
    p.add_argument("--json", help="write the tables here")
    args = p.parse_args(argv)
    from roomtone.separate import voices

    thresholds = [float(t) for t in args.thresholds.split(",")] if args.thresholds else None
    out = {"command": " ".join(sys.argv), "thresholds": dict(voices.DISTANCE_THRESHOLDS)}
    if not args.no_separation:
        out["separation"] = separation_table(args.sep_items, args.seed)
    out["turns"] = turns_table(args.sets.split(","), args.items, args.seed, thresholds, args.embeddings.split(","))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
