"""Every numba kernel against a naive numpy / plain-Python oracle written here.

The oracles are deliberately slow and obvious (difference equations, explicit zero-stuffing and
``np.convolve``, ``min``/``mean`` over explicit slices); they never call scipy or a kernel's
``.py_func``. Sizes are small so numba compilation dominates the runtime.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from roomtone.kernels.biquad import sos_filter, sos_filter_backward, sos_filter_stream
from roomtone.kernels.dynamics import (box_mean_backward, limiter_gain, limiter_gain_held, limiter_gain_peak,
                                      sliding_max_forward)
from roomtone.kernels.loudness import loudness_pass, weighted_power, window_means
from roomtone.kernels.multiband import multiband_compress, static_gain_db
from roomtone.kernels.saturation import soft_clip, tanh_saturate_2x
from roomtone.kernels.truepeak import oversampled_peaks, true_peak_per_channel
from roomtone.filters import (
    allpass_lr4_sos,
    halfband_lowpass,
    k_weighting_sos,
    linkwitz_riley4_sos,
    meter_interpolator,
    peaking_sos,
    polyphase_interpolator,
    shelf_sos,
)

SAMPLE_RATES = [44100, 48000, 96000]


def _noise(channels, samples, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(rng.standard_normal((channels, samples)) * 0.3, dtype=dtype)


# --------------------------------------------------------------------------------------------------
# roomtone.kernels.biquad.sos_filter
# --------------------------------------------------------------------------------------------------


def oracle_sos_filter(x, sos):
    """Direct form I, one section after another:
    y[n] = b0 x[n] + b1 x[n-1] + b2 x[n-2] - a1 y[n-1] - a2 y[n-2]."""
    out = np.array(x, dtype=np.float64)
    for c in range(out.shape[0]):
        for b0, b1, b2, _a0, a1, a2 in sos:
            inp = out[c].copy()
            x1 = x2 = y1 = y2 = 0.0
            for i, v in enumerate(inp):
                y = b0 * v + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
                x2, x1 = x1, v
                y2, y1 = y1, y
                out[c, i] = y
    return out


def _random_stable_sos(sections, seed):
    """Sections with conjugate poles inside radius 0.95 and arbitrary zeros."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(sections):
        r, theta = rng.uniform(0.1, 0.95), rng.uniform(0.0, np.pi)
        b = rng.uniform(-1.0, 1.0, 3)
        rows.append([b[0], b[1], b[2], 1.0, -2.0 * r * math.cos(theta), r * r])
    return np.array(rows, dtype=np.float64)


SOS_DESIGNS = {
    "k_weighting": lambda fs: k_weighting_sos(fs),
    "peaking": lambda fs: peaking_sos(1000.0, 6.0, 0.7, fs),
    "low_shelf": lambda fs: shelf_sos(120.0, -4.0, fs, "low"),
    "high_shelf": lambda fs: shelf_sos(8000.0, 3.0, fs, "high"),
    "lr4_low": lambda fs: linkwitz_riley4_sos(250.0, fs, "low"),
    "allpass": lambda fs: allpass_lr4_sos(2000.0, fs),
    "random3": lambda fs: _random_stable_sos(3, seed=fs),
}


@pytest.mark.parametrize("design", sorted(SOS_DESIGNS))
@pytest.mark.parametrize("sample_rate", SAMPLE_RATES)
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sos_filter_matches_difference_equation(design, sample_rate, channels, dtype):
    sos = SOS_DESIGNS[design](sample_rate)
    x = _noise(channels, 300, dtype, seed=channels)
    x[:, 0] = 1.0  # an impulse at the start exercises the zero initial state
    got = sos_filter(x, sos, np.empty(x.shape))
    assert got.dtype == np.float64 and got.shape == x.shape
    np.testing.assert_allclose(got, oracle_sos_filter(x, sos), rtol=1e-9, atol=1e-12)
    single = sos_filter(x, sos, np.empty(x.shape, dtype=np.float32))
    np.testing.assert_array_equal(single, got.astype(np.float32))
    in_place = np.array(x, dtype=np.float64)
    sos_filter(in_place, sos, in_place)
    np.testing.assert_array_equal(in_place, got)


@pytest.mark.parametrize("design", ["k_weighting", "peaking", "random3"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sos_filter_stream_in_blocks_is_one_call(design, channels, dtype):
    sos = SOS_DESIGNS[design](48000)
    x = _noise(channels, 1000, dtype, seed=3)
    x[:, 0] = 1.0
    whole = sos_filter(x, sos, np.empty(x.shape))
    np.testing.assert_allclose(whole, oracle_sos_filter(x, sos), rtol=1e-9, atol=1e-12)
    state = np.zeros((channels, sos.shape[0], 2))
    parts = [sos_filter_stream(np.ascontiguousarray(x[:, a:b]), sos, state, np.empty((channels, b - a)))
             for a, b in ((0, 1), (1, 8), (8, 8), (8, 513), (513, 1000))]
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)
    in_place = x.copy()
    sos_filter_stream(in_place, sos, np.zeros((channels, sos.shape[0], 2)), in_place)
    np.testing.assert_array_equal(in_place, whole.astype(dtype))


@pytest.mark.parametrize("design", ["k_weighting", "lr4_low", "random3"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("samples", [0, 1, 2, 300])
def test_sos_filter_backward_is_the_reversed_signal_filtered(design, channels, samples):
    sos = SOS_DESIGNS[design](44100)
    x = _noise(channels, samples, np.float32, seed=4)
    want = oracle_sos_filter(x[:, ::-1], sos)[:, ::-1]
    got = sos_filter_backward(x, sos, np.empty(x.shape))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    reversed_then = sos_filter(np.ascontiguousarray(x[:, ::-1]), sos, np.empty(x.shape, dtype=np.float32))[:, ::-1]
    in_place = x.copy()
    sos_filter_backward(in_place, sos, in_place)
    np.testing.assert_array_equal(in_place, reversed_then)  # the same arithmetic, bit for bit


@pytest.mark.parametrize("samples", [0, 1, 2])
def test_sos_filter_tiny_buffers(samples):
    sos = k_weighting_sos(48000)
    x = _noise(2, samples)
    got = sos_filter(x, sos, np.empty(x.shape))
    assert got.shape == (2, samples)
    np.testing.assert_allclose(got, oracle_sos_filter(x, sos), rtol=1e-12, atol=0)


# --------------------------------------------------------------------------------------------------
# roomtone.kernels.loudness: weighted_power, window_means, loudness_pass
# --------------------------------------------------------------------------------------------------


def oracle_weighted_power(y, weights):
    e = np.zeros(y.shape[1])
    for c, g in enumerate(weights):
        e += g * y[c].astype(np.float64) ** 2
    return e


@pytest.mark.parametrize(
    "weights", [[1.0], [1.0, 1.0], [1.0, 1.0, 1.0, 0.0, 1.41, 1.41]], ids=["mono", "stereo", "5.1"]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("samples", [0, 1, 300, 1000])  # 1000: several blocks
def test_weighted_power_is_filter_then_weighted_power(weights, dtype, samples):
    sos = k_weighting_sos(48000)
    x = _noise(len(weights), samples, dtype, seed=len(weights))
    w = np.array(weights, dtype=np.float64)
    want = oracle_weighted_power(oracle_sos_filter(x, sos), w)
    np.testing.assert_allclose(weighted_power(x, sos, w), want, rtol=1e-9, atol=1e-15)


def oracle_window_means(e, window, hop):
    if len(e) < window:
        return np.zeros(0)
    count = (len(e) - window) // hop + 1
    return np.array([np.mean(e[k * hop : k * hop + window], dtype=np.float64) for k in range(count)])


@pytest.mark.parametrize(
    "samples, window, hop",
    [(100, 10, 1), (100, 10, 3), (100, 10, 10), (100, 7, 13), (100, 100, 1), (99, 100, 1),
     (0, 5, 1), (1, 1, 1), (5000, 400, 1), (5000, 400, 100)],
)
def test_window_means(samples, window, hop):
    rng = np.random.default_rng(samples + window + hop)
    e = rng.uniform(0.0, 2.0, samples)
    got = window_means(e, window, hop)
    want = oracle_window_means(e, window, hop)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("hop", [1, 7, 100])
def test_window_means_keeps_precision_after_loud_passage(hop):
    """Loud (1e6) then very quiet (1e-8) power: a plain running sum would be left with ~1e-10 of
    cancellation error, larger than the quiet windows themselves; the kernel's compensated sum
    must match the per-window float64 mean to 1e-9."""
    rng = np.random.default_rng(hop)
    e = np.concatenate([rng.uniform(1e5, 1e6, 3000), rng.uniform(0.5e-8, 1.5e-8, 3000)])
    window = 400
    got = window_means(e, window, hop)
    want = oracle_window_means(e, window, hop)
    assert got.shape == want.shape
    rel = np.abs(got - want) / want
    assert rel.max() < 1e-9, f"worst relative error {rel.max():.3g} at reading {rel.argmax()}"


@pytest.mark.parametrize(
    "weights", [[1.0], [1.0, 1.0], [1.0, 1.0, 1.0, 0.0, 1.41, 1.41]], ids=["mono", "stereo", "5.1"]
)
@pytest.mark.parametrize("with_gain", [False, True])
@pytest.mark.parametrize(
    "samples, window_m, window_s, hop", [(0, 4, 30, 1), (3, 4, 30, 1), (29, 4, 30, 2), (400, 40, 300, 10),
                                         (401, 40, 300, 7), (500, 300, 40, 25), (64, 1, 1, 1), (999, 40, 300, 10)],
)
@pytest.mark.parametrize("every_sample", [True, False])
def test_loudness_pass(weights, with_gain, samples, window_m, window_s, hop, every_sample):
    """One pass equals: filter, weighted power (times the gain first), then the window means of
    every hop-aligned window and the largest mean over windows starting at every sample. Without
    ``every_sample`` (windows whole multiples of the hop) the blocks come from per-hop sums and the
    maxima are not computed."""
    sos = k_weighting_sos(48000)
    w = np.array(weights, dtype=np.float64)
    x = _noise(len(weights), samples, np.float32, seed=samples)
    gain = np.linspace(0.2, 1.5, samples) if with_gain else np.zeros(0)
    scaled = x.astype(np.float64) * gain if with_gain else x
    power = oracle_weighted_power(oracle_sos_filter(scaled, sos), w)
    blocks_m, blocks_s, max_m, max_s = loudness_pass(x, sos, w, gain, window_m, window_s, hop, every_sample)
    hop_sums = not every_sample and window_m % hop == 0 and window_s % hop == 0
    for got, window, got_max in ((blocks_m, window_m, max_m), (blocks_s, window_s, max_s)):
        want = oracle_window_means(power, window, hop)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-300)
        every = oracle_window_means(power, window, 1)
        if hop_sums:
            assert got_max == -1.0
        elif every.size:
            assert got_max == pytest.approx(every.max(), rel=1e-9)
        else:
            assert got_max == -1.0


def test_loudness_pass_keeps_precision_after_loud_passage():
    """As for window_means: loud then very quiet; the compensated running sums keep every quiet
    window's mean to 1e-9 relative."""
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.uniform(-1e3, 1e3, 3000), rng.uniform(-1e-4, 1e-4, 3000)])[None]
    one = np.array([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])  # identity section: power = x^2
    blocks_m, _, _, _ = loudness_pass(x, one, np.ones(1), np.zeros(0), 400, 400, 1)
    want = oracle_window_means(x[0] ** 2, 400, 1)
    assert (np.abs(blocks_m - want) / want).max() < 1e-9


# --------------------------------------------------------------------------------------------------
# roomtone.kernels.truepeak
# --------------------------------------------------------------------------------------------------


def prototype_from_phases(phases):
    """Undo the polyphase split: branch p, tap t is prototype tap t*P + p (zero padding included)."""
    return phases.T.reshape(-1)


def oracle_interpolated(row, phases):
    """Zero-stuff by P, convolve with the prototype: the full P-times interpolated sequence.

    Output index m = i*P + p lies at input time i + p/P (before removing the filter delay).
    """
    n_ph = phases.shape[0]
    up = np.zeros(len(row) * n_ph)
    up[::n_ph] = row
    return np.convolve(up, prototype_from_phases(phases))


def oracle_true_peak(x, phases):
    out = np.zeros(x.shape[0])
    for c, row in enumerate(x.astype(np.float64)):
        interp = oracle_interpolated(row, phases) if len(row) else np.zeros(0)
        out[c] = max(np.abs(interp).max(initial=0.0), np.abs(row).max(initial=0.0))
    return out


def oracle_oversampled_peaks(x, phases, refine=False):
    """Each interpolated point credited to the input sample nearest its (delay-compensated) time;
    with ``refine``, each local maximum of the interpolated magnitude (strictly above its left
    neighbour, at least its right one) also credits the vertex of the parabola through the three."""
    n_ph, n_tap = phases.shape
    delay = (n_ph * n_tap - 1) / (2.0 * n_ph)
    n_ch, n = x.shape
    out = np.abs(x.astype(np.float64))
    for c in range(n_ch):
        interp = np.abs(oracle_interpolated(x[c].astype(np.float64), phases))
        nearest = []
        for m, v in enumerate(interp):
            i, p = divmod(m, n_ph)
            k = min(max(int(math.floor(i - delay + p / n_ph + 0.5)), 0), n - 1)
            nearest.append(k)
            out[c, k] = max(out[c, k], v)
        if refine:
            padded = np.concatenate([[0.0, 0.0], interp])  # the kernel starts from two zero points
            for m in range(len(interp) - 1):
                left, mid, right = padded[m + 1], padded[m + 2], interp[m + 1]
                denom = left - 2.0 * mid + right
                if mid > left and mid >= right and denom < 0.0:
                    vertex = mid - (left - right) ** 2 / (8.0 * denom)
                    out[c, nearest[m]] = max(out[c, nearest[m]], vertex)
    return out.astype(np.float32)


def _random_phases(factor, taps, seed):
    return np.random.default_rng(seed).uniform(-0.5, 1.0, (factor, taps))


PHASE_SETS = {
    "meter_4x": lambda: meter_interpolator(4),  # 49 taps: the last branch is zero-padded
    "meter_2x": lambda: meter_interpolator(2),
    "limiter_4x12": lambda: polyphase_interpolator(4),
    "limiter_2x12": lambda: polyphase_interpolator(2),
    "1x12": lambda: polyphase_interpolator(1),
    "random_3x5": lambda: _random_phases(3, 5, seed=1),
}


@pytest.mark.parametrize("phase_set", sorted(PHASE_SETS))
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("samples", [0, 200, 17000])  # 17000: three work blocks
def test_true_peak_per_channel(phase_set, channels, dtype, samples):
    phases = PHASE_SETS[phase_set]()
    x = _noise(channels, samples, dtype, seed=channels)
    got = true_peak_per_channel(x, phases)
    np.testing.assert_allclose(got, oracle_true_peak(x, phases), rtol=1e-12)


@pytest.mark.parametrize("phase_set", sorted(PHASE_SETS))
@pytest.mark.parametrize("level_db", [-60.0, -6.0, -1.0])
def test_true_peak_per_channel_quiet_blocks_and_one_intersample_peak(phase_set, level_db):
    """The meter skips blocks that cannot reach the sample peak: an inter-sample peak above every
    sample, in one block among quiet ones, and a louder sample elsewhere, still read exactly."""
    phases = PHASE_SETS[phase_set]()
    n = 40000  # many meter blocks
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, n)) * 10.0 ** (level_db / 20.0) * 0.1
    k = np.arange(64)
    x[0, 20000:20064] = 0.7 * np.sin(np.pi / 2 * k + np.pi / 4)  # fs/4 at 45 deg: true peak 0.7, samples 0.49
    x[0, 5000] = 0.6
    x[1, 33333] = -0.8
    x = np.ascontiguousarray(x, dtype=np.float32)
    np.testing.assert_allclose(true_peak_per_channel(x, phases), oracle_true_peak(x, phases), rtol=1e-12)


@pytest.mark.parametrize("phase_set", sorted(PHASE_SETS))
@pytest.mark.parametrize("samples", [0, 1, 200, 17000])
def test_true_peak_per_channel_of_a_gained_signal(phase_set, samples):
    """With a per-sample gain, the reading of the float32 product, bit for bit, without building it
    (a limiter's deep cut at one spot, so the skipping floor comes from the product)."""
    phases = PHASE_SETS[phase_set]()
    x = _noise(2, samples, np.float32, seed=samples)
    gain = np.linspace(1.8, 0.4, samples).astype(np.float32)
    gain[samples // 2: samples // 2 + 50] *= np.float32(0.1)
    product = x * gain[None, :]
    np.testing.assert_array_equal(true_peak_per_channel(x, phases, gain), true_peak_per_channel(product, phases))
    np.testing.assert_allclose(true_peak_per_channel(x, phases, gain), oracle_true_peak(product, phases), rtol=1e-12)


def test_loudness_pass_with_a_float32_gain_meters_the_float32_product():
    sos = k_weighting_sos(48000)
    w = np.ones(2)
    x = _noise(2, 5000, np.float32, seed=4)
    gain = np.linspace(0.3, 1.7, 5000).astype(np.float32)
    got = loudness_pass(x, sos, w, gain, 400, 3000, 100, True)
    want = loudness_pass(x * gain[None, :], sos, w, np.zeros(0, np.float32), 400, 3000, 100, True)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("phase_set", sorted(PHASE_SETS))
@pytest.mark.parametrize("samples", [1, 5, 150])
def test_oversampled_peaks_per_sample(phase_set, samples):
    phases = PHASE_SETS[phase_set]()
    x = _noise(2, samples, seed=samples)
    got = oversampled_peaks(x, phases, False)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, oracle_oversampled_peaks(x, phases), rtol=1e-6, atol=0)
    # The largest per-sample reading is the channel's true peak (float32-rounded).
    np.testing.assert_array_equal(got.max(axis=1), true_peak_per_channel(x, phases).astype(np.float32))


@pytest.mark.parametrize("refine", [False, True])
@pytest.mark.parametrize("samples", [5, 150, 8191, 8193, 20000])
def test_oversampled_peaks_with_refine_across_blocks(refine, samples):
    """The kernel works in blocks of 8192 samples; points near a block edge and the parabolas
    spanning it come out as in one pass over the whole signal."""
    phases = polyphase_interpolator(4, taps_per_phase=24, beta=10.0)
    x = _noise(2, samples, np.float32, seed=samples)
    got = oversampled_peaks(x, phases, refine)
    np.testing.assert_allclose(got, oracle_oversampled_peaks(x, phases, refine), rtol=2e-6, atol=0)


@pytest.mark.parametrize("samples", [1, 3, 400])
def test_oversampled_peaks_refine_only_raises(samples):
    phases = polyphase_interpolator(4)
    x = _noise(2, samples, seed=7)
    plain = oversampled_peaks(x, phases, False)
    refined = oversampled_peaks(x, phases, True)
    assert np.all(refined >= plain)


def _tapered_sine(freq_hz, phase, amplitude, sample_rate=48000, seconds=0.1):
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    ramp = n // 10
    window = np.ones(n)
    hann = np.hanning(2 * ramp)
    window[:ramp], window[-ramp:] = hann[:ramp], hann[ramp:]
    return (amplitude * np.sin(2 * np.pi * freq_hz * t + phase) * window)[None]


@pytest.mark.parametrize(
    "freq_hz, phase",
    [(997.0, 0.0), (5000.0, 0.3), (7919.0, 1.0), (12000.0, np.pi / 4), (12000.0, 0.3), (15000.0, 0.3)],
)
def test_oversampled_peaks_refine_bounded_by_analytic_peak(freq_hz, phase):
    """A sine of amplitude A has continuous peak A: refining moves the 4x reading towards A and never
    past it by more than the interpolator's passband ripple plus the parabola's error (0.2 %)."""
    amplitude = 0.5
    x = _tapered_sine(freq_hz, phase, amplitude)
    phases = polyphase_interpolator(4)
    plain = oversampled_peaks(x, phases, False).max()
    refined = oversampled_peaks(x, phases, True).max()
    assert plain <= refined <= amplitude * (1 + 2e-3)


@pytest.mark.parametrize("phase", [np.pi / 4, 0.3])
def test_oversampled_peaks_refine_recovers_missed_peak(phase):
    """At fs/4 the 4x grid misses the crest (45 degrees: reads 0.17 dB low); the parabola recovers
    most of it."""
    amplitude = 0.5
    x = _tapered_sine(12000.0, phase, amplitude)
    phases = polyphase_interpolator(4)
    plain = oversampled_peaks(x, phases, False).max()
    refined = oversampled_peaks(x, phases, True).max()
    assert amplitude - refined < 0.25 * (amplitude - plain)


# --------------------------------------------------------------------------------------------------
# roomtone.kernels.dynamics
# --------------------------------------------------------------------------------------------------


def oracle_sliding_max_forward(v, length):
    """Max over every channel and the next ``length`` samples (clipped at the end)."""
    v = np.atleast_2d(v)
    return np.array([v[:, i : i + length].max() for i in range(v.shape[1])])


def oracle_box_mean_backward(v, length, initial):
    padded = np.concatenate([np.full(length, initial, dtype=np.float64), np.asarray(v, np.float64)])
    return np.array([np.mean(padded[i + 1 : i + length + 1]) for i in range(len(v))])


def oracle_limiter_gain(peak, pre_gain, ceiling, lookahead, release_coef):
    """The docstring, step by step: linked channels, required gain, forward hold, one-pole release,
    two box filters."""
    peak = np.atleast_2d(peak).max(axis=0)
    n = len(peak)
    req = [ceiling / (pre_gain * p) if pre_gain * p > ceiling else 1.0 for p in peak]
    held = [min(req[i : i + lookahead]) for i in range(n)]
    rel, state = [], 1.0
    for h in held:
        state = h if h <= state else h + (state - h) * release_coef
        rel.append(state)
    first = lookahead // 2
    second = lookahead - first
    if first < 1 or n == 0:
        return np.array(rel)
    smoothed = oracle_box_mean_backward(rel, first, rel[0])
    return oracle_box_mean_backward(smoothed, second, smoothed[0])


@pytest.mark.parametrize("length", [1, 2, 5, 64, 200, 500])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("channels", [1, 2, 6])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sliding_max_forward(length, ties, channels, dtype):
    v = np.random.default_rng(length + channels).uniform(0.0, 1.0, (channels, 300)).astype(dtype)
    if ties:
        v = np.round(v * 4) / 4  # many equal values
    got = sliding_max_forward(v, length)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, oracle_sliding_max_forward(v, length))


def test_sliding_max_forward_descending_run_fills_the_window():
    """A falling ramp keeps every sample of the window in the deque: the ring must hold them all."""
    v = np.linspace(1.0, 0.0, 1000)[None]
    np.testing.assert_array_equal(sliding_max_forward(v, 64), oracle_sliding_max_forward(v, 64))


@pytest.mark.parametrize("length", [1, 2, 5, 64, 300])
@pytest.mark.parametrize("initial", [0.0, 1.0, 0.37])
@pytest.mark.parametrize("in_place", [False, True])
def test_box_mean_backward(length, initial, in_place):
    v = np.random.default_rng(length).uniform(0.0, 1.0, 200)
    want = oracle_box_mean_backward(v, length, initial)
    out = v if in_place else np.empty_like(v)
    got = box_mean_backward(v, length, initial, out)
    assert got is out or np.shares_memory(got, out)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("lookahead", [1, 2, 3, 48, 250])
@pytest.mark.parametrize("release_coef", [0.0, 0.99, 0.9995])
@pytest.mark.parametrize("pre_gain", [1.0, 2.5])
@pytest.mark.parametrize("channels", [1, 2])
def test_limiter_gain_matches_formula(lookahead, release_coef, pre_gain, channels):
    rng = np.random.default_rng(lookahead)
    peak = np.abs(rng.standard_normal((channels, 400))) * 0.5
    peak[-1, [50, 51, 300]] = [1.8, 2.2, 3.0]  # isolated overs
    ceiling = 0.891  # -1 dBTP
    got = limiter_gain(peak, pre_gain, ceiling, lookahead, release_coef)
    want = oracle_limiter_gain(peak, pre_gain, ceiling, lookahead, release_coef)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=3e-7, atol=0)  # float32 curve, float64 sums


@pytest.mark.parametrize("lookahead", [1, 48])
def test_limiter_gain_held_equals_limiter_gain(lookahead):
    peak = np.abs(np.random.default_rng(2).standard_normal((1, 300)))
    held = oracle_sliding_max_forward(peak, lookahead)
    np.testing.assert_allclose(
        limiter_gain_held(held, 1.7, 0.9, lookahead, 0.995),
        oracle_limiter_gain(peak, 1.7, 0.9, lookahead, 0.995),
        rtol=3e-7, atol=0,
    )


@pytest.mark.parametrize("lookahead", [1, 2, 3, 48, 250, 400])
@pytest.mark.parametrize("signal", ["noise", "ties", "falling", "rising", "short"])
def test_limiter_gain_peak_holds_as_it_goes(lookahead, signal):
    """The queue-held curve is the held-detector curve, bit for bit: ties, a falling ramp (every
    sample of the window waits in the queue), a rising one, and a signal shorter than the window."""
    rng = np.random.default_rng(lookahead)
    n = 60 if signal == "short" else 3000
    peak = {"noise": np.abs(rng.standard_normal(n)) * 0.6,
            "ties": np.round(rng.uniform(0.0, 2.0, n) * 3) / 3,
            "falling": np.linspace(2.0, 0.1, n),
            "rising": np.linspace(0.1, 2.0, n),
            "short": rng.uniform(0.5, 2.0, n)}[signal].astype(np.float32)
    held = oracle_sliding_max_forward(peak[None], lookahead).astype(np.float32)
    got = limiter_gain_peak(peak, 1.3, 0.891, lookahead, 0.998)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, limiter_gain_held(held, 1.3, 0.891, lookahead, 0.998))
    assert limiter_gain_peak(np.zeros(0, np.float32), 1.0, 1.0, lookahead, 0.99).shape == (0,)


def test_limiter_gain_empty():
    assert limiter_gain(np.zeros((2, 0)), 1.0, 1.0, 8, 0.99).shape == (0,)


@settings(max_examples=200, deadline=None, database=None)
@given(
    peak=hnp.arrays(np.float64, st.integers(1, 300), elements=st.floats(0.0, 64.0, allow_subnormal=False)),
    pre_gain=st.floats(0.25, 4.0),
    ceiling=st.floats(0.1, 1.0),
    lookahead=st.integers(1, 80),
    release_coef=st.floats(0.0, 0.9999),
)
def test_limiter_never_exceeds_ceiling(peak, pre_gain, ceiling, lookahead, release_coef):
    gain = limiter_gain(peak[None], pre_gain, ceiling, lookahead, release_coef)
    assert gain.shape == peak.shape
    assert np.all(gain > 0.0) and np.all(gain <= 1.0 + 1e-12)
    out = pre_gain * peak * gain
    worst = int(np.argmax(out - ceiling))
    assert np.all(out <= ceiling * (1 + 1e-9)), (
        f"sample {worst}: detector*pre_gain*gain = {out[worst]!r} > ceiling {ceiling!r}"
    )


# --------------------------------------------------------------------------------------------------
# roomtone.kernels.multiband.multiband_compress
# --------------------------------------------------------------------------------------------------


def oracle_static_gain_db(peak, threshold_db, ratio, knee_db):
    """Giannoulis et al. 2012, eq. 4, as gain: 0 below the knee, the quadratic knee, then the slope."""
    slope = 1.0 - 1.0 / ratio
    over = 20.0 * math.log10(peak) - threshold_db if peak > 0.0 else -math.inf
    if 2.0 * over < -knee_db:
        return 0.0
    if knee_db > 0.0 and 2.0 * abs(over) <= knee_db:
        return -slope * (over + knee_db / 2.0) ** 2 / (2.0 * knee_db)
    return -slope * over


def oracle_band_split(x, lows, allpasses):
    """Band k < K: low-pass k of what the high-passes 0..k-1 left, then the all-passes k+1..K-1;
    band K: all K high-passes. The high-pass is built as its own LR4 cascade here (two Butterworth
    high-pass sections recovered from the low-pass poles), not as all-pass minus low-pass."""
    bands = []
    rest = np.asarray(x, dtype=np.float64)
    n_x = len(lows)
    for k in range(n_x):
        low = oracle_sos_filter(rest, lows[k])
        for h in range(k + 1, n_x):
            low = oracle_sos_filter(low, allpasses[h][None])
        bands.append(low)
        a1, a2 = lows[k][0][4], lows[k][0][5]
        g = (1.0 - a1 + a2) / 4.0  # Butterworth high-pass numerator from the shared denominator
        high = np.array([[g, -2.0 * g, g, 1.0, a1, a2]] * 2)
        rest = oracle_sos_filter(rest, high)
    bands.append(rest)
    return np.array(bands)


def oracle_multiband_compress(x, lows, allpasses, threshold_db, ratio, makeup_db, knee_db, attack_coef,
                              release_coef, block):
    """Split; per control period of ``block`` samples the static curve on the period's peak (max over
    samples and channels), the branching one-pole smoother in dB with coefficients ** block, and the
    linear gain interpolated from the previous period's gain to this one's over the period."""
    bands = oracle_band_split(x, lows, allpasses)
    n = x.shape[1]
    out = np.zeros(x.shape)
    for b, band in enumerate(bands):
        makeup = 10.0 ** (makeup_db[b] / 20.0)
        state, previous = 0.0, makeup
        for start in range(0, n, block):
            seg = band[:, start:start + block]
            target = oracle_static_gain_db(np.abs(seg).max(), threshold_db[b], ratio[b], knee_db)
            if target < state:
                state = target + (state - target) * attack_coef ** block
            else:
                state = target + (state - target) * release_coef ** block
                if state > -1e-9:  # the release tail snaps to exactly 0 dB
                    state = 0.0
            gain = makeup * 10.0 ** (state / 20.0)
            m = seg.shape[1]
            ramp = previous + (gain - previous) * np.arange(1, m + 1) / m
            out[:, start:start + m] += seg * ramp
            previous = gain
    return out, bands


def _compressor_test_signal(channels, samples, seed):
    rng = np.random.default_rng(seed)
    env_db = np.linspace(-60.0, 6.0, samples) + 10.0 * np.sin(np.arange(samples) / 17.0)
    return rng.standard_normal((channels, samples)) * 10.0 ** (env_db / 20.0)


def _crossovers(freqs, sample_rate):
    lows = np.array([linkwitz_riley4_sos(f, sample_rate, "low") for f in freqs]).reshape(len(freqs), 2, 6)
    allpasses = np.array([allpass_lr4_sos(f, sample_rate)[0] for f in freqs]).reshape(len(freqs), 6)
    return lows, allpasses


def _out_like(x):
    return np.full(x.shape, np.nan, dtype=np.float32)


@pytest.mark.parametrize("lead_periods", [0, 3, 400])
def test_multiband_compress_in_two_overlapping_parts(lead_periods):
    """Parts: ``[0, mid)`` and ``[mid - lead, n)`` with only ``[mid, n)`` written. With no lead the
    second part starts from zero state and differs; with a lead of many time constants it matches
    one pass over the whole signal to float32 resolution, and every sample is written once."""
    lows, allpasses = _crossovers((300.0, 3000.0), 48000)
    x = _compressor_test_signal(2, 6000, seed=3)
    args = (lows, allpasses, np.full(3, -20.0), np.full(3, 4.0), np.zeros(3), 6.0, 0.9, 0.99, 5, np.zeros((0, 0, 0)))
    whole = multiband_compress(x, *args, _out_like(x), 0, 0, 6000)
    parts = _out_like(x)
    mid, lead = 3000, 5 * lead_periods
    multiband_compress(x, *args, parts, 0, 0, mid)
    multiband_compress(x, *args, parts, mid - lead, mid, 6000)
    assert not np.isnan(parts).any()
    np.testing.assert_array_equal(parts[:, :mid], whole[:, :mid])
    error = np.abs(parts[:, mid:] - whole[:, mid:]).max()
    if lead_periods == 400:  # 2000 samples: 0.99^2000 = e^-20, like the processor's lead
        assert error < 1e-6
    elif lead_periods == 0:
        assert error > 1e-3


@pytest.mark.parametrize("freqs", [(), (250.0,), (120.0, 2500.0), (100.0, 800.0, 6000.0)], ids=len)
@pytest.mark.parametrize("knee_db", [0.0, 6.0])
@pytest.mark.parametrize("coefs", [(0.0, 0.0), (0.9, 0.999)], ids=["instant", "smoothed"])
@pytest.mark.parametrize("block", [1, 7])
@pytest.mark.parametrize("channels", [1, 2])
def test_multiband_compress(freqs, knee_db, coefs, block, channels):
    sample_rate = 48000
    lows, allpasses = _crossovers(freqs, sample_rate)
    n_b = len(freqs) + 1
    x = _compressor_test_signal(channels, 400, seed=channels)
    x[:, :20] = 0.0  # digital silence
    threshold = np.linspace(-20.0, -10.0, n_b)
    ratio = np.linspace(4.0, 1.5, n_b)
    makeup = np.linspace(0.0, 2.0, n_b)
    bands = np.zeros((n_b,) + x.shape)
    got = multiband_compress(x, lows, allpasses, threshold, ratio, makeup, knee_db, *coefs, block, bands,
                             _out_like(x), 0, 0, x.shape[1])
    want, want_bands = oracle_multiband_compress(x, lows, allpasses, threshold, ratio, makeup, knee_db, *coefs, block)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(bands, want_bands, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)  # float32 output
    # skipping the bands changes nothing
    alone = multiband_compress(x, lows, allpasses, threshold, ratio, makeup, knee_db, *coefs, block, np.zeros((0, 0, 0)),
                               _out_like(x), 0, 0, x.shape[1])
    assert np.array_equal(alone, got)


@pytest.mark.parametrize("samples", [0, 1, 2, 7])
def test_multiband_compress_tiny_buffers(samples):
    lows, allpasses = _crossovers((120.0, 2500.0), 44100)
    x = _noise(2, samples)
    args = (np.full(3, -30.0), np.full(3, 4.0), np.zeros(3), 6.0, 0.5, 0.9, 15)
    got = multiband_compress(x, lows, allpasses, *args, np.zeros((0, 0, 0)), _out_like(x), 0, 0, samples)
    want, _ = oracle_multiband_compress(x, lows, allpasses, *args)
    assert got.shape == (2, samples)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("knee_db", [0.0, 6.0])
def test_compressor_static_curve_is_continuous_and_monotone(knee_db):
    """One band, instant smoothing, one-sample periods: output level = input level + gain rises with
    input, no jump at the knee edges, and the slope above the knee is 1/ratio."""
    levels_db = np.linspace(-40.0, 0.0, 4001)
    x = (10.0 ** (levels_db / 20.0))[None]
    none = np.zeros((0, 2, 6)), np.zeros((0, 6))
    out = multiband_compress(x, *none, np.array([-20.0]), np.array([4.0]), np.zeros(1), knee_db, 0.0, 0.0, 1,
                             np.zeros((0, 0, 0)), _out_like(x), 0, 0, x.shape[1])
    gain = 20.0 * np.log10(out[0].astype(np.float64) / x[0])
    out_db = levels_db + gain
    assert np.all(np.diff(out_db) > 0.0)
    assert np.abs(np.diff(gain)).max() < 0.01  # no jump at the knee edges (step 0.01 dB)
    np.testing.assert_allclose(gain[levels_db <= -20.0 - knee_db / 2 - 1e-9], 0.0, atol=1e-6)
    np.testing.assert_allclose(out_db[-1], -20.0 + 20.0 / 4.0, atol=1e-5)
    for level in (-30.0, -12.0):
        assert static_gain_db(10.0 ** (level / 20.0), -20.0, 0.75, knee_db, 10.0 ** ((-20.0 - knee_db / 2) / 20.0)) == \
            pytest.approx(oracle_static_gain_db(10.0 ** (level / 20.0), -20.0, 4.0, knee_db), abs=1e-12)


# --------------------------------------------------------------------------------------------------
# roomtone.kernels.saturation.tanh_saturate_2x
# --------------------------------------------------------------------------------------------------


def pade_tanh(v):
    """The documented curve: [7/6] Pade approximant of tanh, clipped to [-1, 1]."""
    v2 = v * v
    num = v * (135135 + 17325 * v2 + 378 * v2 ** 2 + v2 ** 3)
    den = 135135 + 62370 * v2 + 3150 * v2 ** 2 + 28 * v2 ** 3
    return np.clip(num / den, -1.0, 1.0)


def test_soft_clip_is_tanh_to_1e4_and_monotonic():
    v = np.linspace(-30.0, 30.0, 20001)
    y = np.array([soft_clip(a) for a in v])
    np.testing.assert_allclose(y, pade_tanh(v), rtol=1e-12, atol=1e-15)
    assert np.abs(y - np.tanh(v)).max() < 1e-4
    assert np.abs(y - np.tanh(v))[np.abs(v) < 3].max() < 2e-6
    assert (np.diff(y) >= 0).all()


def oracle_tanh_saturate_2x(x, h, drive, mix):
    """Zero-stuff (gain 2), low-pass, tanh, low-pass, keep every second sample after the
    (len(h) - 1) up-rate samples of delay of the two filters."""
    taps = len(h)
    out = np.empty(x.shape, dtype=np.float64)
    for c, row in enumerate(x.astype(np.float64)):
        if len(row) == 0:
            continue
        up = np.zeros(2 * len(row))
        up[::2] = 2.0 * row
        sat = pade_tanh(drive * np.convolve(up, h)) / drive
        down = np.convolve(sat, h)
        wet = down[taps - 1 : taps - 1 + 2 * len(row) : 2]
        out[c] = (1.0 - mix) * row + mix * wet
    return out


FIR_PARAMS = [
    pytest.param(lambda: halfband_lowpass(31), id="halfband31"),
    pytest.param(lambda: halfband_lowpass(15, beta=5.0), id="halfband15"),
]


@pytest.mark.parametrize("fir", FIR_PARAMS)
@pytest.mark.parametrize("drive, mix", [(0.5, 1.0), (3.0, 1.0), (8.0, 0.35), (2.0, 0.0)])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_saturate_2x(fir, drive, mix, channels, dtype):
    h = fir()
    x = _noise(channels, 120, dtype, seed=channels) * 2.0
    got = tanh_saturate_2x(x, h, drive, mix)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, oracle_tanh_saturate_2x(x, h, drive, mix), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("samples", [4095, 4096, 4097, 9000])
def test_tanh_saturate_2x_across_blocks(samples):
    """Outputs near the edges of the kernel's work blocks need inputs from the neighbouring block."""
    h = halfband_lowpass()
    x = _noise(2, samples, seed=samples) * 2.0
    np.testing.assert_allclose(tanh_saturate_2x(x, h, 3.0, 0.8), oracle_tanh_saturate_2x(x, h, 3.0, 0.8),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("samples", [0, 1, 2])
def test_tanh_saturate_2x_tiny_buffers(samples):
    h = halfband_lowpass()
    x = _noise(2, samples)
    want = oracle_tanh_saturate_2x(x, h, 2.0, 1.0)
    np.testing.assert_allclose(tanh_saturate_2x(x, h, 2.0, 1.0), want, atol=1e-7)


def test_tanh_saturate_2x_is_delay_compensated():
    """Nearly linear drive: a 1 kHz sine at 48 kHz comes back in place (a one-sample shift would
    leave an error of about 0.13)."""
    x = np.sin(2 * np.pi * 1000 * np.arange(2000) / 48000)[None]
    y = tanh_saturate_2x(x, halfband_lowpass(), 1e-4, 1.0)
    assert np.abs(y - x)[0, 50:-50].max() < 1e-3
