"""--explain lists the decisions from the parameters actually applied (no JAX needed)."""

import re

import numpy as np

from roomtone.mastering.api import master
from roomtone.mastering.presets import Preset, load_preset
from roomtone.plugins import Equalizer, MultibandCompressor, Saturation, StereoWidth
from roomtone.processor import Chain


def _noise(seconds=4.0, sr=44100):
    rng = np.random.default_rng(0)
    return (0.1 * rng.standard_normal((2, int(seconds * sr)))).astype(np.float32), sr


def test_explain_text_matches_parameters():
    chain = Chain([Equalizer(low_shelf_hz=120.0, low_shelf_db=1.5, high_shelf_hz=9000.0, high_shelf_db=-2.0,
                             bands=((3500.0, -1.0, 1.0),)),
                   MultibandCompressor(crossovers_hz=(2000.0, 6000.0), threshold_db=(-20.0, -30.0, -20.0),
                                       ratio=(2.0, 3.0, 1.5)),
                   StereoWidth(width=1.1, bass_mono_hz=80.0), Saturation(drive_db=3.0, mix=0.25)])
    preset = Preset(name="test", category="style", description="test", chain=chain)
    audio, sr = _noise()
    _, report = master(audio, sr, preset=preset, explain=True)
    lines = report["explain"]
    for expected in ("low shelf +1.5 dB at 120 Hz", "high shelf -2.0 dB at 9 kHz", "bell -1.0 dB at 3.5 kHz (Q 1)",
                     "width 110 %, bass mono below 80 Hz", "saturation 3.0 dB drive, 25 % mix"):
        assert expected in lines, (expected, lines)
    reduction = report["multiband_reduction_db"]["1"]
    line = next(l for l in lines if l.startswith("3:1 on 2 kHz-6 kHz above -30 dBFS"))
    assert line.endswith(f"{reduction[1]:.1f} dB average reduction")
    assert reduction[1] > reduction[0] and reduction[1] > 1.0  # the low threshold bites hardest
    stages = {s["stage"]: s for s in report["stages"]}
    loud = next(l for l in lines if l.startswith("loudness gain"))
    assert f"{stages['loudness_gain']['gain_db']:+.1f} dB" in loud and f"{abs(stages['limiter']['gain_db']):.2f} LU" in loud
    assert lines[-1].startswith("target -14.0 LUFS") and "(spotify)" in lines[-1]


def test_multiband_reduction_matches_a_steady_sine():
    sr = 44100
    t = np.arange(3 * sr) / sr
    amp = 10 ** (-10 / 20)
    audio = np.stack([amp * np.sin(2 * np.pi * 1000 * t)] * 2).astype(np.float32)
    comp = MultibandCompressor(crossovers_hz=(), threshold_db=(-20.0,), ratio=(4.0,), makeup_db=(0.0,), knee_db=0.0)
    reduction = comp.gain_reduction_db(audio, sr)
    # peak -10 dBFS, 10 dB over: 7.5 dB steady-state reduction; the 20 ms attack costs a little of the mean
    assert 7.0 < reduction[0] < 7.5


def test_every_shipped_preset_explains():
    audio, sr = _noise(2.0)
    for name in ("balanced", "warm", "aggressive", "jazz"):
        _, report = master(audio, sr, preset=name, explain=True)
        assert report["explain"][0].startswith("input trim")
        assert re.match(r"loudness gain [+-]\d+\.\d dB, limiter \d+\.\d\d LU", report["explain"][-2])
    _, plain = master(audio, sr)
    assert "explain" not in plain
