"""The mastering assistant (``--preset auto``): its features against a time-domain EQ, the
training step, the shipped weights' behaviour on signals with a known fault, and the master job
with it. Short signals."""

import json

import jax
import numpy as np
import pytest

from refsignals import music_like, pink_noise

from roomtone.mastering import assistant
from roomtone.mastering.training import train_assistant
from roomtone.plugins import Equalizer, StereoWidth

SR = 44100


def test_a_time_domain_eq_moves_the_features_as_the_spectral_model_says():
    """Training de-masters in the power spectrum (``|G|^2 P``); at run time the features come from
    processed audio. The two agree: the numba EQ's effect on the 27-band curve equals its response
    averaged over each band, to 0.15 dB, and a width change moves the side/mid ratio by 20 log10."""
    a = assistant.analysis(SR)
    x = pink_noise(8.0, SR, rms=0.1, channels=2, seed=3)
    eq = Equalizer(low_shelf_hz=150.0, low_shelf_db=5.0, high_shelf_hz=6000.0, high_shelf_db=-4.0,
                   bands=((1000.0, 6.0, 1.0),))
    y = eq.process(x, SR)
    fx = a.features(*a.spectra(x))
    fy = a.features(*a.spectra(y))
    from roomtone.plugins import twin as jax_chain
    from roomtone.processor import Chain

    h2 = np.abs(np.asarray(jax_chain.eq_response(jax_chain.params_from_chain(Chain([eq]))["0:eq"], SR,
                                                 jax.numpy.asarray(a.z1), jax.numpy.asarray(a.z2)))) ** 2
    band_db = 10 * np.log10((a.bands @ h2) / a.bands.sum(1))
    band_db -= 10 * np.log10(np.sum(a.k2 * 10 ** ((fx[:27] + band_db) / 10))) - 10 * np.log10(np.sum(a.k2 * 10 ** (fx[:27] / 10)))
    assert np.max(np.abs((fy[:27] - fx[:27]) - band_db)) < 0.15
    w = StereoWidth(width=0.5).process(x, SR)
    fw = a.features(*a.spectra(w))
    np.testing.assert_allclose(fw[27:31] - fx[27:31], 20 * np.log10(0.5), atol=0.05)
    assert fx[31] == 0.0 and a.features(*a.spectra(x[:1]))[31] == 1.0  # the mono flag


def _fake_data(items=12, seed=0):
    a = assistant.analysis(SR)
    rng = np.random.default_rng(seed)
    slope = rng.uniform(-1.5, -0.5, (items, 1))
    base = (a.freqs[None, :] / 1000.0) ** slope * rng.uniform(0.5, 2.0, (items, 1))
    mid = (base * rng.uniform(0.8, 1.2, base.shape)).astype(np.float32)
    side = (0.2 * base * rng.uniform(0.5, 1.5, base.shape)).astype(np.float32)
    return {"p_mid": mid, "p_side": side, "p_total": 2 * (mid + side)}, a


def test_one_training_step_is_finite_and_moves_every_layer():
    """CI's training smoke test: one Adam step on synthetic spectra, stereo then mono."""
    import optax
    from flax import nnx

    from roomtone.models import weights

    data, a = _fake_data()
    model = assistant.build_model(assistant.Architecture(hidden=16), nnx.Rngs(0))
    before = {k: v.copy() for k, v in weights.model_arrays(model).items()}
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    step = train_assistant.make_step(a, assistant.loss_data(a, True), assistant.loss_data(a, False))
    rng = np.random.default_rng(1)
    for stereo in (True, False):
        x, items, g, w = train_assistant.make_batch(rng, data, np.arange(8), a, stereo)
        assert x.shape == (8, assistant.n_features()) and g.shape == (8, a.freqs.size) and w.shape == (8,)
        loss = float(step(model, optimizer, jax.numpy.asarray(x), {k: jax.numpy.asarray(v) for k, v in items.items()},
                          stereo=stereo))
        assert np.isfinite(loss) and loss > 0
    after = weights.model_arrays(model)
    assert all(not np.array_equal(after[k], before[k]) for k in after)


def test_training_lowers_the_loss_on_a_fixed_fault():
    """A few hundred steps on one repeated fault (every item tilted the same way) learn to undo
    it: the loss falls by half and the predicted high shelf cuts what the fault boosted."""
    import jax.numpy as jnp
    import optax
    from flax import nnx

    data, a = _fake_data(items=16)
    octaves = np.log2(a.freqs / 1000.0)
    g = (6.0 / (1.0 + np.exp(-(octaves - np.log2(8.0)) * 6.0)))[None, :].repeat(16, 0)  # +6 dB above 8 kHz
    G = 10 ** (g / 10)
    items = {"p_total": G * data["p_total"], "p_mid": G * data["p_mid"], "p_side": G * data["p_side"]}
    x = a.features(items["p_total"], items["p_mid"], items["p_side"])
    target = a.features(data["p_total"], data["p_mid"], data["p_side"])
    items = {k: jnp.asarray(v.astype(np.float32)) for k, v in items.items()}
    items.update(target_tonal=jnp.asarray(target[:, :27]), target_width=jnp.asarray(target[:, 27:31]))
    z = jnp.asarray((x - x.mean(0)) / np.maximum(x.std(0), 0.1))
    model = assistant.build_model(assistant.Architecture(hidden=16), nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    step = train_assistant.make_step(a, assistant.loss_data(a, True), assistant.loss_data(a, False))
    losses = [float(step(model, optimizer, z, items, stereo=True)) for _ in range(300)]
    assert losses[-1] < 0.5 * losses[0]
    raw = np.asarray(model(z))[0]
    _, template = assistant.fit_template(True)
    chain = assistant.apply_prediction(template, raw)
    eq = next(p for p in chain if p.kind == "eq")
    high = eq.high_shelf_db + sum(gain for f, gain, _ in eq.bands if f >= 6400.0)
    assert high < -2.0


def _music_spectrum_noise(seconds, seed):
    """Stereo noise shaped to the balanced preset's [target] curve (the mean 1/3-octave balance of
    real pop/electronic mixes), side 8 dB under the mid: a spectrum like music's, made here."""
    from roomtone.mastering.presets import load_preset

    table = load_preset("balanced").target
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    f = np.fft.rfftfreq(n, 1 / SR)
    band_db = np.interp(np.log(np.maximum(f, 20.0)), np.log(table["bands_hz"]), table["tonal_db"])
    shape = 10 ** (band_db / 20) / np.sqrt(np.maximum(f, 20.0))  # per-band level -> per-bin amplitude
    mid, side = (np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * shape, n) for _ in range(2))
    side *= 10 ** (-8 / 20) * np.std(mid) / np.std(side)
    x = np.stack([mid + side, mid - side])
    return (0.1 * x / np.sqrt(np.mean(x ** 2))).astype(np.float32)


def test_shipped_weights_load_and_undo_a_known_tilt():
    """The shipped assistant on noise with a music-like spectrum with +6 dB above 5 kHz:
    it proposes a cut up there, and the proposal's curve (the fitter's linear model) is closer to
    the untouched signal's than the input's is; on the untouched signal it proposes less there.
    The shipped proposal is shrunk by its calibrated strength (a quarter, set on music the network
    never trained on), so it undoes only part of the shelf."""
    from roomtone.mastering import targets as tg

    model, config = assistant.load_model()
    assert config["architecture"]["kind"] == assistant.ARCH_KIND and config["metrics"]
    x = _music_spectrum_noise(10.0, seed=4)
    boosted = Equalizer(high_shelf_hz=5000.0, high_shelf_db=6.0).process(x, SR)
    a = assistant.analysis(SR)
    original = a.features(*a.spectra(x))[:27]
    preset, report, tonal_after = assistant.propose(boosted, SR)
    assert preset.name == "auto" and json.dumps(report)
    high = lambda r: r["high_shelf_db"] + sum(b[1] for b in r["bells"] if b[0] >= 6400.0)  # noqa: E731
    assert high(report) < -1.5
    before = tg.tonal_distance(a.features(*a.spectra(boosted))[:27], original)
    assert tg.tonal_distance(tonal_after, original) < 0.95 * before
    _, report_clean, _ = assistant.propose(x, SR)
    assert high(report_clean) > high(report) + 1.0
    assert report["tonal_strength"] == config["calibration"]["tonal_strength"] < 1.0


def test_scale_proposal_scales_gains_and_width_departure():
    rng = np.random.default_rng(3)
    raw = rng.normal(0.0, 0.5, (5, assistant.N_OUT)).astype(np.float32)
    from roomtone.mastering import fit

    gains = lambda r: fit.GAIN_LIMIT_DB * np.tanh(np.asarray(r, np.float64)[..., :assistant.N_GAINS])  # noqa: E731
    width = lambda r: fit.WIDTH_LIMIT / (1 + np.exp(-np.asarray(r, np.float64)[..., assistant.N_GAINS]))  # noqa: E731
    np.testing.assert_array_equal(assistant.scale_proposal(raw, 1.0, 1.0), raw)
    half = assistant.scale_proposal(raw, 0.5, 0.25)
    np.testing.assert_allclose(gains(half), 0.5 * gains(raw), atol=1e-4)
    np.testing.assert_allclose(width(half) - 1.0, 0.25 * (width(raw) - 1.0), atol=1e-5)
    np.testing.assert_allclose(gains(assistant.scale_proposal(raw, 0.0, 1.0)), 0.0, atol=1e-6)


def test_calibration_shrinks_a_proposal_that_does_harm_and_leaves_a_null_one_alone():
    """:func:`train_assistant.calibrate` on three excerpts: a stand-in network proposing a fixed
    -10 dB low shelf for everything (harm on zero-mean random faults) is calibrated to strength 0,
    with full strength over 1 dB worse; one proposing nothing scores the untouched input's distance
    at every strength."""
    from roomtone.mastering.training import train_assistant as ta

    a = assistant.analysis(SR)
    spectra = [a.spectra(_music_spectrum_noise(4.0, seed=s)) for s in range(3)]
    data = {key: np.stack([sp[i] for sp in spectra]) for i, key in enumerate(("p_total", "p_mid", "p_side"))}
    scale = {"mean": np.zeros(assistant.n_features(), np.float32), "std": np.ones(assistant.n_features(), np.float32)}
    index = np.arange(3)

    def shelf(z):
        raw = np.zeros((len(z), assistant.N_OUT), np.float32)
        raw[:, 0] = np.arctanh(-10.0 / 12.0)
        return raw

    best, figures, before = ta.calibrate(shelf, data, index, a, scale)
    assert set(figures) == set(map(float, ta.STRENGTHS)) and best == 0.0
    assert figures[1.0] > figures[0.0] + 1.0
    best, figures, before = ta.calibrate(lambda z: np.zeros((len(z), assistant.N_OUT), np.float32), data, index, a, scale)
    assert max(abs(v - before) for v in figures.values()) < 2e-3


def test_an_input_unlike_music_gets_a_mild_proposal():
    """A synthetic programme far from the training music (a loud 55 Hz line over noise) is
    flagged by its feature distance and its proposal shrunk: no EQ gain beyond 6 dB."""
    x = music_like(8.0, SR, channels=2, seed=4)
    _, report, _ = assistant.propose(x, SR)
    assert report["feature_distance"] > assistant.OOD_DISTANCE and report["strength"] < 1.0
    gains = [report["low_shelf_db"], report["high_shelf_db"]] + [b[1] for b in report["bells"]]
    assert max(abs(g) for g in gains) <= 6.0


@pytest.mark.parametrize("channels", [1, 2])
def test_master_with_preset_auto_hits_the_target(channels):
    from roomtone.mastering import master
    from roomtone.meter import integrated_loudness

    x = music_like(6.0, SR, channels=channels, seed=5)
    out, report = master(x, SR, preset="auto", platform="spotify")
    assert abs(integrated_loudness(out, SR) - (-14.0)) < 0.1
    assert report["assistant"]["base_preset"] == "balanced"
    assert report["preset"]["name"] == "auto"


@pytest.mark.parametrize("fit_target", [False, True])
def test_album_with_preset_auto_shares_one_proposed_chain_and_keeps_the_loudness_differences(fit_target):
    """One proposal (and, with fit_target, one refinement) from the album's analysis signal: every
    track gets the same chain, and each lands on its place (the densest on the target)."""
    from roomtone.mastering.album import master_album
    from roomtone.meter import integrated_loudness

    loud = music_like(6.0, SR, channels=2, seed=6)
    quiet = music_like(6.0, SR, channels=2, seed=7) * np.float32(10 ** (-6.0 / 20))
    outputs, report = master_album([(loud, SR), (quiet, SR)], preset="auto", platform="spotify",
                                   fit_target=fit_target)
    album = report["album"]
    assert album["assistant"] is not None and album["assistant"]["base_preset"] == "balanced"
    assert album["assistant"]["album_analysis"]["tracks"] and len(album["assistant"]["album_analysis"]["tracks"]) == 2
    assert (album["fit"] is not None) == fit_target
    chains = [r["preset"]["chain"] for r in report["tracks"]]
    assert chains[0] == chains[1] == album["preset"]["chain"]
    for out, r in zip(outputs, report["tracks"]):
        assert abs(integrated_loudness(out, SR) - r["album"]["placed_lufs"]) < 0.1
    assert min(r["album"]["placed_lufs"] for r in report["tracks"]) > -14.0 - 4.0 - 1e-3


def _correlation(x):
    return float(np.sum(x[0] * x[1]) / np.sqrt(np.sum(x[0] ** 2) * np.sum(x[1] ** 2)))


@pytest.mark.parametrize("side_db, most", [(-40.0, 1.0), (-24.4, 1.0), (-8.0, None), (-4.0, 1.0), (0.0, 1.0)])
def test_width_bound_keeps_mono_compatibility(side_db, most):
    """A width the bound allows, applied by the real stage, leaves the channels correlated at 0.5 or
    more; near-mono inputs (side 16 dB or more under the mid) and inputs already at or under 0.5 are
    not widened at all."""
    from roomtone.mastering import targets as tg

    rng = np.random.default_rng(3)
    mid, side = rng.standard_normal((2, SR * 2))
    side *= 10 ** (side_db / 20)
    x = np.stack([mid + side, mid - side]).astype(np.float32)
    _, _, p_mid, p_side = tg.spectra(x, SR)
    width, corr, rule = tg.width_bound(p_mid, p_side)
    assert abs(corr - _correlation(x)) < 0.01
    if most is not None:
        assert width == most
    else:
        assert 1.0 < width < 2.0 and rule == "mono compatibility"
    widened = StereoWidth(width=width).process(x, SR)
    assert _correlation(widened) >= min(tg.MIN_CORRELATION, corr) - 0.01
    applied, report = tg.bound_width(2.0, p_mid, p_side)
    assert applied == width and report["bound_by"] == rule and "width held at" in report["reason"]
    assert tg.bound_width(0.8, p_mid, p_side)[1]["bound_by"] is None  # narrowing is never bound


def test_the_assistant_does_not_widen_a_near_mono_song_and_says_why():
    """Issue 24: the assistant asked 200 % (its cap) of a song whose channels correlate at 0.993.
    The applied width stays at or under 100 %, the report says why, and --explain shows it."""
    from roomtone.mastering import master

    x = _music_spectrum_noise(8.0, seed=6)
    mid = 0.5 * (x[0] + x[1])
    side = 0.5 * (x[0] - x[1])
    side *= 10 ** (-24.4 / 20) * np.std(mid) / np.std(side)
    near_mono = np.stack([mid + side, mid - side]).astype(np.float32)
    out, report = master(near_mono, SR, preset="auto", platform="spotify", explain=True)
    bound = report["assistant"]["width_bound"]
    width = next(p["width"] for p in report["preset"]["chain"] if p["kind"] == "width")
    assert width <= 1.0 and bound["applied"] == width and bound["input_correlation"] > 0.99
    if bound["proposed"] > 1.0:
        assert bound["bound_by"] == "near mono" and any("near mono" in line for line in report["explain"])
    assert _correlation(out) > 0.98


def test_a_reference_fit_does_not_widen_past_mono_compatibility():
    """A reference far wider than the input (side 3 dB under the mid): the fit moves toward it but
    never takes the output's channel correlation under 0.5."""
    from roomtone.mastering import master

    x = _music_spectrum_noise(8.0, seed=7)  # side 8 dB under the mid: correlation about 0.73
    ref = _music_spectrum_noise(8.0, seed=8)
    mid, side = 0.5 * (ref[0] + ref[1]), 0.5 * (ref[0] - ref[1])
    side *= 10 ** (-3 / 20) * np.std(mid) / np.std(side)
    out, report = master(x, SR, reference=(np.stack([mid + side, mid - side]), SR), explain=True)
    bound = report["fit"]["width_bound"]
    assert 1.0 < bound["applied"] <= bound["max"] < 2.0
    assert _correlation(out) >= 0.5 - 0.02
