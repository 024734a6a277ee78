"""The model layer: STFT/ISTFT, weight files, chunked apply, runtime set-up."""

import functools
import json
import os
import subprocess
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from roomtone.models import apply as chunked
from roomtone.models import runtime, stft, weights


@pytest.mark.parametrize("n_fft, hop", [(512, 128), (960, 480), (64, 16)])
@pytest.mark.parametrize("samples", [1, 100, 4801, 16000])
def test_stft_round_trip_is_exact_to_float32(n_fft, hop, samples):
    x = np.random.default_rng(samples).standard_normal((2, samples)).astype(np.float32)
    window = stft.sqrt_hann(n_fft) if hop * 2 == n_fft else stft.hann(n_fft)
    frames = stft.frame_count(samples, hop, n_fft)
    spec = stft.stft(jnp.asarray(x), window, hop)
    assert spec.shape == (2, frames, n_fft // 2 + 1)
    env = stft.window_envelope(window, window, hop, frames)
    y = np.asarray(stft.istft(spec, window, hop, env, samples))
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-5 * np.abs(x).max())  # float32 FFT rounding


def test_stft_matches_a_numpy_oracle():
    """Frame t holds samples [t*hop - (n_fft - hop), t*hop + hop), windowed, real FFT."""
    n_fft, hop = 256, 64
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    window = stft.hann(n_fft)
    frames = stft.frame_count(1000, hop, n_fft)
    assert frames == 16 + 3
    padded = np.concatenate([np.zeros(n_fft - hop), x, np.zeros(frames * hop - 1000)])
    want = np.stack([np.fft.rfft(padded[t * hop:t * hop + n_fft] * window) for t in range(frames)])
    got = np.asarray(stft.stft(jnp.asarray(x), window, hop))
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-4)


def test_stft_jits_with_the_envelope_from_the_host():
    n_fft, hop, samples = 960, 480, 48000
    window = stft.sqrt_hann(n_fft)
    env = stft.window_envelope(window, window, hop, stft.frame_count(samples, hop, n_fft))
    fn = jax.jit(lambda v: stft.istft(stft.stft(v, window, hop), window, hop, env, samples))
    x = np.random.default_rng(2).standard_normal((1, samples)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(fn(x)), x, atol=1e-5)


def _tiny_factory():
    from flax import nnx

    class Tiny(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(3, 2, rngs=rngs)
            self.layers = nnx.List([nnx.Linear(2, 2, rngs=rngs)])

        def __call__(self, x):
            return self.layers[0](self.dense(x))

    return lambda: Tiny(nnx.Rngs(0))


def test_weights_round_trip_rebuilds_the_model_abstractly(tmp_path):
    from flax import nnx

    factory = _tiny_factory()
    model = factory()
    arrays = weights.model_arrays(model)
    assert set(arrays) == {"dense/kernel", "dense/bias", "layers/0/kernel", "layers/0/bias"}
    path = tmp_path / "tiny.npz"
    weights.save_weights(path, arrays, {"architecture": {"kind": "tiny"}, "sample_rate": 16000})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json", "tiny.npz"]
    config = weights.load_config(path)
    assert config["sample_rate"] == 16000
    rebuilt = weights.build(factory, weights.load_arrays(path), path=str(path))
    x = jnp.ones((4, 3))
    np.testing.assert_array_equal(np.asarray(rebuilt(x)), np.asarray(model(x)))
    assert isinstance(rebuilt, nnx.Module)


def test_a_half_precision_weight_file_is_half_the_size_and_runs_in_float32(tmp_path):
    factory = _tiny_factory()
    model = factory()
    arrays = weights.model_arrays(model)
    half = weights.half_precision(arrays)
    assert all(v.dtype == np.float16 for v in half.values())
    path = tmp_path / "half.npz"
    weights.save_weights(path, half, {"architecture": {"kind": "tiny"}, "sample_rate": 16000})
    rebuilt = weights.build(factory, weights.load_arrays(path), path=str(path))
    assert all(v.dtype == np.float32 for v in weights.model_arrays(rebuilt).values())
    x = jnp.ones((4, 3))
    np.testing.assert_allclose(np.asarray(rebuilt(x)), np.asarray(model(x)), rtol=0, atol=5e-3)


def test_weight_file_carrying_a_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, w=np.array([{"a": 1}], dtype=object))  # an object array: stored as a pickle
    with pytest.raises(weights.ModelFileError, match="pickle|refused"):
        weights.load_arrays(path)
    raw = tmp_path / "raw.npz"
    with zipfile.ZipFile(raw, "w") as archive:
        archive.writestr("payload.pkl", b"\x80\x04K\x01.")
    with pytest.raises(weights.ModelFileError, match="not a .npy"):
        weights.load_arrays(raw)


def test_weight_file_that_does_not_fit_is_refused(tmp_path):
    factory = _tiny_factory()
    arrays = weights.model_arrays(factory())
    arrays["dense/kernel"] = np.zeros((5, 2), np.float32)
    with pytest.raises(weights.ModelFileError, match="shape"):
        weights.build(factory, arrays)
    arrays.pop("dense/kernel")
    with pytest.raises(weights.ModelFileError, match="missing"):
        weights.build(factory, arrays)


def test_config_missing_or_bad_is_refused(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, a=np.zeros(2))
    with pytest.raises(weights.ModelFileError, match="missing"):
        weights.load_config(path)
    (tmp_path / "w.json").write_text(json.dumps({"sample_rate": 1}))
    with pytest.raises(weights.ModelFileError, match="architecture"):
        weights.load_config(path)
    with pytest.raises(weights.ModelFileError, match="config lacks"):
        weights.save_weights(path, {"a": np.zeros(2)}, {"sample_rate": 1})


@pytest.mark.parametrize("segment, overlap, delay", [(1000, 200, 0), (1000, 200, 37), (512, 0, 0), (800, 400, 5)])
@pytest.mark.parametrize("samples", [1, 999, 1000, 5003])
def test_chunked_apply_equals_whole_for_a_delaying_model(segment, overlap, delay, samples):
    """A model that delays its input by ``delay`` and scales it: chunked, cross-faded and trimmed,
    the output is the input scaled, sample-aligned, same length."""

    def run(block):
        shifted = np.zeros_like(block)
        shifted[:, delay:] = block[:, :block.shape[1] - delay]
        return 0.5 * shifted

    x = np.random.default_rng(samples).standard_normal((2, samples)).astype(np.float32)
    calls = []
    y = chunked.apply_chunked(run, x, segment=segment, overlap=overlap, delay=delay, batch=3,
                              progress=lambda done, total: calls.append((done, total)))
    assert y.shape == x.shape
    np.testing.assert_allclose(y, 0.5 * x, atol=1e-6)
    assert calls[-1][0] == calls[-1][1]


def oracle_apply_chunked(run, x, *, segment, overlap, delay=0, batch=4):
    """Chunked apply as it was written before it went in place: a whole output and a whole sum of
    weights, overlap-added, divided at the end."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    channels, samples = x.shape
    out = np.zeros((channels, samples), np.float32)
    if samples == 0:
        return out
    keep = segment - delay
    starts = chunked.segment_starts(samples, keep, keep - overlap)
    weights, total = chunked.segment_weights(samples, keep, starts, overlap)
    items = [(c, s) for c in range(channels) for s in starts]
    for first in range(0, len(items), batch):
        group = items[first:first + batch]
        block = np.zeros((batch, segment), np.float32)
        for i, (c, s) in enumerate(group):
            piece = x[c, s:min(s + segment, samples)]
            block[i, :len(piece)] = piece
        result = np.asarray(run(block), dtype=np.float32)
        for i, (c, s) in enumerate(group):
            y = result[i, delay:delay + keep] * weights[s]
            stop = min(s + keep, samples)
            out[c, s:stop] += y[:stop - s]
    out /= total[None, :]
    return out


@pytest.mark.parametrize("segment, overlap, delay", [(1000, 200, 0), (1000, 200, 37), (512, 0, 0), (800, 400, 5),
                                                     (700, 300, 0)])
@pytest.mark.parametrize("samples", [1, 999, 1000, 5003])
@pytest.mark.parametrize("channels", [1, 3])
def test_chunked_apply_in_place_is_the_whole_overlap_add_bit_for_bit(segment, overlap, delay, samples, channels):
    """A model whose output depends on its whole segment (so seams would show): in place, every
    segment reads the input (not an output written over it), and the output is the whole
    overlap-add's, bit for bit."""
    seen = []

    def run(block):
        seen.append(block.copy())
        level = np.sqrt(np.mean(block.astype(np.float64) ** 2, axis=1, keepdims=True)) + 0.1
        shifted = np.zeros_like(block)
        shifted[:, delay:] = block[:, :block.shape[1] - delay]
        return (np.tanh(3 * shifted) * level + 0.01 * np.cumsum(block, axis=1)).astype(np.float32)

    x = np.random.default_rng(samples).standard_normal((channels, samples)).astype(np.float32)
    want = oracle_apply_chunked(run, x, segment=segment, overlap=overlap, delay=delay, batch=3)
    inputs, seen[:] = list(seen), []
    over = x.copy()
    assert chunked.apply_chunked_in_place(run, over, segment=segment, overlap=overlap, delay=delay, batch=3) is over
    np.testing.assert_array_equal(over, want)
    assert len(seen) == len(inputs)
    for got, wanted in zip(seen, inputs):
        np.testing.assert_array_equal(got, wanted)
    np.testing.assert_array_equal(chunked.apply_chunked(run, x, segment=segment, overlap=overlap, delay=delay,
                                                        batch=3), want)


def test_crossfade_sums_to_one():
    fade = chunked.crossfade(333)
    np.testing.assert_allclose(fade + fade[::-1], 1.0, atol=1e-6)


def test_runtime_cache_directory_is_private(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = runtime.cache_dir()
    assert path == os.path.join(str(tmp_path), "roomtone", "jax")
    assert runtime._private_dir(path)
    assert os.stat(path).st_mode & 0o777 == 0o700
    os.chmod(path, 0o777)
    assert not runtime._private_dir(path)  # others may write: not used
    assert runtime.device_name() in ("cpu", "gpu", "tpu")


_OPT_IN = r"""
import json
from roomtone.startup import use_compilation_cache
path = use_compilation_cache()
import jax
c = jax.config
print(json.dumps([path, c.jax_compilation_cache_dir, c.jax_persistent_cache_min_compile_time_secs,
                  c.jax_persistent_cache_min_entry_size_bytes]))
"""


@pytest.mark.parametrize("own", [False, True], ids=["ours", "the-users"])
def test_a_command_opts_in_to_the_compilation_cache_and_keeps_the_users(tmp_path, own):
    """roomtone.startup.use_compilation_cache (what every command runs first): JAX, imported later,
    finds the private cache directory and the CPU thresholds that let it store anything; a cache the
    user configured through JAX's own variable is kept, thresholds and all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    if own:
        env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "own")
    result = subprocess.run([sys.executable, "-c", _OPT_IN], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    if own:
        assert found == [str(tmp_path / "own"), str(tmp_path / "own"), 1.0, 0]
    else:
        ours = os.path.join(str(tmp_path), "roomtone", "jax")
        assert found == [ours, ours, 0.0, -1]
        assert os.stat(ours).st_mode & 0o777 == 0o700


def test_exported_function_is_traced_once_then_read_back(tmp_path, monkeypatch):
    # A later process deserialises the stored StableHLO instead of tracing: here the in-process
    # table is emptied and the Python body must not run again; the results are the same, and a
    # damaged file is traced again and replaced.
    import jax
    import jax.numpy as jnp

    monkeypatch.setattr(runtime, "export_dir", lambda: str(tmp_path))
    traced = []

    @functools.partial(jax.jit, static_argnames=("power",))
    def f(x, y, power):
        traced.append(1)
        return {"sum": jnp.sum(x ** power) + y["b"]}, x * 2.0

    args = (jnp.arange(4.0, dtype=jnp.float32), {"b": jnp.float32(1.5)})
    first = runtime.exported("test.f", f, args, {"power": 2})(*args)
    assert len(traced) == 1 and len(list(tmp_path.glob("*.stablehlo"))) == 1
    monkeypatch.setattr(runtime, "_EXPORTS", {})
    again = runtime.exported("test.f", f, args, {"power": 2})(*args)
    assert len(traced) == 1  # read back, not traced
    assert float(again[0]["sum"]) == float(first[0]["sum"]) == 15.5
    np.testing.assert_array_equal(np.asarray(again[1]), np.asarray(first[1]))
    other = runtime.exported("test.f", f, args, {"power": 3})(*args)  # another static value: its own entry
    assert len(traced) == 2 and float(other[0]["sum"]) == 37.5
    for path in tmp_path.glob("*.stablehlo"):
        path.write_bytes(b"not an export")
    monkeypatch.setattr(runtime, "_EXPORTS", {})
    assert float(runtime.exported("test.f", f, args, {"power": 2})(*args)[0]["sum"]) == 15.5
    assert sum(p.read_bytes() != b"not an export" for p in tmp_path.glob("*.stablehlo")) == 1  # exported again


def test_exported_function_runs_where_the_serialiser_cannot_be_imported(tmp_path, monkeypatch):
    # A base install once lacked flatbuffers (jax.export's serialiser imports it; jax does not declare
    # it): a fitting master exited 70. Now declared; and where serialising fails to import, the traced
    # function still runs, and nothing is stored.
    import importlib.metadata

    import jax
    import jax.numpy as jnp
    from jax import export

    requires = importlib.metadata.requires("roomtone") or []
    assert any(r.split(">")[0].split("=")[0].strip() == "flatbuffers" for r in requires)
    monkeypatch.setattr(runtime, "export_dir", lambda: str(tmp_path))
    monkeypatch.setattr(runtime, "_EXPORTS", {})

    def no_flatbuffers(self, *args, **kwargs):
        raise ImportError("Please install 'flatbuffers' in order to use Exported serialization")

    monkeypatch.setattr(export.Exported, "serialize", no_flatbuffers)
    f = jax.jit(lambda x: jnp.sum(x * x))
    args = (jnp.arange(3.0, dtype=jnp.float32),)
    assert float(runtime.exported("test.noflat", f, args, {})(*args)) == 5.0
    assert not list(tmp_path.glob("*.stablehlo"))
