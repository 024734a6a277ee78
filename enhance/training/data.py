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


import numpy as np

from roomtone.models.training.datasets import held_out_speaker, speaker_key  # noqa: F401  (shared with separate)
from roomtone.models.training.speech import (  # noqa: F401  (the pools and augmentations, shared)
    DATA, MUSIC_EXCERPT_S, SAMPLE_RATE, TRAIN_MUSIC, held_out_noise, held_out_part, load_music, load_pools,
    manifest, noise_key)
from roomtone.models.training.speech import bursts as _bursts  # noqa: F401
from roomtone.models.training.speech import coloured as _coloured  # noqa: F401
from roomtone.models.training.speech import crop as _crop
from roomtone.models.training.speech import eq as _eq
from roomtone.models.training.speech import hum as _hum  # noqa: F401
from roomtone.models.training.speech import noise as _noise
from roomtone.models.training.speech import read as _read  # noqa: F401
from roomtone.models.training.speech import real_noise as _real_noise  # noqa: F401
from roomtone.models.training.speech import reverb as _reverb
from roomtone.models.training.speech import rms as _rms
from roomtone.models.training.speech import transients as _transients  # noqa: F401

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
