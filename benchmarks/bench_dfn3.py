"""dfn3 (our Flax DeepFilterNet3, offline in blocks) against the wheel's native streaming runtime.

    python benchmarks/bench_dfn3.py [--input FILE] [--seconds 30] [--repeat 3]

Prints real-time factors (seconds of work per second of audio): the whole process (a fresh Python
process: imports, weights from the cache, compilation from the persistent cache or not, the
enhancement), the warm call in a process that has run once, and the native runtime (its C API hop by
hop, in this process; the library load is tiny). And the deviation: SI-SDR of ours against the native
output. Needs ``pip install 'roomtone[dfn3]'``; the default input is the 48 kHz noisy example in
``../shared/data/speech/fullband``.
"""

import argparse
import os
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
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
