"""Presets and platforms: shipped files load, round-trip, and bad files name the file and key."""

import tomllib

import pytest

from roomtone.mastering.presets import load_preset, parse_preset, preset_paths
from roomtone.platforms import get_platform, load_platforms
from roomtone.errors import PresetError

EXPECTED_PLATFORMS = {
    "spotify": (-14.0, -1.0), "apple": (-16.0, -1.0), "youtube": (-14.0, -1.0), "tidal": (-14.0, -1.0),
    "amazon": (-14.0, -1.0), "deezer": (-15.0, -1.0), "podcast": (-16.0, -1.0), "ebu-r128": (-23.0, -1.0),
    "atsc-a85": (-24.0, -2.0),
}


def test_platform_targets_are_exactly_the_published_ones():
    platforms = load_platforms()
    assert {name: (p.target_lufs, p.ceiling_dbtp) for name, p in platforms.items()} == EXPECTED_PLATFORMS


def test_styles_and_at_least_six_genres_ship():
    presets = {name: load_preset(name) for name in preset_paths()}
    assert {"warm", "balanced", "open", "aggressive"} <= {n for n, p in presets.items() if p.category == "style"}
    assert len([p for p in presets.values() if p.category == "genre"]) >= 6


@pytest.mark.parametrize("name", sorted(preset_paths()))
def test_preset_round_trips_through_toml(name, tmp_path):
    preset = load_preset(name)
    text = preset.to_toml()
    again = parse_preset(tomllib.loads(text), source=preset.source)
    assert again == preset
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    from_file = load_preset(str(path))
    assert from_file.chain == preset.chain
    assert [p.kind for p in preset.chain] == ["eq", "multiband", "width", "saturation"]


def _write(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return str(path)


GOOD = load_preset("balanced").to_toml()


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('name = "balanced"', 'name = "balanced"\ncolour = "red"'), r"bad\.toml: unknown key 'colour'"),
    (lambda t: t.replace("schema_version = 1", "schema_version = 9"), r"bad\.toml: schema_version must be 1"),
    (lambda t: t.replace("knee_db = 6.0", "knee_db = 99.0"), r"bad\.toml: chain\[1\] \(multiband\): multiband\.knee_db=99 dB is outside 0\.\.24 dB"),
    (lambda t: t.replace("knee_db = 6.0", "knee = 6.0"), r"bad\.toml: chain\[1\] \(multiband\): multiband: unknown parameter 'knee'"),
    (lambda t: t.replace('kind = "width"', 'kind = "reverb"'), r"bad\.toml: chain\[2\] \(reverb\): unknown processor kind 'reverb'"),
    (lambda t: t.replace("lookahead_ms = 3.0", "lookahead_ms = 300.0"), r"bad\.toml: key 'limiter\.lookahead_ms'=300\.0 is outside 0\.5\.\.20 ms"),
    (lambda t: t.replace("release_ms = 80.0", "releases_ms = 80.0", 1), r"bad\.toml: unknown key 'limiter\.releases_ms'"),
    (lambda t: t.replace('category = "style"', 'category = "mood"'), r"bad\.toml: key 'category' must be one of"),
    (lambda t: t + "[[[", r"bad\.toml: not valid TOML"),
    (lambda t: t.replace("width = 1.0", 'width = "wide"'), r"bad\.toml: chain\[2\] \(width\): width\.width must be a number"),
])
def test_bad_preset_file_names_file_and_key(tmp_path, edit, message):
    path = _write(tmp_path, edit(GOOD))
    with pytest.raises(PresetError, match=message):
        load_preset(path)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(PresetError, match="unknown preset 'loud'; known: .*balanced"):
        load_preset("loud")
    with pytest.raises(PresetError, match="unknown platform 'myspace'; known: spotify"):
        get_platform("myspace")
    with pytest.raises(PresetError, match="preset file not found"):
        load_preset("/nonexistent/x.toml")


def test_both_jobs_read_preset_files_through_the_same_checks(tmp_path):
    """The master and enhance loaders share roomtone.preset_data: one message for one fault."""
    from roomtone.enhance.presets import load_preset as load_enhance_preset

    master = tmp_path / "m.toml"
    master.write_text(GOOD.replace("lookahead_ms = 3.0", "lookahead_ms = true"))
    with pytest.raises(PresetError, match=r"m\.toml: key 'limiter\.lookahead_ms'=True is outside 0\.5\.\.20 ms"):
        load_preset(master)
    enhance = tmp_path / "e.toml"
    enhance.write_text('schema_version = 1\nname = "e"\ndescription = "d"\n[loudness]\nlookahead_ms = true\n')
    with pytest.raises(PresetError, match=r"e\.toml: key 'loudness\.lookahead_ms'=True is outside 0\.5\.\.20 ms"):
        load_enhance_preset(enhance)
    enhance.write_text('schema_version = 1\nname = "e"\ndescription = "d"\n[loudness]\nloud = 1\n')
    with pytest.raises(PresetError, match=r"unknown key 'loudness\.loud'; allowed: platform, lookahead_ms, "):
        load_enhance_preset(enhance)
    for load in (load_preset, load_enhance_preset):
        with pytest.raises(PresetError, match=r"x\.toml: preset file not found"):
            load(tmp_path / "x.toml")


def test_an_empty_chain_round_trips_through_toml():
    import dataclasses

    from roomtone.processor import Chain

    preset = dataclasses.replace(load_preset("balanced"), chain=Chain(), source="<data>")
    text = preset.to_toml()
    assert "[[chain]]" not in text and "chain =" not in text
    assert parse_preset(tomllib.loads(text)) == preset
