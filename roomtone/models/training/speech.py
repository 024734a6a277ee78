"""The speech, noise and room-impulse-response pools the speech models train on
(``../shared/data/speech``, see its README) and the augmentations they share: the denoiser
(:mod:`roomtone.enhance.training.data`) and the speaker separator
(:mod:`roomtone.separate.training.speakers`).

Held out, by name: speakers (LibriSpeech / LibriTTS / VCTK speaker ids, other files by their own
name) whose CRC-32 is 0 mod 8 (:func:`roomtone.models.training.datasets.held_out_speaker`), and
noise recordings (grouped by source scene) whose CRC-32 is 0 mod 6; each held-out half split
again by :func:`held_out_part` into the training's selection and the benchmarks' evaluation.

Shape: every array (samples,) float32 at 16 kHz.
"""

import re
import zlib
from pathlib import Path

import numpy as np

from roomtone.models.training.datasets import held_out_speaker, speaker_key

SAMPLE_RATE = 16000
DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "speech"


def noise_key(name):
    """The scene a noise file belongs to (chunks of one long recording share it)."""
    stem = Path(name).stem
    stem = re.sub(r"_\d{8}_\d{6}$", "", stem)
    stem = re.sub(r"_chunk\d+.*$", "", stem)
    return stem


def held_out_noise(key):
    return zlib.crc32(key.encode()) % 6 == 0


def held_out_part(key, kind):
    """Which half of the held-out ``kind`` ("speech" or "noise") ``key`` belongs to: ``"select"``
    (the training's validation, which picks weights) or ``"evaluate"`` (the benchmark's sets, read
    once after): a choice of weights never sees an evaluation speaker or noise."""
    modulus = 16 if kind == "speech" else 12
    return "select" if zlib.crc32(key.encode()) % modulus < modulus // 2 else "evaluate"


def read(path):
    import soundfile as sf

    from roomtone.resample import resample

    x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if rate != SAMPLE_RATE:
        x = resample(x[None, :], rate, SAMPLE_RATE)[0]
    return np.ascontiguousarray(x, dtype=np.float32)


TRAIN_MUSIC = ("wesnoth-1.16-music", "singularity-music")  # the others are evaluation's
MUSIC_EXCERPT_S = 20.0


def load_music(packages=TRAIN_MUSIC, seconds=MUSIC_EXCERPT_S):
    """``[(file name, array)]``: the centred ``seconds`` of every music file of ``packages`` that is
    installed (16 kHz mono float32); empty when none is."""
    from roomtone.models.training.datasets import music_files, music_folders

    folders = {k: v for k, v in music_folders().items() if k in packages}
    out = []
    n = int(seconds * SAMPLE_RATE)
    for _, path in music_files(folders):
        x = read(path)
        start = max(0, (x.size - n) // 2)
        if x.size >= SAMPLE_RATE and np.any(x):
            out.append((path.name, np.ascontiguousarray(x[start:start + n])))
    return out


def load_pools(root=DATA, music=False):
    """``{"train"|"val": {"speech": [(key, array)], "noise": [(key, array)]}, "rir": [array]}``,
    every array 16 kHz mono float32; with ``music``, ``train["music"]``: :func:`load_music`."""
    root = Path(root)
    pools = {"train": {"speech": [], "noise": []}, "val": {"speech": [], "noise": []}, "rir": []}
    if music:
        pools["train"]["music"] = load_music()
    for folder in (root / "speech", root / "more" / "speech"):
        for path in sorted(folder.glob("*.flac")):
            key = speaker_key(path.name)
            x = read(path)
            if x.size < SAMPLE_RATE:
                continue
            pools["val" if held_out_speaker(key) else "train"]["speech"].append((key, x))
    for folder in (root / "noise", root / "more" / "noise"):
        for path in sorted(folder.glob("*.flac")):
            key = noise_key(path.name)
            x = read(path)
            if x.size < SAMPLE_RATE // 2 or not np.any(x):
                continue
            pools["val" if held_out_noise(key) else "train"]["noise"].append((key, x))
    for path in sorted((root / "more" / "rir").glob("*.flac")):
        h = read(path)
        peak = int(np.argmax(np.abs(h)))
        h = h[max(0, peak - 16):]
        pools["rir"].append((h / (np.abs(h).max() + 1e-9)).astype(np.float32))
    return pools


def manifest(pools):
    """What the pools hold (for the weights' config): counts, minutes, held-out keys."""
    out = {}
    for split in ("train", "val"):
        for kind in ("speech", "noise"):
            items = pools[split][kind]
            out[f"{split}_{kind}_files"] = len(items)
            out[f"{split}_{kind}_minutes"] = round(sum(x.size for _, x in items) / SAMPLE_RATE / 60, 2)
            out[f"{split}_{kind}_keys"] = len({k for k, _ in items})
    out["val_speakers"] = sorted({k for k, _ in pools["val"]["speech"]})
    out["val_noises"] = sorted({k for k, _ in pools["val"]["noise"]})
    out["rirs"] = len(pools["rir"])
    music = pools["train"].get("music") or []
    if music:
        from roomtone.models.training.datasets import LICENCES

        out["train_music_files"] = len(music)
        out["train_music_packages"] = {k: LICENCES[k] for k in TRAIN_MUSIC}
    return out


def crop(rng, x, n):
    if x.size >= n:
        start = int(rng.integers(0, x.size - n + 1))
        return x[start:start + n].copy()
    reps = -(-n // x.size)
    start = int(rng.integers(0, x.size))
    return np.tile(x, reps + 1)[start:start + n].copy()


def eq(rng, x, max_db=6.0):
    """Random tilt and a random bell, in the frequency domain."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.size, 1.0 / SAMPLE_RATE)
    octaves = np.log2(np.maximum(f, 50.0) / 1000.0)
    gain_db = rng.uniform(-max_db, max_db) / 3.0 * octaves
    centre = np.log2(rng.uniform(200, 6000) / 1000.0)
    gain_db += rng.uniform(-max_db, max_db) * np.exp(-0.5 * ((octaves - centre) / rng.uniform(0.3, 1.2)) ** 2)
    return np.fft.irfft(spec * 10.0 ** (np.clip(gain_db, -12, 12) / 20.0), n=x.size).astype(np.float32)


def coloured(rng, n):
    slope = rng.uniform(-6.0, 3.0)  # dB per octave
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spec *= 10.0 ** (slope * np.log2(np.maximum(f, 20.0) / 1000.0) / 20.0)
    return np.fft.irfft(spec, n=n).astype(np.float32)


def hum(rng, n):
    f0 = 50.0 if rng.random() < 0.5 else 60.0
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n)
    for k in range(1, int(rng.integers(2, 12))):
        out += rng.uniform(0.05, 1.0) / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi))
    return out.astype(np.float32)


def rms(x):
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2) + 1e-12))


def bursts(rng, n, rate_hz, length_ms, decay_ms):
    """Impulsive events at Poisson times: white-noise bursts of ``length_ms`` with an exponential
    decay of ``decay_ms``, random signs and levels (0.1..1, log-uniform). Shape: (n,)."""
    out = np.zeros(n, np.float64)
    events = rng.poisson(rate_hz * n / SAMPLE_RATE) + 1
    length = max(8, int(length_ms * SAMPLE_RATE / 1000))
    t = np.arange(length)
    for start in rng.integers(-length // 2, n, events):
        decay = rng.uniform(0.3, 1.5) * decay_ms * SAMPLE_RATE / 1000
        burst = rng.standard_normal(length) * np.exp(-t / decay) * 10.0 ** rng.uniform(-1, 0)
        lo, hi = max(0, start), min(n, start + length)
        if hi > lo:
            out[lo:hi] += burst[lo - start:hi - start]
    return out


def transients(rng, n):
    """Synthetic non-stationary noise, coloured by a random EQ afterwards: ``"tap"`` (finger taps
    and knocks on a table or a laptop: bursts of 5-40 ms, 0.5-6 per second, low-passed so some
    thump), ``"click"`` (keyboard and mouse clicks: 1-8 ms bursts, 2-12 per second), ``"rub"``
    (handling noise and clothes on a lapel microphone: low-passed noise under a slow random
    envelope, raised to a power so it comes in gusts). Shape: (n,) float32."""
    kind = rng.choice(["tap", "click", "rub"])
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    if kind == "tap":
        x = bursts(rng, n, rng.uniform(0.5, 6.0), rng.uniform(5, 40), rng.uniform(2, 15))
        cutoff = rng.uniform(300, 4000)
    elif kind == "click":
        x = bursts(rng, n, rng.uniform(2.0, 12.0), rng.uniform(1, 8), rng.uniform(0.5, 3))
        cutoff = rng.uniform(2000, 8000)
    else:
        env = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * (f < rng.uniform(1.0, 8.0)), n=n)
        env = np.abs(env) / (np.abs(env).max() + 1e-12)
        x = rng.standard_normal(n) * env ** rng.uniform(1.0, 3.0)
        cutoff = rng.uniform(200, 3000)
    spec = np.fft.rfft(x) / np.sqrt(1.0 + (f / cutoff) ** (2 * int(rng.integers(1, 4))))
    return eq(rng, np.fft.irfft(spec, n=n).astype(np.float32))


def noise(rng, pool, speech_pool, n):
    kind = rng.random()
    if kind < 0.05 and pool.get("music"):
        _, x = pool["music"][int(rng.integers(len(pool["music"])))]
        noise = eq(rng, crop(rng, x, n))
    elif kind < 0.5 and pool["noise"]:
        noise = eq(rng, crop(rng, real_noise(rng, pool["noise"]), n))
    elif kind < 0.62:
        noise = np.zeros(n, np.float32)
        for _ in range(int(rng.integers(3, 7))):
            _, s = speech_pool[int(rng.integers(len(speech_pool)))]
            noise += crop(rng, s, n) * rng.uniform(0.3, 1.0)
    elif kind < 0.75:
        noise = coloured(rng, n)
    else:
        noise = transients(rng, n)
    if kind < 0.75 and rng.random() < 0.2:  # taps over a background
        bed = noise
        noise = transients(rng, n)
        noise = noise / (rms(noise) + 1e-9) * rms(bed) * 10.0 ** rng.uniform(-0.5, 1.0) + bed
    if rng.random() < 0.15:
        noise = noise + hum(rng, n) * rms(noise) * rng.uniform(0.3, 2.0) / 0.5
    return noise


def real_noise(rng, noises):
    """A recording from ``noises`` [(key, array)]: a scene drawn uniformly, then one of its files."""
    keys = sorted({k for k, _ in noises})
    key = keys[int(rng.integers(len(keys)))]
    files = [x for k, x in noises if k == key]
    return files[int(rng.integers(len(files)))]


def reverb(rng, rirs, speech):
    h = rirs[int(rng.integers(len(rirs)))]
    early = int(0.05 * SAMPLE_RATE)
    taper = np.hanning(2 * early)[early:]
    head = h[:early] * taper[:min(early, h.size)]
    size = speech.size + h.size - 1
    nfft = 1 << (size - 1).bit_length()
    sp = np.fft.rfft(speech, nfft)
    wet = np.fft.irfft(sp * np.fft.rfft(h, nfft), nfft)[:speech.size]
    dry = np.fft.irfft(sp * np.fft.rfft(head, nfft), nfft)[:speech.size]
    return wet.astype(np.float32), dry.astype(np.float32)
