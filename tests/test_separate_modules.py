"""The tracker-module staging (roomtone.separate.training.modules): the grouping of a part by its name and
by its audio, the split rule and the npz writer/reader. Synthetic signals only: no renderer, no
Debian package needed."""

import json

import numpy as np
import pytest

from roomtone.separate.training import modules

RATE = modules.SAMPLE_RATE


def stereo(x):
    return np.stack([x, x]).astype(np.float32)


def test_low_sine_is_bass():
    t = np.arange(4 * RATE) / RATE
    group, why = modules.classify("", stereo(0.5 * np.sin(2 * np.pi * 60 * t)))
    assert group == "bass", why


def test_noise_bursts_are_drums():
    rng = np.random.default_rng(0)
    x = np.zeros(4 * RATE)
    burst = int(0.05 * RATE)
    for start in range(0, len(x) - RATE // 2, RATE // 2):
        x[start:start + burst] = rng.standard_normal(burst) * np.exp(-np.arange(burst) / (0.01 * RATE))
    group, why = modules.classify("", stereo(0.3 * x))
    assert group == "drums", why


def test_mid_tone_is_other():
    t = np.arange(4 * RATE) / RATE
    group, why = modules.classify("", stereo(0.5 * np.sin(2 * np.pi * 1000 * t)))
    assert group == "other", why


@pytest.mark.parametrize("name, group", [
    ("Kick 1", "drums"), ("snare:*", "drums"), ("BD2", "drums"), ("Mixed Cymbal", "drums"),
    ("closed hihat", "drums"), ("bass drum", "drums"), ("PianoBass.mixed", "bass"), ("slap bass", "bass"),
])
def test_names_decide(name, group):
    t = np.arange(RATE) / RATE
    tone = stereo(0.5 * np.sin(2 * np.pi * 1000 * t))  # the audio alone would say "other"
    assert modules.classify(name, tone)[0] == group


def test_uninformative_name_falls_back_to_audio():
    assert modules.classify("regis parret", None)[0] == "other"
    t = np.arange(2 * RATE) / RATE
    assert modules.classify("music from reg", stereo(0.5 * np.sin(2 * np.pi * 55 * t)))[0] == "bass"


def test_silent_part_is_other():
    assert modules.classify("", np.zeros((2, RATE), np.float32))[0] == "other"


def test_split_is_stable_and_holds_out_some():
    ids = [f"pkg_song{i}" for i in range(700)]
    splits = [modules.split_of(i) for i in ids]
    assert splits == [modules.split_of(i) for i in ids]
    share = splits.count("val") / len(ids)
    assert 0.08 < share < 0.22


def test_reserved_package_is_refused(tmp_path):
    assert "heroes-sound-tracks" not in modules.PACKAGES
    with pytest.raises(ValueError):
        modules.fetch_package("heroes-sound-tracks", tmp_path)


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    n = RATE // 10
    stems = {"drums": rng.integers(-3000, 3000, (2, n), dtype=np.int16),
             "bass": rng.integers(-3000, 3000, (2, n), dtype=np.int16),
             "other": rng.integers(-3000, 3000, (2, n), dtype=np.int16)}  # no vocals: written as zeros
    meta = {"source": "modules", "package": "tiny", "song": "song", "licence": "GPL-2+",
            "channels": {"0: kick": "drums", "1: bass": "bass", "2: lead": "other"},
            "split": modules.split_of("tiny_song"), "band_limited_hz": None}
    path = tmp_path / "out" / "modules_tiny_song.npz"
    modules.write_song(path, stems, meta)
    assert path.exists() and [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == {"vocals", "drums", "bass", "other", "meta"}
        assert z["meta"].shape == () and z["meta"].dtype.kind == "U"
        assert json.loads(str(z["meta"][()])) == meta
    got, got_meta = modules.read_song(path)
    assert got_meta == meta
    for name in modules.STEMS:
        assert got[name].dtype == np.int16 and got[name].shape == (2, n)
    assert not got["vocals"].any()
    for name, a in stems.items():
        np.testing.assert_array_equal(got[name], a)


def test_writer_rejects_mismatched_lengths(tmp_path):
    with pytest.raises(ValueError):
        modules.write_song(tmp_path / "x.npz", {"drums": np.zeros((2, 10), np.int16),
                                                 "bass": np.zeros((2, 11), np.int16)}, {})
    assert not list(tmp_path.iterdir())
