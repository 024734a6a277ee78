"""``roomtone``, our 4-stem separator: a compact Open-Unmix-shaped spectrogram network with one
shared recurrent trunk and a mask head per stem, at 44.1 kHz stereo.

Signal path (offline, whole segments, non-causal):

1. STFT of each channel, 2048-point periodic Hann, hop 512 (46 / 11.6 ms at 44.1 kHz): 1025 bins.
2. Frequency layout (:func:`band_layout`): the lowest :data:`LOW_BINS` bins (0-5.5 kHz, where
   voices and instruments keep their harmonics apart) one by one, then :data:`HIGH_BANDS` bands
   of log-spaced width up to Nyquist: :data:`UNITS` units per frame.
3. Features per frame: the log power of the mid ``(L + R) / 2`` and side ``(L - R) / 2`` spectra in
   each unit (a band's mean power), less the segment's mean log level (so the masks do not depend
   on the recording level). Mid and side rather than left and right: a centred voice is what the
   side lacks.
4. A linear encoder with layer normalisation and tanh, bidirectional GRU layers
   (:class:`roomtone.models.layers.BiGRU`), the encoder output concatenated back (a skip), then
   per stem a two-layer head giving mask logits for both channels and every unit; a band's mask
   holds for each of its bins.
5. Masks: a softmax over the stems of each bin and channel (Wiener-like ratio masks that sum to 1,
   so the stems sum to the mixture), multiplied with the mixture's complex STFT, inverse STFT per
   stem and channel. Same length as the input, zero latency.

Shape: block (batch, 2, samples) float32 at 44.1 kHz -> (batch, 4 stems, 2, samples).
"""

import dataclasses

import numpy as np

SAMPLE_RATE = 44100
N_FFT = 2048
HOP = 512
BINS = N_FFT // 2 + 1
LOW_BINS = 256  # bins 0..255 one by one: up to 5.5 kHz at 44.1 kHz
HIGH_BANDS = 128  # log-spaced bands over bins 256..1024
UNITS = LOW_BINS + HIGH_BANDS
STEMS = ("vocals", "drums", "bass", "other")
KIND = "roomtone-umx-gru"


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Hyperparameters stored in the weights' config (``architecture``)."""

    embed: int = 256
    hidden: int = 128  # GRU units per direction
    layers: int = 2
    head: int = 128

    def as_dict(self):
        return {"kind": KIND, **dataclasses.asdict(self), "n_fft": N_FFT, "hop": HOP, "low_bins": LOW_BINS,
                "high_bands": HIGH_BANDS, "sample_rate": SAMPLE_RATE, "stems": list(STEMS)}


def band_layout():
    """``(edges, unit_of_bin)``: the units' first bins (UNITS + 1,) int, the last being BINS, and
    the unit each bin belongs to (BINS,) int. Units below :data:`LOW_BINS` are single bins; above,
    :data:`HIGH_BANDS` bands whose edges are log-spaced (each at least one bin wide)."""
    edges = list(range(LOW_BINS))
    high = np.geomspace(LOW_BINS, BINS, HIGH_BANDS + 1)
    start = LOW_BINS
    for k in range(1, HIGH_BANDS + 1):
        edges.append(start)
        remaining = HIGH_BANDS - k
        stop = BINS - remaining if k < HIGH_BANDS else BINS
        start = min(max(start + 1, int(round(high[k]))), stop)
    edges.append(BINS)
    edges = np.asarray(edges, np.int64)
    unit_of_bin = np.repeat(np.arange(UNITS), np.diff(edges))
    return edges, unit_of_bin


def build_model(arch, rngs):
    """The Flax NNX module for ``arch`` (:class:`roomtone.separate.net_model.SeparatorNet`):
    features (batch, frames, 2 UNITS) -> mask logits (batch, stems, channels 2, frames, UNITS)."""
    from roomtone.separate.net_model import SeparatorNet

    return SeparatorNet(arch, rngs)


def window():
    from roomtone.models.stft import hann

    return hann(N_FFT)


def _band_matrix():
    """(BINS - LOW_BINS, HIGH_BANDS) float32: each high band's mean over its bins."""
    edges, unit_of_bin = band_layout()
    high = unit_of_bin[LOW_BINS:] - LOW_BINS
    m = np.zeros((BINS - LOW_BINS, HIGH_BANDS), np.float32)
    m[np.arange(high.size), high] = 1.0
    return m / m.sum(axis=0, keepdims=True)


def _unit_power(power):
    """Mean power per unit of ``power`` (..., BINS): (..., UNITS); the low bins as they are, each
    high band's mean by a matrix product (exact: a cumulative sum would cancel quiet bins away)."""
    import jax.numpy as jnp

    return jnp.concatenate([power[..., :LOW_BINS], power[..., LOW_BINS:] @ jnp.asarray(_band_matrix())], axis=-1)


def features(spec):
    """Model input from the stereo STFT ``spec`` (batch, 2, frames, BINS) complex: (batch, frames,
    2 UNITS) float32, the mid and side log powers per unit less the segment's mean log level (over
    the frames that hold any signal)."""
    import jax.numpy as jnp

    mid = 0.5 * (spec[:, 0] + spec[:, 1])
    side = 0.5 * (spec[:, 0] - spec[:, 1])
    pm = _unit_power(mid.real ** 2 + mid.imag ** 2)
    ps = _unit_power(side.real ** 2 + side.imag ** 2)
    frame_power = jnp.mean(pm + ps, axis=2, keepdims=True)  # (batch, frames, 1)
    # only digital silence (padding) is left out of the level; the floors are far below any real
    # level so that the features do not move with it (a quiet track is scaled up, not floored)
    active = (frame_power > 1e-24).astype(pm.dtype)
    level = jnp.sum(frame_power * active, axis=1, keepdims=True) / jnp.maximum(
        jnp.sum(active, axis=1, keepdims=True), 1.0) + 1e-30
    feats = jnp.concatenate([jnp.log10(pm / level + 1e-8), jnp.log10(ps / level + 1e-8)], axis=-1)
    return feats / 4.0


def masks(model, spec):
    """The stems' ratio masks of the STFT ``spec`` (batch, 2, frames, BINS): (batch, stems, 2,
    frames, BINS) in [0, 1], summing to 1 over the stems."""
    import jax
    import jax.numpy as jnp

    _, unit_of_bin = band_layout()
    units = jax.nn.softmax(model(features(spec)), axis=1)  # (batch, stems, 2, frames, UNITS)
    return jnp.take(units, jnp.asarray(unit_of_bin, jnp.int32), axis=-1)


def separate_fn(model, samples):
    """A function of audio (batch, 2, samples) float32 -> stems (batch, stems, 2, samples): STFT,
    masks, ISTFT."""
    from roomtone.models import stft

    w = window()
    env = stft.window_envelope(w, w, HOP, stft.frame_count(samples, HOP, N_FFT))

    def run(audio):
        spec = stft.stft(audio, w, HOP)  # (batch, 2, frames, BINS)
        m = masks(model, spec)
        return stft.istft(spec[:, None] * m, w, HOP, env, samples)

    return run


def stages(model, samples):
    """The compiled halves of :func:`separate_fn` for segments of ``samples``, for work between
    them: ``forward(audio (batch, 2, samples)) -> (spec (batch, 2, frames, BINS) complex, masks
    (batch, stems, 2, frames, BINS))`` and ``inverse(spec, masks) -> stems (batch, stems, 2,
    samples)``."""
    import jax
    import jax.numpy as jnp

    from roomtone.models import stft

    w = window()
    env = stft.window_envelope(w, w, HOP, stft.frame_count(samples, HOP, N_FFT))

    def spec_and_masks(audio):
        spec = stft.stft(audio, w, HOP)
        return spec, masks(model, spec)

    compiled = jax.jit(spec_and_masks)
    inverse = jax.jit(lambda spec, m: stft.istft(spec[:, None] * m, w, HOP, env, samples))
    return (lambda audio: compiled(jnp.asarray(audio, jnp.float32))), inverse


def fused_separate_fn(model, samples, fusion):
    """:func:`separate_fn` with the network's masks fused with the ``dsp`` masks
    (:func:`roomtone.separate.fusion.fuse_masks`) by the powers of ``fusion`` (the weights' config
    ``fusion``: ``net_power``, ``dsp_power`` per stem, ``eps``). The STFT, the network and the
    ISTFT are compiled (:func:`stages`); the DSP masks and the fusion run in numpy between them.
    Same shapes."""
    from roomtone.separate.fusion import EPS, dsp_masks, fuse_masks

    forward, inverse = stages(model, samples)
    power = [float(fusion["dsp_power"][stem]) for stem in STEMS]

    def run(audio):
        spec, m = forward(audio)
        spec = np.asarray(spec)
        fused = fuse_masks(np.asarray(m), dsp_masks(spec, SAMPLE_RATE, N_FFT), float(fusion["net_power"]), power,
                           eps=float(fusion.get("eps", EPS)))
        return inverse(spec, fused)

    return run


WEIGHTS = "weights/roomtone.npz"  # inside the installed package
SEGMENT_S = 10.0
OVERLAP_S = 1.0


def weights_path():
    """The shipped weights (``roomtone/separate/weights/roomtone.npz``)."""
    from importlib.resources import files

    return str(files("roomtone.separate").joinpath(WEIGHTS))


def architecture(config, path="weights"):
    """The :class:`Architecture` of a weights config. Raises
    :class:`~roomtone.models.weights.ModelFileError` for another model's file."""
    from roomtone.models.weights import ModelFileError

    arch = config.get("architecture", {})
    if arch.get("kind") != KIND or config.get("sample_rate") != SAMPLE_RATE or tuple(arch.get("stems", ())) != STEMS:
        raise ModelFileError(f"{path}: not a roomtone separator (architecture {arch.get('kind')!r})")
    return Architecture(embed=int(arch["embed"]), hidden=int(arch["hidden"]), layers=int(arch["layers"]),
                        head=int(arch["head"]))


def load_model(path=None):
    """(model, config) from a weight file (default: the shipped one), rebuilt with
    ``nnx.eval_shape`` (:func:`roomtone.models.weights.load_model`). Raises
    :class:`~roomtone.models.weights.ModelFileError`."""
    from roomtone.models import weights

    return weights.load_model(weights_path() if path is None else path, architecture, build_model)


class RoomtoneSeparator:
    """The ``roomtone`` separator for the separate job (see
    :mod:`roomtone.separate.separators`): stereo 44.1 kHz segments of :data:`SEGMENT_S` cross-faded
    over :data:`OVERLAP_S`, one compiled shape."""

    name = "roomtone"
    stems = STEMS
    sample_rate = SAMPLE_RATE
    channels = 2
    fixed_segment = True
    segment_s = SEGMENT_S
    overlap_s = OVERLAP_S

    def __init__(self, path=None, *, segment_s=SEGMENT_S, batch=None, fusion=True):
        import jax

        from roomtone.models import runtime

        self.model, self.config = load_model(path)
        self.source = weights_path() if path is None else str(path)
        self.segment_s = float(segment_s)
        self.batch = int(batch or (1 if runtime.device_name() == "cpu" else 8))
        samples = int(round(self.segment_s * SAMPLE_RATE))
        self.fusion = self.config.get("fusion") if fusion else None
        if not fusion:
            self.name = "roomtone-net"
        if self.fusion:
            self._run = fused_separate_fn(self.model, samples, self.fusion)
        else:
            self._run = jax.jit(separate_fn(self.model, samples))

    def separate_segment(self, block, sample_rate):
        import jax.numpy as jnp

        if int(sample_rate) != SAMPLE_RATE:
            raise ValueError(f"roomtone runs at {SAMPLE_RATE} Hz, not {sample_rate} Hz")
        return np.asarray(self._run(jnp.asarray(block, jnp.float32)), dtype=np.float32)


def installed():
    """Whether the shipped weights are in the package (cheap: no loading)."""
    import os

    return os.path.isfile(weights_path())
