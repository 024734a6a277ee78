"""The JAX chain against the numba chain, its gradients, the fit on a known answer, and --explain.

Tolerances: the JAX render of a shipped preset matches the numba render to -50 dB relative error
(0.03 dB amplitude); per 1/3-octave band levels within 0.05 dB. Short signals, one compiled shape
per test.
"""

import json

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from roomtone.plugins import twin as jax_chain  # noqa: E402
from roomtone.mastering import targets as tg  # noqa: E402
from roomtone.mastering.api import master  # noqa: E402
from roomtone.mastering.presets import load_preset  # noqa: E402
from roomtone.plugins import (Compressor, Equalizer, Gain, MultibandCompressor, Pan, Saturation,  # noqa: E402
                              StereoWidth)
from roomtone.processor import Chain  # noqa: E402

SR = 44100


def music_like(seconds, seed=0):
    """Stereo pink-ish noise with a pulsing envelope and a bass line (seeded)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    w = rng.standard_normal((2, n))
    spec = np.fft.rfft(w, axis=1) / np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0))
    w = np.fft.irfft(spec, n, axis=1)
    w /= np.abs(w).max()
    t = np.arange(n) / SR
    env = np.exp(-((t * 2) % 1) * 8)
    x = 0.25 * w * (0.3 + env) + 0.3 * np.sin(2 * np.pi * 55 * t) * env
    x[1] = 0.8 * x[1] + 0.2 * x[0]
    return x.astype(np.float32)


def numba_render(chain, x):
    for p in chain:
        x = p.render(x, SR)
    return x


HOT = Chain([Equalizer(low_shelf_hz=150.0, low_shelf_db=4.0, high_shelf_hz=6000.0, high_shelf_db=-3.0,
                       bands=((900.0, 3.0, 2.0),)),
             MultibandCompressor(crossovers_hz=(200.0, 3000.0), threshold_db=(-30.0, -28.0, -32.0), ratio=(4.0, 3.0, 2.5),
                                 makeup_db=(1.0, 0.0, -1.0), attack_ms=5.0, release_ms=80.0, knee_db=4.0),
             StereoWidth(width=1.4, bass_mono_hz=120.0), Saturation(drive_db=9.0, mix=0.7)])


TRACK = Chain([Gain(gain_db=-4.0), Equalizer(bands=((2500.0, -4.0, 1.0),)),
               Compressor(threshold_db=-26.0, ratio=3.0, attack_ms=8.0, release_ms=90.0, knee_db=6.0, makeup_db=2.0),
               Pan(position=0.35)])


@pytest.mark.parametrize("chain", [load_preset("warm").chain, HOT, TRACK], ids=["warm", "hot", "track"])
def test_jax_chain_matches_numba(chain):
    x = music_like(1.5)
    want = numba_render(chain, x)
    got = jax_chain.render_numpy(chain, x, SR)
    err_db = 10 * np.log10(np.mean((got - want) ** 2) / np.mean(want ** 2))
    assert err_db < -50.0
    a, b = tg.tonal_curve(got, SR, 0.0), tg.tonal_curve(want, SR, 0.0)
    assert np.max(np.abs(a - b)) < 0.05


def test_gradients_finite_for_every_parameter():
    x = jax.numpy.asarray(music_like(0.5))
    params = jax_chain.params_from_chain(HOT)
    frac = jax.numpy.asarray(jax_chain.interpolation_fraction(x.shape[1], jax_chain.control_block(SR)))

    def loss(p):
        return jax.numpy.mean(jax_chain.render(p, x, SR, frac, 2048) ** 2)

    grads = jax.jit(jax.grad(loss))(params)
    names = 0
    for key, group in grads.items():
        for name, g in group.items():
            assert np.isfinite(np.asarray(g)).all(), (key, name)
            names += 1
    assert names == 5 + 7 + 2 + 2
    assert jax_chain.chain_from_params(params) == HOT  # the parameter dict round-trips


def test_fit_recovers_a_known_eq_and_width():
    from roomtone.mastering.fit import fit_chain

    x = music_like(8.0, seed=1)
    base = load_preset("balanced")
    known_eq = Equalizer(low_shelf_hz=100.0, low_shelf_db=3.0, high_shelf_hz=10000.0, high_shelf_db=0.0,
                         bands=((3200.0, -4.0, 1.41),))
    known = Chain([known_eq] + [p if p.kind != "width" else StereoWidth(width=1.4) for p in base.chain[1:]])
    reference = numba_render(known, x)
    target = tg.reference_target((reference, SR))
    fitted, report = fit_chain(x, SR, base, target)
    first = report["rounds"][0]
    assert first["loss_last"] < 0.2 * first["loss_first"]
    eq = fitted.chain[0]
    z = np.exp(-1j * 2 * np.pi * np.asarray(tg.THIRD_OCTAVE_HZ) / SR)

    def mag_db(e):
        h = np.ones_like(z)
        for b0, b1, b2, _, a1, a2 in e.sos(SR):
            h *= (b0 + b1 * z + b2 * z * z) / (1 + a1 * z + a2 * z * z)
        return 20 * np.log10(np.abs(h))

    error = mag_db(eq) - mag_db(known_eq)
    error -= error.mean()  # the fit is level-free (the loudness stage sets the level): compare the shape
    print("EQ shape error dB RMS", np.sqrt(np.mean(error ** 2)), "width", fitted.chain[2].width, report["dynamics"])
    assert np.sqrt(np.mean(error ** 2)) < 0.5  # dB RMS over the 27 bands, 40 Hz..16 kHz
    assert abs(fitted.chain[2].width - 1.4) < 0.08


def test_master_with_reference_hits_reference_loudness_and_explains():
    """A mastered reference (peaks near full scale) states a delivery loudness: the master matches it."""
    x = music_like(6.0, seed=2)
    reference = numba_render(Chain([Equalizer(high_shelf_db=4.0)]), music_like(6.0, seed=3))
    reference = reference * np.float32(0.97 / np.abs(reference).max())
    out, report = master(x, SR, reference=(reference, SR), explain=True)
    ref_lufs = tg.integrated_loudness(reference, SR)
    assert ref_lufs > -23.0
    assert abs(report["after"]["integrated_lufs"] - ref_lufs) < 0.1
    assert report["target"]["source"] == "reference" and report["platform"] is None
    assert report["fit"]["tonal_distance_db"]["output"] < report["fit"]["tonal_distance_db"]["input"]
    json.dumps(report)
    assert any(line.startswith("chain fitted to <array>:1") for line in report["explain"])


def test_the_command_imports_the_fit_in_the_background_and_a_plain_master_does_not(monkeypatch):
    import sys

    from roomtone import startup
    from roomtone.mastering import api

    monkeypatch.setattr(startup, "_background", {})
    target = tg.preset_target(load_preset("balanced"))
    assert api.fit_modules("balanced", None) == () and api.fit_warm_up_args("balanced", None, SR, 2) is None
    startup.import_in_background(*api.fit_modules("balanced", target))
    startup.import_in_background(*api.fit_modules("balanced", target))  # idempotent: one thread per module
    assert list(startup._background) == ["roomtone.mastering.fit"]
    startup.await_imports()
    assert "roomtone.mastering.fit" in sys.modules
    startup.import_in_background(*api.fit_modules("AUTO", None))
    assert set(startup._background) == {"roomtone.mastering.fit", "roomtone.mastering.assistant"}
    startup.await_imports()


_LIBRARY_FIT = r"""
import json, os, threading
import numpy as np
before = dict(os.environ)
from roomtone.mastering import master
rng = np.random.default_rng(0)
t = np.arange(6 * 44100) / 44100
x = (0.1 * rng.standard_normal((2, t.size)) + 0.3 * np.sin(2 * np.pi * 55 * t)).astype(np.float32)
out, report = master(x, 44100, fit_target=True)
import jax
print(json.dumps({"fitted": "fit" in report, "cache": jax.config.jax_compilation_cache_dir,
                  "env_changed": sorted(k for k in set(os.environ) | set(before) if os.environ.get(k) != before.get(k)),
                  "threads": sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())}))
"""


def test_a_fitting_library_call_changes_no_jax_setting_and_starts_no_start_up_thread(tmp_path):
    """``master(..., fit_target=True)`` from Python, in a fresh process: the fit runs, and JAX's
    compilation cache stays unset (the library uses one only when JAX is configured with one); no
    background import or warm-up thread is left (those are the command's, roomtone.startup)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    result = subprocess.run([sys.executable, "-c", _LIBRARY_FIT], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["fitted"] and found["cache"] is None and found["env_changed"] == []
    assert not [name for name in found["threads"] if name.startswith("roomtone-startup")], found["threads"]


@pytest.mark.parametrize("channels", [1, 2])
def test_warm_up_traces_the_very_optimiser_the_fit_then_calls(channels):
    # The background warm-up only pays if its placeholders match the fit's arrays in shape, dtype
    # and structure: the fit that follows must find the optimiser already traced (no new entry).
    # Its arguments are those the master command computes (api.fit_warm_up_args).
    from roomtone.mastering import api, fit

    base = load_preset("balanced")
    target = tg.preset_target(base)
    x = np.ascontiguousarray(music_like(8.0, seed=3)[:channels])
    from roomtone.models import runtime

    fit.warm_up(*api.fit_warm_up_args("balanced", target, SR, channels))
    sizes = {key: call._cache_size() for key, call in runtime._EXPORTS.items()}
    fit.fit_chain(x, SR, base, target, steps=api.FIT_STEPS)
    assert {key: call._cache_size() for key, call in runtime._EXPORTS.items()} == sizes


def test_model_points_follow_the_per_bin_model_within_0_02_db():
    # The fit's EQ model on a few power-weighted points per band against every analysis bin, for
    # random EQ gains over the fit's +-12 dB, on a music-like spectrum falling at high frequencies.
    from roomtone.mastering import fit

    x = music_like(8.0, seed=2)
    freqs, total, _, _ = tg.spectra(x, SR)
    keep = fit._analysis_bins(SR)[1]
    bands = tg.band_matrix(freqs[keep])
    centres, gather, point_bands = fit.model_points(freqs[keep], bands, total[keep])
    assert centres.size < 0.1 * keep.sum()
    chain = fit.with_fit_stages(load_preset("balanced").chain, True)
    template = {"eq": jax_chain.params_from_chain(Chain([chain[0]]))["0:eq"]}
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(10):
        u = np.arctanh(rng.uniform(-0.99, 0.99, 2 + len(chain[0].bands))).astype(np.float32)
        readings = []
        for where, power, member in ((freqs[keep], total[keep], bands), (centres, gather @ total[keep], point_bands)):
            z1, z2 = fit._bins_z(where, SR)
            _, h2 = fit.eq_power(u, dict(template, z1=z1, z2=z2), SR)
            readings.append(10.0 * np.log10(member @ (np.asarray(h2, np.float64) * power)))
        worst = max(worst, float(np.abs(readings[0] - readings[1]).max()))
    assert worst < 0.02


@pytest.mark.parametrize("peak_db, lufs_shift", [(-11.0, 0.0), (-0.5, -20.0)])
def test_an_unmastered_or_very_quiet_reference_gives_its_tone_not_its_loudness(peak_db, lufs_shift):
    """Issue 24: a loud master with an unmastered mix (-25 LUFS, peaks at -11 dBFS) as reference came
    out at -25 LUFS. A reference's loudness is followed only when it is a master (peaks within 3 dB of
    full scale, at or above -23 LUFS); else the default platform's target, and the note says why and
    how to match it anyway."""
    x = music_like(6.0, seed=2)
    reference = music_like(6.0, seed=3)
    reference = reference * np.float32(10 ** (peak_db / 20) / np.abs(reference).max())
    if lufs_shift:  # a very dynamic quiet master: peaks near full scale, loudness under -23 LUFS
        reference = reference.copy()
        reference[:, : reference.shape[1] // 8] *= 1.0
        reference[:, reference.shape[1] // 8:] *= np.float32(10 ** (lufs_shift / 20))
    out, report = master(x, SR, reference=(reference, SR))
    assert abs(report["after"]["integrated_lufs"] - (-14.0)) < 0.1 and report["platform"] == "spotify"
    note = report["target"]["note"]
    assert "not the reference's loudness" in note and "--target-lufs" in note
    out, report = master(x, SR, reference=(reference, SR), target_lufs=-20.0)
    assert abs(report["after"]["integrated_lufs"] - (-20.0)) < 0.1 and not report["target"]["note"]


def test_the_fit_never_moves_a_band_against_the_reference():
    """Issue 24: a loud master fitted to a reference with more sub-bass moved 50 Hz down by 7.5 dB.
    On octave-smoothed curves no band moves against the direction the reference asks by more than
    1 dB, for references that tilt, notch and boost at the extremes; and the distance shrinks."""
    from roomtone.mastering.fit import fit_chain

    x = music_like(8.0, seed=4)
    base = load_preset("balanced")
    smooth = tg.smoothing_matrix()
    for eq in (Equalizer(low_shelf_hz=100.0, low_shelf_db=12.0, high_shelf_db=-12.0, high_shelf_hz=8000.0),
               Equalizer(bands=((50.0, 12.0, 1.0), (3000.0, -12.0, 0.7), (12000.0, 10.0, 1.0))),
               Equalizer(low_shelf_hz=150.0, low_shelf_db=-12.0, bands=((2000.0, 9.0, 0.5),))):
        reference = numba_render(Chain([eq]), music_like(8.0, seed=5))
        target = tg.reference_target((reference, SR))
        fitted, report = fit_chain(x, SR, base, target)
        out = numba_render(fitted.chain, x)
        curve = lambda a: tg.tonal_curve(a, SR, tg.integrated_loudness(a, SR))  # noqa: E731
        c_in, c_out, c_ref = curve(x), curve(out), curve(reference)
        ask, moved = smooth @ (c_ref - c_in), smooth @ (c_out - c_in)
        against = np.where(np.abs(ask) > 1.0, moved * np.sign(ask), 0.0)
        assert against.min() > -1.0, (eq, np.round(ask, 1), np.round(moved, 1))
        assert tg.tonal_distance(c_out, c_ref) < 0.5 * tg.tonal_distance(c_in, c_ref)


def test_a_reference_louder_than_the_limiting_budget_is_approached_and_said():
    """A crushed master as reference (-7 LUFS): the input cannot reach its loudness within the preset's
    limiting budget. A level taken from a reference was not asked for, so the master is delivered as
    close under it as the budget lets (not refused, as an explicit --target-lufs is), and the target
    note says how far under and why."""
    from roomtone.errors import TargetUnreachableError

    x = music_like(6.0, seed=2)
    reference = np.clip(music_like(6.0, seed=3) * 12.0, -0.97, 0.97).astype(np.float32)
    ref_lufs = tg.integrated_loudness(reference, SR)
    assert ref_lufs > -9.0
    out, report = master(x, SR, reference=(reference, SR))
    after = report["after"]["integrated_lufs"]
    assert ref_lufs - 12.0 < after < ref_lufs - 0.05 and report["after"]["true_peak_dbtp"] <= -1.0
    assert "LU under the reference's loudness" in report["target"]["note"]
    with pytest.raises(TargetUnreachableError):
        master(x, SR, reference=(reference, SR), target_lufs=ref_lufs)


def test_a_band_moved_against_the_target_is_named_in_the_report():
    """moves_against reads octave-smoothed curves: a band asked up but moved down is named (with the
    ask and the move), small asks and moves with the ask are not; a fitted master's report carries the
    list (empty on a reachable target)."""
    n = len(tg.THIRD_OCTAVE_HZ)
    flat = np.zeros(n)
    target = flat.copy()
    target[10:13] = 3.0  # ask about +3 dB around 400-630 Hz
    output = flat.copy()
    output[10:13] = -3.0  # moved the other way
    bands = tg.moves_against(flat, target, output)
    assert bands and all(b["asked_db"] >= 1.0 and b["moved_db"] <= -1.0 for b in bands)
    assert {b["hz"] for b in bands} >= {round(tg.THIRD_OCTAVE_HZ[11], 1)}
    assert tg.moves_against(flat, target, target * 0.5) == []  # short of the ask, same way: fine
    assert tg.moves_against(flat, flat + 0.4, flat - 0.4) == []  # under a dB of ask: not named
    x = music_like(6.0, seed=2)
    reference = numba_render(Chain([Equalizer(high_shelf_db=4.0)]), music_like(6.0, seed=3))
    out, report = master(x, SR, reference=(reference, SR), explain=True)
    assert report["fit"]["against_target"] == []


def test_every_twin_round_trips_its_parameters_and_unfittable_kinds_are_refused():
    from roomtone.plugins import HighPass

    chain = Chain(list(HOT) + list(TRACK))
    assert jax_chain.chain_from_params(jax_chain.params_from_chain(chain)) == chain
    with pytest.raises(ValueError, match="no 'highpass' stage"):
        jax_chain.params_from_chain(Chain([HighPass()]))
