"""The GE2E speaker encoder port (Resemblyzer 0.1.4) and the legacy torch checkpoint reader.

Without the wheel: the restricted unpickler refuses hostile legacy-format pickles and reads a
legacy checkpoint written here without torch; the mel filterbank and spectrogram against naive
oracles; the Flax LSTM stack with random weights against a float64 numpy LSTM written from torch's
``nn.LSTM`` semantics (separate biases, gates i, f, g, o); partial and window placement; input
checks. With the wheel (``ROOMTONE_RESEMBLYZER_WHEEL`` or an installed ``resemblyzer``; skipped with
the reason otherwise, as the Spleeter tests do): weight shapes, parity with the golden figures that
the real Resemblyzer + torch made (tests/golden/speaker_encoder/README.md), and same- vs
different-speaker similarity on LibriSpeech utterances in ../shared.
"""

import hashlib
import io
import os
import pickle
import sys
import types
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

from roomtone.errors import InvalidAudioError, ModelUnavailableError
from roomtone.models.weights import ModelFileError
from roomtone.separate import speaker_encoder as se
from roomtone.separate.torchzip import LEGACY_MAGIC, LEGACY_PROTOCOL, load_checkpoint

HERE = os.path.dirname(__file__)
GOLDEN = os.path.join(HERE, "golden", "speaker_encoder", "reference.npz")
SPEECH = os.path.join(HERE, "..", "..", "shared", "data", "speech", "speech")
SYS_INFO = {"protocol_version": LEGACY_PROTOCOL, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}

# ---------------------------------------------------------------------------------------------
# legacy torch checkpoints written here, without torch


class _Hostile:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _legacy(obj_pickle, keys=(), storages=(), *, magic=LEGACY_MAGIC, protocol=LEGACY_PROTOCOL, info=None):
    """A legacy-format stream: magic, protocol, system facts, the object pickle, the key list, then
    each storage as its int64 element count and raw bytes."""
    out = [pickle.dumps(magic, protocol=2), pickle.dumps(protocol, protocol=2),
           pickle.dumps(SYS_INFO if info is None else info, protocol=2), obj_pickle, pickle.dumps(list(keys), protocol=2)]
    for raw in storages:
        out.append(np.int64(raw.size).tobytes() + raw.tobytes())
    return b"".join(out)


class _TorchStandIns:
    """``torch.FloatStorage`` and ``torch._utils._rebuild_tensor_v2`` as names only (the pickler
    writes their global names; nothing here is ever called)."""

    def __init__(self, monkeypatch):
        torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

        class FloatStorage:
            pass

        def _rebuild_tensor_v2(*args):  # pragma: no cover - only named
            raise AssertionError

        FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
        _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
        torch.FloatStorage, torch._utils, utils._rebuild_tensor_v2 = FloatStorage, utils, _rebuild_tensor_v2
        self.storage_type, self.rebuild = FloatStorage, _rebuild_tensor_v2
        monkeypatch.setitem(sys.modules, "torch", torch)
        monkeypatch.setitem(sys.modules, "torch._utils", utils)


class _Ref:
    def __init__(self, key, count, view=None):
        self.key, self.count, self.view = key, count, view


def _dump_legacy(monkeypatch, obj_fn, storages, views=None):
    """``obj_fn(tensor)`` builds the object with ``tensor(key, offset, size, stride)``; ``storages``:
    ``{key: float32 array}``. Returns the legacy stream."""
    names = _TorchStandIns(monkeypatch)
    views = views or {}

    class _Tensor:
        def __init__(self, key, offset, size, stride):
            self.args = (key, offset, size, stride)

        def __reduce__(self):
            key, offset, size, stride = self.args
            ref = _Ref(key, storages[key].size, views.get(key))
            return (names.rebuild, (ref, offset, size, stride, False, OrderedDict()))

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Ref):
                return ("storage", names.storage_type, obj.key, "cpu", obj.count, obj.view)
            return None

    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(obj_fn(_Tensor))
    keys = list(storages)
    return _legacy(buffer.getvalue(), keys, [storages[k] for k in keys])


def _random_state(seed):
    """A Resemblyzer-shaped state dict, uniform(-1/sqrt(H), 1/sqrt(H)) as torch initialises it."""
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(se.HIDDEN)
    state = {"similarity_weight": np.array([10.0], np.float32), "similarity_bias": np.array([-5.0], np.float32)}
    for k in range(se.LAYERS):
        inputs = se.N_MELS if k == 0 else se.HIDDEN
        for name, shape in ((f"weight_ih_l{k}", (4 * se.HIDDEN, inputs)), (f"weight_hh_l{k}", (4 * se.HIDDEN, se.HIDDEN)),
                            (f"bias_ih_l{k}", (4 * se.HIDDEN,)), (f"bias_hh_l{k}", (4 * se.HIDDEN,))):
            state[f"lstm.{name}"] = rng.uniform(-bound, bound, shape).astype(np.float32)
    state["linear.weight"] = rng.uniform(-bound, bound, (se.EMBEDDING, se.HIDDEN)).astype(np.float32)
    state["linear.bias"] = rng.uniform(0.0, bound, se.EMBEDDING).astype(np.float32)  # mostly positive: few dead units
    return state


def _resemblyzer_checkpoint(monkeypatch, state):
    """``state`` saved as Resemblyzer's pretrained.pt is: ``{"step", "model_state", "optimizer_state"}``,
    every LSTM tensor a view into one shared storage (cuDNN's flat weights), the rest one each."""
    lstm = [k for k in state if k.startswith("lstm.")]
    flat = np.concatenate([state[k].ravel() for k in lstm])
    storages = {"flat": flat}
    storages.update({k: state[k].ravel().copy() for k in state if k not in lstm})

    def build(tensor):
        model, offset = OrderedDict(), 0
        for key, value in state.items():
            stride = (value.shape[1], 1) if value.ndim == 2 else (1,)
            if key in lstm:
                model[key] = tensor("flat", offset, value.shape, stride)
                offset += value.size
            else:
                model[key] = tensor(key, 0, value.shape, stride)
        optimizer = {"state": {0: {"step": 3}}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0]}]}
        return {"step": 3, "model_state": model, "optimizer_state": optimizer}

    return _dump_legacy(monkeypatch, build, storages)


@pytest.mark.parametrize("form", ["legacy", "zip"])
def test_a_hostile_pickle_is_refused_and_never_runs(tmp_path, form):
    marker = tmp_path / "pwned"
    pickled = pickle.dumps({"model_state": _Hostile(f"touch {marker}")}, protocol=2)
    if form == "legacy":
        blob = _legacy(pickled)
    else:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("archive/data.pkl", pickled)
        blob = buffer.getvalue()
    with pytest.raises(ModelFileError, match=r"os.system|posix.system|system.*refused"):
        load_checkpoint(blob, entry="model_state")
    assert not marker.exists()


@pytest.mark.parametrize("blob,message", [
    (lambda: _legacy(pickle.dumps({}, protocol=2), magic=12345), "neither a zip nor the legacy format"),
    (lambda: _legacy(pickle.dumps({}, protocol=2), protocol=1000), "protocol"),
    (lambda: _legacy(pickle.dumps({}, protocol=2), info={"little_endian": False}), "big-endian"),
    (lambda: _legacy(pickle.dumps({"w": eval}, protocol=2)), "eval.*refused"),
    (lambda: _legacy(pickle.dumps({"w": 1}, protocol=2)), "model_state"),
    (lambda: _legacy(pickle.dumps({"w": 1}, protocol=2))[:-3], "not a readable"),
])
def test_bad_legacy_checkpoints_are_refused(blob, message):
    with pytest.raises(ModelFileError, match=message):
        load_checkpoint(blob(), entry="model_state")


def test_a_legacy_checkpoint_is_read(monkeypatch):
    data = np.arange(20, dtype="<f4")
    blob = _dump_legacy(monkeypatch, lambda t: {"step": 7, "model_state": OrderedDict(
        [("w", t("0", 0, (3, 4), (4, 1))), ("t", t("0", 13, (2, 2), (1, 4)))])}, {"0": data})
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.delitem(sys.modules, "torch._utils")
    tree = load_checkpoint(blob, entry="model_state")
    assert np.array_equal(tree["w"], data[:12].reshape(3, 4))
    assert np.array_equal(tree["t"], np.array([[13, 17], [14, 18]], np.float32))
    with pytest.raises(ModelFileError, match="not a dict of tensors"):
        load_checkpoint(blob)  # the top level also holds "step"


def test_legacy_storage_problems_are_refused(monkeypatch):
    data = np.arange(6, dtype="<f4")
    obj = lambda t: {"model_state": OrderedDict([("w", t("0", 0, (6,), (1,)))])}  # noqa: E731
    blob = _dump_legacy(monkeypatch, obj, {"0": data})
    with pytest.raises(ModelFileError, match="cut short"):
        load_checkpoint(blob[:-4], entry="model_state")
    wrong_count = blob[:-(8 + data.nbytes)] + np.int64(5).tobytes() + data.tobytes()
    with pytest.raises(ModelFileError, match="holds 5 elements"):
        load_checkpoint(wrong_count, entry="model_state")
    with pytest.raises(ModelFileError, match="storage view"):
        load_checkpoint(_dump_legacy(monkeypatch, obj, {"0": data}, views={"0": ("1", 0, 6)}), entry="model_state")


# ---------------------------------------------------------------------------------------------
# features against naive oracles


def _slaney_mel(hz):
    return hz / (200.0 / 3.0) if hz < 1000.0 else 15.0 + np.log(hz / 1000.0) * 27.0 / np.log(6.4)


def _slaney_hz(mel):
    return mel * 200.0 / 3.0 if mel < 15.0 else 1000.0 * 6.4 ** ((mel - 15.0) / 27.0)


def _oracle_filterbank(sample_rate=16000, n_fft=400, n_mels=40):
    """Scalar loops: each triangle's rising and falling slopes, height 2 / (width in Hz)."""
    top = _slaney_mel(sample_rate / 2.0)
    edges = [_slaney_hz(top * i / (n_mels + 1)) for i in range(n_mels + 2)]
    out = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sample_rate / n_fft
            if lo < f <= mid:
                out[m, k] = (f - lo) / (mid - lo)
            elif mid < f < hi:
                out[m, k] = (hi - f) / (hi - mid)
            out[m, k] *= 2.0 / (hi - lo)
    return out


def test_mel_filterbank_matches_the_oracle():
    ours = se.mel_filterbank()
    assert ours.shape == (40, 201) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, _oracle_filterbank(), rtol=1e-6, atol=1e-9)
    # Slaney's normalisation: each triangle has unit area in Hz (sampled at 40 Hz per bin)
    areas = ours.sum(axis=1) * 16000 / 400
    assert np.all(np.abs(areas[10:] - 1.0) < 0.05), areas  # the narrow low bands hold 1-2 bins
    assert se.hz_to_mel(1000.0) == pytest.approx(15.0) and se.mel_to_hz(se.hz_to_mel(4321.0)) == pytest.approx(4321.0)


def _oracle_mel(wav):
    """Frames by an explicit DFT loop over the zero-padded signal (center=True, constant padding)."""
    padded = np.concatenate([np.zeros(200), wav.astype(np.float64), np.zeros(200)])
    n = np.arange(400)
    window = np.sin(np.pi * n / 400) ** 2  # periodic Hann
    k = np.arange(201)[:, None]
    cos, sin = np.cos(2 * np.pi * k * n / 400), np.sin(2 * np.pi * k * n / 400)
    frames = []
    for t in range(1 + len(wav) // 160):
        x = padded[160 * t:160 * t + 400] * window
        frames.append(_oracle_filterbank() @ ((cos @ x) ** 2 + (sin @ x) ** 2))
    return np.array(frames)


@pytest.fixture(scope="module")
def voiced():
    """2.3 s of a seeded 'voice': a 140 Hz pulse train through two resonances, with noise (16 kHz)."""
    rng = np.random.default_rng(3)
    n = 36817
    t = np.arange(n) / 16000
    src = np.sign(np.sin(2 * np.pi * 140 * t * (1 + 0.05 * np.sin(2 * np.pi * 3 * t)))) + 0.1 * rng.standard_normal(n)
    from scipy.signal import lfilter

    for f0, bw in ((700, 80), (1200, 120)):
        r = np.exp(-np.pi * bw / 16000)
        src = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f0 / 16000), r * r], src)
    return (0.05 * src / np.max(np.abs(src))).astype(np.float32)


def test_mel_frames_match_the_oracle_and_any_span_matches_the_whole(voiced):
    wav = voiced[:5000]
    ours = se.mel_span(wav, 0, se.frame_count(wav.size))
    ref = _oracle_mel(wav)
    assert ours.shape == (1 + 5000 // 160, 40)
    assert np.max(np.abs(ours - ref)) < 1e-5 * np.max(ref)
    whole = se.mel_span(voiced, 0, se.frame_count(voiced.size) + 30)  # past the end: zero-extended
    for first, stop in ((0, 7), (5, 160), (200, 260), (220, 261)):
        np.testing.assert_array_equal(se.mel_span(voiced, first, stop), whole[first:stop])
    assert not whole[-20:].any()


# ---------------------------------------------------------------------------------------------
# the network against a numpy LSTM with torch's semantics


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _reference_forward(state, mel):
    """Resemblyzer's VoiceEncoder.forward in float64 numpy: nn.LSTM (3 layers, batch_first), the last
    layer's final h, linear, ReLU, L2 normalisation. Shape: (batch, frames, 40) -> (batch, 256)."""
    x = mel.astype(np.float64)
    hidden = se.HIDDEN
    for k in range(se.LAYERS):
        w_ih, w_hh = state[f"lstm.weight_ih_l{k}"].astype(np.float64), state[f"lstm.weight_hh_l{k}"].astype(np.float64)
        b_ih, b_hh = state[f"lstm.bias_ih_l{k}"], state[f"lstm.bias_hh_l{k}"]
        h = np.zeros((x.shape[0], hidden))
        c = np.zeros((x.shape[0], hidden))
        outputs = []
        for t in range(x.shape[1]):
            z = x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh
            i, f, g, o = (z[:, j * hidden:(j + 1) * hidden] for j in range(4))
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
            outputs.append(h)
        x = np.stack(outputs, axis=1)
    raw = np.maximum(h @ state["linear.weight"].T.astype(np.float64) + state["linear.bias"], 0.0)
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def random_state():
    return _random_state(11)


@pytest.fixture(scope="module")
def random_encoder(random_state):
    return se.SpeakerEncoder(se.build_model(random_state, where="random"), source="random", batch=4)


def test_the_flax_lstm_matches_a_numpy_lstm(random_state, random_encoder):
    mel = np.random.default_rng(2).uniform(0.0, 2.0, (3, 40, 40)).astype(np.float32)
    ours = random_encoder.embed_frames(mel)
    ref = _reference_forward(random_state, mel)
    assert ours.shape == (3, 256) and ours.dtype == np.float32
    assert np.max(np.abs(ours - ref)) < 1e-5  # unit vectors; float32 against float64 over 40 frames x 3 layers
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(random_encoder.embed_frames(mel[1]), ours[1], atol=1e-6)  # batch 1: other kernels


def test_lstm_scan_with_a_start_state_and_backwards():
    import jax.numpy as jnp

    from roomtone.models.layers import lstm_scan

    rng = np.random.default_rng(5)
    hidden = 6
    x_proj = rng.normal(0, 1, (2, 9, 4 * hidden)).astype(np.float32)
    w_h = rng.normal(0, 0.4, (hidden, 4 * hidden)).astype(np.float32)
    h0, c0 = rng.normal(0, 0.5, (2, hidden)), rng.normal(0, 0.5, (2, hidden))
    outputs, (h, c) = lstm_scan(jnp.asarray(x_proj), jnp.asarray(w_h), True, h0=jnp.asarray(h0, jnp.float32),
                                c0=jnp.asarray(c0, jnp.float32))
    ref_h, ref_c, ref_out = h0, c0, np.zeros((2, 9, hidden))
    for t in range(8, -1, -1):
        z = x_proj[:, t] + ref_h @ w_h
        i, f, g, o = (z[:, j * hidden:(j + 1) * hidden] for j in range(4))
        ref_c = _sigmoid(f) * ref_c + _sigmoid(i) * np.tanh(g)
        ref_h = _sigmoid(o) * np.tanh(ref_c)
        ref_out[:, t] = ref_h
    assert np.max(np.abs(np.asarray(outputs) - ref_out)) < 1e-5
    assert np.max(np.abs(np.asarray(h) - ref_h)) < 1e-5 and np.max(np.abs(np.asarray(c) - ref_c)) < 1e-5
    with pytest.raises(ValueError, match="needs 24"):
        lstm_scan(jnp.zeros((1, 2, 10)), jnp.asarray(w_h))


# ---------------------------------------------------------------------------------------------
# utterances and windows


@pytest.mark.parametrize("samples,starts", [
    (0, [0]),  # nothing: one partial all the same
    (16000, [0]),
    (25600, [0]),  # 1.6 s: a second partial would hold 52 % real samples (< 75 %): dropped
    (25600 + 77 * 160, [0, 77]),  # exactly covered
    (48000, [0, 77, 154]),  # 301 frames; the partial at 154 holds 48000 - 24640 = 23360 real samples: 91 %
])
def test_partial_starts(samples, starts):
    assert se.partial_starts(samples).tolist() == starts


def test_partial_starts_cover_the_input_and_refuse_bad_rates():
    for samples in range(0, 200000, 3331):
        starts = se.partial_starts(samples)
        assert np.all(np.diff(starts) == 77)
        last = (starts[-1] + 160) * 160
        assert last >= samples or (samples - (starts[-1] + 77) * 160) / 25600 < 0.75
    with pytest.raises(ValueError, match="at least 0.625"):
        se.partial_starts(16000, partials_per_s=0.5)
    with pytest.raises(ValueError, match="min_coverage"):
        se.partial_starts(16000, min_coverage=0.0)


def test_volume_normalisation_only_raises():
    quiet = np.full(1000, 10 ** (-40 / 20), np.float32)
    raised = se.volume_normalized(quiet)
    assert 20 * np.log10(np.sqrt(np.mean(raised.astype(np.float64) ** 2))) == pytest.approx(-30.0, abs=1e-4)
    loud = np.full(1000, 0.5, np.float32)
    assert se.volume_normalized(loud) is loud
    silence = np.zeros(100, np.float32)
    assert se.volume_normalized(silence) is silence


def test_utterance_is_the_mean_of_its_partials(random_encoder, voiced):
    wav = se.volume_normalized(voiced)
    mel = se.mel_span(wav, 0, 400)
    partials = random_encoder.embed_frames(np.stack([mel[s:s + 160] for s in se.partial_starts(wav.size)]))
    mean = partials.mean(axis=0)
    np.testing.assert_allclose(random_encoder.embed_utterance(voiced), mean / np.linalg.norm(mean), atol=1e-6)


def test_windows_place_and_batch(random_encoder, random_state, voiced):
    starts_s, embeddings = random_encoder.embed_windows(voiced, window_s=1.0, hop_s=0.5)
    frames = se.frame_count(voiced.size)  # 231 frames: windows of 100 at 0, 50, 100, 150 (the last reaches 250)
    assert starts_s.tolist() == pytest.approx([0.0, 0.5, 1.0, 1.5]) and embeddings.shape == (4, 256)
    mel = se.mel_span(se.volume_normalized(voiced), 0, frames + 50)
    whole = random_encoder.embed_frames(np.stack([mel[s:s + 100] for s in (0, 50, 100, 150)]))
    np.testing.assert_allclose(embeddings, whole, atol=1e-6)
    wide = se.SpeakerEncoder(se.build_model(random_state), batch=64)  # one batch instead of two
    np.testing.assert_allclose(wide.embed_windows(voiced, window_s=1.0, hop_s=0.5)[1], embeddings, atol=1e-6)
    short_s, short = random_encoder.embed_windows(voiced[:8000])
    assert short_s.tolist() == [0.0] and short.shape == (1, 256)


def test_another_rate_is_resampled(random_encoder, voiced):
    from roomtone.resample import resample

    at_48k = resample(voiced[None, :], 16000, 48000)[0]
    assert random_encoder.mel_frames(at_48k, 48000).shape == random_encoder.mel_frames(voiced).shape
    assert float(random_encoder.embed_utterance(at_48k, 48000) @ random_encoder.embed_utterance(voiced)) > 0.999


@pytest.mark.parametrize("wav,rate,error,match", [
    (np.zeros((2, 16000), np.float32), 16000, InvalidAudioError, "2 channels"),
    (np.zeros(100, np.float32), 16000, InvalidAudioError, "needs at least 10 ms"),
    (np.zeros(0, np.float32), 16000, InvalidAudioError, "empty"),
    (np.full(16000, np.nan, np.float32), 16000, InvalidAudioError, "NaN"),
    (np.zeros(16000, np.float32), 100, InvalidAudioError, "sample_rate"),
])
def test_bad_input_is_refused(random_encoder, wav, rate, error, match):
    with pytest.raises(error, match=match):
        random_encoder.embed_utterance(wav, rate)


def test_bad_window_lengths_are_refused(random_encoder, voiced):
    with pytest.raises(ValueError, match=r"window_s=0.05 s is outside 0.1..10.0 s"):
        random_encoder.embed_windows(voiced, window_s=0.05)
    with pytest.raises(ValueError, match="hop_s"):
        random_encoder.embed_windows(voiced, hop_s=0.0)
    with pytest.raises(ValueError, match=r"\(batch, frames, 40\)"):
        random_encoder.embed_frames(np.zeros((2, 10, 39), np.float32))


# ---------------------------------------------------------------------------------------------
# finding the weights


def test_weights_from_a_wheel_file_and_a_checkpoint(tmp_path, monkeypatch, random_state, voiced):
    blob = _resemblyzer_checkpoint(monkeypatch, random_state)
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.delitem(sys.modules, "torch._utils")
    wheel = tmp_path / "Resemblyzer-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("resemblyzer/pretrained.pt", blob)
    state, source = se.read_weights(wheel)
    assert source == str(wheel)
    for key, value in random_state.items():
        np.testing.assert_array_equal(state[key], value)
    folder = tmp_path / "site" / "resemblyzer"
    folder.mkdir(parents=True)
    (folder / "pretrained.pt").write_bytes(blob)
    assert se.find_weights(folder.parent) == str(folder / "pretrained.pt")
    # "installed": found through importlib without importing the package (its __init__ would raise)
    (folder / "__init__.py").write_text("raise RuntimeError('resemblyzer was imported')\n")
    monkeypatch.syspath_prepend(str(folder.parent))
    monkeypatch.delitem(sys.modules, "resemblyzer", raising=False)
    assert se.installed_weights() == str(folder / "pretrained.pt") and "resemblyzer" not in sys.modules
    encoder = se.load_encoder(folder / "pretrained.pt")
    assert "pretrained.pt" in repr(encoder)
    mel = se.mel_span(voiced, 0, 30)[None]
    assert np.max(np.abs(encoder.embed_frames(mel) - _reference_forward(random_state, mel))) < 1e-5


def test_missing_weights_say_how_to_install(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        se.find_weights(tmp_path / "nothing.whl")
    other = tmp_path / "other.whl"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("x/y.py", "")
    with pytest.raises(ModelFileError, match="not the Resemblyzer wheel"):
        se.find_weights(other)
    with pytest.raises(ModelFileError, match="holds no pretrained.pt"):
        se.find_weights(tmp_path)
    if se.installed_weights() is None:
        with pytest.raises(ModelUnavailableError, match=r"pip install --no-deps Resemblyzer==0\.1\.4"):
            se.find_weights(None)


# ---------------------------------------------------------------------------------------------
# with the published weights


def _wheel():
    return os.environ.get("ROOMTONE_RESEMBLYZER_WHEEL") or se.installed_weights()


needs_wheel = pytest.mark.skipif(not _wheel(), reason="no Resemblyzer wheel: set ROOMTONE_RESEMBLYZER_WHEEL to "
                                                      "Resemblyzer-0.1.4-py3-none-any.whl (pip download --no-deps "
                                                      "Resemblyzer==0.1.4) or install it (pip install --no-deps "
                                                      "Resemblyzer==0.1.4)")
needs_speech = pytest.mark.skipif(not os.path.isdir(SPEECH), reason="../shared/data/speech/speech is not here")


@pytest.fixture(scope="module")
def encoder():
    return se.load_encoder(_wheel())


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _synthetic_mel():
    """The formula mel of tests/golden/speaker_encoder/make_golden.py. Shape: (2, 160, 40)."""
    b, t, m = np.meshgrid(np.arange(2), np.arange(160), np.arange(40), indexing="ij")
    return (0.05 * (1.0 + np.sin(0.1 * (b + 1) * t + 0.7 * m))).astype(np.float32)


@pytest.mark.resemblyzer_wheel
@needs_wheel
def test_published_weights_have_the_ge2e_shapes():
    state, _ = se.read_weights(_wheel())
    lstm = sum(v.size for k, v in state.items() if k.startswith("lstm."))
    assert lstm == 4 * 256 * (40 + 256 + 2) + 2 * 4 * 256 * (256 + 256 + 2)  # 1 357 824
    assert state["linear.weight"].shape == (256, 256) and state["lstm.weight_ih_l0"].shape == (1024, 40)
    assert all(v.dtype == np.float32 for v in state.values())


@pytest.mark.resemblyzer_wheel
@needs_wheel
def test_network_matches_resemblyzer(encoder, golden):
    """Resemblyzer's forward (torch 2.13) on the formula mel: max abs difference 2.4e-7 measured."""
    ours = encoder.embed_frames(_synthetic_mel())
    assert np.max(np.abs(ours - golden["synthetic_embeddings"])) < 1e-5


def _speech(name):
    import soundfile

    path = os.path.join(SPEECH, str(name))
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    wav, rate = soundfile.read(path, dtype="float32")
    return wav, rate, digest


@pytest.mark.resemblyzer_wheel
@pytest.mark.shared_data
@needs_wheel
@needs_speech
def test_utterance_embeddings_match_resemblyzer(encoder, golden):
    """Golden embeddings of five LibriSpeech utterances (Resemblyzer's embed_utterance after its
    volume normalisation, no VAD): cosine > 0.99999 and max abs difference < 1e-5 (measured: cosine
    1.0 within 6e-8, max abs 1.8e-7); the mel excerpt within 1e-5 relative (measured 9e-8)."""
    for i, name in enumerate(golden["names"]):
        wav, rate, digest = _speech(name)
        assert digest == str(golden["sha256"][i]) and rate == 16000, f"{name} is not the file the golden was made from"
        ours = encoder.embed_utterance(wav, rate)
        ref = golden["embeddings"][i]
        assert float(ours @ ref) > 0.99999 and np.max(np.abs(ours - ref)) < 1e-5, name
        if i == 0:
            mel = encoder.mel_frames(se.volume_normalized(wav))[100:110]
            assert np.max(np.abs(mel - golden["mel_excerpt"])) < 1e-5 * np.max(golden["mel_excerpt"])


@pytest.mark.resemblyzer_wheel
@pytest.mark.shared_data
@needs_wheel
@needs_speech
def test_same_speaker_is_closer_than_another(encoder):
    """Three utterances each of three LibriSpeech test-other speakers: measured same-speaker cosines
    0.88-0.97, different-speaker 0.45-0.72."""
    import glob

    embeddings = {}
    for speaker in ("1688", "1998", "2033"):
        for path in sorted(glob.glob(os.path.join(SPEECH, f"resemblyzer__librispeech_test-other__{speaker}__*.flac")))[:3]:
            wav, rate, _ = _speech(os.path.basename(path))
            embeddings[(speaker, path)] = encoder.embed_utterance(wav, rate)
    assert len(embeddings) == 9
    keys = list(embeddings)
    same, other = [], []
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            (same if a[0] == b[0] else other).append(float(embeddings[a] @ embeddings[b]))
    assert min(same) > 0.8 and max(other) < 0.8 and min(same) > max(other) + 0.05, (sorted(same), sorted(other))
