"""The fusion of the network's masks with the DSP masks (roomtone.separate.fusion): a product of
experts that still sums to the mixture, the identity at powers (1, 0), the search, the separator
that applies it and the fused training loss. Synthetic signals only."""

import numpy as np
import pytest

import sepsignals

from roomtone.separate import fusion, net
from roomtone.separate.training import fusion as search

RATE = net.SAMPLE_RATE


def random_masks(rng, shape=(2, 4, 2, 7, 9)):
    m = rng.uniform(0.0, 1.0, shape).astype(np.float32) ** 3
    return m / m.sum(axis=1, keepdims=True)


def test_fused_masks_sum_to_one_and_powers_one_and_zero_give_the_network_back():
    rng = np.random.default_rng(0)
    a, d = random_masks(rng), random_masks(rng)
    fused = fusion.fuse_masks(a, d, 0.7, [0.1, 0.75, 0.75, 1.0])
    assert fused.shape == a.shape and fused.min() >= 0.0
    np.testing.assert_allclose(fused.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(fusion.fuse_masks(a, d, 1.0, [0.0] * 4), a, atol=1e-3)
    # powers (0, 1): the DSP's masks
    np.testing.assert_allclose(fusion.fuse_masks(a, d, 0.0, [1.0] * 4), d, atol=1e-3)


def test_a_bin_either_expert_denies_a_stem_is_taken_from_it():
    """Where the DSP gives a stem nothing and the network half, the fused stem is (nearly) empty."""
    net_m = np.full((1, 4, 1, 1, 1), 0.25, np.float32)
    net_m[0, :, 0, 0, 0] = [0.5, 0.2, 0.2, 0.1]
    dsp_m = np.array([0.0, 0.4, 0.3, 0.3], np.float32).reshape(1, 4, 1, 1, 1)
    fused = fusion.fuse_masks(net_m, dsp_m, 1.0, [1.0] * 4)[0, :, 0, 0, 0]
    assert fused[0] < 1e-3
    # the others in proportion to the product of both experts
    product = np.array([0.2 * 0.4, 0.2 * 0.3, 0.1 * 0.3])
    np.testing.assert_allclose(fused[1:], product / product.sum(), rtol=2e-3)


def test_dsp_masks_on_the_network_stft_sum_to_one_and_find_the_bass_low():
    from roomtone.models.stft import stft

    mix = (sepsignals.bass(1.0, RATE, f0=55.0) + sepsignals.hihat(1.0, RATE))[None]
    spec = np.asarray(stft(mix, net.window(), net.HOP))
    d = fusion.dsp_masks(spec, RATE, net.N_FFT)
    assert d.shape == (1, 4) + spec.shape[1:]
    np.testing.assert_allclose(d.sum(axis=1), 1.0, atol=1e-4)
    low = int(round(55.0 * net.N_FFT / RATE))
    assert d[0, 2, :, 5:-5, low].mean() > 0.5  # the bass keeps its fundamental


def test_the_search_moves_towards_the_expert_that_is_right():
    """With a score that rewards closeness to the DSP masks, the search raises the DSP powers and
    the score; with one that rewards the network's, it keeps the DSP powers low."""
    rng = np.random.default_rng(3)
    a, d = random_masks(rng), random_masks(rng)

    def near(target):
        def evaluate(m):
            err = -float(np.mean(np.abs(m - target)))
            return [err] * 4 + [err]
        return evaluate

    a_power, b_power, best, trail = search.tune(a, d, near(d))
    assert min(b_power) >= 1.0 and best[-1] > trail[0]["val_sdr_db"][-1]
    a_power, b_power, best, _ = search.tune(a, d, near(a))
    assert max(b_power) <= 0.1 and a_power >= 1.0


def tiny_weights(tmp_path, fusion_entry=None, name="tiny"):
    from flax import nnx

    from roomtone.models import weights

    arch = net.Architecture(embed=16, hidden=8, layers=1, head=8)
    model = net.build_model(arch, nnx.Rngs(1))
    config = {"architecture": arch.as_dict(), "sample_rate": RATE}
    if fusion_entry:
        config["fusion"] = fusion_entry
    path = tmp_path / f"{name}.npz"
    weights.save_weights(path, weights.model_arrays(model), config)
    return path


def test_the_fused_separator_sums_to_the_mixture_and_is_the_network_at_powers_one_and_zero(tmp_path):
    identity = {"net_power": 1.0, "dsp_power": dict.fromkeys(net.STEMS, 0.0), "eps": 1e-6}
    strong = {"net_power": 0.7, "dsp_power": dict.fromkeys(net.STEMS, 1.0)}
    mix = sepsignals.mixture(1.0, RATE)[None]
    seg = 1.0
    alone = net.RoomtoneSeparator(tiny_weights(tmp_path), segment_s=seg)
    assert alone.fusion is None
    base = alone.separate_segment(mix, RATE)
    same = net.RoomtoneSeparator(tiny_weights(tmp_path, identity, "identity"), segment_s=seg)
    np.testing.assert_allclose(same.separate_segment(mix, RATE), base, atol=2e-4)
    fused_sep = net.RoomtoneSeparator(tiny_weights(tmp_path, strong, "strong"), segment_s=seg)
    out = fused_sep.separate_segment(mix, RATE)
    np.testing.assert_allclose(out.sum(axis=1), mix, atol=2e-5)
    assert np.abs(out - base).max() > 1e-3  # the DSP changed the split
    plain = net.RoomtoneSeparator(tiny_weights(tmp_path, strong, "strong"), segment_s=seg, fusion=False)
    assert plain.name == "roomtone-net" and plain.fusion is None


def test_the_fused_loss_is_finite_and_differs_from_the_network_alone():
    from flax import nnx

    from roomtone.models.stft import stft
    from roomtone.separate.training import train

    model = net.build_model(net.Architecture(embed=16, hidden=8, layers=1, head=8), nnx.Rngs(0))
    stems = np.stack([sepsignals.voice(0.5, RATE), sepsignals.kick(0.5, RATE), sepsignals.bass(0.5, RATE),
                      sepsignals.hihat(0.5, RATE)])[None]
    mix = stems.sum(axis=1)
    full = np.ones(1, np.float32)
    made = train.with_dsp_masks((mix, stems, full))
    assert made[3].shape == (1, 4, 2) + np.asarray(stft(mix, net.window(), net.HOP)).shape[2:]
    plain = float(train.loss_fn(model, mix, stems, full))
    fused = float(train.loss_fn(model, *made, fusion=(0.7, (0.1, 0.75, 0.75, 1.0))))
    assert np.isfinite(fused) and abs(fused - plain) > 1e-4
    optimizer_step = train.make_step((0.7, (0.1, 0.75, 0.75, 1.0)))
    import optax

    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    assert np.isfinite(float(optimizer_step(model, optimizer, *made)))


def test_the_jax_fusion_of_the_loss_is_the_numpy_fusion_of_the_separator():
    import jax.numpy as jnp

    rng = np.random.default_rng(7)
    a, d = random_masks(rng), random_masks(rng)
    powers = (0.7, [0.1, 0.75, 1.0, 1.5])
    np.testing.assert_allclose(np.asarray(fusion.fuse_masks(jnp.asarray(a), jnp.asarray(d), *powers, xp=jnp)),
                               fusion.fuse_masks(a, d, *powers), atol=1e-6)


def test_fused_training_refuses_weights_without_powers_before_loading_any_data(tmp_path, capsys):
    from roomtone.separate.training import train

    init = tiny_weights(tmp_path)
    with pytest.raises(SystemExit) as stop:
        train.main(["--out", str(tmp_path / "run.npz"), "--init", str(init), "--fused", "--pop909",
                    str(tmp_path / "no-such-renders")])
    assert stop.value.code == 2 and "fusion entry" in capsys.readouterr().err


def test_the_search_takes_several_sets_of_other_lengths():
    """Masks of two validation sets (other lengths) are fused alike by one set of powers, and the
    search reads the figure of both: rewarding the DSP's masks on the one set and the network's
    on the other, it settles between the powers either alone would choose."""
    rng = np.random.default_rng(4)
    a1, d1 = random_masks(rng), random_masks(rng)
    a2, d2 = random_masks(rng)[..., :5, :], random_masks(rng)[..., :5, :]
    both = search.fused([a1, a2], [d1, d2], 1.0, [0.5] * 4)
    assert [m.shape for m in both] == [a1.shape, a2.shape]
    np.testing.assert_allclose(both[1], search.fused(a2, d2, 1.0, [0.5] * 4))

    def evaluate(masks):
        err = -float(np.mean(np.abs(masks[0] - d1)) + np.mean(np.abs(masks[1] - a2)))
        return [err] * 4 + [err]

    _, b_power, best, trail = search.tune([a1, a2], [d1, d2], evaluate)
    assert best[-1] >= trail[0]["val_sdr_db"][-1]
    assert all(0.0 <= b <= 1.5 for b in b_power)
