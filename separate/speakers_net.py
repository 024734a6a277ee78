"""The speaker separator, ours: a mask network on the STFT of 16 kHz speech that splits a
mixture of voices into one track per speaker plus a residual (noise, what no speaker holds).

Signal path (whole segment, non-causal: the job is offline):

1. STFT, 512-point sqrt-Hann, hop 128 (32 ms / 8 ms at 16 kHz): 257 bins.
2. Features per frame: log power of every bin less the segment's mean log power (the model does
   not depend on the recording level), and the power-law compressed complex spectrum
   (``|X|^0.3 e^{j angle X}``, scaled by the same level) of every bin.
3. A linear encoder, bidirectional GRU layers, and a head of ``sources + 1`` masks per bin with a
   softmax across them (:class:`roomtone.separate.speakers_model.SpeakerSeparatorNet`).
4. Each mask times the mixture's spectrum, ISTFT: the outputs sum to the mixture (to float32
   rounding and the STFT's reconstruction, about -100 dB).

Trained with the permutation-invariant negative SI-SDR of the speakers' outputs (uPIT, Kolbaek et
al. 2017; Le Roux et al. 2019 for SI-SDR) on mixtures made on the fly
(:mod:`roomtone.separate.training.speakers`).

Shape: audio (items, samples) float32 at 16 kHz.
"""

import dataclasses

import numpy as np


SAMPLE_RATE = 16000
N_FFT = 512
HOP = 128
BINS = N_FFT // 2 + 1
COMPRESS = 0.3
KIND = "roomtone-speakers-bigru"


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Hyperparameters stored in the weights' config (``architecture``)."""

    sources: int = 2  # speakers the model separates at once
    hidden: int = 128  # GRU units per direction
    embed: int = 256
    layers: int = 3

    def as_dict(self):
        return {"kind": KIND, **dataclasses.asdict(self), "n_fft": N_FFT, "hop": HOP, "sample_rate": SAMPLE_RATE}


def build_model(arch, rngs):
    """The Flax NNX module for ``arch`` (:class:`roomtone.separate.speakers_model.SpeakerSeparatorNet`)."""
    from roomtone.separate.speakers_model import SpeakerSeparatorNet

    return SpeakerSeparatorNet(arch, rngs)


def features(spec):
    """Model input from the STFT ``spec`` (batch, frames, BINS) complex -> (batch, frames, 3 BINS):
    level-normalised log power / 4 and the compressed complex spectrum (the level is the mean power
    per bin over the frames holding any signal, so padding with silence does not move it)."""
    import jax.numpy as jnp

    power = spec.real ** 2 + spec.imag ** 2
    frame_power = jnp.mean(power, axis=2, keepdims=True)
    active = (frame_power > 1e-14).astype(power.dtype)
    level = jnp.sum(frame_power * active, axis=1, keepdims=True) / jnp.maximum(
        jnp.sum(active, axis=1, keepdims=True), 1.0) + 1e-10
    logp = jnp.log10(power / level + 1e-8)
    x = spec / jnp.sqrt(level)
    comp = x * (jnp.abs(x) + 1e-8) ** (COMPRESS - 1.0)
    return jnp.concatenate([logp / 4.0, comp.real, comp.imag], axis=-1)


def window():
    from roomtone.models.stft import sqrt_hann

    return sqrt_hann(N_FFT)


def separate_fn(model, samples):
    """A function of audio (batch, samples) float32 -> (batch, sources + 1, samples): STFT, masks,
    ISTFT; the last output is the residual."""
    from roomtone.models import stft

    w = window()
    env = stft.window_envelope(w, w, HOP, stft.frame_count(samples, HOP, N_FFT))

    def run(audio):
        spec = stft.stft(audio, w, HOP)
        masks = model(features(spec))
        return stft.istft(masks * spec[:, None], w, HOP, env, samples)

    return run


WEIGHTS = "weights/speakers.npz"  # inside the installed package
SEGMENT_S = 8.0  # the model runs on segments of this length, cross-faded over OVERLAP_S
OVERLAP_S = 1.0
BATCH = 4


def weights_path():
    """The shipped weights (``roomtone/separate/weights/speakers.npz``)."""
    from importlib.resources import files

    return str(files("roomtone.separate").joinpath(WEIGHTS))


def architecture(config, path="weights"):
    """The :class:`Architecture` of a weights config. Raises
    :class:`~roomtone.models.weights.ModelFileError` for another model's file."""
    from roomtone.models.weights import ModelFileError

    arch = config["architecture"]
    if arch.get("kind") != KIND or config["sample_rate"] != SAMPLE_RATE:
        raise ModelFileError(f"{path}: not a roomtone speaker separator (architecture {arch.get('kind')!r})")
    return Architecture(**{k: int(arch[k]) for k in ("sources", "hidden", "embed", "layers")})


def load_model(path=None):
    """(model, config) from a weight file (default: the shipped one), rebuilt with
    ``nnx.eval_shape`` (:func:`roomtone.models.weights.load_model`). Raises
    :class:`~roomtone.models.weights.ModelFileError`."""
    from roomtone.models import weights

    return weights.load_model(weights_path() if path is None else path, architecture, build_model)


class SpeakerSeparator:
    """The separation model for the speakers job: ``separator(block)`` on float32 (items,
    segment) at 16 kHz -> (items, sources + 1, segment), the residual last; one compiled function
    per segment length."""

    sample_rate = SAMPLE_RATE

    def __init__(self, path=None):
        self.model, self.config = load_model(path)
        self.sources = int(self.config["architecture"]["sources"])
        self._runs = {}

    def __call__(self, block):
        import jax

        block = np.ascontiguousarray(block, dtype=np.float32)
        length = block.shape[-1]
        if length not in self._runs:
            self._runs[length] = jax.jit(separate_fn(self.model, length))
        return np.asarray(self._runs[length](block))
