"""Independent reference meters for tests and benchmarks (not used by any job).

- :func:`libebur128`: integrated loudness and true peak by libebur128 (PyPI ``pyebur128``), the
  independent meter DESIGN.md names for "hits the target";
- :func:`true_peak_16x`: a true peak far finer than the 4x of BS.1770-4 Annex 2, from 16x
  interpolation with a long Kaiser-windowed sinc.

They need the ``test`` (or ``bench``) extra: ``pip install 'roomtone[test]'``; the imports are
inside the functions, so importing this module costs nothing.

Shape: audio (channels, samples), any float dtype.
"""

import math

import numpy as np

# 16x reference interpolator: Kaiser-windowed sinc over +-32 input samples, beta 12 (about -120 dB
# stop band, flat to about 19 kHz at 44.1 kHz). resample_poly's default filter (+-10 samples,
# beta 5) droops below Nyquist and would under-read treble-heavy peaks.
TP16_FACTOR = 16
TP16_HALF_TAPS = 32
TP16_BETA = 12.0
_TP16_BLOCK = 1 << 18  # input samples per block (blocks overlap by the filter's half length)
_TP16_FILTER = None


def _require(module):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"roomtone.testing needs {module} (pip install 'roomtone[test]')") from None


def _db(linear):
    return 20.0 * math.log10(linear) if linear > 0 else float("-inf")


def libebur128(audio, sample_rate):
    """``(integrated LUFS, true peak dBTP)`` of ``audio`` by libebur128.

    Six channels are read as 5.1 (L R C LFE Ls Rs, the LFE left out, BS.1770-4 Table 3), as
    roomtone's meter reads them; other counts use libebur128's defaults.
    """
    pyebur128 = _require("pyebur128")
    audio = np.asarray(audio)
    frames = np.ascontiguousarray(audio.T, dtype=np.float64)
    mode = pyebur128.MeasurementMode.MODE_I | pyebur128.MeasurementMode.MODE_TRUE_PEAK
    state = pyebur128.R128State(audio.shape[0], int(sample_rate), mode)
    if audio.shape[0] == 6:
        kinds = (pyebur128.ChannelType.LEFT, pyebur128.ChannelType.RIGHT, pyebur128.ChannelType.CENTER,
                 pyebur128.ChannelType.UNUSED, pyebur128.ChannelType.LEFT_SURROUND,
                 pyebur128.ChannelType.RIGHT_SURROUND)
        for index, kind in enumerate(kinds):
            state.set_channel(index, kind)
    state.add_frames(frames.ravel(), frames.shape[0])
    peak = max(pyebur128.get_true_peak(state, c) for c in range(audio.shape[0]))
    return float(pyebur128.get_loudness_global(state)), _db(peak)


def _tp16_filter():
    global _TP16_FILTER
    if _TP16_FILTER is None:
        signal = _require("scipy.signal")
        n = 2 * TP16_FACTOR * TP16_HALF_TAPS + 1
        _TP16_FILTER = signal.firwin(n, 1.0 / TP16_FACTOR, window=("kaiser", TP16_BETA))
    return _TP16_FILTER


def true_peak_16x(audio):
    """Max ``|x|`` in dBTP of ``audio`` interpolated 16x (and of the samples themselves), in blocks
    that overlap by the filter's half length, so the result equals a one-shot computation."""
    signal = _require("scipy.signal")
    audio = np.asarray(audio)
    taps = _tp16_filter()
    n = audio.shape[1]
    pad = TP16_HALF_TAPS + 2
    best = float(np.abs(audio).max()) if audio.size else 0.0
    for row in audio:
        x = np.asarray(row, dtype=np.float64)
        for start in range(0, n, _TP16_BLOCK):
            lo, hi = max(0, start - pad), min(n, start + _TP16_BLOCK + pad)
            best = max(best, float(np.abs(signal.resample_poly(x[lo:hi], TP16_FACTOR, 1, window=taps)).max()))
    return _db(best)
