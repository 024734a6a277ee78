"""Real multitrack songs for the separator's training: the EIR stem names' grouping, the staged
arrays read back, the items drawn from them (stems sum to the mixture, a band-limited song
band-limits its whole item) and the real validation excerpts (synthetic songs: no ../shared, no
snapshot needed)."""

import json

import numpy as np

from roomtone.separate.training import data
from roomtone.separate.training.multitrack import RESERVED, group_of, stage_song
from roomtone.separate.net import SAMPLE_RATE, STEMS

import pytest


@pytest.mark.parametrize("name, group", [
    ("VOX LEAD", "vocals"), ("BGVOX HARMONY GLITCH", "vocals"), ("SY BASS", "bass"), ("PAD + BASS", "bass"),
    ("KICK", "drums"), ("K & SN", "drums"), ("HH GLITCH", "drums"), ("BREAK BEAT", "drums"), ("TOMS", "drums"),
    ("CLAP", "drums"), ("BUILD PRC", "drums"), ("FILL PIANO", "other"), ("MELODY BREAK", "other"),
    ("MINILOGUE_SYNTH", "other"), ("ECHO PAD", "other"), ("REVERSE SWEEP", "other")])
def test_stem_names_group_into_the_four_stems(name, group):
    assert group_of(name) == group


def test_reserved_songs_are_refused_before_anything_is_read(tmp_path):
    for number in RESERVED:
        with pytest.raises(ValueError, match="reserved"):
            stage_song(tmp_path / "no-such-repo", f"{number}.Anything", tmp_path)


def _song(path, seconds, band=None, split="train", seed=0, source="everythingisremixed"):
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    arrays = {stem: np.round(rng.standard_normal((2, n)) * 2000.0).astype(np.int16) for stem in STEMS}
    arrays["bass"][:, : n // 2] = 0  # the bass plays in the second half only
    meta = {"source": source, "song": path.stem, "licence": "CC0 1.0", "split": split, "band_limited_hz": band}
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


def test_staged_songs_load_by_their_split_and_items_sum_to_the_mixture(tmp_path):
    _song(tmp_path / "a.npz", 4.0)
    _song(tmp_path / "b.npz", 4.0, split="val", seed=1)
    staged = data.load_staged([tmp_path])
    assert [s for s, _, _ in staged["train"]] == ["a"] and [s for s, _, _ in staged["val"]] == ["b"]
    pool = {"multitrack": staged["train"], "songs": [], "voices": [], "music": []}
    rng = np.random.default_rng(0)
    for _ in range(6):
        mix, targets, full = data.item(rng, {**pool, "music": [("m", np.ones((2, 9), np.int16))]}, [],
                                       int(1.0 * SAMPLE_RATE))
        if full:
            np.testing.assert_allclose(targets.sum(axis=0), mix, atol=1e-6)
            assert np.abs(mix).max() <= 0.99 + 1e-6


def test_a_validation_run_reads_only_the_songs_it_needs(tmp_path):
    """``splits`` and ``per_source``: a run that validates reads no training song, and of each
    source only the first songs it asks for (the fusion search beside a training run)."""
    _song(tmp_path / "a.npz", 2.0)
    for k, source in enumerate(("everythingisremixed", "modules", "modules", "modules")):
        _song(tmp_path / f"v{k}.npz", 2.0, split="val", seed=k, source=source)
    staged = data.load_staged([tmp_path], splits=("val",), per_source=2)
    assert staged["train"] == []
    assert [s for s, _, _ in staged["val"]] == ["v0", "v1", "v2"]
    assert len(data.load_staged([tmp_path])["val"]) == 4


@pytest.mark.parametrize("source, voiced", [("modules", True), ("lmms", True), ("everythingisremixed", False)])
def test_a_real_voice_joins_only_clean_renders(tmp_path, source, voiced):
    """A song with no voice gets a real one now and then only where it is a clean render (tracker
    modules, LMMS demos): the AAC songs never do, so that the codec is no cue for "vocals"."""
    _song(tmp_path / "s.npz", 3.0, source=source)
    staged = data.load_staged([tmp_path])
    for _, stems, _ in staged["train"]:
        stems["vocals"][:] = 0
    speech = (0.1 * np.sin(np.arange(SAMPLE_RATE) * 0.05)).astype(np.float32)
    pool = {"multitrack": staged["train"], "songs": [], "voices": [("v", speech, SAMPLE_RATE)], "music": []}
    rng = np.random.default_rng(5)
    got = [np.any(data._multitrack_targets(rng, pool, [], SAMPLE_RATE // 2)[0]) for _ in range(20)]
    assert any(got) == voiced


def test_an_item_drawing_on_a_band_limited_song_is_band_limited_in_every_stem(tmp_path):
    _song(tmp_path / "mobile.npz", 3.0, band=8000.0)
    staged = data.load_staged([tmp_path])
    pool = {"multitrack": staged["train"], "songs": [], "voices": [], "music": []}
    targets = data._multitrack_targets(np.random.default_rng(3), pool, [], int(1.0 * SAMPLE_RATE))
    spectrum = np.abs(np.fft.rfft(targets, axis=-1)) ** 2
    f = np.fft.rfftfreq(targets.shape[-1], 1.0 / SAMPLE_RATE)
    played = spectrum.sum(axis=(1, 2)) > 0
    assert played.sum() >= 2
    above = spectrum[..., f > 8100.0].sum(axis=(1, 2))[played]
    below = spectrum[..., f < 7900.0].sum(axis=(1, 2))[played]
    assert np.all(above < 1e-9 * below)


def test_real_excerpts_prefer_stretches_where_the_stems_play_and_silent_stems_read_nan(tmp_path):
    _song(tmp_path / "s.npz", 30.0, split="val")
    staged = data.load_staged([tmp_path])
    excerpts = data.real_excerpts(staged["val"], seconds=8.0, per_song=2)
    assert len(excerpts) == 2
    for _, mix, targets in excerpts:
        np.testing.assert_allclose(targets.sum(axis=0), mix, atol=1e-6)
        assert np.all(np.sqrt(np.mean(targets ** 2, axis=(1, 2))) > 1e-3)  # the bass half is chosen
    quiet = excerpts[0][2].copy()
    quiet[2] = 0.0
    sdr = data.sdr_db(quiet[None] * 0.5, quiet[None])
    assert np.isnan(sdr[0, 2]) and np.isfinite(sdr[0, 0])


def test_the_excerpt_table_weighs_each_song_once_whatever_its_excerpt_count():
    sdr = np.array([[1.0, 2.0, np.nan, 0.0], [3.0, 2.0, np.nan, 0.0], [9.0, 4.0, 1.0, 0.0]])
    per_song, means = data.excerpt_table(sdr, ["a", "a", "b"])
    assert per_song["a"][0] == 2.0 and np.isnan(per_song["a"][2])
    assert means[0] == 5.5 and means[1] == 3.0 and means[2] == 1.0
