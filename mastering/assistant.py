"""``--preset auto``: a small Flax network that proposes the chain from the input in one forward
pass (the "mastering assistant" idea), optionally refined by the fitter.

What it predicts: the EQ and the stereo width of the ``balanced`` chain, the parameters the fitter
(:mod:`roomtone.mastering.fit`) moves: the low shelf (100 Hz) and high shelf (10 kHz) gains, nine
octave-spaced bells (50 Hz .. 12.8 kHz, Q 1.41) and the width, in the fitter's own unconstrained
coordinates (``gain_db = 12 tanh(u)``, ``width = 2 sigmoid(v)``). The multiband compressor and the
saturation keep the preset's settings (not predicted yet).

Input features (:func:`features`), from the input at the working level: the 27-band 1/3-octave
curve (IEC 61260 centres 40 Hz .. 16 kHz) of the Welch spectrum less its K-weighted loudness proxy
(the fitter's ``normalised``: BS.1770-4 K-weighting at the band centres), the side/mid ratio in dB
of four band groups (zeros for mono) and a mono flag: 32 numbers, standardised by the training
set's mean and spread (stored in the weights' config).

Network: 32 -> hidden -> hidden -> 12, GELU (the shipped one: hidden 48, 4.5 k parameters;
``weights/assistant.npz`` with its JSON config: architecture, feature scaling, data manifest with
licences, the figures reached, and the calibration).

Calibration: the EQ gains the network proposes are multiplied by the config's
``calibration.tonal_strength`` (0.25 for the shipped weights), the strength that serves best a
music collection the network never trained on (:func:`roomtone.mastering.training.train_assistant.calibrate`;
the Nexuiz soundtrack). The spectrum alone hardly tells a fault from the music, so the network's
full proposal is over-confident on other music; the width is not shrunk.

Trained self-supervised (:mod:`roomtone.mastering.training.train_assistant`): real music excerpts are
"de-mastered" by random EQ tilts, bumps and shelves and random width changes (exact in the
spectral domain: a linear time-invariant filter multiplies the power spectrum by ``|G(f)|^2``),
and the loss is the fitter's loss (:func:`roomtone.mastering.fit.loss`: the JAX chain's own EQ
response on the analysis bins, width on the side) between the predicted chain applied to the
degraded excerpt and the original's features: the network learns the chain that restores it.
"""

import dataclasses
import functools
import os

import numpy as np

ARCH_KIND = "roomtone-assistant-mlp"
WEIGHTS = "weights/assistant.npz"  # inside the installed package
BASE_PRESET = "balanced"
N_GAINS = 11  # low shelf, high shelf, nine bells
N_OUT = N_GAINS + 1  # and the width


@dataclasses.dataclass(frozen=True)
class Architecture:
    hidden: int = 96
    layers: int = 2

    def as_dict(self):
        return {"kind": ARCH_KIND, **dataclasses.asdict(self), "inputs": n_features(), "outputs": N_OUT}


def n_features():
    from roomtone.mastering import targets as tg

    return len(tg.THIRD_OCTAVE_HZ) + len(tg.WIDTH_GROUPS_HZ) + 1


def build_model(arch, rngs):
    """The Flax NNX module for ``arch`` (:class:`roomtone.mastering.assistant_model.AssistantNet`)."""
    from roomtone.mastering.assistant_model import AssistantNet

    return AssistantNet(arch, rngs)


# ---------------------------------------------------------------- features (numpy)

class Analysis:
    """The analysis grid for one sample rate: FFT bins kept (35 Hz .. 18 kHz, as the fitter),
    the 1/3-octave band matrix, the width groups, K-weighting power at the band centres and the
    bins' ``z^-1``, ``z^-2`` for the JAX EQ response."""

    def __init__(self, sample_rate):
        from roomtone.mastering import fit
        from roomtone.mastering import targets as tg

        self.sample_rate = int(sample_rate)
        nfft = tg.welch_nfft(sample_rate)
        freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
        self.keep = (freqs >= fit.ANALYSIS_HZ[0]) & (freqs <= min(fit.ANALYSIS_HZ[1], 0.45 * sample_rate))
        self.freqs = freqs[self.keep]
        self.bands = tg.band_matrix(self.freqs).astype(np.float32)
        self.groups = tg.group_matrix().astype(np.float32)
        self.k2 = fit.k_weighting_power(sample_rate)
        w = 2.0 * np.pi * self.freqs / sample_rate
        self.z1 = np.exp(-1j * w).astype(np.complex64)
        self.z2 = np.exp(-2j * w).astype(np.complex64)

    def spectra(self, audio, measured=None):
        """(p_total, p_mid, p_side) on the kept bins, float32 (bins,); mid/side None for mono.
        ``measured``: the audio's :func:`roomtone.mastering.targets.spectra`, where the caller has them."""
        from roomtone.mastering import targets as tg

        _, total, mid, side = tg.spectra(audio, self.sample_rate) if measured is None else measured
        pick = lambda p: None if p is None else p[self.keep].astype(np.float32)  # noqa: E731
        return pick(total), pick(mid), pick(side)

    def features(self, p_total, p_mid=None, p_side=None):
        """The network's raw input (before standardisation) from power spectra on the kept bins.
        Shape: each (..., bins) -> (..., 32)."""
        p_total = np.asarray(p_total, np.float64)
        curve = 10.0 * np.log10(p_total @ self.bands.T.astype(np.float64) + 1e-20)
        curve = curve - 10.0 * np.log10(np.sum(self.k2 * 10.0 ** (curve / 10.0), axis=-1, keepdims=True))
        lead = curve.shape[:-1]
        if p_mid is None:
            width = np.zeros(lead + (self.groups.shape[0],))
            mono = np.ones(lead + (1,))
        else:
            side = np.asarray(p_side, np.float64) @ self.bands.T @ self.groups.T
            mid = np.asarray(p_mid, np.float64) @ self.bands.T @ self.groups.T
            width = 10.0 * np.log10((side + 1e-20) / (mid + 1e-20))
            width = np.maximum(width, -40.0)  # a mono-compatible file's side is ~ -inf dB
            mono = np.zeros(lead + (1,))
        return np.concatenate([curve, width, mono], axis=-1).astype(np.float32)


@functools.lru_cache(maxsize=4)
def analysis(sample_rate):
    return Analysis(sample_rate)


# ---------------------------------------------------------------- the chain the prediction sets

def fit_template(stereo):
    """The ``balanced`` preset with the fitter's stages (EQ with the nine bells, width for
    stereo): the chain whose EQ gains and width the network predicts."""
    from roomtone.mastering import fit
    from roomtone.mastering.presets import load_preset

    preset = load_preset(BASE_PRESET)
    return preset, fit.with_fit_stages(preset.chain, stereo)


@functools.lru_cache(maxsize=8)
def loss_data(a, stereo):
    """The broadcast part of the fitter's loss data for the analysis grid ``a`` (the per-item
    spectra and targets are added by the caller); built once per grid and layout."""
    import jax.numpy as jnp

    from roomtone.plugins import twin as jax_chain
    from roomtone.processor import Chain

    _, chain = fit_template(stereo)
    eq = next(p for p in chain if p.kind == "eq")
    f32 = lambda v: jnp.asarray(np.asarray(v, np.float32))  # noqa: E731
    return {"eq": jax_chain.params_from_chain(Chain([eq]))["0:eq"], "z1": jnp.asarray(a.z1), "z2": jnp.asarray(a.z2),
            "bands": f32(a.bands), "groups": f32(a.groups), "k2": f32(a.k2), "t_total": f32(1.0), "t_mid": f32(1.0),
            "t_side": f32(1.0), "width_now": f32(1.0)}


def batched_loss(raw, shared, items, sample_rate, stereo):
    """Mean of the fitter's loss over a batch: ``raw`` (batch, 12) network outputs, ``items`` a
    dict of per-item arrays ``p_total``, ``p_mid``, ``p_side`` (batch, bins), ``target_tonal``
    (batch, 27) (normalised), ``target_width`` (batch, 4)."""
    import jax

    from roomtone.mastering import fit

    def one(r, item):
        theta = {"u": r[:N_GAINS], "v": r[N_GAINS]}
        return fit.loss(theta, {**shared, **item}, sample_rate, stereo, stereo)

    return jax.numpy.mean(jax.vmap(one)(raw, items))


def apply_prediction(chain, raw):
    """``chain`` (the fit template) with the predicted EQ gains and width: a new Chain."""
    from roomtone.mastering import fit
    from roomtone.processor import Chain

    raw = np.asarray(raw, np.float64)
    gains = fit.GAIN_LIMIT_DB * np.tanh(raw[:N_GAINS])
    items = list(chain)
    for i, p in enumerate(items):
        if p.kind == "eq":
            bands = tuple((f, round(float(g), 3), q) for (f, _, q), g in zip(p.bands, gains[2:]))
            bands = tuple(b for b in bands if abs(b[1]) >= 0.05)
            items[i] = dataclasses.replace(p, low_shelf_db=round(float(gains[0]), 3),
                                           high_shelf_db=round(float(gains[1]), 3), bands=bands)
        elif p.kind == "width":
            width = _width_of(raw[N_GAINS])
            items[i] = dataclasses.replace(p, width=round(float(min(max(width, 0.0), 2.0)), 4))
    return Chain(items)


# ---------------------------------------------------------------- the shipped model

def weights_path():
    from importlib.resources import files

    return str(files("roomtone.mastering").joinpath(WEIGHTS))


def load_model(path=None):
    """(model, config) from a weight file (default: the shipped one), rebuilt with ``nnx.eval_shape``.
    Raises :class:`~roomtone.models.weights.ModelFileError`."""
    from flax import nnx

    from roomtone.models import weights

    path = weights_path() if path is None else os.fspath(path)
    config, arch = _checked_config(path)
    model = weights.build(lambda: build_model(arch, nnx.Rngs(0)), weights.load_arrays(path), path=path)
    return model, config


def _checked_config(path):
    """(config, :class:`Architecture`) of a weight file. Raises :class:`~roomtone.models.weights.ModelFileError`."""
    from roomtone.models import weights

    config = weights.load_config(path)
    arch_cfg = config["architecture"]
    if arch_cfg.get("kind") != ARCH_KIND or arch_cfg.get("inputs") != n_features():
        raise weights.ModelFileError(f"{path}: not a roomtone mastering assistant (architecture {arch_cfg.get('kind')!r})")
    return config, Architecture(hidden=int(arch_cfg["hidden"]), layers=int(arch_cfg["layers"]))


def _forward(arrays, x, hidden, layers, path):
    """The network's forward pass with its parameters ``arrays`` (flat, as the file holds them) as
    arguments, so that one trace serves any weights of this architecture. Shape: x (1, inputs)."""
    from flax import nnx

    from roomtone.models import weights

    return weights.build(lambda: build_model(Architecture(hidden=hidden, layers=layers), nnx.Rngs(0)), arrays,
                         path=path)(x)


@functools.lru_cache(maxsize=2)
def _cached(path):
    """(config, the forward pass of one feature row): the parameters read as arrays and the pass
    run by :func:`roomtone.models.runtime.exported`, traced (with Flax) once per machine; a later
    process neither imports Flax nor traces (about 0.5 s of a 2-core CPU). Raises
    :class:`~roomtone.models.weights.ModelFileError` for a file that does not fit."""
    from importlib.metadata import version

    import jax
    import jax.numpy as jnp

    from roomtone.models import runtime, weights

    config, arch = _checked_config(path)
    arrays = {k: jnp.asarray(v) for k, v in weights.load_arrays(path).items()}
    placeholder = jnp.asarray(np.zeros((1, n_features()), np.float32))
    static = {"hidden": arch.hidden, "layers": arch.layers, "path": os.path.basename(path)}
    call = runtime.exported(f"assistant._forward flax {version('flax')}",
                            jax.jit(_forward, static_argnames=("hidden", "layers", "path")), (arrays, placeholder),
                            static, sources=(__file__, weights.__file__))
    return config, lambda x: call(arrays, jnp.asarray(np.asarray(x, np.float32)))


def preload():
    """Load the shipped model and compile its forward pass (kept for the process): the first
    :func:`propose`'s set-up, for a command's background import (:func:`roomtone.startup.import_in_background`)."""
    _, forward = _cached(weights_path())
    np.asarray(forward(np.zeros((1, n_features()), np.float32)))


def propose(signal, sample_rate, preset=None, path=None, measured=None, with_tonal=True):
    """The proposed preset for ``signal`` (channels, samples) at the working level: ``preset``
    (default :func:`roomtone.mastering.api.base_preset` of ``"auto"``: the balanced chain, named
    ``auto``) with the predicted EQ and width. Returns ``(preset, report, tonal_db)``: ``report``
    holds the prediction (gains, width), the features' distance, the strength applied and the
    seconds spent; ``tonal_db`` the curve the proposal gives under the fitter's linear model (None
    unless ``with_tonal``: the target of a refining fit).
    ``measured``: the signal's :func:`roomtone.mastering.targets.spectra`, where the caller has them."""
    import time

    from roomtone.mastering import fit

    started = time.perf_counter()
    config, forward = _cached(weights_path() if path is None else os.fspath(path))
    stereo = signal.shape[0] >= 2
    a = analysis(sample_rate)
    spectra = a.spectra(signal, measured)
    x = a.features(*spectra)
    scale = config["features"]
    z = (x - np.asarray(scale["mean"], np.float32)) / np.asarray(scale["std"], np.float32)
    raw = np.asarray(forward(z[None]))[0]
    tonal_strength = float(config.get("calibration", {}).get("tonal_strength", 1.0))
    raw = scale_proposal(raw, tonal_strength, 1.0)
    raw, strength, distance = _guarded(raw, z)
    width_report = None
    if stereo:  # mono compatibility: a near-mono input is not widened, none past a correlation of 0.5
        raw, width_report = _bounded_width(raw, spectra[1], spectra[2])
    if preset is None:
        from roomtone.mastering.api import AUTO_PRESET, base_preset

        preset = base_preset(AUTO_PRESET)
    chain = apply_prediction(fit.with_fit_stages(preset.chain, stereo), raw)
    predicted = dataclasses.replace(preset, chain=chain)
    tonal_after = _model_tonal(a, raw, spectra, stereo) if with_tonal else None
    report = {"model": os.path.basename(path or weights_path()), "base_preset": BASE_PRESET,
              "low_shelf_db": chain_value(chain, "eq", "low_shelf_db"),
              "high_shelf_db": chain_value(chain, "eq", "high_shelf_db"),
              "bells": [list(b) for b in next(p for p in chain if p.kind == "eq").bands],
              "width": chain_value(chain, "width", "width") if stereo else None,
              "width_bound": width_report,
              "feature_distance": round(distance, 3), "strength": round(strength, 3),
              "tonal_strength": round(tonal_strength, 3),
              "seconds": round(time.perf_counter() - started, 3)}
    return predicted, report, tonal_after


OOD_DISTANCE = 1.5  # RMS z-score of the features: real music measured 0.5-1.0 (../shared/data/music)


def _guarded(raw, z):
    """The proposal shrunk towards "no change" for an input unlike the training music: with the
    features' RMS z-score ``d`` above :data:`OOD_DISTANCE` the EQ gains (dB) and the width's
    departure from 1 are scaled by ``(OOD_DISTANCE / d)^2`` (a test tone or a synthetic signal
    gets a mild proposal, not a confident extreme one). Returns (raw, strength, d)."""
    distance = float(np.sqrt(np.mean(np.square(z))))
    strength = min(1.0, (OOD_DISTANCE / max(distance, 1e-9)) ** 2)
    if strength >= 1.0:
        return raw, 1.0, distance
    return scale_proposal(raw, strength, strength), strength, distance


def _bounded_width(raw, p_mid, p_side):
    """The proposal ``raw`` (12,) with its width held under
    :func:`roomtone.mastering.targets.bound_width` (the network, trained on music of ordinary width,
    asks near-mono songs for up to the stage's cap). Returns ``(raw, report)``."""
    from roomtone.mastering import fit
    from roomtone.mastering import targets as tg

    raw = np.array(raw, np.float64)
    width = _width_of(raw[N_GAINS])
    applied, report = tg.bound_width(width, p_mid, p_side, fit.WIDTH_LIMIT)
    if applied < width:
        raw[N_GAINS] = _width_coordinate(min(max(applied, 1e-3), fit.WIDTH_LIMIT - 1e-3))
    return raw.astype(np.float32), report


def _width_of(v):
    """The width for the fitter's unconstrained coordinate ``v``: ``WIDTH_LIMIT sigmoid(v)``."""
    from roomtone.mastering import fit

    return fit.WIDTH_LIMIT / (1.0 + np.exp(-v))


def _width_coordinate(width):
    """The inverse of :func:`_width_of`."""
    from roomtone.mastering import fit

    return np.log(width / (fit.WIDTH_LIMIT - width))


def scale_proposal(raw, gain_scale, width_scale):
    """The network output ``raw`` (..., 12) with its EQ gains (dB) times ``gain_scale`` and its
    width's departure from 1 times ``width_scale`` (in the fitter's coordinates: ``u`` through
    ``12 tanh(u)``, ``v`` through ``2 sigmoid(v)``). Shape kept, float32."""
    raw = np.array(raw, np.float64)
    if gain_scale != 1.0:
        raw[..., :N_GAINS] = np.arctanh(np.clip(gain_scale * np.tanh(raw[..., :N_GAINS]), -1 + 1e-7, 1 - 1e-7))
    if width_scale != 1.0:
        raw[..., N_GAINS] = _width_coordinate(1.0 + width_scale * (_width_of(raw[..., N_GAINS]) - 1.0))
    return raw.astype(np.float32)


def chain_value(chain, kind, field):
    return next((getattr(p, field) for p in chain if p.kind == kind), None)


def _model_tonal(a, raw, spectra, stereo):
    """The loudness-normalised curve the prediction gives under the fitter's linear model
    (:func:`roomtone.mastering.fit.model_powers`; the assistant's own target when refinement
    follows). Shape: (27,)."""
    import jax.numpy as jnp

    from roomtone.mastering import fit

    shared = loss_data(a, stereo)
    p_total, p_mid, p_side = (jnp.asarray(np.float32(p) if p is not None else np.float32(0.0)) for p in spectra)
    data = {**shared, "p_total": p_total, "p_mid": p_mid, "p_side": p_side}
    raw = np.asarray(raw, np.float32)
    theta = {"u": jnp.asarray(raw[:N_GAINS]), "v": jnp.asarray(raw[N_GAINS])}
    total = np.asarray(_model_total()(theta, data, sample_rate=a.sample_rate, stereo=stereo), np.float64)
    return fit.normalised(10.0 * np.log10(total + 1e-20), np.asarray(shared["k2"], np.float64))


@functools.lru_cache(maxsize=1)
def _model_total():
    """:func:`roomtone.mastering.fit.model_powers`'s total band power, compiled once (run op by op
    it dispatched a compile per operation: 0.8 s of the first proposal)."""
    import jax

    from roomtone.mastering import fit

    def total(theta, data, sample_rate, stereo):
        return fit.model_powers(theta, data, sample_rate, stereo)[1]

    return jax.jit(total, static_argnames=("sample_rate", "stereo"))
