"""Training and validation mixtures for the ``roomtone`` denoiser, made on the fly from the
speech, noise and room-impulse-response pools in ``../shared/data/speech`` (see its README).

Held out for validation, by name: speakers (LibriSpeech / LibriTTS / VCTK speaker ids, other
files by their own name) whose CRC-32 is 0 mod 8, and noise recordings (grouped by source scene)
whose CRC-32 is 0 mod 6. A validation mixture is made only from held-out speakers and noises; no
training mixture ever uses them.

Augmentation of a training mixture (all at 16 kHz):
- speech: a random crop, random level, random spectral tilt / two-band EQ (+-6 dB);
- reverberation (40 %): a measured RIR, the target keeping the direct path and the first 50 ms
  (early reflections) only, the input the whole tail;
- noise: a real recording (a scene drawn uniformly, then one of its files: a soundscape cut into
  96 chunks weighs as much as a single recording; random crop, EQ), or babble (3-6 other training
  speakers), or coloured noise (slope -6..+3 dB/octave), or synthetic transients (:func:`_transients`:
  taps, knocks, keyboard clicks, handling rubs, the impulsive noise of interviews that the real
  pools hold little of), alone or over another noise; mains hum (50/60 Hz and harmonics) added to
  any of these;
- music (5 % of noises, where Debian's game music is installed: ``wesnoth-1.16-music`` GPL-2 and
  ``singularity-music`` CC BY-SA 3.0 only; ``hyperrogue-music`` and ``nexuiz-music`` are kept for
  evaluation, ``benchmarks/bench_enhance_sets.py``): a radio or TV under the voice;
- SNR uniform in -5..25 dB; 5 % of items noise-free (clean speech must pass unchanged) and 3 %
  speech-free (noise alone: the target is silence);
- the channel (15 %): the noisy input through Opus at 48 kHz (libsndfile, a random compression
  level), as calls and compressed recordings arrive; the target stays uncoded;
- input peak kept under full scale.

Shape: mixtures (items, samples) float32 at 16 kHz.
"""

import re
import zlib
from pathlib import Path

import numpy as np

from roomtone.models.training.datasets import held_out_speaker, speaker_key  # noqa: F401  (shared with separate)

SAMPLE_RATE = 16000
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "speech"


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


def _read(path):
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
        x = _read(path)
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
            x = _read(path)
            if x.size < SAMPLE_RATE:
                continue
            pools["val" if held_out_speaker(key) else "train"]["speech"].append((key, x))
    for folder in (root / "noise", root / "more" / "noise"):
        for path in sorted(folder.glob("*.flac")):
            key = noise_key(path.name)
            x = _read(path)
            if x.size < SAMPLE_RATE // 2 or not np.any(x):
                continue
            pools["val" if held_out_noise(key) else "train"]["noise"].append((key, x))
    for path in sorted((root / "more" / "rir").glob("*.flac")):
        h = _read(path)
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


def _crop(rng, x, n):
    if x.size >= n:
        start = int(rng.integers(0, x.size - n + 1))
        return x[start:start + n].copy()
    reps = -(-n // x.size)
    start = int(rng.integers(0, x.size))
    return np.tile(x, reps + 1)[start:start + n].copy()


def _eq(rng, x, max_db=6.0):
    """Random tilt and a random bell, in the frequency domain."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.size, 1.0 / SAMPLE_RATE)
    octaves = np.log2(np.maximum(f, 50.0) / 1000.0)
    gain_db = rng.uniform(-max_db, max_db) / 3.0 * octaves
    centre = np.log2(rng.uniform(200, 6000) / 1000.0)
    gain_db += rng.uniform(-max_db, max_db) * np.exp(-0.5 * ((octaves - centre) / rng.uniform(0.3, 1.2)) ** 2)
    return np.fft.irfft(spec * 10.0 ** (np.clip(gain_db, -12, 12) / 20.0), n=x.size).astype(np.float32)


def _coloured(rng, n):
    slope = rng.uniform(-6.0, 3.0)  # dB per octave
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spec *= 10.0 ** (slope * np.log2(np.maximum(f, 20.0) / 1000.0) / 20.0)
    return np.fft.irfft(spec, n=n).astype(np.float32)


def _hum(rng, n):
    f0 = 50.0 if rng.random() < 0.5 else 60.0
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n)
    for k in range(1, int(rng.integers(2, 12))):
        out += rng.uniform(0.05, 1.0) / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi))
    return out.astype(np.float32)


def _rms(x):
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2) + 1e-12))


def _bursts(rng, n, rate_hz, length_ms, decay_ms):
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


def _transients(rng, n):
    """Synthetic non-stationary noise, coloured by a random EQ afterwards: ``"tap"`` (finger taps
    and knocks on a table or a laptop: bursts of 5-40 ms, 0.5-6 per second, low-passed so some
    thump), ``"click"`` (keyboard and mouse clicks: 1-8 ms bursts, 2-12 per second), ``"rub"``
    (handling noise and clothes on a lapel microphone: low-passed noise under a slow random
    envelope, raised to a power so it comes in gusts). Shape: (n,) float32."""
    kind = rng.choice(["tap", "click", "rub"])
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    if kind == "tap":
        x = _bursts(rng, n, rng.uniform(0.5, 6.0), rng.uniform(5, 40), rng.uniform(2, 15))
        cutoff = rng.uniform(300, 4000)
    elif kind == "click":
        x = _bursts(rng, n, rng.uniform(2.0, 12.0), rng.uniform(1, 8), rng.uniform(0.5, 3))
        cutoff = rng.uniform(2000, 8000)
    else:
        env = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * (f < rng.uniform(1.0, 8.0)), n=n)
        env = np.abs(env) / (np.abs(env).max() + 1e-12)
        x = rng.standard_normal(n) * env ** rng.uniform(1.0, 3.0)
        cutoff = rng.uniform(200, 3000)
    spec = np.fft.rfft(x) / np.sqrt(1.0 + (f / cutoff) ** (2 * int(rng.integers(1, 4))))
    return _eq(rng, np.fft.irfft(spec, n=n).astype(np.float32))


def _noise(rng, pool, speech_pool, n):
    kind = rng.random()
    if kind < 0.05 and pool.get("music"):
        _, x = pool["music"][int(rng.integers(len(pool["music"])))]
        noise = _eq(rng, _crop(rng, x, n))
    elif kind < 0.5 and pool["noise"]:
        noise = _eq(rng, _crop(rng, _real_noise(rng, pool["noise"]), n))
    elif kind < 0.62:
        noise = np.zeros(n, np.float32)
        for _ in range(int(rng.integers(3, 7))):
            _, s = speech_pool[int(rng.integers(len(speech_pool)))]
            noise += _crop(rng, s, n) * rng.uniform(0.3, 1.0)
    elif kind < 0.75:
        noise = _coloured(rng, n)
    else:
        noise = _transients(rng, n)
    if kind < 0.75 and rng.random() < 0.2:  # taps over a background
        bed = noise
        noise = _transients(rng, n)
        noise = noise / (_rms(noise) + 1e-9) * _rms(bed) * 10.0 ** rng.uniform(-0.5, 1.0) + bed
    if rng.random() < 0.15:
        noise = noise + _hum(rng, n) * _rms(noise) * rng.uniform(0.3, 2.0) / 0.5
    return noise


def _real_noise(rng, noises):
    """A recording from ``noises`` [(key, array)]: a scene drawn uniformly, then one of its files."""
    keys = sorted({k for k, _ in noises})
    key = keys[int(rng.integers(len(keys)))]
    files = [x for k, x in noises if k == key]
    return files[int(rng.integers(len(files)))]


def _reverb(rng, rirs, speech):
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


CODEC_SHARE = 0.15


def opus(x, compression):
    """``x`` (samples,) at 16 kHz through Opus at 48 kHz (libsndfile; ``compression`` 0..1, about
    48 down to 16 kb/s for speech), back at 16 kHz, the same length."""
    import io

    import soundfile as sf

    from roomtone.resample import resample

    up = resample(np.asarray(x, np.float32)[None], SAMPLE_RATE, 48000)[0]
    buf = io.BytesIO()
    sf.write(buf, np.clip(up, -1.0, 1.0), 48000, format="OGG", subtype="OPUS", compression_level=float(compression))
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    y = resample(y[None], 48000, SAMPLE_RATE)[0]
    return np.pad(y, (0, max(0, x.size - y.size)))[:x.size].astype(np.float32)


def mixture(rng, pool, rirs, n, snr_db=None, augment=True):
    """One (noisy, clean target) pair of ``n`` samples."""
    speech_pool = pool["speech"]
    _, s = speech_pool[int(rng.integers(len(speech_pool)))]
    speech = _crop(rng, s, n)
    if augment:
        speech = _eq(rng, speech)
    target = speech
    if augment and rirs and rng.random() < 0.4:
        speech, target = _reverb(rng, rirs, speech)
    case = rng.random() if augment else 1.0
    noise = _noise(rng, pool, speech_pool, n)
    if snr_db is None:
        snr_db = rng.uniform(-5.0, 25.0)
    if case < 0.05:  # clean speech in, clean speech out
        noisy = speech.copy()
    elif case < 0.08:  # noise alone
        noisy = noise / (_rms(noise) + 1e-9) * 0.05
        target = np.zeros(n, np.float32)
        speech = target
    else:
        noise = noise * (_rms(speech) / (_rms(noise) + 1e-9) * 10.0 ** (-snr_db / 20.0))
        noisy = speech + noise
    if augment and case >= 0.05 and rng.random() < CODEC_SHARE:  # coded at a fixed level, back to its own
        rms = _rms(noisy) + 1e-9
        noisy = opus(noisy * (0.1 / rms), rng.uniform(0.3, 1.0)) * (rms / 0.1)
    level = 10.0 ** (rng.uniform(-38.0, -12.0) / 20.0) / (_rms(noisy) + 1e-9) if augment else 0.05 / (_rms(noisy) + 1e-9)
    peak = np.abs(noisy).max() * level
    if peak > 0.99:
        level *= 0.99 / peak
    return (noisy * level).astype(np.float32), (target * level).astype(np.float32)


def batch(rng, pool, rirs, items, n):
    pairs = [mixture(rng, pool, rirs, n) for _ in range(items)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def validation_set(pools, items=48, seconds=4.0, seed=1234, part=None):
    """The fixed validation mixtures: held-out speakers in held-out real noise at 0-15 dB SNR,
    no other augmentation; ``part`` ("select" / "evaluate": :func:`held_out_part`) keeps one half
    of the held-out speakers and noises. Returns (noisy, clean) (items, samples)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    pool = {kind: [(k, x) for k, x in pools["val"][kind] if part is None or held_out_part(k, kind) == part]
            for kind in ("speech", "noise")}
    noisy, clean = [], []
    for i in range(items):
        _, s = pool["speech"][i % len(pool["speech"])]
        speech = _crop(rng, s, n)
        _, x = pool["noise"][int(rng.integers(len(pool["noise"])))]
        noise = _crop(rng, x, n)
        snr = rng.uniform(0.0, 15.0)
        noise = noise * (_rms(speech) / (_rms(noise) + 1e-9) * 10.0 ** (-snr / 20.0))
        mix = speech + noise
        level = 0.05 / _rms(mix)
        noisy.append((mix * level).astype(np.float32))
        clean.append((speech * level).astype(np.float32))
    return np.stack(noisy), np.stack(clean)


def si_sdr_db(estimate, reference):
    """Scale-invariant SDR in dB per item. Shape: (items, samples) -> (items,)."""
    estimate = np.asarray(estimate, np.float64)
    reference = np.asarray(reference, np.float64)
    alpha = np.sum(estimate * reference, -1, keepdims=True) / (np.sum(reference ** 2, -1, keepdims=True) + 1e-12)
    target = alpha * reference
    return 10 * np.log10(np.sum(target ** 2, -1) / (np.sum((estimate - target) ** 2, -1) + 1e-12) + 1e-12)
