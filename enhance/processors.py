"""The enhance job's own processor: the denoiser stage, a model (:mod:`roomtone.enhance.denoisers`)
run at its native rate inside a signal at any rate. The other enhance stages (high-pass, hum and
click repair, de-esser, leveler) are general processors of :mod:`roomtone.plugins`.

Memory: the stage runs in place (:meth:`Denoise.run_in_place`), writing its output over the signal
with a bounded scratch, whatever the length, giving the same samples as a whole-signal run; it
goes through the signal in blocks of :data:`BLOCK_S` seconds (see :class:`Denoise`).

Shape: audio (channels, samples) float32 in and out, same shape.
"""

import dataclasses

import numpy as np

from roomtone import filters
from roomtone.enhance.denoisers import get_denoiser
from roomtone.kernels.biquad import sos_filter_stream
from roomtone.kernels.enhance import apply_block_gains
from roomtone.processor import Processor, param, register
from roomtone.resample import resample_pieces, resampled_length


# ------------------------------------------------------------------------------------ denoise

HIGH_BAND_BLOCK_S = 0.02
BLOCK_S = 30.0  # the denoiser stage's passes through a signal at another rate than the model's, in seconds


@register("denoise")
@dataclasses.dataclass(frozen=True)
class Denoise(Processor):
    """The denoiser stage: the model named ``model`` (:mod:`roomtone.enhance.denoisers`;
    ``"auto"``: the best available) on every channel, at its native rate (resampled there and
    back with :func:`roomtone.resample.resample`). Where the model's rate is below the input's, the
    band above its Nyquist frequency is kept from the input (input minus its round trip through
    the model's rate), scaled every 20 ms by the model's own attenuation of its top octave
    (clipped to the ``atten_lim_db`` floor), so the output keeps the full band and noise up there
    is reduced alike. ``atten_lim_db`` limits the attenuation (100: unlimited).

    In place (:meth:`run_in_place`), at another rate than the model's: the signal is resampled to
    the model's rate in blocks of :data:`BLOCK_S` seconds (a stream, bit for bit the one-shot
    resampler), the only whole copy the stage keeps (a third of the input at 48 kHz for a 16 kHz
    model); the band above is written over the input (which nothing needs any more), the model
    denoises its copy in place (``denoiser.denoise_in_place`` where it has one, else one call on the
    whole), and the result is resampled back in blocks and added over the band above. At the
    model's own rate the model works in place on the signal itself. The output is the whole-signal
    computation's: the same samples, whatever the block size."""

    model: str = "auto"
    atten_lim_db: float = param(100.0, 0.0, 100.0, "dB")

    @property
    def bypassed(self):
        return self.atten_lim_db == 0.0

    def run_in_place(self, audio, sample_rate, *, block_samples=None, progress=None):
        """As :meth:`Processor.run_in_place`; ``block_samples``: the passes' block (default
        :data:`BLOCK_S` seconds; the output does not depend on it); ``progress``: optional
        ``callable(done, total)``, handed to the denoiser (called per block or segment by the
        ones that take it: :func:`_denoise_over`)."""
        denoiser = get_denoiser(self.model)
        native = denoiser.sample_rate
        limit = None if self.atten_lim_db >= 100.0 else float(self.atten_lim_db)
        info = {"model": denoiser.name, "model_sample_rate": native, "atten_lim_db": self.atten_lim_db,
                "band_kept_above_hz": None, "high_band_gain_db_mean": None}
        if native is None:
            _denoise_over(denoiser, audio, limit, progress, sample_rate=sample_rate)
            return info
        native = int(native)
        if native == sample_rate:
            _denoise_over(denoiser, audio, limit, progress)
            _release_model_scratch(audio, sample_rate)
            return info
        block = int(round(BLOCK_S * sample_rate)) if block_samples is None else max(1, int(block_samples))
        low_block = max(1, block * native // sample_rate)
        # the way up to the model's rate: the model's own resampler where it has one (dfn3: the reference
        # runtime's, issue 24 §6), else soxr; the way back is always soxr
        way_in = getattr(denoiser, "input_resample_pieces", None) if native > sample_rate else None
        low = _resampled(audio, sample_rate, native, block, pieces=way_in)
        if native > sample_rate:
            _denoise_over(denoiser, low, limit, progress)
            _resample_over(low, native, sample_rate, audio, low_block, _assign)
            del low
            _release_model_scratch(audio, sample_rate)
            return info
        # the band above the model's Nyquist frequency, from the input: the input less its round trip
        # through the model's rate, written over the input
        e_in = _top_octave_energies(low, native, low_block)
        _resample_over(low, native, sample_rate, audio, low_block, _subtract)
        _denoise_over(denoiser, low, limit, progress)
        gains_db = _top_octave_gain_db(e_in, _top_octave_energies(low, native, low_block), limit)
        hop = max(1, int(round(HIGH_BAND_BLOCK_S * sample_rate)))

        def add_scaled_band(dest, start, stop, cleaned):  # dest: the band above; out = cleaned + gains * band
            band = np.ascontiguousarray(dest[:, start:stop])
            apply_block_gains(band, gains_db, float(hop), 0.5 * hop - start, band)
            band += cleaned
            dest[:, start:stop] = band

        _resample_over(low, native, sample_rate, audio, low_block, add_scaled_band)
        del low
        _release_model_scratch(audio, sample_rate)
        info["band_kept_above_hz"] = native / 2
        info["high_band_gain_db_mean"] = round(float(np.mean(gains_db)), 2) if gains_db.size else 0.0
        return info


LONG_S = 60.0  # from this length on, the model's freed scratch is handed back after the stage


def _release_model_scratch(audio, sample_rate):
    """After a model ran over a long signal, hand the freed scratch its threads leave in the heap
    back to the system (:func:`roomtone.models.runtime.release_free_memory`), so that it does not
    add to the stages after this one."""
    if audio.shape[1] >= LONG_S * sample_rate:
        from roomtone.models.runtime import release_free_memory

        release_free_memory()


def _denoise_over(denoiser, audio, limit, progress=None, **kwargs):
    """``denoiser`` on ``audio`` (float32 (channels, samples) at its rate), the output written over
    it: in place where the denoiser can (``denoise_in_place``), else from one whole call.
    ``progress`` goes to the denoiser where it takes a ``progress`` keyword (optional in the
    registry's protocol, :mod:`roomtone.enhance.denoisers`)."""
    in_place = getattr(denoiser, "denoise_in_place", None)
    call = in_place if in_place is not None else denoiser
    if progress is not None and _takes_progress(call):
        kwargs["progress"] = progress
    if in_place is not None:
        in_place(audio, limit, **kwargs)
    else:
        audio[:] = np.asarray(denoiser(audio, limit, **kwargs), dtype=np.float32)


def _takes_progress(call):
    """Whether ``call`` has a ``progress`` parameter (or takes any keyword)."""
    import inspect

    try:
        params = inspect.signature(call).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "progress" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _resampled(audio, sample_rate, rate, block, pieces=None):
    """``audio`` resampled to ``rate`` in blocks of ``block`` input samples (the same samples as
    one :func:`roomtone.resample.resample` call). Shape: (channels, samples) -> (channels,
    resampled length) float32."""
    out = np.empty((audio.shape[0], resampled_length(audio.shape[1], sample_rate, rate)), np.float32)
    filled = 0
    for start, piece in (pieces or resample_pieces)(audio, sample_rate, rate, block_samples=block):
        out[:, start:start + piece.shape[1]] = piece
        filled = start + piece.shape[1]
    if filled != out.shape[1]:  # libsoxr's count is resampled_length's
        raise RuntimeError(f"resampling {audio.shape[1]} samples gave {filled}, not {out.shape[1]}")
    return out


def _resample_over(low, rate, sample_rate, dest, block, combine):
    """``low`` resampled from ``rate`` to ``sample_rate`` in blocks of ``block`` samples, each piece
    handed with its place to ``combine(dest, start, stop, piece)``, cut or padded with zeros to
    ``dest``'s length (what a whole-signal result is fitted to)."""
    n = dest.shape[1]
    filled = 0
    for start, piece in resample_pieces(low, rate, sample_rate, block_samples=block):
        stop = min(n, start + piece.shape[1])
        if stop > start:
            combine(dest, start, stop, piece[:, :stop - start])
        filled = max(filled, stop)
    if filled < n:
        combine(dest, filled, n, np.zeros((dest.shape[0], n - filled), np.float32))


def _assign(dest, start, stop, piece):
    dest[:, start:stop] = piece


def _subtract(dest, start, stop, piece):
    dest[:, start:stop] -= piece


def _top_octave_energies(audio, sample_rate, block):
    """Per 20 ms block, the power in ``audio``'s top octave (above a quarter of its rate: a
    4th-order Butterworth high-pass), channels together, computed ``block`` samples (rounded to
    whole 20 ms blocks) at a time with the filter's state carried. Shape: (blocks,) float64."""
    sos = filters.butterworth2_sos(0.25 * sample_rate, sample_rate, "high")
    sos = np.concatenate([sos, sos])
    hop = max(1, int(round(HIGH_BAND_BLOCK_S * sample_rate)))
    block = max(1, block // hop) * hop
    state = np.zeros((audio.shape[0], sos.shape[0], 2))
    energies = [np.zeros(0)]
    for start in range(0, audio.shape[1], block):
        piece = np.ascontiguousarray(audio[:, start:start + block], dtype=np.float32)
        top = sos_filter_stream(piece, sos, state, np.empty(piece.shape, dtype=np.float32))
        count = -(-top.shape[1] // hop)
        power = np.pad(top.astype(np.float64) ** 2, ((0, 0), (0, count * hop - top.shape[1])))
        energies.append(power.reshape(power.shape[0], count, hop).sum(axis=(0, 2)))
    return np.concatenate(energies)


def _top_octave_gain_db(e_in, e_out, limit_db):
    """Per 20 ms block, ``10 log10`` of the model's output over input power in its top octave
    (:func:`_top_octave_energies`), clipped to ``[-limit_db, 0]`` and smoothed over 3 blocks.
    Shape: (blocks,) float64 (one 0 dB block where there is none)."""
    if e_in.size == 0:
        return np.zeros(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gains = np.where(e_in > 0, 10.0 * np.log10(np.maximum(e_out, 1e-30) / np.maximum(e_in, 1e-30)), 0.0)
    floor = -100.0 if limit_db is None else -float(limit_db)
    gains = np.clip(gains, floor, 0.0)
    if gains.size >= 3:
        gains = np.convolve(np.pad(gains, 1, mode="edge"), np.ones(3) / 3.0, mode="valid")
    return np.ascontiguousarray(gains)
