#!/usr/bin/env python
"""The enhance job's repair stages on real recordings: click recall, false repairs on clean
material, hum found, before (the code at ``--base``) and after (this working tree), side by side.

Sets, each reported on its own, read by path from ``../shared/data`` (never copied):

- ``libri-tune``: LibriSpeech 16 kHz (``speech/speech``), the speakers whose number ends in 0 or 1:
  the thresholds were chosen on these (and on ``vctk-tune``); the other rows are held out.
- ``libri-held``: LibriSpeech 16 kHz, every other speaker (a fixed draw of ``--files`` utterances).
- ``vctk-tune``: VCTK speaker p225, 48 kHz (``speech/more/speech``).
- ``vctk-held``: the other VCTK speakers at 48 kHz and ``speech/fullband`` (VCTK p286, the clean
  Freesound 33711 clip).
- ``other-held``: other corpora and rates: CMU ARCTIC 16 kHz, LJ Speech 22.05 kHz, LibriTTS
  24 kHz, Hi-Fi TTS and a Freesound clip at 44.1 kHz.
- ``music-held``: the six pieces of ``music/`` (44.1 kHz stereo), a 20 s excerpt each.

Per set: false repairs per minute on the clean recordings as they are (``false/min``; ``max
change``: the largest sample moved, full scale 1) and click recall: 12 clicks injected into every
file (seeded), cycling through shapes (a one-sample impulse; Hann-windowed noise bursts of 0.1,
0.5, 1 and 2 ms; a one-sided 0.3 ms pop), peak amplitudes 0.05, 0.1, 0.2 and 0.4 of full scale and
both polarities, into the clean file, the file with pink noise at 10 dB SNR, and a stereo copy
(the second channel the voice 0.3 ms later with its own noise; every other click in one channel
only). The reference is the same signal without the clicks; a click counts as repaired where the
error energy within 1 ms of it drops by more than 10 dB (``recall``; ``1smp``, ``<=0.5ms``,
``1-2ms``: by length; ``0.05FS``: the quietest). ``HF pk/rms``: the peak of the band above 3 kHz
around a click over its RMS over the 50 ms around, in dB, mean over clicks, for the reference /
the input / the output. The ``oracle`` row is the ceiling: the working tree's repair
(``Declick.repair``) at each click's true span, as a perfect detector would give it (a click
under the noise in its span cannot lose 10 dB, whatever finds it).

Issue (``issue``): the issue's own case on held-out 48 kHz speech (VCTK and the Freesound clip),
at speech peaks of 0.2, 0.5 and 0.9 with pink noise 10 dB under, a 60 Hz series and 20 bursts of
0.5 ms at 0.4 FS, through ``enhance --preset podcast`` with either denoiser, the declick stage of
each implementation: clicks repaired and the HF peak-to-RMS around them, reference / in / out.

Hum: find_hum (after the chain's 75 Hz high-pass, as in the podcast preset: hum and speech through it) on held-out speech
(LibriSpeech and VCTK utterances resampled to 16, 44.1 and 48 kHz) with a 50 or 60 Hz series
(8 harmonics, 1/h, mains off by up to 0.05 Hz) 10, 20 and 30 dB under the speech's RMS: the
fraction found with the right mains, and the fraction of the clean files where a hum was found.

    python benchmarks/bench_repair.py                       # every set
    python benchmarks/bench_repair.py --sets libri-tune,vctk-tune --files 8
    python benchmarks/bench_repair.py --base HEAD~3         # another "before"
"""

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
BASE = "fe88879"  # main when issue 24 section 5 was taken up
SETS = ("libri-tune", "libri-held", "vctk-tune", "vctk-held", "other-held", "music-held")
CLICKS_PER_FILE = 12
SHAPES = (("impulse", 0.0), ("burst", 0.1), ("burst", 0.5), ("burst", 1.0), ("burst", 2.0), ("pop", 0.3))
AMPLITUDES = (0.4, 0.2, 0.1, 0.05)


# ------------------------------------------------------------------------------ implementations

def _load_base(commit):
    """``(Declick, find_hum)`` as they were at ``commit``: its ``kernels/enhance.py`` and
    ``roomtone/plugins/repair.py`` (``enhance/processors.py`` before the plugin library) loaded as private
    modules (the processors' registration skipped)."""
    tmp = Path(tempfile.mkdtemp(prefix="roomtone_base_"))

    def show(path):
        return subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{path}"], check=True, capture_output=True,
                              text=True).stdout

    def load(name, source):
        path = tmp / f"{name}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    load("_base_kernels_enhance", show("kernels/enhance.py"))
    try:  # the repair stages' home since the plugin library (issue 25)
        source = show("roomtone/plugins/repair.py")
    except subprocess.CalledProcessError:
        source = show("enhance/processors.py")
    for old, new in (("from roomtone.kernels.enhance import", "from _base_kernels_enhance import"),
                     ("from roomtone.processor import Processor, param, register",
                      "from roomtone.processor import Processor, param\n\n\ndef register(kind):\n"
                      "    return lambda cls: cls")):
        if old not in source:
            raise SystemExit(f"--base {commit}: its repair module has no {old!r}")
        source = source.replace(old, new)
    # the core's shared stages moved into roomtone.plugins after that file was written
    source = source.replace("from roomtone.stages import time_coef", "from roomtone.plugins.units import time_coef")
    module = load("_base_processors", source)
    return module.Declick, module.find_hum


def _implementations(base):
    from roomtone.plugins import Declick, find_hum

    old_declick, old_find_hum = _load_base(base)
    return {"before": (old_declick(), old_find_hum), "after": (Declick(), find_hum)}


# ------------------------------------------------------------------------------------- the sets

def _librispeech(tune):
    files = sorted((DATA / "speech" / "speech").glob("resemblyzer__librispeech_*.flac"))
    speaker = [int(f.name.split("__")[-1].split("-")[0]) for f in files]
    return [f for f, s in zip(files, speaker) if (s % 10 in (0, 1)) == tune]


def _set_files(name, count):
    more = DATA / "speech" / "more" / "speech"
    if name == "libri-tune":
        files = _librispeech(True)
    elif name == "libri-held":
        files = _librispeech(False)
    elif name == "vctk-tune":
        files = sorted(more.glob("vctk_p225_*.flac"))
    elif name == "vctk-held":
        files = ([f for f in sorted(more.glob("vctk_*.flac")) if "p225" not in f.name]
                 + [DATA / "speech" / "fullband" / n for n in ("vctk_p286_011_48k.flac", "freesound_33711_clean_48k.flac")])
    elif name == "other-held":
        files = (sorted((DATA / "speech" / "speech").glob("pyroomacoustics__*.flac"))[:4]
                 + sorted(more.glob("ljspeech_*.flac"))[:6] + sorted(more.glob("libritts_*.flac"))
                 + sorted(more.glob("hifitts_*.flac")) + sorted(more.glob("freesound*.flac")))
    elif name == "music-held":
        files = [f for f in sorted((DATA / "music").iterdir()) if f.stem != "long_3min"]
    else:
        raise SystemExit(f"unknown set {name!r}; sets: {', '.join(SETS)}")
    if len(files) > count:  # a fixed, spread draw
        files = [files[i] for i in np.linspace(0, len(files) - 1, count).round().astype(int)]
    return files


def _read(path, music):
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    audio = np.ascontiguousarray(audio.T)
    if music:
        mid = audio.shape[1] // 2
        half = min(audio.shape[1] // 2, 10 * rate)
        audio = audio[:, mid - half:mid + half]
    return audio, rate


# ------------------------------------------------------------------------------------- signals

def _pink(n, rate, rms, seed):
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    spec[1:] /= np.sqrt(freqs[1:])
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    return (x * rms / np.sqrt(np.mean(x ** 2) + 1e-30)).astype(np.float32)


def _click(shape, length_ms, amplitude, rate, rng):
    if shape == "impulse":
        return np.array([amplitude])
    n = max(2, int(round(length_ms * 1e-3 * rate)))
    if shape == "pop":
        return amplitude * np.sin(np.pi * (np.arange(n) + 0.5) / n)
    burst = rng.standard_normal(n) * np.hanning(n + 2)[1:-1]
    return amplitude * burst / np.abs(burst).max()


def _inject(clean, rate, seed, stereo):
    """``(clicked, [(channels, at, length, shape index, amplitude)])``: 12 clicks spread over the
    file (at least 50 ms apart and from the ends)."""
    rng = np.random.default_rng(seed)
    n = clean.shape[1]
    x = clean.copy()
    margin = int(0.1 * rate)
    slots = np.linspace(margin, n - margin, CLICKS_PER_FILE + 2)[1:-1]
    jitter = 0.3 * (slots[1] - slots[0]) if slots.size > 1 else 0.0
    clicks = []
    for i, at in enumerate(slots):
        at = int(at + rng.uniform(-jitter, jitter))
        kind = (i + seed) % len(SHAPES)
        amplitude = AMPLITUDES[(i + i // len(SHAPES) + seed) % len(AMPLITUDES)] * (1 if rng.uniform() < 0.5 else -1)
        wave = _click(SHAPES[kind][0], SHAPES[kind][1], amplitude, rate, rng)
        chans = [0] if not stereo else ([0, 1] if i % 2 == 0 else [int(rng.integers(2))])
        for c in chans:
            x[c, at:at + wave.size] += wave
        clicks.append((chans, at, wave.size, kind, abs(amplitude)))
    return x, clicks


def _highpass3k(x, rate):
    from roomtone import filters
    from roomtone.kernels.biquad import sos_filter

    sos = filters.butterworth2_sos(3000.0, rate, "high")
    sos = np.concatenate([sos, sos])
    return sos_filter(np.ascontiguousarray(x, np.float32), sos, np.empty(x.shape, np.float32)).astype(np.float64)


def _hf_peak_to_rms(high, at, length, rate):
    """One click's peak of the band above 3 kHz (``high``: one channel through
    :func:`_highpass3k`) within it and 1 ms either side, over that band's RMS in the 25 ms either
    side, dB (as the issue measured it)."""
    pad, around = max(1, int(1e-3 * rate)), int(0.025 * rate)
    w = slice(max(0, at - pad), at + length + pad)
    ctx = np.concatenate((high[max(0, at - around):w.start], high[w.stop:at + around]))
    return 20 * np.log10(np.abs(high[w]).max() / (np.sqrt(np.mean(ctx ** 2)) + 1e-12) + 1e-12)


def _click_scores(ref, x, out, rate, clicks):
    """Per click: ``(repaired, hf ref, hf in, hf out)``."""
    pad = max(1, int(1e-3 * rate))
    highs = [_highpass3k(s, rate) if rate > 8000 else None for s in (ref, x, out)]
    scores = []
    for chans, at, length, _, _ in clicks:
        w = slice(max(0, at - pad), at + length + pad)
        before = sum(np.sum((x[c, w].astype(np.float64) - ref[c, w]) ** 2) for c in chans)
        after = sum(np.sum((out[c, w].astype(np.float64) - ref[c, w]) ** 2) for c in chans)
        hf = [np.nan if high is None else _hf_peak_to_rms(high[chans[0]], at, length, rate) for high in highs]
        scores.append((after < 0.1 * before, *hf))
    return scores


def _stereo(mono, rate, seed):
    lag = int(round(0.3e-3 * rate))
    second = np.roll(mono[0], lag) * 0.8
    return np.ascontiguousarray(np.stack([mono[0], second]))


# ------------------------------------------------------------------------------------ measures

def click_rows(name, files, impls):
    music = name.startswith("music")
    results = {label: {"false": 0, "minutes": 0.0, "moved": 0.0, "seconds": 0.0, "conds": {}} for label in impls}
    oracle = {}
    for k, path in enumerate(files):
        audio, rate = _read(path, music)
        seed = zlib.crc32(path.name.encode()) % 10000
        rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
        conditions = []
        if music:
            conditions.append(("clean stereo", audio))
        else:
            mono = audio[:1]
            noisy = mono + _pink(mono.shape[1], rate, rms / np.sqrt(10.0), seed)[None]
            stereo = _stereo(mono, rate, seed)
            stereo = stereo + np.stack([_pink(mono.shape[1], rate, rms / np.sqrt(10.0), seed + c) for c in (1, 2)])
            conditions += [("clean mono", mono), ("noisy 10 dB mono", noisy), ("noisy 10 dB stereo", stereo)]
        for label, (declick, _) in impls.items():
            res = results[label]
            start = time.perf_counter()
            out, info = declick.run(audio, rate)
            res["seconds"] += time.perf_counter() - start
            res["false"] += info["clicks_repaired"]
            res["minutes"] += audio.shape[1] / rate / 60.0
            res["moved"] = max(res["moved"], float(np.abs(out - audio).max()))
            for cond, ref in conditions:
                ref = np.ascontiguousarray(ref, np.float32)
                x, clicks = _inject(ref, rate, seed + k, ref.shape[0] == 2)
                out, _ = declick.run(x, rate)
                res["conds"].setdefault(cond, []).extend(
                    (kind, amp, *s) for (_, _, _, kind, amp), s in zip(clicks, _click_scores(ref, x, out, rate, clicks)))
        # the ceiling: the working tree's repair at each click's true span (a perfect detector)
        repair = impls["after"][0]
        margin = 2 + int(round(0.1e-3 * rate))
        for cond, ref in conditions:
            ref = np.ascontiguousarray(ref, np.float32)
            x, clicks = _inject(ref, rate, seed + k, ref.shape[0] == 2)
            out = x.copy()
            for chans, at, length, _, _ in clicks:
                for c in chans:
                    repair.repair(out[c], at - margin, at + length + margin, rate)
            oracle.setdefault(cond, []).extend(
                (kind, amp, *s) for (_, _, _, kind, amp), s in zip(clicks, _click_scores(ref, x, out, rate, clicks)))
    results["oracle"] = {"conds": oracle}
    return results


def _pct(values):
    return f"{100 * np.mean(values):.0f}" if len(values) else "-"


def print_click_table(name, files, results):
    minutes = next(iter(results.values()))["minutes"]
    print(f"\n### {name}: {len(files)} files, {minutes:.1f} min\n")
    print("| condition | code | recall % | 1smp | <=0.5ms | 1-2ms | 0.05FS | HF pk/rms dB ref / in / out |")
    print("|---|---|---|---|---|---|---|---|")
    for cond in next(iter(results.values()))["conds"]:
        for label, res in results.items():
            rows = res["conds"][cond]
            rep = [r[2] for r in rows]
            by = lambda pick: [r[2] for r in rows if pick(r)]  # noqa: E731
            hf = np.array([r[3:] for r in rows], dtype=float)
            hf_text = " / ".join(f"{v:.1f}" for v in np.nanmean(hf, axis=0)) if np.isfinite(hf).any() else "-"
            print(f"| {cond} | {label} | {_pct(rep)} | {_pct(by(lambda r: r[0] == 0))} "
                  f"| {_pct(by(lambda r: r[0] in (1, 2, 5)))} | {_pct(by(lambda r: r[0] in (3, 4)))} "
                  f"| {_pct(by(lambda r: r[1] == 0.05))} | {hf_text} |")
    print("\n| clean material | code | false repairs | false/min | max change | declick s/min |")
    print("|---|---|---|---|---|---|")
    for label, res in results.items():
        if "false" not in res:
            continue
        print(f"| {name} | {label} | {res['false']} | {res['false'] / max(res['minutes'], 1e-9):.1f} "
              f"| {res['moved']:.3f} | {res['seconds'] / max(res['minutes'], 1e-9):.2f} |")


def hum_table(files, impls):
    from roomtone.plugins import HighPass
    from roomtone.resample import resample

    rates = (16000, 44100, 48000)
    levels = (10.0, 20.0, 30.0)
    found = {(label, r, m, lv): [] for label in impls for r in rates for m in (50.0, 60.0) for lv in levels}
    false = {(label, r): [] for label in impls for r in rates}
    for k, path in enumerate(files):
        audio, rate = _read(path, False)
        for r in rates:
            x = audio[:1] if rate == r else resample(audio[:1], rate, r)
            x = np.ascontiguousarray(x, np.float32)
            rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
            t = np.arange(x.shape[1]) / r
            rng = np.random.default_rng(k)
            for label, (_, find_hum) in impls.items():
                false[(label, r)].append(find_hum(HighPass()(x, r), r)["found"])
            for mains in (50.0, 60.0):
                f0 = mains + rng.uniform(-0.05, 0.05)
                hum = sum(np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 6.3)) / h for h in range(1, 9))
                hum /= np.sqrt(np.mean(hum ** 2))
                for lv in levels:
                    y = HighPass()((x + rms * 10 ** (-lv / 20) * hum).astype(np.float32), r)
                    for label, (_, find_hum) in impls.items():
                        got = find_hum(y, r)
                        found[(label, r, mains, lv)].append(got["found"] and got["mains_hz"] == mains)
    print(f"\n### hum: {len(files)} held-out utterances (LibriSpeech and VCTK), found with the right mains, %\n")
    head = " | ".join(f"{int(m)} Hz -{int(lv)} dB" for m in (50.0, 60.0) for lv in levels)
    print(f"| rate | code | {head} | clean: hum found |")
    print("|---|---|" + "---|" * (2 * len(levels) + 1))
    for r in rates:
        for label in impls:
            cells = " | ".join(_pct(found[(label, r, m, lv)]) for m in (50.0, 60.0) for lv in levels)
            print(f"| {r / 1000:g} kHz | {label} | {cells} | {_pct(false[(label, r)])} |")


def issue_case_table(files, impls):
    """Issue 24 §5's own case on real held-out full-band speech: each file at a speech peak of 0.2,
    0.5 and 0.9, pink noise 10 dB under, a 60 Hz hum series 20 dB under, 20 Hann bursts of 0.5 ms at
    0.4 FS (clipped at 1), through ``enhance --preset podcast`` (both denoisers), with the declick
    stage of each implementation; the clean mix through the same chain is the reference."""
    from roomtone.enhance import enhance
    from roomtone.plugins import repair

    print(f"\n### issue case: {len(files)} held-out 48 kHz utterances (VCTK, Freesound), enhance --preset podcast\n")
    print("| speech peak | model | code | clicks repaired of 20 (mean) | HF pk/rms dB ref / in / out |")
    print("|---|---|---|---|---|")
    current = repair.Declick.run_in_place
    for peak in (0.2, 0.5, 0.9):
        for model in ("classic", "roomtone"):
            for label, (declick, _) in impls.items():
                repaired, hf = [], []
                for k, path in enumerate(files):
                    audio, rate = _read(path, False)
                    v = audio[0].astype(np.float64)
                    v *= peak / np.abs(v).max()
                    n, rms = v.size, float(np.sqrt(np.mean(v ** 2)))
                    t = np.arange(n) / rate
                    hum = sum(np.sin(2 * np.pi * 60.0 * h * t + h) / h for h in range(1, 9))
                    clean = v + _pink(n, rate, rms / np.sqrt(10.0), k) + 0.1 * rms * hum / np.sqrt(np.mean(hum ** 2))
                    clean = np.clip(clean, -1.0, 1.0).astype(np.float32)[None]
                    x = clean.copy()
                    rng = np.random.default_rng(k)
                    length = int(round(0.5e-3 * rate))
                    clicks = [(int(at), length) for at in np.linspace(0.1 * rate, n - 0.1 * rate, 20)]
                    for at, _ in clicks:
                        burst = rng.standard_normal(length) * np.hanning(length + 2)[1:-1]
                        x[0, at:at + length] += 0.4 * rng.choice([-1.0, 1.0]) * burst / np.abs(burst).max()
                    x = np.clip(x, -1.0, 1.0)
                    if not isinstance(declick, repair.Declick):  # an earlier commit's detector in the chain
                        repair.Declick.run_in_place = lambda self, audio, r, d=declick: d.run_in_place(audio, r)
                    try:
                        out, report = enhance(x, rate, preset="podcast", model=model)
                        ref, _ = enhance(clean, rate, preset="podcast", model=model)
                    finally:
                        repair.Declick.run_in_place = current
                    stage = next(s for s in report["stages"] if s["stage"] == "declick")
                    repaired.append(stage["clicks_repaired"])
                    hf.append([np.mean([_hf_peak_to_rms(_highpass3k(y, rate)[0], at, length, rate)
                                        for at, length in clicks]) for y in (ref, x, out)])
                hf = np.mean(hf, axis=0)
                print(f"| {peak} | {model} | {label} | {np.mean(repaired):.1f} | "
                      + " / ".join(f"{v:.1f}" for v in hf) + " |")
                sys.stdout.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS) + ",hum,issue")
    parser.add_argument("--files", type=int, default=24, help="at most this many files per set")
    parser.add_argument("--base", default=BASE, help="the commit whose code is 'before'")
    args = parser.parse_args(argv)
    impls = _implementations(args.base)
    print(f"before: {args.base}; after: the working tree")
    for name in args.sets.split(","):
        if name == "issue":
            issue_case_table(_set_files("vctk-held", args.files)[:8], impls)
            continue
        if name == "hum":
            files = _set_files("libri-held", max(2, args.files // 2))[:8] + _set_files("vctk-held", 8)
            hum_table(files, impls)
            continue
        files = _set_files(name, args.files)
        print_click_table(name, files, click_rows(name, files, impls))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
