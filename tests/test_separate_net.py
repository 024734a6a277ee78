"""The ``roomtone`` separator: its frequency layout, masks, training step and mixtures (synthetic
sources: no ../shared needed), and the shipped weights' golden figures."""


import numpy as np
import pytest

import sepsignals

from roomtone.separate import net
from roomtone.separate.training import data

RATE = net.SAMPLE_RATE


def tiny_model(seed=0):
    from flax import nnx

    return net.build_model(net.Architecture(embed=16, hidden=8, layers=1, head=8), nnx.Rngs(seed))


def test_band_layout_covers_every_bin_once_single_bins_below_and_log_bands_above():
    edges, unit_of_bin = net.band_layout()
    assert edges[0] == 0 and edges[-1] == net.BINS and len(edges) == net.UNITS + 1
    widths = np.diff(edges)
    assert np.all(widths >= 1)
    assert np.all(widths[:net.LOW_BINS] == 1)
    assert widths[-1] > widths[net.LOW_BINS]  # wider towards Nyquist
    assert unit_of_bin.shape == (net.BINS,) and np.all(np.diff(unit_of_bin) >= 0)
    assert np.array_equal(np.bincount(unit_of_bin, minlength=net.UNITS), widths)


def test_masks_sum_to_one_and_the_stems_sum_to_the_mixture():
    import jax

    model = tiny_model()
    mix = sepsignals.mixture(1.0, RATE)[None]  # (1, 2, n)
    out = np.asarray(jax.jit(net.separate_fn(model, mix.shape[-1]))(mix))
    assert out.shape == (1, 4, 2, mix.shape[-1])
    np.testing.assert_allclose(out.sum(axis=1), mix, atol=2e-5)
    from roomtone.models.stft import stft

    m = np.asarray(net.masks(model, stft(mix, net.window(), net.HOP)))
    assert m.min() >= 0.0 and m.max() <= 1.0
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-5)


def test_features_do_not_depend_on_the_level_and_silence_gives_finite_output():
    import jax

    from roomtone.models.stft import stft

    mix = sepsignals.mixture(0.5, RATE)[None]
    spec = stft(mix, net.window(), net.HOP)
    a, b = np.asarray(net.features(spec)), np.asarray(net.features(spec * 0.01))
    audible = a > -1.25  # within 50 dB of the level: below that, float32 FFT rounding differs
    assert audible.mean() > 0.1  # the side half is silent: the mixture is centred
    np.testing.assert_allclose(a[audible], b[audible], atol=2e-3)
    out = np.asarray(jax.jit(net.separate_fn(tiny_model(), 4096))(np.zeros((1, 2, 4096), np.float32)))
    assert np.all(np.isfinite(out)) and np.abs(out).max() == 0.0


def synthetic_sources(seconds=4.0):
    """Sources in the shape :func:`roomtone.separate.training.data.load_sources` returns, from sepsignals."""
    n = int(seconds * RATE)

    def song(seed):
        rng = np.random.default_rng(seed)
        stems = {"drums": sepsignals.kick(seconds, RATE, seed=seed) + sepsignals.hihat(seconds, RATE, seed=seed),
                 "bass": sepsignals.bass(seconds, RATE, f0=rng.uniform(40, 80)),
                 "other": rng.standard_normal((2, n)).astype(np.float32) * 0.05,
                 "melody": sepsignals.voice(seconds, RATE, f0=rng.uniform(180, 300))}
        return (f"{seed:03d}", {k: data._int16(v) for k, v in stems.items()})

    voice = sepsignals.voice(seconds, RATE)[0]
    music = data._int16(np.random.default_rng(9).standard_normal((2, n)).astype(np.float32) * 0.1)
    pool = {"songs": [song(1), song(2)], "voices": [("v1", voice, 16000), ("v2", voice[::-1].copy(), 48000)],
            "music": [("m", music)]}
    rir = np.zeros(2000, np.float32)
    rir[0], rir[700] = 1.0, 0.3
    return {"train": pool, "val": pool, "rir": [rir]}


def test_items_sum_to_their_mixture_partial_items_hold_no_drums_or_bass_and_never_clip():
    sources = synthetic_sources()
    rng = np.random.default_rng(0)
    mix, targets, full = data.batch(rng, sources["train"], sources["rir"], 24, int(1.0 * RATE))
    assert mix.shape == (24, 2, RATE) and targets.shape == (24, 4, 2, RATE)
    np.testing.assert_allclose(targets.sum(axis=1), mix, atol=1e-6)
    assert np.abs(mix).max() <= 0.99 + 1e-6
    assert 0 < full.sum() < 24  # both kinds drawn
    partial = full < 0.5
    assert np.all(targets[partial][:, 1:3] == 0.0)
    assert np.all(np.isfinite(targets))
    again = data.validation_set(sources, items=4, seconds=0.5)
    np.testing.assert_array_equal(again[0], data.validation_set(sources, items=4, seconds=0.5)[0])


def test_air_is_added_above_8_khz_to_a_band_limited_voice_only_there():
    rng = np.random.default_rng(1)
    from roomtone.resample import resample

    v16 = sepsignals.voice(2.0, 16000)[0] + 0.05 * np.random.default_rng(2).standard_normal(32000).astype(np.float32)
    v = resample(v16[None], 16000, RATE)[0]
    out = data._air(rng, v)
    f = np.fft.rfftfreq(v.size, 1 / RATE)
    before, after = np.abs(np.fft.rfft(v)) ** 2, np.abs(np.fft.rfft(out)) ** 2
    high = f > 9000
    assert after[high].sum() > 10 * before[high].sum()
    assert 1e-4 < after[high].sum() / after.sum() < 0.05
    low = f < 6000
    np.testing.assert_allclose(after[low].sum(), before[low].sum(), rtol=1e-3)


def test_saturation_keeps_the_level_and_adds_harmonics():
    """A 110 Hz sine through :func:`data._saturate`: the same RMS, odd harmonics at least 30 dB
    above what the clean sine holds there, never a non-finite sample."""
    rng = np.random.default_rng(3)
    t = np.arange(RATE) / RATE
    x = np.stack([0.05 * np.sin(2 * np.pi * 110.0 * t)] * 2).astype(np.float32)
    y = data._saturate(rng, x)
    assert np.all(np.isfinite(y)) and y.shape == x.shape
    np.testing.assert_allclose(np.sqrt(np.mean(y ** 2)), np.sqrt(np.mean(x ** 2)), rtol=1e-4)
    spectrum = lambda s: np.abs(np.fft.rfft(s[0])) ** 2  # noqa: E731 (1 Hz bins)
    assert spectrum(y)[330] > 1e3 * spectrum(x)[330]


def test_bus_limiting_is_one_gain_for_every_stem_and_holds_the_peaks():
    """:func:`data._bus_gain` on a mix with loud clicks: a gain curve in (0, pre] with the clicks
    pulled down at least 2 dB (the least drive) relative to the quiet body: limiting, not a level change."""
    rng = np.random.default_rng(4)
    n = RATE
    mix = (0.05 * np.random.default_rng(5).standard_normal((2, n))).astype(np.float32)
    mix[:, ::11025] += 0.9
    g = data._bus_gain(rng, mix)
    assert g.shape == (n,) and np.all(g > 0) and np.all(np.isfinite(g))
    body = np.median(g)
    assert g[::11025].max() < 10 ** (-2.0 / 20) * body + 1e-3  # driven 2 dB at least


def test_sdr_is_infinite_like_for_a_perfect_estimate_and_nan_for_a_silent_reference():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((2, 4, 2, 1000)).astype(np.float32)
    ref[1, 2] = 0.0
    sdr = data.sdr_db(ref + 1e-3 * rng.standard_normal(ref.shape), ref)
    assert sdr[0, 0] > 50 and np.isnan(sdr[1, 2])
    assert abs(data.sdr_db(ref * 0.0, ref)[0, 0]) < 1e-6  # silence as the estimate: 0 dB


def test_one_training_step_is_finite_and_moves_every_layer():
    """CI's training smoke test: a tiny model, one batch of synthetic items, one AdamW step."""
    import optax
    from flax import nnx

    from roomtone.models import weights
    from roomtone.separate.training import train

    sources = synthetic_sources()
    mix, targets, full = data.batch(np.random.default_rng(0), sources["train"], sources["rir"], 4, RATE // 2)
    model = tiny_model()
    before = {k: np.array(v) for k, v in weights.model_arrays(model).items()}
    optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)
    loss = float(train.make_step()(model, optimizer, mix, targets, full))
    assert np.isfinite(loss) and loss > 0
    after = weights.model_arrays(model)
    moved = [k for k in before if not np.array_equal(before[k], np.asarray(after[k]))]
    assert set(moved) == set(before), sorted(set(before) - set(moved))


def test_partial_label_loss_ignores_how_the_accompaniment_is_split():
    """A game-music item knows only vocals and accompaniment: moving mask weight between drums,
    bass and other must not change its loss."""
    import jax.numpy as jnp

    from roomtone.separate.training import train

    sources = synthetic_sources()
    mix, targets, _ = data.batch(np.random.default_rng(4), sources["train"], sources["rir"], 2, RATE // 4)
    full = np.zeros(2, np.float32)

    class Fixed:
        def __init__(self, logits):
            self.logits = logits

        def __call__(self, feats):
            b, t = feats.shape[:2]
            return jnp.broadcast_to(self.logits[None, :, None, None, :], (b, 4, 2, t, net.UNITS))

    rng = np.random.default_rng(5)
    base = rng.standard_normal((4, net.UNITS)).astype(np.float32)
    shuffled = base.copy()
    shuffled[1:] = base[[3, 1, 2]]  # drums/bass/other logits permuted: same vocals mask
    a = float(train.loss_fn(Fixed(jnp.asarray(base)), mix, targets, full))
    b = float(train.loss_fn(Fixed(jnp.asarray(shuffled)), mix, targets, full))
    assert a == pytest.approx(b, rel=1e-5)
    c = float(train.loss_fn(Fixed(jnp.asarray(base)), mix, targets, np.ones(2, np.float32)))
    assert c != pytest.approx(a, rel=1e-3)  # a full-label item does see the split


# ---- the shipped weights -------------------------------------------------------------------------

def golden_mix():
    """The fixed synthetic mix of the golden test: 6 s at 44.1 kHz stereo of sepsignals' kick +
    hi-hat (drums), a centred harmonic voice, a low bass note and a wide noise pad (other).
    Returns {stem: (2, samples)}."""
    seconds = 6.0
    n = int(seconds * RATE)
    rng = np.random.default_rng(11)
    pad = rng.standard_normal((2, n)).astype(np.float32)
    spec = np.fft.rfft(pad, axis=-1)
    f = np.fft.rfftfreq(n, 1 / RATE)
    pad = np.fft.irfft(spec * ((f > 300) & (f < 3000)), n=n, axis=-1).astype(np.float32)
    pad *= 0.05 / np.sqrt(np.mean(pad ** 2))
    return {"vocals": sepsignals.voice(seconds, RATE, f0=233.0) * 0.5,
            "drums": sepsignals.kick(seconds, RATE) + sepsignals.hihat(seconds, RATE),
            "bass": sepsignals.bass(seconds, RATE, f0=49.0),
            "other": pad}


def golden_figures(separator):
    """SDR (dB, data.sdr_db) per stem of ``separator`` on :func:`golden_mix`, and each stem's
    output RMS (dB)."""
    stems = golden_mix()
    mix = sum(stems.values())
    out = separator.separate_segment(np.pad(mix, ((0, 0), (0, int(separator.segment_s * RATE) - mix.shape[1])))[None],
                                     RATE)[0][:, :, :mix.shape[1]]
    ref = np.stack([stems[s] for s in net.STEMS])
    sdr = data.sdr_db(out[None], ref[None])[0]
    figures = {f"sdr_{s}_db": round(float(v), 3) for s, v in zip(net.STEMS, sdr)}
    figures.update({f"rms_{s}_db": round(float(10 * np.log10(np.mean(out[j].astype(np.float64) ** 2) + 1e-20)), 3)
                    for j, s in enumerate(net.STEMS)})
    return figures


@pytest.fixture(scope="module")
def shipped():
    if not net.installed():
        pytest.fail("the shipped separator weights (separate/weights/roomtone.npz) are missing")
    return net.RoomtoneSeparator()


def test_shipped_weights_give_the_committed_golden_figures(shipped):
    """Regenerate with ``PYTHONPATH=tests python tests/golden/make_separate_golden.py`` after
    training new weights."""
    import hashlib
    import json
    from pathlib import Path

    golden = json.loads((Path(__file__).parent / "golden" / "separate_roomtone.json").read_text())
    assert hashlib.sha256(Path(net.weights_path()).read_bytes()).hexdigest() == golden["weights_sha256"]
    figures = golden_figures(shipped)
    for key, value in figures.items():
        assert value == pytest.approx(golden[key], abs=0.05), key


def test_shipped_weights_separate_a_mix_they_never_saw_better_than_the_trivial_split(shipped):
    """On the synthetic golden mix every stem's SDR beats giving each stem a quarter of the mix."""
    figures = golden_figures(shipped)
    stems = golden_mix()
    mix = sum(stems.values())
    trivial = data.sdr_db(np.repeat(mix[None, None] / 4, 4, axis=1),
                          np.stack([stems[s] for s in net.STEMS])[None])[0]
    better = [s for s, t in zip(net.STEMS, trivial) if figures[f"sdr_{s}_db"] > t]
    assert len(better) >= 3, (figures, trivial)


def test_shipped_config_describes_the_weights(shipped):
    config = shipped.config
    assert config["architecture"]["kind"] == net.KIND and config["sample_rate"] == RATE
    for key in ("data", "training", "metrics", "parameters"):
        assert key in config, key
    assert config["data"]["val_song_ids"] and config["data"]["val_speakers"]
    assert not set(config["data"]["val_song_ids"]) & set(config["data"].get("train_song_ids", []))
    from roomtone.models import weights

    assert config["parameters"] == sum(v.size for v in weights.load_arrays(net.weights_path()).values())


def test_the_job_runs_the_shipped_model_and_the_stems_sum_to_the_mix():
    from roomtone.separate import separate
    from roomtone.separate.separators import available_separators, default_separator

    assert "roomtone" in available_separators()
    assert default_separator() == "roomtone"  # above dsp on every stem of the real excerpt (bench_separate)
    assert default_separator(("vocals", "drums")) == "roomtone"
    stems = golden_mix()
    mix = sum(stems.values())[:, :RATE * 2]
    out, report = separate(mix, RATE, model="roomtone")
    assert report["model"] == "roomtone"
    np.testing.assert_allclose(sum(out.values()), mix, atol=1e-5)
    mono, _ = separate(mix[:1], RATE, model="roomtone")
    assert all(v.shape == (1, mix.shape[1]) for v in mono.values())


def test_a_fine_tuned_config_keeps_its_lineage_and_refuses_a_leak():
    """:func:`train.with_lineage`: the song ids, speakers and music of both runs are kept, the runs
    listed in order, licences merged; a validation song of one run that the other trained on is
    refused."""
    from roomtone.separate.training import train

    before = {"data": {"train_song_ids": ["001", "002"], "val_song_ids": ["010"], "val_speakers": ["a"],
                       "licences": {"game_music": {"wesnoth-1.16-music": "GPL-2"}}, "renders": "old"},
              "training": {"runs": [{"command": "first", "steps": 10}]}}
    now = {"data": {"train_song_ids": ["003"], "val_song_ids": ["020"], "val_speakers": ["b"], "val_music": ["m"],
                    "licences": {"game_music": {"nexuiz-music": "GPL-2+"}}},
           "training": {"steps": 5}}
    out = train.with_lineage(now, before, "second", 5)
    assert out["data"]["train_song_ids"] == ["001", "002", "003"] and out["data"]["val_song_ids"] == ["010", "020"]
    assert out["data"]["val_speakers"] == ["a", "b"] and out["data"]["earlier_renders"] == "old"
    assert out["data"]["licences"]["game_music"] == {"wesnoth-1.16-music": "GPL-2", "nexuiz-music": "GPL-2+"}
    assert [r["command"] for r in out["training"]["runs"]] == ["first", "second"]
    assert now["data"]["train_song_ids"] == ["003"]  # the input is left alone
    now["data"]["train_song_ids"] = ["010"]
    with pytest.raises(ValueError, match="validation song"):
        train.with_lineage(now, before, "third", 1)


def test_selection_weighs_each_validation_set_alike():
    """The separator's weights are chosen on the mean over the validation sets: one held-out EIR
    song weighs as much as eight tracker modules (each song's stem mean, NaN stems left out, then
    the mean over its source's songs) and as the synthetic set."""
    from roomtone.separate.training.train import by_set, selection

    figures = {"songs": {"eir_sodium": [3.0, 1.0, float("nan"), 2.0],
                         **{f"modules_{k}": [float("nan"), 0.0, 4.0, 2.0] for k in range(8)}},
               "synthetic": {"mean": 5.0}}
    sets = by_set(figures)
    assert sets == {"eir": 2.0, "modules": 2.0, "synthetic": 5.0}
    figures["songs"]["modules_0"] = [float("nan"), 8.0, 8.0, 8.0]
    assert by_set(figures)["modules"] == pytest.approx(2.75)
    sets, figure = selection(figures)
    assert sets == by_set(figures) and figure == pytest.approx((2.0 + 2.75 + 5.0) / 3, abs=1e-3)
