"""The loudness meter (roomtone.meter) against the standards and two independent meters.

a. The official EBU / ITU conformance files in ``../shared/data/ebu`` with the tolerances of
   ``EXPECTED.md`` (skipped, with the reason, where the folder is absent).
b. EBU Tech 3341 cases rebuilt from the text of the specification (1 kHz sines; "-23 dBFS" is a
   sine peak of 10**(-23/20) in each channel, and a stereo 1 kHz sine at -23 dBFS reads -23.0 LUFS).
c. EBU Tech 3342 loudness-range cases, rebuilt the same way.
d. Cross-checks against libebur128 (pyebur128) and pyloudnorm, and edge cases.
"""

import json
import math
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import refsignals
import soundfile as sf

from roomtone import meter
from roomtone.testing import libebur128

FS = 48000
EBU_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ebu"
EBU_ABSENT = (
    "../shared/data/ebu not present: official EBU/ITU conformance files are only in the dev/CI checkout"
)


def tone(segments, sample_rate=FS, channels=2, freq_hz=1000.0):
    """A 1 kHz sine, continuous in phase, whose peak level steps through ``(dBFS, seconds)`` segments.

    Shape: returns (channels, samples) float32, the same signal in every channel.
    """
    counts = [int(round(seconds * sample_rate)) for _, seconds in segments]
    amp = np.concatenate([np.full(n, 10.0 ** (db / 20.0)) for (db, _), n in zip(segments, counts)])
    t = np.arange(amp.size) / sample_rate
    x = (amp * np.sin(2.0 * np.pi * freq_hz * t)).astype(np.float32)
    return np.repeat(x[None], channels, axis=0)


def multichannel_tone(levels_db, seconds, sample_rate=FS, freqs_hz=None):
    """One sine per channel at its own peak level (``None``: silent). Shape: (channels, samples) float32."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    freqs_hz = freqs_hz or [1000.0] * len(levels_db)
    rows = [
        np.zeros(n) if db is None else 10.0 ** (db / 20.0) * np.sin(2.0 * np.pi * f * t)
        for db, f in zip(levels_db, freqs_hz)
    ]
    return np.array(rows, dtype=np.float32)


def alternating(segments, seconds, sample_rate=FS):
    """``segments`` repeated and cut to ``seconds``."""
    period = sum(s for _, s in segments)
    x = tone(segments * (int(seconds / period) + 1), sample_rate)
    return np.ascontiguousarray(x[:, : int(round(seconds * sample_rate))])


def assert_within(values, expected, tol=0.1, what="loudness"):
    values = np.atleast_1d(np.asarray(values, dtype=np.float64))
    worst = int(np.argmax(np.abs(values - expected)))
    assert np.all(np.abs(values - expected) <= tol), (
        f"{what}: reading {worst} of {values.size} is {values[worst]:.3f}, expected {expected} +/- {tol}"
    )


# --------------------------------------------------------------------------------------------------
# a. Official EBU / ITU files
# --------------------------------------------------------------------------------------------------

# EXPECTED.md quantity -> LoudnessStats field
QUANTITY_FIELDS = {
    "I": "integrated_lufs",
    "maxS": "max_short_term_lufs",
    "maxM": "max_momentary_lufs",
    "TP": "true_peak_dbtp",
    "M (const after 1 s) -> maxM": "max_momentary_lufs",
}


def _expected_rows():
    """Rows of the markdown table in EXPECTED.md: file, quantity, expected, tolerance "-a/+b"."""
    table = EBU_DIR / "EXPECTED.md"
    if not table.is_file():
        skip = pytest.mark.skip(reason=EBU_ABSENT)
        return [pytest.param(None, None, None, None, id="ebu-absent", marks=skip)]
    rows = []
    for line in table.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].endswith((".flac", ".wav")):
            continue
        name, quantity, expected, tolerance = cells[:4]
        match = re.fullmatch(r"-\s*([\d.]+)\s*/\s*\+\s*([\d.]+)", tolerance)
        assert match, f"EXPECTED.md: cannot read tolerance {tolerance!r} for {name}"
        rows.append(
            pytest.param(
                name, quantity, float(expected), (-float(match[1]), float(match[2])), id=f"{name}:{quantity}"
            )
        )
    assert rows, f"no rows found in {table}"
    return rows


@lru_cache(maxsize=None)
def _official(name):
    data, rate = sf.read(str(EBU_DIR / name), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), rate


@lru_cache(maxsize=None)
def _official_stats(name):
    audio, rate = _official(name)
    return meter.measure(audio, rate)


@pytest.mark.shared_data
@pytest.mark.parametrize("name, quantity, expected, tolerance", _expected_rows())
def test_official_conformance_file(name, quantity, expected, tolerance):
    assert quantity in QUANTITY_FIELDS, f"EXPECTED.md: unknown quantity {quantity!r} for {name}"
    got = getattr(_official_stats(name), QUANTITY_FIELDS[quantity])
    low, high = tolerance
    assert expected + low <= got <= expected + high, (
        f"{name}: {quantity} = {got:.3f}, expected {expected:+.1f} ({low:+.1f}/{high:+.1f})"
    )
    if quantity.startswith("M (const after 1 s)"):
        audio, rate = _official(name)
        momentary = meter.momentary_loudness(audio, rate)
        window = int(round(meter.MOMENTARY_S * rate))
        after_1s = momentary[max(0, rate - window) :]  # readings whose window ends at 1 s or later
        assert np.all((after_1s >= expected + low) & (after_1s <= expected + high)), (
            f"{name}: momentary after 1 s spans {after_1s.min():.3f} .. {after_1s.max():.3f}"
        )


# --------------------------------------------------------------------------------------------------
# b. EBU Tech 3341 (2023), Table 1, rebuilt from the text
# --------------------------------------------------------------------------------------------------

TECH3341_INTEGRATED = {
    "1": ([(-23, 20)], -23.0),
    "2": ([(-33, 20)], -33.0),
    "3": ([(-36, 10), (-23, 60), (-36, 10)], -23.0),
    "4": ([(-72, 10), (-36, 10), (-23, 60), (-36, 10), (-72, 10)], -23.0),
    "5": ([(-26, 20), (-20, 20.1), (-26, 20)], -23.0),
}
INTEGRATED_PARAMS = [pytest.param(case, FS, id=f"3341-{case}-48k") for case in TECH3341_INTEGRATED] + [
    pytest.param(case, 44100, id=f"3341-{case}-44k1") for case in ("1", "3", "5")
]


@pytest.mark.parametrize("case, sample_rate", INTEGRATED_PARAMS)
def test_tech3341_integrated(case, sample_rate):
    segments, expected = TECH3341_INTEGRATED[case]
    assert_within(meter.integrated_loudness(tone(segments, sample_rate), sample_rate), expected, what="I")


@pytest.mark.parametrize("level_db", [-23, -33], ids=["3341-1", "3341-2"])
@pytest.mark.parametrize("sample_rate", [FS, 44100])
def test_tech3341_momentary_and_short_term_of_steady_sine(level_db, sample_rate):
    x = tone([(level_db, 20)], sample_rate)
    assert_within(meter.momentary_loudness(x, sample_rate, hop_s=0.1), level_db, what="M")
    assert_within(meter.short_term_loudness(x, sample_rate, hop_s=0.1), level_db, what="S")
    stats = meter.measure(x, sample_rate)
    assert_within([stats.max_momentary_lufs, stats.max_short_term_lufs], level_db, what="max M, max S")


def test_tech3341_case6_five_channels():
    """5.0 (L R C Ls Rs): L, R at -28 dBFS, C at -24 dBFS, Ls, Rs at -30 dBFS, 20 s: I = -23."""
    x = multichannel_tone([-28, -28, -24, -30, -30], 20)
    assert_within(meter.integrated_loudness(x, FS), -23.0, what="I")


def test_five_one_ignores_lfe():
    """5.1 (L R C LFE Ls Rs): the case 6 programme plus a full-scale 60 Hz LFE, which BS.1770 excludes."""
    five = multichannel_tone([-28, -28, -24, -30, -30], 20)
    six = multichannel_tone([-28, -28, -24, 0, -30, -30], 20, freqs_hz=[1000, 1000, 1000, 60, 1000, 1000])
    got = meter.integrated_loudness(six, FS)
    assert_within(got, -23.0, what="I")
    assert got == pytest.approx(meter.integrated_loudness(five, FS), abs=1e-9)


# Cases 9, 11 and 14 are not in the shared data. Case 9 matches the public `lupy` compliance suite
# (nocarryr/lupy, tests/compliance_cases.py: 5 x (1.34 s at -20, 1.66 s at -30)); we run it for 20 s,
# which changes nothing since every 3 s window holds exactly one period. The texts of cases 11, 12
# and 14 could not be checked against a copy of Tech 3341: these are our working definitions
# (20 segments of 3 s / 0.4 s at -38 .. -19 dBFS, reading at each segment end; 0.18 s / 0.22 s).


@pytest.mark.parametrize("sample_rate", [FS, 44100])
def test_tech3341_case9_short_term_constant(sample_rate):
    x = alternating([(-20, 1.34), (-30, 1.66)], 20, sample_rate)
    readings = meter.short_term_loudness(x, sample_rate, hop_s=0.1)  # the first ends at 3 s
    assert readings.size == 171
    assert_within(readings, -23.0, what="S from 3 s on")


@pytest.mark.parametrize("sample_rate", [FS, 44100])
def test_tech3341_case12_momentary_constant(sample_rate):
    x = alternating([(-20, 0.18), (-30, 0.22)], 10, sample_rate)
    readings = meter.momentary_loudness(x, sample_rate)  # reading k covers [k, k + window)
    window = int(round(meter.MOMENTARY_S * sample_rate))
    assert_within(readings[sample_rate - window :], -23.0, what="M after 1 s")


@pytest.mark.parametrize(
    "segment_s, reader, window_s",
    [
        (3.0, meter.short_term_loudness, meter.SHORT_TERM_S),
        (0.4, meter.momentary_loudness, meter.MOMENTARY_S),
    ],
    ids=["3341-11-short-term", "3341-14-momentary"],
)
def test_tech3341_level_staircase(segment_s, reader, window_s):
    """20 consecutive segments at -38, -37, ..., -19 dBFS: the reading whose window ends at each
    segment's end equals that segment's level."""
    levels = list(range(-38, -18))
    readings = reader(tone([(db, segment_s) for db in levels]), FS)  # per sample: k covers [k, k + window)
    seg, window = int(round(segment_s * FS)), int(round(window_s * FS))
    at_ends = readings[[(k + 1) * seg - window for k in range(len(levels))]]
    for level, got in zip(levels, at_ends):
        assert_within(got, float(level), what=f"segment at {level} dBFS")


# --------------------------------------------------------------------------------------------------
# c. EBU Tech 3342 loudness range
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "segments, expected",
    [
        ([(-20, 20), (-30, 20)], 10.0),
        ([(-20, 20), (-15, 20)], 5.0),
        ([(-40, 20), (-20, 20)], 20.0),
        ([(-50, 20), (-35, 20), (-20, 20), (-35, 20), (-50, 20)], 15.0),
    ],
    ids=["3342-1", "3342-2", "3342-3", "3342-4"],
)
def test_tech3342_loudness_range(segments, expected):
    assert_within(meter.measure(tone(segments), FS).lra_lu, expected, tol=1.0, what="LRA")


@pytest.mark.parametrize("segments, expected", [([(-20, 20), (-30, 20)], 10.0), ([(-40, 20), (-20, 20)], 20.0),
                                               ([(-23, 40)], 0.0)])
def test_short_term_spread_of_level_steps(segments, expected):
    # p95 - p5 of the short-term readings after LRA's gates: two plateaus read their level
    # difference (the 3 s of readings across the step are under 5 % of them), a steady tone none.
    assert meter.measure(tone(segments), FS).short_term_spread_lu == pytest.approx(expected, abs=0.1)


@pytest.mark.parametrize("sample_rate", refsignals.SAMPLE_RATES)
@pytest.mark.parametrize("channels", refsignals.CHANNELS)
def test_short_term_spread_matches_a_numpy_oracle(sample_rate, channels):
    audio = np.ascontiguousarray(gated_music(channels, 12.0, sample_rate), dtype=np.float32)
    power = meter.k_weighted_power(audio, sample_rate)  # numpy from here: 3 s means every 100 ms
    hop, window = round(0.1 * sample_rate), round(3.0 * sample_rate)
    cumulative = np.concatenate([[0.0], np.cumsum(power)])
    starts = np.arange(0, power.size - window + 1, hop)
    short = -0.691 + 10.0 * np.log10((cumulative[starts + window] - cumulative[starts]) / window + 1e-30)
    level = meter.integrated_loudness(audio, sample_rate)
    kept = short[(short > -70.0) & (short > level - 20.0)]
    expected = np.percentile(kept, 95) - np.percentile(kept, 5)
    assert meter.measure(audio, sample_rate).short_term_spread_lu == pytest.approx(expected, abs=0.01)


def test_short_term_spread_of_silence_is_null():
    stats = meter.measure(np.zeros((2, 5 * FS), dtype=np.float32), FS)
    assert math.isnan(stats.short_term_spread_lu) and stats.as_dict()["short_term_spread_lu"] is None


# --------------------------------------------------------------------------------------------------
# d. Cross-checks against libebur128 and pyloudnorm; edge cases
# --------------------------------------------------------------------------------------------------


def gated_music(channels, seconds, sample_rate):
    """The shared music-like mix with a bridge 18 dB down (the relative gate drops it) and a tail
    60 dB down (the absolute gate drops it)."""
    x = refsignals.music_like(seconds, sample_rate, channels=channels).astype(np.float64)
    t = np.arange(x.shape[1]) / sample_rate
    x[:, (t > 0.4 * seconds) & (t < 0.6 * seconds)] *= 10.0 ** (-18.0 / 20.0)
    x[:, t > 0.9 * seconds] *= 10.0 ** (-60.0 / 20.0)
    return x


SIGNALS = {
    "pink": lambda ch, s, fs: refsignals.pink_noise(s, fs, channels=ch),
    "sweep": lambda ch, s, fs: refsignals.sweep(s, fs, channels=ch),
    "music": gated_music,
}


@lru_cache(maxsize=None)
def _reference_signal(kind, sample_rate, channels):
    """8 s of ``kind``. Shape: (channels, samples) float32."""
    return np.ascontiguousarray(SIGNALS[kind](channels, 8.0, sample_rate), dtype=np.float32)



CROSS_PARAMS = [
    pytest.param(kind, rate, ch, id=f"{kind}-{rate}-{'mono' if ch == 1 else 'stereo'}")
    for kind in SIGNALS
    for rate in refsignals.SAMPLE_RATES
    for ch in refsignals.CHANNELS
]


@pytest.mark.parametrize("kind, sample_rate, channels", CROSS_PARAMS)
def test_integrated_agrees_with_libebur128(kind, sample_rate, channels):
    audio = _reference_signal(kind, sample_rate, channels)
    ref_i, ref_tp = libebur128(audio, sample_rate)
    stats = meter.measure(audio, sample_rate)
    assert stats.integrated_lufs == pytest.approx(ref_i, abs=0.01)
    # filters.meter_interpolator is libebur128's design (49-tap Hann sinc, 4x below 96 kHz, 2x
    # below 192 kHz): the readings agree to rounding.
    assert stats.true_peak_dbtp == pytest.approx(ref_tp, abs=0.01)


@pytest.mark.parametrize("kind, sample_rate, channels", CROSS_PARAMS)
def test_integrated_agrees_with_pyloudnorm(kind, sample_rate, channels):
    pyln = pytest.importorskip("pyloudnorm")
    audio = _reference_signal(kind, sample_rate, channels)
    ref = pyln.Meter(sample_rate).integrated_loudness(audio.T.astype(np.float64))
    assert meter.integrated_loudness(audio, sample_rate) == pytest.approx(ref, abs=0.1)


def test_silence_reads_minus_infinity_and_null():
    stats = meter.measure(np.zeros((2, 2 * FS), dtype=np.float32), FS)
    assert stats.integrated_lufs == -math.inf
    assert stats.max_momentary_lufs == -math.inf and stats.max_short_term_lufs == -math.inf
    as_dict = stats.as_dict()
    assert as_dict["integrated_lufs"] is None and as_dict["true_peak_dbtp"] is None
    assert json.loads(json.dumps(as_dict))["integrated_lufs"] is None  # written as null


def test_clip_shorter_than_gating_block_has_no_integrated_loudness():
    stats = meter.measure(tone([(-20, 0.3)]), FS)
    assert stats.integrated_lufs == -math.inf
    assert stats.max_momentary_lufs == -math.inf and stats.max_short_term_lufs == -math.inf
    assert stats.as_dict()["integrated_lufs"] is None
    assert stats.sample_peak_dbfs == pytest.approx(-20.0, abs=0.01)


@pytest.mark.parametrize("sample_rate", [44100, 48000, 96000])
def test_true_peak_of_intersample_peak(sample_rate):
    """A sine at fs/4, 45 degrees: every sample is +/-1 (0 dBFS) but the waveform peaks at sqrt 2,
    +3.01 dBTP (EBU Tech 3341 case 19, tolerance -0.4/+0.2 dB)."""
    n = sample_rate
    ramp = n // 10
    window = np.ones(n)
    window[:ramp], window[-ramp:] = np.hanning(2 * ramp)[:ramp], np.hanning(2 * ramp)[ramp:]
    x = math.sqrt(2.0) * np.sin(np.pi / 2 * np.arange(n) + np.pi / 4) * window
    stats = meter.measure(np.array([x, x], dtype=np.float32), sample_rate)
    assert stats.sample_peak_dbfs == pytest.approx(0.0, abs=0.01)
    assert 3.01 - 0.4 <= stats.true_peak_dbtp <= 3.01 + 0.2
