"""``roomtone``, our denoiser: a compact offline network on STFT features at 16 kHz.

Signal path (whole utterance, non-causal: the job is offline):

1. STFT, 512-point sqrt-Hann, hop 256 (32 ms / 16 ms at 16 kHz): 257 bins.
2. Features per frame: log power of every bin, less the utterance's mean log power (so the model
   does not depend on the recording level), and the power-law compressed complex spectrum
   (``|X|^0.3 e^{j angle X}``, scaled by the same level) of the lowest :data:`LOW_BINS` bins.
3. A linear encoder, two bidirectional GRU layers, then two heads: a real gain in (0, 1) for the
   bins from :data:`LOW_BINS` up, and a complex ratio mask (magnitude bounded by 1.2) for the bins
   below, which can also correct phase where the voice's harmonics are dense.
4. The masked spectrum, ISTFT, same length as the input (zero latency: nothing to trim).

``atten_lim_db`` bounds how far any bin is pulled down (a floor on the mask magnitude), as
DeepFilterNet's attenuation limit does.

Shape: audio (items, samples) float32 at 16 kHz.
"""

import dataclasses

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
BINS = N_FFT // 2 + 1
LOW_BINS = 64  # 0-2 kHz: complex mask
COMPRESS = 0.3


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Hyperparameters stored in the weights' config (``architecture``)."""

    hidden: int = 64  # GRU units per direction
    embed: int = 128
    layers: int = 2

    def as_dict(self):
        return {"kind": "roomtone-bigru", **dataclasses.asdict(self), "n_fft": N_FFT, "hop": HOP,
                "low_bins": LOW_BINS, "sample_rate": SAMPLE_RATE}


def build_model(arch, rngs):
    """The Flax NNX module for ``arch`` (:class:`roomtone.enhance.net_model.DenoiserNet`)."""
    from roomtone.enhance.net_model import DenoiserNet

    return DenoiserNet(arch, rngs)


def features(spec, level=None):
    """Model input from the STFT ``spec`` (batch, frames, BINS) complex. Returns (features, level),
    ``level`` the utterance's mean power per bin over the frames holding any signal (batch, 1, 1),
    or the ``level`` given (a caller that chunks a long input passes the whole input's, see
    :func:`input_level`)."""
    import jax.numpy as jnp

    power = spec.real ** 2 + spec.imag ** 2
    if level is not None:
        return _features(spec, power, jnp.asarray(level, power.dtype) + 1e-10)
    # the mean power of the frames that hold any signal: padding with digital silence (a short
    # input in a longer compiled segment) does not move it
    frame_power = jnp.mean(power, axis=2, keepdims=True)
    active = (frame_power > 1e-14).astype(power.dtype)
    level = jnp.sum(frame_power * active, axis=1, keepdims=True) / jnp.maximum(
        jnp.sum(active, axis=1, keepdims=True), 1.0) + 1e-10
    return _features(spec, power, level)


def _features(spec, power, level):
    import jax.numpy as jnp

    logp = jnp.log10(power / level + 1e-8)
    low = spec[..., :LOW_BINS] / jnp.sqrt(level)
    mag = jnp.abs(low)
    comp = low * (mag + 1e-8) ** (COMPRESS - 1.0)
    return jnp.concatenate([logp / 4.0, comp.real, comp.imag], axis=-1), level


def gain_floor(atten_lim_db):
    """The smallest mask magnitude ``atten_lim_db`` allows (0 for no limit)."""
    return 0.0 if atten_lim_db is None else 10.0 ** (-float(atten_lim_db) / 20.0)


def enhance_spec(model, spec, floor=0.0, level=None):
    """The masked spectrum (batch, frames, BINS) complex; no bin's mask magnitude below ``floor``
    (a number or a traced scalar: :func:`gain_floor`); ``level`` as in :func:`features`."""
    import jax.numpy as jnp

    feats, _ = features(spec, level)
    gain, re, im = model(feats)
    gain = jnp.maximum(gain, floor)
    mag = jnp.sqrt(re * re + im * im + 1e-12)
    lift = jnp.maximum(floor / mag, 1.0)
    re, im = re * lift, im * lift
    low = spec[..., :LOW_BINS] * (re + 1j * im)
    high = spec[..., LOW_BINS:] * gain
    return jnp.concatenate([low, high], axis=-1)


def window():
    from roomtone.models.stft import sqrt_hann

    return sqrt_hann(N_FFT)


def denoise_fn(model, samples, unit_level=False):
    """A function of (audio (batch, samples) float32, floor) -> (batch, samples): STFT, masks,
    ISTFT (``floor``: :func:`gain_floor`). With ``unit_level`` the features take the input's level
    as 1 (the caller scaled it so: :func:`input_level`) instead of measuring each item's."""
    from roomtone.models import stft

    w = window()
    env = stft.window_envelope(w, w, HOP, stft.frame_count(samples, HOP, N_FFT))

    def run(audio, floor=0.0):
        spec = stft.stft(audio, w, HOP)
        return stft.istft(enhance_spec(model, spec, floor, 1.0 if unit_level else None), w, HOP, env, samples)

    return run


def input_level(x, chunk_frames=4096):
    """:func:`features`' level of a whole channel, on the host (numpy, in chunks of frames, each
    chunk's stretch of the zero-padded signal built on its own: no whole-channel copy): the mean
    power per STFT bin over the frames holding any signal. Shape: x (samples,) -> float."""
    from roomtone.models.stft import frame_count, frames_host

    x = np.asarray(x, np.float32)
    frames = frame_count(x.size, HOP, N_FFT)
    w = window().astype(np.float64)
    total, count = 0.0, 0
    for first in range(0, frames, chunk_frames):
        last = min(frames, first + chunk_frames)
        spec = np.fft.rfft(frames_host(x, N_FFT, HOP, first, last - first) * w, axis=-1)
        frame_power = np.mean(spec.real ** 2 + spec.imag ** 2, axis=-1)
        active = frame_power > 1e-14
        total += float(frame_power[active].sum())
        count += int(active.sum())
    return total / count if count else 0.0


WEIGHTS = "weights/roomtone.npz"  # inside the installed package
SEGMENT_S = 30.0
OVERLAP_S = 2.0
BATCH = 4


def weights_path():
    """The shipped weights (``roomtone/enhance/weights/roomtone.npz``)."""
    from importlib.resources import files

    return str(files("roomtone.enhance").joinpath(WEIGHTS))


def architecture(config, path="weights"):
    """The :class:`Architecture` of a weights config. Raises
    :class:`~roomtone.models.weights.ModelFileError` for another model's file."""
    from roomtone.models.weights import ModelFileError

    arch = config["architecture"]
    if arch.get("kind") != "roomtone-bigru" or config["sample_rate"] != SAMPLE_RATE:
        raise ModelFileError(f"{path}: not a roomtone denoiser (architecture {arch.get('kind')!r})")
    return Architecture(hidden=int(arch["hidden"]), embed=int(arch["embed"]), layers=int(arch["layers"]))


def load_model(path=None):
    """(model, config) from a weight file (default: the shipped one), rebuilt with
    ``nnx.eval_shape`` (:func:`roomtone.models.weights.load_model`). Raises
    :class:`~roomtone.models.weights.ModelFileError`."""
    from roomtone.models import weights

    return weights.load_model(weights_path() if path is None else path, architecture, build_model)


class RoomtoneDenoiser:
    """The ``roomtone`` denoiser for the enhance job: ``denoiser(audio, atten_lim_db=None)`` on
    float32 (channels, samples) at 16 kHz, the same shape out (zero latency). Long inputs run in
    :data:`SEGMENT_S` segments cross-faded over :data:`OVERLAP_S`, the last one aligned to the end;
    a shorter input in one segment of whole seconds (compiled once per length; on disk too where
    JAX has a persistent compilation cache, as the ``enhance`` command sets one:
    :func:`roomtone.startup.use_compilation_cache`)."""

    name = "roomtone"
    sample_rate = SAMPLE_RATE
    latency_samples = 0

    def __init__(self, path=None):
        self.model, self.config = load_model(path)
        self.segment = int(SEGMENT_S * SAMPLE_RATE)
        self.overlap = int(OVERLAP_S * SAMPLE_RATE)
        self._runs = {}

    def _compiled(self, segment):
        import jax

        if segment not in self._runs:
            self._runs[segment] = jax.jit(denoise_fn(self.model, segment, unit_level=True))
        return self._runs[segment]

    def __call__(self, audio, atten_lim_db=None, progress=None):
        return self.denoise_in_place(np.array(audio, dtype=np.float32, order="C", copy=True), atten_lim_db,
                                     progress)

    def denoise_in_place(self, audio, atten_lim_db=None, progress=None):
        """``denoiser(audio)`` written over ``audio`` (writeable float32 (channels, samples) at 16 kHz),
        the same output: each channel scaled to unit level in place, run segment by segment with
        :func:`roomtone.models.apply.apply_chunked_in_place`, scaled back. Scratch: a batch of
        segments. Returns ``audio``."""
        import jax.numpy as jnp

        from roomtone.models.apply import apply_chunked_in_place

        floor = jnp.float32(gain_floor(atten_lim_db))
        # a short input runs in one segment rounded up to a whole second (few compiled shapes,
        # little padding); a long one in SEGMENT_S segments
        samples = audio.shape[1]
        segment = self.segment if samples > self.segment else max(1, -(-samples // SAMPLE_RATE)) * SAMPLE_RATE
        run = self._compiled(segment)
        # each channel scaled to unit level (the whole channel's, so every segment of it sees the
        # same features a whole-input call would), and back: the masks do not depend on scale
        scale = np.array([np.sqrt(input_level(channel)) for channel in audio], np.float32)
        scale[scale == 0] = 1.0
        audio /= scale[:, None]
        apply_chunked_in_place(lambda block: np.asarray(run(block, floor)), audio, segment=segment,
                               overlap=min(self.overlap, segment // 4), batch=BATCH, progress=progress)
        audio *= scale[:, None]
        return audio
