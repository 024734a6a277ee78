"""Click and hum repair (issue 24 section 5): clicks of several shapes found and repaired in
glottal-pulse speech and pink noise at 16/44.1/48 kHz, none found in clean voiced speech (whose
residual has a pulse every pitch period), a 50/60 Hz series 20 dB under speech found at every
rate; the click detector's kernel against a numpy oracle."""

import numpy as np
import pytest

from refsignals import pink_noise
from roomtone.plugins import Declick, find_hum
from roomtone.plugins.repair import residual_standout
from roomtone.kernels.biquad import sos_filter
from roomtone.kernels.enhance import levinson, lpc_residual_flags


def _voiced(seconds, sample_rate, seed=0, f0=110.0, level=0.2, glide_hz=0.5):
    """Glottal pulse train (Rosenberg-like pulses at a gliding f0) through three formant
    resonators, with syllable envelopes: a voice whose LPC residual has a spike every period."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    pitch = f0 * (1 + 0.15 * np.sin(2 * np.pi * glide_hz * t + rng.uniform(0, 6)))
    phase = np.cumsum(pitch) / sample_rate
    frac = phase % 1.0
    source = np.where(frac < 0.6, np.sin(np.pi * frac / 0.6) ** 2, 0.0)
    source = np.diff(source, prepend=0.0)  # the glottal flow's derivative: a sharp closure each period
    x = source
    for freq, bw in ((700.0, 90.0), (1200.0, 110.0), (2600.0, 160.0)):
        r = np.exp(-np.pi * bw / sample_rate)
        a1, a2 = -2 * r * np.cos(2 * np.pi * freq / sample_rate), r * r
        y = np.zeros(n)
        for i in range(n):  # noqa: the resonator, plainly
            y[i] = x[i] - a1 * y[i - 1] - a2 * y[i - 2] if i >= 2 else x[i]
        x = y
    env = 0.3 + 0.7 * np.sin(np.pi * (t * 2.5 % 1.0)) ** 2
    x = x * env
    return (level * x / np.abs(x).max()).astype(np.float32)


def _clicks(x, sample_rate, seed):
    rng = np.random.default_rng(seed)
    spots = np.linspace(0.15, x.size / sample_rate - 0.15, 8) * sample_rate
    clicks = []
    for i, at in enumerate(spots.astype(int)):
        length = (1, int(0.1e-3 * sample_rate), int(0.5e-3 * sample_rate), int(1e-3 * sample_rate))[i % 4]
        amp = (0.4, -0.3, 0.25, -0.4)[i % 4]
        wave = amp * (np.ones(1) if length <= 1 else rng.standard_normal(length) * np.hanning(length + 2)[1:-1])
        x[at:at + wave.size] += wave / max(np.abs(wave).max(), 1e-9) * abs(amp)
        clicks.append((at, wave.size))
    return clicks


@pytest.mark.parametrize("sample_rate", (16000, 44100, 48000))
@pytest.mark.parametrize("noisy", (False, True))
def test_clicks_in_voiced_speech_are_found_and_repaired(sample_rate, noisy):
    clean = _voiced(1.6, sample_rate, seed=sample_rate)
    if noisy:
        clean = clean + pink_noise(1.6, sample_rate, rms=0.2 * np.sqrt(np.mean(clean ** 2)), channels=1,
                                   seed=2)[0, :clean.size]
    x = clean.copy()
    clicks = _clicks(x, sample_rate, seed=1)
    out, info = Declick().run(x[None], sample_rate)
    pad = int(1e-3 * sample_rate)
    fixed = 0
    for at, length in clicks:
        w = slice(at - pad, at + length + pad)
        before = np.sum((x[w] - clean[w]).astype(np.float64) ** 2)
        after = np.sum((out[0, w] - clean[w]).astype(np.float64) ** 2)
        fixed += after < 0.1 * before
    assert fixed >= len(clicks) - 1, f"{fixed} of {len(clicks)} clicks repaired"
    assert info["clicks_repaired"] <= len(clicks) + 1


@pytest.mark.parametrize("sample_rate", (16000, 44100, 48000))
def test_voiced_speech_without_clicks_is_left_alone(sample_rate):
    x = _voiced(2.0, sample_rate, seed=7, f0=95.0)[None]
    out, info = Declick().run(x, sample_rate)
    assert info["clicks_repaired"] == 0
    assert np.array_equal(out, x)


def _burst(length, amp, rng):
    """A click: a one-sample impulse, or a Hann-windowed noise burst of ``length`` samples, peak
    ``amp`` (its sign the polarity)."""
    if length <= 1:
        return np.array([amp])
    wave = rng.standard_normal(length) * np.hanning(length + 2)[1:-1]
    return amp * wave / np.abs(wave).max()


@pytest.mark.parametrize("sample_rate", (16000, 44100, 48000))
@pytest.mark.parametrize("channels", (1, 2))
def test_clicks_in_speech_under_10_db_pink_noise_are_repaired(sample_rate, channels):
    """Impulses and 0.1-2 ms bursts of 0.1-0.4 full scale, both polarities, in voiced speech (RMS
    -25 dBFS) with pink noise at 10 dB SNR (each channel its own noise; in stereo every other
    click in one channel): nearly all repaired (the error within 1 ms down by 10 dB; a click
    under the noise in its span cannot be, whatever finds it)."""
    voice = _voiced(3.0, sample_rate, seed=sample_rate + channels, level=0.2)
    rms = float(np.sqrt(np.mean(voice.astype(np.float64) ** 2)))
    clean = np.stack([np.roll(voice, 7 * c) + pink_noise(3.0, sample_rate, rms=rms / np.sqrt(10.0), channels=1,
                                                         seed=20 + c)[0, :voice.size] for c in range(channels)])
    clean = clean.astype(np.float32)
    x = clean.copy()
    rng = np.random.default_rng(channels)
    lengths_ms = (0.0, 0.1, 0.5, 1.0, 2.0)
    clicks = []
    for i, at in enumerate((np.linspace(0.1, 2.9, 15) * sample_rate).astype(int)):
        length = max(1, int(round(lengths_ms[i % 5] * 1e-3 * sample_rate)))
        wave = _burst(length, (0.4, 0.3, 0.2, 0.1)[i % 4] * (-1) ** i, rng)
        chans = list(range(channels)) if i % 2 == 0 else [i // 2 % channels]
        for c in chans:
            x[c, at:at + wave.size] += wave
        clicks.append((chans, at, wave.size))
    stage = Declick()
    out, info = stage.run(x, sample_rate)
    # the oracle: each click interpolated over its true span (what a perfect detector would give)
    oracle = x.copy()
    margin = 2 + int(round(0.1e-3 * sample_rate))
    for chans, at, length in clicks:
        for c in chans:
            stage.repair(oracle[c], at - margin, at + length + margin, sample_rate)
    pad = int(1e-3 * sample_rate)

    def repaired(y):
        count = 0
        for chans, at, length in clicks:
            w = slice(at - pad, at + length + pad)
            before = sum(np.sum((x[c, w] - clean[c, w]).astype(np.float64) ** 2) for c in chans)
            after = sum(np.sum((y[c, w] - clean[c, w]).astype(np.float64) ** 2) for c in chans)
            count += after < 0.1 * before
        return count

    fixed, possible = repaired(out), repaired(oracle)
    assert possible >= 10  # the few others are under the noise in their span
    assert fixed >= possible - 3, f"{fixed} of {len(clicks)} clicks repaired, {possible} at their true spans"
    assert info["clicks_repaired"] <= channels * len(clicks) + 2


def _highpass_3k(x, sample_rate):
    from roomtone import filters

    sos = filters.butterworth2_sos(3000.0, sample_rate, "high")
    return sos_filter(np.ascontiguousarray(x, np.float32), np.concatenate([sos, sos]),
                      np.empty(x.shape, np.float32)).astype(np.float64)


def _peak_to_rms_above_3k(x, sample_rate, clicks):
    """Per click: the peak of the band above 3 kHz within 1 ms of it over that band's RMS in the
    25 ms either side (the click's own span left out), in dB (issue 24 section 5's measure)."""
    high = _highpass_3k(x, sample_rate)[0]
    pad, around = int(1e-3 * sample_rate), int(0.025 * sample_rate)
    values = []
    for at, length in clicks:
        w = slice(at - pad, at + length + pad)
        ctx = np.concatenate((high[at - around:w.start], high[w.stop:at + around]))
        values.append(20 * np.log10(np.abs(high[w]).max() / np.sqrt(np.mean(ctx ** 2))))
    return np.array(values)


def _hum(n, sample_rate, mains_hz, rms):
    t = np.arange(n) / sample_rate
    row = sum(np.sin(2 * np.pi * h * mains_hz * t + h) / h for h in range(1, 9))
    return (row * rms / np.sqrt(np.mean(row ** 2))).astype(np.float32)


@pytest.mark.parametrize("sample_rate", (16000, 44100, 48000, 96000))
@pytest.mark.parametrize("mains_hz", (50.0, 60.0))
def test_hum_20_db_under_speech_is_found_at_every_rate(sample_rate, mains_hz):
    speech = _voiced(3.0, sample_rate, seed=3, f0=130.0, glide_hz=3.0)  # intonation moves
    speech += pink_noise(3.0, sample_rate, rms=0.002, channels=1, seed=4)[0, :speech.size]
    rms = float(np.sqrt(np.mean(speech.astype(np.float64) ** 2)))
    x = (speech + _hum(speech.size, sample_rate, mains_hz, rms / 10.0))[None]
    got = find_hum(x, sample_rate)
    assert got["found"] and got["mains_hz"] == mains_hz
    assert abs(got["fundamental_hz"] - mains_hz) < 0.2
    noise = pink_noise(3.0, sample_rate, rms=0.05, channels=1, seed=5)
    assert not find_hum(noise, sample_rate)["found"]


def _oracle_scores(x, order, block, threshold):
    """The kernel's scores by plain numpy: the two-pass fit per block, forward residual, robust
    scale."""
    n = x.size
    x64 = x.astype(np.float64)
    score = np.zeros(n)
    half = block // 2
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        w0, w1 = max(0, b0 - max(half, order)), min(n, b1 + max(half, order))
        if w1 - w0 <= 2 * order:
            continue
        m = w1 - w0
        seg = np.hanning(m + 1)[:m] * 0 + (0.5 - 0.5 * np.cos(2 * np.pi * (np.arange(m) + 0.5) / m)) * x64[w0:w1]
        a = None
        for rep in range(2):
            r = np.array([np.dot(seg[:m - k], seg[k:]) for k in range(order + 1)])
            if r[0] <= 0:
                a = None
                break
            r[0] *= 1 + 1e-9
            a = np.zeros(order + 1)
            levinson(r, order, a)
            if rep == 1:
                break
            e = np.abs(np.convolve(x64[w0:w1], a)[order:m])
            sigma = 1.4826 * np.median(e)
            out = np.flatnonzero(e > 0.5 * threshold * sigma) + order
            if sigma <= 0 or out.size == 0:
                break
            seg[out] = 0.0
        if a is None:
            continue
        lo = max(b0, order)
        e = np.abs([np.dot(a, x64[i - np.arange(order + 1)]) for i in range(lo, b1)])
        if e.size < 8 or np.median(e) <= 0:
            continue
        score[lo:b1] = e / (1.4826 * np.median(e))
    return score


def test_lpc_residual_flags_matches_its_numpy_oracle():
    sample_rate, order, block = 16000, 11, 320
    x = _voiced(0.3, sample_rate, seed=5) + pink_noise(0.3, sample_rate, rms=0.003, channels=1, seed=6)[0, :4800]
    x[1000] += 0.5
    x[3001:3005] -= 0.3
    flags = np.empty(x.size, np.uint8)
    score = np.empty(x.size, np.float32)
    sigmas = np.empty(-(-x.size // block))
    count = lpc_residual_flags(x, order, block, 8.0, flags, score, sigmas)
    want = _oracle_scores(x, order, block, 8.0)
    np.testing.assert_allclose(score, want, rtol=1e-4, atol=1e-4)
    assert count == int(np.sum(want > 8.0)) and flags[1000] == 1
    np.testing.assert_array_equal(flags, (want > 8.0).astype(np.uint8))


def test_levinson_matches_a_direct_solve():
    rng = np.random.default_rng(0)
    x = np.convolve(rng.standard_normal(4000), [1.0, -0.9, 0.4])
    r = np.array([np.dot(x[:x.size - k], x[k:]) for k in range(7)])
    a = np.empty(7)
    levinson(r, 6, a)
    toeplitz = np.array([[r[abs(i - j)] for j in range(6)] for i in range(6)])
    np.testing.assert_allclose(a[1:], -np.linalg.solve(toeplitz, r[1:]), rtol=1e-8)


def _issue_case(level, click_amp, seconds=4.0, sample_rate=48000):
    """The issue's case (as above) with the voice peaking at ``level`` and clicks of ``click_amp``
    full scale; ``(clean, with clicks, [(at, length)])``, clipped at +-1 where over."""
    voice = _voiced(seconds, sample_rate, seed=24, level=level)
    n = voice.size
    rms = float(np.sqrt(np.mean(voice.astype(np.float64) ** 2)))
    noise = pink_noise(seconds, sample_rate, rms=rms / np.sqrt(10.0), channels=1, seed=25)[0, :n]
    t = np.arange(n) / sample_rate
    hum = sum(np.sin(2 * np.pi * 60.0 * h * t + h) / h for h in range(1, 9))
    clean = (voice + noise + 0.1 * rms * hum / np.sqrt(np.mean(hum ** 2))).astype(np.float32)[None]
    x = clean.copy()
    rng = np.random.default_rng(5)
    length = int(round(0.5e-3 * sample_rate))
    clicks = []
    for at in (np.linspace(0.1, seconds - 0.1, 20) * sample_rate).astype(int) + rng.integers(-1000, 1000, 20):
        x[0, at:at + length] += _burst(length, click_amp * rng.choice([-1.0, 1.0]), rng)
        clicks.append((int(at), length))
    return np.clip(clean, -1.0, 1.0), np.clip(x, -1.0, 1.0), clicks


def test_click_detection_does_not_depend_on_the_level():
    """Declick's detector (LPC residual over its block's robust scale, quiet blocks against the
    programme's median scale, thresholds and isolation relative to the same) is scale-invariant: the
    issue's case (voice peaking at 0.4, clicks at 0.32 FS, nothing clipped) scaled by 0.25, 1 and 2
    gives the same spans."""
    _, x, clicks = _issue_case(0.4, 0.32)
    declick = Declick()
    found = [declick.clicks(np.ascontiguousarray(x[0] * np.float32(g)), 48000) for g in (0.25, 1.0, 2.0)]
    assert np.abs(x).max() * 2.0 < 1.0
    assert found[0] == found[1] == found[2]
    assert len(found[1][0]) >= 17


_LOUD_FIXED = pytest.mark.xfail(strict=True, reason=(
    "issue 24 section 5, open: a 0.4 FS click next to (synthetic, impulse-like) glottal pulses peaking at 0.9 is "
    "5 dB smaller against them in the residual than at 0.5: it passes the looser isolation (7 / 3) but its "
    "residual standout over the pulses within 30 ms is 4-16 (12-48 at 0.5), under the 30 a loosely isolated "
    "candidate needs; 10 would find 11 of 20 here but raises bench_repair's false repairs on clean libri-tune "
    "from 4 to 11 a minute, so another feature is needed"))


@pytest.mark.parametrize("level, scaled", [(0.2, True), (0.5, True), (0.9, True), (0.2, False), (0.5, False),
                                           pytest.param(0.9, False, marks=_LOUD_FIXED)])
def test_issue_case_at_every_speech_level(level, scaled):
    """Issue 24 section 5: full-band 48 kHz voiced speech (glottal pulses through formants) with pink
    noise at 10 dB SNR, a 60 Hz hum series and 20 clicks of 0.5 ms, through ``enhance --preset podcast``
    (the classic denoiser: quick), with the voice peaking at 0.2, 0.5 and 0.9, the clicks scaled with it (0.4 FS
    at 0.5) or at a fixed 0.4 FS: at least 17 of 20 found, and the chain's output within 2 dB of the
    clean reference's peak-to-RMS above 3 kHz around them."""
    from roomtone.enhance import enhance

    sample_rate = 48000
    clean, x, clicks = _issue_case(level, 0.4 * level / 0.5 if scaled else 0.4)
    out, report = enhance(x, sample_rate, preset="podcast", model="classic")
    ref, _ = enhance(clean, sample_rate, preset="podcast", model="classic")
    stage = next(s for s in report["stages"] if s["stage"] == "declick")
    assert stage["clicks_repaired"] >= 17
    assert _peak_to_rms_above_3k(x, sample_rate, clicks).mean() > _peak_to_rms_above_3k(clean, sample_rate, clicks).mean() + 6.0
    want = _peak_to_rms_above_3k(ref, sample_rate, clicks).mean()
    got = _peak_to_rms_above_3k(out, sample_rate, clicks).mean()
    assert got < want + 2.0, f"peak-to-RMS above 3 kHz {got:.1f} dB, clean reference {want:.1f} dB"


def _pulse_train(sample_rate, click_amp, seed=1):
    """Half a second of a voiced-speech-like signal (a 120 Hz pulse train through a 700 Hz
    resonance, a little noise, peaking at 0.3) and the same with a 0.5 ms burst of ``click_amp``
    peak halfway between two pulses: ``(clean, clicked, (start, stop) of the burst)``."""
    rng = np.random.default_rng(seed)
    n = sample_rate // 2
    period = int(sample_rate / 120)
    excitation = np.zeros(n)
    excitation[::period] = 1.0
    excitation += 0.01 * rng.standard_normal(n)
    pole, theta = 0.97, 2 * np.pi * 700.0 / sample_rate
    sos = np.array([[1.0, 0.0, 0.0, 1.0, -2 * pole * np.cos(theta), pole * pole]])
    voice = np.ascontiguousarray(excitation[None], np.float32)
    sos_filter(voice, sos, voice)
    clean = (0.3 * voice[0] / np.abs(voice).max()).astype(np.float32)
    width = max(2, int(0.5e-3 * sample_rate))
    at = 20 * period + period // 2
    burst = rng.standard_normal(width) * np.hanning(width + 2)[1:-1]
    clicked = clean.copy()
    clicked[at:at + width] += (click_amp * burst / np.abs(burst).max()).astype(np.float32)
    return clean, clicked, (at, at + width)


@pytest.mark.parametrize("sample_rate", [16000, 44100, 48000])
def test_residual_standout_tells_a_click_from_a_glottal_pulse(sample_rate):
    """A pulse of a periodic train has another like it a pitch period away: its residual standout
    is near 1; a burst between two pulses is new information: its standout is far over the 30 a
    loosely isolated candidate needs, and Declick finds it and nothing on the clean train."""
    declick = Declick()
    order, context = declick._order(sample_rate), declick._fill_context(sample_rate)
    guard = int(1e-3 * sample_rate)
    clean, clicked, (start, stop) = _pulse_train(sample_rate, 0.3)
    pulse = 20 * int(sample_rate / 120)
    assert residual_standout(clean, pulse - 2, pulse + stop - start, order, context, guard) < 1.5
    assert residual_standout(clicked, start - 2, stop + 2, order, context, guard) > 30.0
    spans, _ = declick.clicks(clicked, sample_rate)
    assert len(spans) == 1 and spans[0][0] <= start and spans[0][1] >= stop
    assert declick.clicks(clean, sample_rate)[0] == []


def test_the_looser_isolation_finds_a_click_between_pulses():
    """At 44.1 kHz the full isolation alone (``weak_isolation`` 1) misses the burst between two
    pulses of the train (its window's power is not 7x the pulses'); the looser isolation judged by
    the standout finds it."""
    _, clicked, (start, stop) = _pulse_train(44100, 0.3)
    assert Declick(weak_isolation=1.0).clicks(clicked, 44100)[0] == []
    spans, _ = Declick().clicks(clicked, 44100)
    assert spans and spans[0][0] <= start and spans[0][1] >= stop
