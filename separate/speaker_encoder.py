"""The GE2E speaker encoder of Resemblyzer 0.1.4 (Wan et al., "Generalized End-to-End Loss for
Speaker Verification", ICASSP 2018; Resemble AI, Apache-2.0) in Flax NNX, reading the published
weights from the wheel the user installed or downloaded (``pip install --no-deps
Resemblyzer==0.1.4``, or its ``.whl`` file, or its ``pretrained.pt``). Importing this module
imports JAX and Flax.

What is ours and what is theirs: the computation is written here from the wheel's published
hyper-parameters and from the tensor names and shapes of ``resemblyzer/pretrained.pt`` (a legacy
torch checkpoint, ``{"step", "model_state", "optimizer_state"}``), read as data by
:mod:`roomtone.separate.torchzip` (a restricted unpickler: nothing in it runs; no torch). The
weights are never copied into this repository. Parity with the real Resemblyzer (torch 2.13,
librosa 0.11) is checked against golden embeddings in ``tests/golden/speaker_encoder/``.

The pipeline (16 kHz mono; another rate is resampled with :func:`roomtone.resample.resample`):

- volume: the whole input is raised to an RMS of -30 dBFS (full scale = 1.0), never lowered;
  silence stays as it is. Resemblyzer's preprocessing then drops long pauses with webrtcvad (30 ms
  frames, aggressiveness 3): that trimming is NOT done here; trim silence before calling
  (:func:`SpeakerEncoder.embed_utterance` of speech with long pauses differs from Resemblyzer's
  ``preprocess_wav`` + ``embed_utterance`` by what the pauses contribute);
- features: power mel spectrogram (not logarithmic) as ``librosa.feature.melspectrogram`` gives it
  with Resemblyzer's settings: 25 ms periodic Hann windows (400 samples) every 10 ms (160), a
  400-point FFT, ``center=True`` with zero padding of 200 samples at both ends (librosa >= 0.10's
  default ``pad_mode="constant"``; librosa 0.9, which Resemblyzer also accepts, padded by
  reflection: only the frames whose window reaches past either end, two or three at each,
  differ), ``|X|^2``, 40 Slaney mel bands from 0 to
  8 kHz with Slaney area normalisation (Slaney 1998, Auditory Toolbox: linear below 1 kHz at 200/3 Hz
  per mel, logarithmic above at ln(6.4)/27 per mel; each triangle scaled by 2 / its width in Hz).
  ``frames = 1 + samples // 160``; frame ``t`` is centred on sample ``160 t``;
- network: a 3-layer LSTM of 256 (:func:`roomtone.models.layers.lstm_scan`) over the frames, the
  last layer's final hidden state through a linear 256 -> 256, ReLU, and L2 normalisation;
- an utterance: partial windows of 160 frames (1.6 s) starting every ``round(16000 / 1.3 / 160) =
  77`` frames (1.3 partials per second), covering the input (zero-extended at the end); the last
  partial is dropped when it holds less than 75 % of real samples, unless it is the only one; the
  partials' embeddings are averaged and the mean is L2-normalised again;
- windows (for diarization, :func:`SpeakerEncoder.embed_windows`): the same network on windows of
  ``window_s`` every ``hop_s`` seconds, each window's frames cut from the whole signal's mel
  spectrogram (as Resemblyzer cuts its partials), a batch of windows at a time (bounded memory).

Shape: wav (samples,) float at any rate -> (256,) float32 unit vector; mel (batch, frames, 40)
float32 -> (batch, 256).
"""

import importlib.util
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from roomtone.models.layers import lstm_scan
from roomtone.models.weights import ModelFileError

NAME = "resemblyzer-ge2e"
SAMPLE_RATE = 16000  # Hz
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
HIDDEN = 256
LAYERS = 3
EMBEDDING = 256
PARTIAL_FRAMES = 160  # 1.6 s
PARTIALS_PER_S = 1.3
MIN_COVERAGE = 0.75
TARGET_DBFS = -30.0
MIN_INPUT_S = 0.01  # one hop: less than that has no speaker in it
BATCH = 32  # windows per network call: bounds the memory of long inputs
_WHEEL_ENTRY = "resemblyzer/pretrained.pt"
INSTALL_HINT = ("pip install --no-deps Resemblyzer==0.1.4 (or pip download --no-deps Resemblyzer==0.1.4 and pass "
                "the .whl file)")

_HIGHEST = jax.lax.Precision.HIGHEST  # float32 products on GPUs too (not TF32)

# ---------------------------------------------------------------------------------------------
# finding and reading the weights


def installed_weights():
    """``pretrained.pt`` of an installed ``resemblyzer`` package (found with importlib, never
    imported), or None."""
    try:
        spec = importlib.util.find_spec("resemblyzer")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [os.path.dirname(spec.origin)]
    for folder in folders:
        path = os.path.join(folder, "pretrained.pt")
        if os.path.isfile(path):
            return path
    return None


def find_weights(path=None):
    """Where the weights are: ``path`` (the Resemblyzer wheel ``.whl``, or a ``pretrained.pt``), or,
    with None, the installed package's ``pretrained.pt``. Raises
    :class:`~roomtone.errors.ModelUnavailableError` (with the ``pip install`` that fixes it) when
    nothing is installed, :class:`ModelFileError` for a path that is missing or is not the wheel."""
    from roomtone.errors import ModelUnavailableError

    if path is None:
        found = installed_weights()
        if found is None:
            raise ModelUnavailableError(f"the speaker encoder needs the Resemblyzer wheel's weights: {INSTALL_HINT}")
        return found
    path = os.fspath(path)
    if os.path.isdir(path):
        for sub in ("pretrained.pt", os.path.join("resemblyzer", "pretrained.pt")):
            if os.path.isfile(os.path.join(path, sub)):
                return os.path.join(path, sub)
        raise ModelFileError(f"{path}: holds no pretrained.pt (the resemblyzer package folder)")
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such file or folder")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as wheel:
            if _WHEEL_ENTRY not in wheel.namelist():
                raise ModelFileError(f"{path}: not the Resemblyzer wheel (no {_WHEEL_ENTRY})")
    return path


def read_weights(path=None):
    """``(state dict {torch name: numpy array}, source)`` of the weights :func:`find_weights` finds."""
    from roomtone.separate.torchzip import load_checkpoint

    source = find_weights(path)
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as wheel:
            blob = wheel.read(_WHEEL_ENTRY)
        return load_checkpoint(blob, where=f"{source}: {_WHEEL_ENTRY}", entry="model_state"), source
    return load_checkpoint(source, where=source, entry="model_state"), source


def convert(state, *, where="checkpoint"):
    """Resemblyzer's ``VoiceEncoder`` state dict (``lstm.weight_ih_l0``...) as our flat parameters
    (``lstm/0/w_i``...): weights transposed to (in, out), the two LSTM biases summed; the GE2E loss's
    ``similarity_weight``/``similarity_bias`` are left out (training only). Raises
    :class:`ModelFileError` naming a missing or misshapen tensor."""

    def get(key, shape):
        if key not in state:
            raise ModelFileError(f"{where}: lacks {key} (not a Resemblyzer voice encoder checkpoint)")
        value = np.asarray(state[key], np.float32)
        if tuple(value.shape) != tuple(shape):
            raise ModelFileError(f"{where}: {key} has shape {value.shape}, the GE2E encoder needs {tuple(shape)}")
        return value

    out = {}
    for k in range(LAYERS):
        inputs = N_MELS if k == 0 else HIDDEN
        out[f"lstm/{k}/w_i"] = np.ascontiguousarray(get(f"lstm.weight_ih_l{k}", (4 * HIDDEN, inputs)).T)
        out[f"lstm/{k}/w_h"] = np.ascontiguousarray(get(f"lstm.weight_hh_l{k}", (4 * HIDDEN, HIDDEN)).T)
        out[f"lstm/{k}/b"] = get(f"lstm.bias_ih_l{k}", (4 * HIDDEN,)) + get(f"lstm.bias_hh_l{k}", (4 * HIDDEN,))
    out["linear/kernel"] = np.ascontiguousarray(get("linear.weight", (EMBEDDING, HIDDEN)).T)
    out["linear/bias"] = get("linear.bias", (EMBEDDING,))
    return out


# ---------------------------------------------------------------------------------------------
# features


def hz_to_mel(hz):
    """Slaney's mel scale (Auditory Toolbox, as librosa's ``htk=False``): linear below 1 kHz, 200/3 Hz
    per mel; logarithmic above, ln(6.4)/27 per mel (1 kHz is mel 15)."""
    hz = np.asarray(hz, np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step, hz * 3.0 / 200.0)


def mel_to_hz(mel):
    """The inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(log_step * (mel - 15.0)), mel * 200.0 / 3.0)


def mel_filterbank(*, sample_rate=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin_hz=0.0, fmax_hz=None):
    """Triangular mel filters on the ``n_fft // 2 + 1`` FFT bins: ``n_mels + 2`` edges equally spaced
    on :func:`hz_to_mel` from ``fmin_hz`` to ``fmax_hz`` (None: Nyquist), each triangle scaled by 2 /
    its width in Hz (Slaney's area normalisation), float32 as librosa keeps them.

    Shape: -> (n_mels, n_fft // 2 + 1)."""
    fmax_hz = sample_rate / 2.0 if fmax_hz is None else float(fmax_hz)
    bins_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(fmin_hz), hz_to_mel(fmax_hz), n_mels + 2))
    lo, mid, hi = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bins_hz - lo) / (mid - lo)
    falling = (hi - bins_hz) / (hi - mid)
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (hi - lo))
    return weights.astype(np.float32)


_FILTERS = mel_filterbank()
_WINDOW = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann


def mel_span(wav, first, stop):
    """Mel frames ``first .. stop - 1`` of ``wav`` (16 kHz), the signal zero-extended on both sides
    (the frames of ``center=True`` with zero padding, at any offset). Shape: (samples,) -> (stop -
    first, 40) float32."""
    count = stop - first
    start = first * HOP - N_FFT // 2
    span = np.zeros((count - 1) * HOP + N_FFT, np.float64)
    lo, hi = max(start, 0), min(start + span.size, wav.size)
    if hi > lo:
        span[lo - start:hi - start] = wav[lo:hi]
    frames = np.lib.stride_tricks.sliding_window_view(span, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2
    return (power @ _FILTERS.T.astype(np.float64)).astype(np.float32)


def frame_count(samples):
    """Frames of ``samples`` samples at 16 kHz: ``1 + samples // 160``."""
    return 1 + int(samples) // HOP


def partial_starts(samples, *, partials_per_s=PARTIALS_PER_S, min_coverage=MIN_COVERAGE):
    """First frames of the 160-frame partials of an utterance of ``samples`` samples (16 kHz): one
    every ``round(16000 / partials_per_s / 160)`` frames, covering every frame; the last dropped when
    less than ``min_coverage`` of its samples are real, unless it is the only one."""
    step = int(np.round(SAMPLE_RATE / partials_per_s / HOP))
    if not 0 < step <= PARTIAL_FRAMES:
        low = SAMPLE_RATE / (HOP * PARTIAL_FRAMES)
        raise ValueError(f"partials_per_s={partials_per_s} gives a step of {step} frames; it must be at least "
                         f"{low} per s (partials of 1.6 s must cover the input) and at most 200 per s")
    if not 0.0 < min_coverage <= 1.0:
        raise ValueError(f"min_coverage={min_coverage} is outside (0, 1]")
    starts = list(range(0, max(1, frame_count(samples) - PARTIAL_FRAMES + step + 1), step))
    coverage = (samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < min_coverage and len(starts) > 1:
        starts.pop()
    return np.array(starts, np.int64)


def volume_normalized(wav, *, target_dbfs=TARGET_DBFS):
    """``wav`` raised to an RMS of ``target_dbfs`` (full scale 1.0) when quieter, else as it is;
    silence stays silence."""
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if wav.size else 0.0
    if rms <= 0.0:
        return wav
    gain_db = target_dbfs - 20.0 * np.log10(rms)
    return wav if gain_db <= 0.0 else (wav * 10.0 ** (gain_db / 20.0)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# the network


def _zeros(*shape):
    return jnp.zeros(shape, jnp.float32)


class LSTMLayer(nnx.Module):
    """One LSTM layer: ``w_i`` (in, 4H), ``w_h`` (H, 4H), ``b`` (4H,) = PyTorch's ``bias_ih + bias_hh``,
    gates ``i, f, g, o``."""

    def __init__(self, inputs, hidden):
        self.w_i = nnx.Param(_zeros(inputs, 4 * hidden))
        self.w_h = nnx.Param(_zeros(hidden, 4 * hidden))
        self.b = nnx.Param(_zeros(4 * hidden))

    def __call__(self, x):
        """Shape: (batch, frames, in) -> (outputs (batch, frames, H), last hidden state (batch, H))."""
        x_proj = jnp.matmul(x, self.w_i[...], precision=_HIGHEST) + self.b[...]
        outputs, (h, _) = lstm_scan(x_proj, self.w_h[...], precision=_HIGHEST)
        return outputs, h


class GE2EEncoder(nnx.Module):
    """The LSTM stack, the linear layer, ReLU and L2 normalisation (an all-zero ReLU output, which
    the trained weights never give on speech, comes back as zeros rather than NaN).

    Shape: mel (batch, frames, 40) -> (batch, 256) unit vectors."""

    def __init__(self, n_mels=N_MELS, hidden=HIDDEN, layers=LAYERS, embedding=EMBEDDING):
        self.lstm = nnx.List([LSTMLayer(n_mels if k == 0 else hidden, hidden) for k in range(layers)])
        self.linear = nnx.Linear(hidden, embedding, rngs=nnx.Rngs(0), precision=_HIGHEST)

    def __call__(self, mel):
        x = mel
        for layer in self.lstm:
            x, h = layer(x)
        raw = jax.nn.relu(self.linear(h))
        norm = jnp.linalg.norm(raw, axis=-1, keepdims=True)
        return raw / jnp.maximum(norm, jnp.finfo(raw.dtype).tiny)


def build_model(state, *, where="checkpoint"):
    """The :class:`GE2EEncoder` filled with a Resemblyzer state dict (numpy arrays)."""
    from roomtone.models.weights import build

    return build(GE2EEncoder, convert(state, where=where), path=where)


# ---------------------------------------------------------------------------------------------
# the encoder


def mono_16k(wav, sample_rate, what):
    """``wav`` checked (mono, finite, at least 10 ms) and resampled to 16 kHz. Shape: (samples,) or
    (1, samples) -> (samples at 16 kHz,) float32."""
    from roomtone.audio import too_short, validate_audio
    from roomtone.errors import InvalidAudioError
    from roomtone.resample import resample

    audio = validate_audio(wav, sample_rate, name="wav")
    if audio.shape[0] != 1:
        raise InvalidAudioError(f"wav has {audio.shape[0]} channels; the speaker encoder takes one (samples,): "
                                "mix down or pick a channel")
    if audio.shape[1] < MIN_INPUT_S * int(sample_rate):
        raise too_short(audio.shape[1], sample_rate, MIN_INPUT_S, what)
    return resample(audio, int(sample_rate), SAMPLE_RATE)[0]


def _check_seconds(name, value, low, high):
    if not low <= float(value) <= high:
        raise ValueError(f"{name}={value} s is outside {low}..{high} s")
    return float(value)


class SpeakerEncoder:
    """Resemblyzer's GE2E voice encoder (see the module), jitted per window length and batch size
    (powers of two up to ``batch``)."""

    name = NAME
    sample_rate = SAMPLE_RATE
    embedding_size = EMBEDDING

    def __init__(self, model, *, source=None, batch=BATCH):
        self.source = source
        self.batch = max(1, int(batch))
        self._graphdef, self._state = nnx.split(model)
        self._run = jax.jit(self._forward)

    def __repr__(self):
        return f"SpeakerEncoder(name={self.name!r}, source={self.source!r}, batch={self.batch})"

    def _forward(self, state, mel):
        return nnx.merge(self._graphdef, state)(mel)

    def embed_frames(self, mel):
        """Unit embeddings of mel spectrograms (:meth:`mel_frames`), ``batch`` at a time.

        Shape: (batch, frames, 40) -> (batch, 256), or (frames, 40) -> (256,); float32."""
        mel = np.asarray(mel, np.float32)
        single = mel.ndim == 2
        mel = mel[None] if single else mel
        if mel.ndim != 3 or mel.shape[-1] != N_MELS or mel.shape[1] < 1:
            raise ValueError(f"mel must have shape (batch, frames, {N_MELS}); got {mel.shape}")
        out = np.empty((mel.shape[0], EMBEDDING), np.float32)
        for first in range(0, mel.shape[0], self.batch):
            chunk = mel[first:first + self.batch]
            size = min(self.batch, 1 << (len(chunk) - 1).bit_length())  # a few compiled batch sizes
            padded = np.zeros((size,) + chunk.shape[1:], np.float32)
            padded[:len(chunk)] = chunk
            out[first:first + len(chunk)] = np.asarray(self._run(self._state, jnp.asarray(padded)))[:len(chunk)]
        return out[0] if single else out

    def mel_frames(self, wav, sample_rate=SAMPLE_RATE):
        """The encoder's power mel spectrogram of ``wav`` (resampled to 16 kHz; no volume change).

        Shape: (samples,) -> (1 + samples_16k // 160, 40) float32."""
        wav = mono_16k(wav, sample_rate, "a mel spectrogram")
        return mel_span(wav, 0, frame_count(wav.size))

    def _embed_at(self, wav, starts, frames):
        """Embeddings of the ``frames``-frame windows starting at the frames ``starts`` of ``wav``
        (16 kHz), one mel span per batch of windows. Shape: -> (len(starts), 256)."""
        out = np.empty((len(starts), EMBEDDING), np.float32)
        for first in range(0, len(starts), self.batch):
            group = starts[first:first + self.batch]
            mel = mel_span(wav, int(group[0]), int(group[-1]) + frames)
            windows = np.stack([mel[s - group[0]:s - group[0] + frames] for s in group])
            out[first:first + len(group)] = self.embed_frames(windows)
        return out

    def embed_utterance(self, wav, sample_rate=SAMPLE_RATE, *, partials_per_s=PARTIALS_PER_S,
                        min_coverage=MIN_COVERAGE):
        """The speaker embedding of one utterance: volume normalised, the partials' embeddings
        averaged and renormalised (see the module; no silence trimming).

        Shape: (samples,) at ``sample_rate`` -> (256,) float32 unit vector."""
        wav = volume_normalized(mono_16k(wav, sample_rate, "a speaker embedding"))
        partials = self._embed_at(wav, partial_starts(wav.size, partials_per_s=partials_per_s,
                                                      min_coverage=min_coverage), PARTIAL_FRAMES)
        mean = partials.mean(axis=0)
        norm = float(np.linalg.norm(mean))
        return (mean / norm if norm > 0 else mean).astype(np.float32)

    def embed_windows(self, wav, sample_rate=SAMPLE_RATE, *, window_s=1.5, hop_s=0.75):
        """Embeddings of windows of ``window_s`` every ``hop_s`` seconds (rounded to 10 ms frames)
        over the volume-normalised input, the last one reaching its end (zero-extended), at least
        one; for diarization. Memory: one batch of windows at a time, whatever the length.

        Shape: (samples,) at ``sample_rate`` -> (starts_s (n,) float64, embeddings (n, 256) float32)."""
        window = int(round(_check_seconds("window_s", window_s, 0.1, 10.0) * SAMPLE_RATE / HOP))
        hop = int(round(_check_seconds("hop_s", hop_s, 0.01, 10.0) * SAMPLE_RATE / HOP))
        wav = volume_normalized(mono_16k(wav, sample_rate, "speaker windows"))
        count = 1 + max(0, -(-(frame_count(wav.size) - window) // hop))
        starts = np.arange(count, dtype=np.int64) * hop
        return starts * (HOP / SAMPLE_RATE), self._embed_at(wav, starts, window)


def load_encoder(path=None, *, batch=BATCH):
    """The :class:`SpeakerEncoder` with the weights :func:`find_weights` finds from ``path``."""
    state, source = read_weights(path)
    return SpeakerEncoder(build_model(state, where=str(source)), source=str(source), batch=batch)
