"""Fitting the multiband compressor to a target's short-term loudness spread
(:mod:`roomtone.mastering.dynamics`): the model's readings against a plain numpy meter, its
prediction against the numba render, the fit towards a flatter target, the out-of-reach cases, and
the master report's dynamics section.

Signals: a drum/pad/bass mix whose level moves in 4 s sections (0, -8, -3, -12, 0, -6 dB), at the
master's working level (-18 LUFS).
"""

import dataclasses

import numpy as np
import pytest

from refsignals import music_like
from roomtone.mastering import dynamics as dyn
from roomtone.mastering import targets as tg
from roomtone.mastering.presets import load_preset
from roomtone.meter import integrated_loudness, k_weighted_power

SECTIONS_DB = (0.0, -8.0, -3.0, -12.0, 0.0, -6.0)
SECTION_S = 4.0


def moving_mix(sample_rate, channels=2, seed=4):
    x = music_like(SECTION_S * len(SECTIONS_DB), sample_rate, channels=channels, seed=seed).astype(np.float64)
    n = int(SECTION_S * sample_rate)
    gains = np.repeat(10.0 ** (np.asarray(SECTIONS_DB) / 20.0), n)
    ramp = int(0.2 * sample_rate)  # 200 ms crossfades between sections, as a fader move
    gains = np.convolve(np.pad(gains, (ramp // 2, ramp - ramp // 2 - 1), mode="edge"), np.ones(ramp) / ramp, "valid")
    x = (x[:, :gains.size] * gains).astype(np.float32)
    return x * np.float32(10.0 ** ((-18.0 - integrated_loudness(x, sample_rate)) / 20.0))


def stages(preset="balanced"):
    chain = load_preset(preset).chain
    return [p for p in chain if p.kind == "eq"][0], [p for p in chain if p.kind == "multiband"][0]


def render_spread(eq, multiband, x, sample_rate):
    y = multiband.render(eq.render(x, sample_rate), sample_rate)
    return tg.short_term_spread(y, sample_rate)


@pytest.mark.parametrize("sample_rate", [44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_probe_readings_without_compression_match_a_numpy_meter(sample_rate, channels):
    """Unity band gains: the Gram-matrix energies are the K-weighted energy of the band sum (an
    all-pass of the input), so the readings equal a plain mean-square meter over the same samples
    (BS.1770-4 eq. 2 with unit channel weights) to 0.05 LU."""
    x = moving_mix(sample_rate, channels)
    eq, multiband = stages()
    windows = dyn.probe_windows(x.shape[1], sample_rate, count=3)
    probes = dyn.measure_probes(multiband, None, x, sample_rate, windows)
    block = round(sample_rate * multiband.CONTROL_PERIOD_S) * dyn.GROUP_PERIODS
    per_block = round(dyn.BLOCK_S * sample_rate / block) * block
    window = int(round(dyn.SHORT_TERM_S / dyn.BLOCK_S)) * per_block
    for (first, start, _), probe in zip(windows, probes):
        readings = dyn.short_term_readings(probe, np.zeros(probe.peaks.shape), sample_rate,
                                           round(sample_rate * multiband.CONTROL_PERIOD_S))
        power = k_weighted_power(x[:, first:], sample_rate, weights=np.ones(channels))
        origin = probe.skip * block
        oracle = [-0.691 + 10 * np.log10(power[origin + k * per_block: origin + k * per_block + window].mean())
                  for k in range(readings.size)]
        assert readings.size >= 5
        np.testing.assert_allclose(readings, oracle, atol=0.05)


@pytest.mark.parametrize("offset_db", [-9.0, 0.0, 6.0])
def test_prediction_follows_the_numba_render(offset_db):
    """The predicted whole-signal spread for a threshold offset against the spread of the numba
    chain's render (EQ then compressor) of the whole signal: within 0.6 LU."""
    sr = 44100
    x = moving_mix(sr)
    eq, multiband = stages()
    probes = dyn.measure_probes(multiband, eq, x, sr, dyn.probe_windows(x.shape[1], sr))
    base = dyn.probe_spread(multiband, probes, sr)
    spread_in = tg.short_term_spread(eq.render(x, sr), sr)
    moved = dataclasses.replace(multiband, threshold_db=tuple(t + offset_db for t in multiband.threshold_db))
    predicted = dyn._predict(spread_in, dyn.probe_spread(moved, probes, sr, 0.0), base)
    actual = render_spread(eq, moved, x, sr)
    print(f"offset {offset_db:+.0f} dB: input {spread_in:.2f} predicted {predicted:.2f} rendered {actual:.2f} LU")
    assert actual < spread_in  # a downward compressor only flattens
    assert abs(predicted - actual) < 0.6


def test_fit_reaches_a_flatter_target_and_leaves_the_rest_of_the_compressor():
    sr = 48000
    x = moving_mix(sr, seed=7)
    eq, multiband = stages()
    spread_in = tg.short_term_spread(eq.render(x, sr), sr)
    preset_spread = render_spread(eq, multiband, x, sr)
    target = preset_spread - 2.5
    fitted, report = dyn.fit_multiband(multiband, eq, x, sr, target, spread_in)
    actual = render_spread(eq, fitted, x, sr)
    print(report, "rendered", actual)
    assert report["reachable"] and report["threshold_offset_db"] < 0.0
    assert abs(report["predicted_spread_lu"] - (target + dyn.TOLERANCE_LU)) < 0.05
    assert abs(actual - target) < 0.7 < abs(preset_spread - target)
    assert (fitted.attack_ms, fitted.release_ms, fitted.knee_db, fitted.crossovers_hz) == \
        (multiband.attack_ms, multiband.release_ms, multiband.knee_db, multiband.crossovers_hz)


def test_targets_out_of_reach_go_as_far_as_the_path_and_say_so():
    sr = 44100
    x = moving_mix(sr)
    eq, multiband = stages()
    spread_in = tg.short_term_spread(eq.render(x, sr), sr)
    looser, report = dyn.fit_multiband(multiband, eq, x, sr, spread_in + 6.0, spread_in)
    assert not report["reachable"] and "cannot add" in report["note"]
    assert report["threshold_offset_db"] == dyn.OFFSET_LIMIT_DB and looser.ratio == multiband.ratio
    flatter, report = dyn.fit_multiband(multiband, eq, x, sr, 0.1, spread_in)
    assert not report["reachable"] and "flatter than" in report["note"]
    assert report["threshold_offset_db"] == -dyn.OFFSET_LIMIT_DB
    assert all(r > m for r, m in zip(flatter.ratio, multiband.ratio))
    assert render_spread(eq, flatter, x, sr) < render_spread(eq, multiband, x, sr) - 1.0


def test_a_target_within_the_tolerance_leaves_the_preset_alone():
    sr = 44100
    x = moving_mix(sr)
    eq, multiband = stages()
    spread_in = tg.short_term_spread(eq.render(x, sr), sr)
    _, report = dyn.fit_multiband(multiband, eq, x, sr, 50.0, spread_in)
    near = report["preset_spread_lu"] + 0.8 * dyn.TOLERANCE_LU
    fitted, report = dyn.fit_multiband(multiband, eq, x, sr, near, spread_in)
    assert fitted == multiband and report["reachable"] and report["threshold_offset_db"] == 0.0


def test_path_starts_at_the_preset_and_only_tightens():
    _, multiband = stages()
    same, offset, scale = dyn.at_position(multiband, 0.0)
    assert same == multiband and offset == 0.0 and scale == 1.0
    grid = dyn.path_grid()
    assert np.all(np.diff(grid[:, 0]) > 0) and np.all(np.diff(grid[:, 1]) <= 0) and np.all(np.diff(grid[:, 2]) >= 0)
    far, _, _ = dyn.at_position(multiband, float(grid[-1, 0]))
    assert max(far.ratio) <= dyn.RATIO_LIMIT + 1e-9 and min(far.threshold_db) >= -60.0


@pytest.mark.parametrize("seconds", [0.0, 2.0])
def test_too_short_for_a_reading_leaves_the_compressor_alone(seconds):
    sr = 44100
    x = np.zeros((2, int(seconds * sr)), dtype=np.float32)
    if seconds:
        x = music_like(seconds, sr) * np.float32(0.1)
    eq, multiband = stages()
    fitted, report = dyn.fit_multiband(multiband, eq, x, sr, 5.0, tg.short_term_spread(x, sr) if seconds else None)
    assert fitted == multiband and not report["reachable"] and "too short" in report["note"]


def test_silence_leaves_the_compressor_alone():
    sr = 44100
    x = np.zeros((2, 20 * sr), dtype=np.float32)
    eq, multiband = stages()
    fitted, report = dyn.fit_multiband(multiband, eq, x, sr, 5.0, tg.short_term_spread(x, sr))
    assert fitted == multiband and "too quiet" in report["note"]


def test_master_matches_a_flatter_reference_and_reports_the_output_spread():
    """A reference that is the same kind of music squashed: the fitted master's spread lands nearer
    the reference's than the plain preset's at the same loudness does, the prediction (the final
    limiter counted) is within 1 LU of the output, and the report says input, target, predicted
    and output."""
    from roomtone.mastering.api import master
    from roomtone.plugins import MultibandCompressor

    sr = 44100
    x = moving_mix(sr, seed=9)
    squash = MultibandCompressor(threshold_db=(-34.0, -36.0, -38.0), ratio=(4.0, 4.0, 4.0))
    reference = squash.render(moving_mix(sr, seed=10), sr)
    ref_spread = tg.short_term_spread(reference, sr)
    level = tg.integrated_loudness(reference, sr)  # an unmastered reference's loudness is only followed when asked
    out, report = master(x, sr, preset="balanced", reference=(reference, sr), target_lufs=level, explain=True)
    plain, _ = master(x, sr, preset="balanced", target_lufs=report["target"]["integrated_lufs"])
    d = report["fit"]["dynamics"]
    print(d, "plain", tg.short_term_spread(plain, sr))
    assert d["target_spread_lu"] == pytest.approx(ref_spread, abs=0.01)
    assert d["output_spread_lu"] == pytest.approx(tg.short_term_spread(out, sr), abs=0.01)
    assert abs(d["output_spread_lu"] - ref_spread) < abs(tg.short_term_spread(plain, sr) - ref_spread) - 1.0
    assert abs(d["output_spread_lu"] - d["predicted_spread_lu"]) < 1.0
    applied = [p for p in report["preset"]["chain"] if p["kind"] == "multiband"][0]
    assert list(applied["threshold_db"]) == d["threshold_db"] and list(applied["ratio"]) == d["ratio"]
    line = [t for t in report["explain"] if t.startswith("compressor thresholds")][0]
    assert f"{d['threshold_offset_db']:+.1f} dB" in line and f"{d['target_spread_lu']:.1f} LU" in line
    assert f"output {d['output_spread_lu']:.1f} LU" in line


def test_settings_spreads_match_each_setting_on_its_own():
    """The vectorised grid (every setting's static curve, smoother and readings in one pass per
    probe) against a plain loop over the settings: the compressor's own static curve and smoother
    per band, 3 s sums by np.convolve and the pooled gated spread, to 1e-9 LU."""
    sr = 44100
    x = moving_mix(sr)
    eq, multiband = stages()
    probes = dyn.measure_probes(multiband, eq, x, sr, dyn.probe_windows(x.shape[1], sr))
    settings = [dyn.at_position(multiband, float(p))[0] for p in (-6.0, 0.0, 3.5, 12.0, 16.0)]
    block = round(sr * multiband.CONTROL_PERIOD_S)
    window = int(round(dyn.SHORT_TERM_S / dyn.BLOCK_S))
    per_block = max(1, round(dyn.BLOCK_S * sr / (block * dyn.GROUP_PERIODS)))

    def oracle(compressor):
        readings = []
        for probe in probes:
            gain = compressor.smoothed_gain_db(compressor.target_gain_db(probe.peaks), sr) + \
                np.asarray(compressor.makeup_db)[:, None]
            g = (10.0 ** (gain / 20.0)).reshape(gain.shape[0], -1, dyn.GROUP_PERIODS).mean(axis=2)
            energy = np.array([g[:, p] @ probe.gram[p] @ g[:, p] for p in range(g.shape[1])])[probe.skip:]
            blocks = energy[: energy.size // per_block * per_block].reshape(-1, per_block).sum(axis=1)
            sums = np.convolve(blocks, np.ones(window), mode="valid")
            readings.append(-0.691 + 10.0 * np.log10(sums / (window * per_block * block * dyn.GROUP_PERIODS)))
        return dyn.pooled_spread(readings)

    got = dyn.settings_spreads(settings, probes, sr)
    expected = [oracle(c) for c in settings]
    assert len(set(np.round(expected, 3))) == len(settings)  # the settings differ in what they leave
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert dyn.probe_spread(settings[1], probes, sr, 0.0) == pytest.approx(expected[1], abs=1e-9)
