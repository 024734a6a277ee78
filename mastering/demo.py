"""A short demo track the package makes itself: drums, bass and chords, 44.1 kHz stereo, seeded.

It is mixed quietly (about -24 LUFS, peaks well under full scale), like an unmastered bounce, so
``master --demo`` has real work to do: +10 dB of loudness under a -1 dBTP ceiling.
"""

import os

import numpy as np

SAMPLE_RATE = 44100
TEMPO_BPM = 112.0


def _envelope(n, sample_rate, attack_s, decay_s):
    t = np.arange(n) / sample_rate
    return np.minimum(t / max(attack_s, 1e-6), 1.0) * np.exp(-t / decay_s)


def _place(track, start, sound, pan):
    """Add mono ``sound`` to stereo ``track`` at sample ``start`` with constant-power ``pan`` (-1..1)."""
    end = min(track.shape[1], start + sound.shape[0])
    if end <= start:
        return
    angle = (pan + 1.0) * np.pi / 4.0
    track[0, start:end] += np.cos(angle) * sound[: end - start]
    track[1, start:end] += np.sin(angle) * sound[: end - start]


def demo_track(seconds=12.0, sample_rate=SAMPLE_RATE, seed=7):
    """Synthesize the demo. Shape: returns (2, samples) float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    track = np.zeros((2, n))
    beat = int(round(60.0 / TEMPO_BPM * sample_rate))
    sr = sample_rate
    # Kick: a pitch-dropping sine. Snare: noise burst plus a 190 Hz body. Hats: differentiated noise.
    k_len = int(0.35 * sr)
    t = np.arange(k_len) / sr
    kick = np.sin(2 * np.pi * (50 * t + 90 * (1 - np.exp(-t / 0.03)) * 0.03)) * _envelope(k_len, sr, 0.002, 0.12)
    s_len = int(0.25 * sr)
    snare = (0.6 * np.diff(rng.standard_normal(s_len + 1)) * _envelope(s_len, sr, 0.001, 0.05)
             + 0.5 * np.sin(2 * np.pi * 190 * np.arange(s_len) / sr) * _envelope(s_len, sr, 0.001, 0.08))
    h_len = int(0.06 * sr)
    # Chords: I-V-vi-IV in A major, detuned saw-like partials; bass follows the roots.
    roots_hz = [110.0, 164.81, 185.0, 146.83]
    thirds = [(1.0, 1.26, 1.5), (1.0, 1.26, 1.5), (1.0, 1.19, 1.5), (1.0, 1.26, 1.5)]
    bar = 4 * beat
    for start in range(0, n, beat):
        index = start // beat
        _place(track, start, kick * (1.0 if index % 2 == 0 else 0.8), 0.0)
        if index % 2 == 1:
            _place(track, start, snare * 0.7, 0.1)
        for half in (0, beat // 2):
            hat = np.diff(rng.standard_normal(h_len + 1), n=1) * _envelope(h_len, sr, 0.0005, 0.015)
            _place(track, start + half, 0.25 * hat, 0.4)
    for bar_index, start in enumerate(range(0, n, bar)):
        root = roots_hz[bar_index % 4]
        length = min(bar, n - start)
        tt = np.arange(length) / sr
        pad = np.zeros(length)
        for ratio in thirds[bar_index % 4]:
            for detune in (-0.004, 0.004):
                f = 2 * root * ratio * (1 + detune)
                for harmonic in range(1, 7):
                    pad += np.sin(2 * np.pi * f * harmonic * tt + rng.uniform(0, 2 * np.pi)) / harmonic
        pad *= 0.04 * _envelope(length, sr, 0.25, 3.0)
        _place(track, start, pad, -0.35)
        _place(track, start, 0.6 * pad, 0.35)
        for step in range(0, length, beat // 2):
            note_len = min(beat // 2, length - step)
            tn = np.arange(note_len) / sr
            note = (np.sin(2 * np.pi * root / 2 * tn) + 0.3 * np.sin(2 * np.pi * root * tn))
            _place(track, start + step, 0.35 * note * _envelope(note_len, sr, 0.005, 0.2), 0.0)
    track *= 10 ** (-9.0 / 20.0) / np.abs(track).max()  # an unmastered bounce: peaks at -9 dBFS
    return track.astype(np.float32)


def write_demo_mix(output_path):
    """Write :func:`demo_track` beside a master's ``output_path`` as ``<OUT stem>_mix.wav`` (24-bit,
    atomically; rerunning the command rewrites it) and return its path."""
    from roomtone.audio import write_audio

    stem, _ = os.path.splitext(output_path)
    mix_path = f"{stem}_mix.wav"
    write_audio(mix_path, demo_track(), SAMPLE_RATE, bit_depth="24")
    return mix_path
