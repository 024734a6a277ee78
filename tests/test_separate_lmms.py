"""The LMMS demo staging (roomtone.separate.training.lmms): the .mmpz container, the track list, the
copies that let one track be heard, the cut at --max-seconds, the DEP-5 licence reading, the
grouping table and the residual. Synthetic projects and copyright texts built here; only the last
test runs the lmms binary (skipped with the reason where it is not installed)."""

import shutil
import struct
import xml.etree.ElementTree as ET
import zlib

import numpy as np
import pytest
import soundfile as sf

from roomtone.separate.training import lmms

RATE = lmms.SAMPLE_RATE

PROJECT = """<?xml version="1.0"?>
<!DOCTYPE lmms-project>
<lmms-project version="1.0" creator="LMMS" creatorversion="1.2.2" type="song">
  <head bpm="{bpm}" timesig_numerator="4" timesig_denominator="4" mastervol="100" masterpitch="0"/>
  <song>
    <trackcontainer type="song">
      <track type="0" name="Lead" muted="0" solo="1">
        <instrumenttrack vol="100" pan="0" fxch="1" pitch="0" basenote="57" pitchrange="1">
          <instrument name="tripleoscillator"><tripleoscillator/></instrument>
          <fxchain enabled="0" numofeffects="1">
            <effect name="delay" on="1" wet="1" gate="0" autoquit="1"><key/></effect>
          </fxchain>
        </instrumenttrack>
        <pattern pos="0" len="192" name="Lead" type="1" muted="0" steps="16">
          <note pos="0" len="48" key="69" vol="100" pan="0"/>
          <note pos="96" len="48" key="72" vol="100" pan="0"/>
        </pattern>
        <pattern pos="1000" len="384" name="Lead" type="1" muted="0" steps="16">
          <note pos="0" len="48" key="69" vol="100" pan="0"/>
          <note pos="200" len="48" key="69" vol="100" pan="0"/>
          <note pos="300" len="48" key="69" vol="100" pan="0"/>
        </pattern>
        <pattern pos="5000" len="192" name="Lead" type="1" muted="0" steps="16"/>
      </track>
      <track type="0" name="Bass" muted="0" solo="0">
        <instrumenttrack vol="100" pan="0" fxch="1" pitch="0" basenote="57" pitchrange="1">
          <instrument name="tripleoscillator"><tripleoscillator/></instrument>
          <fxchain enabled="1" numofeffects="0"/>
        </instrumenttrack>
        <pattern pos="0" len="192" name="Bass" type="1" muted="0" steps="16">
          <note pos="0" len="180" key="33" vol="100" pan="0"/>
        </pattern>
      </track>
      <track type="0" name="Old pad" muted="1" solo="0">
        <instrumenttrack vol="100" pan="0" fxch="0" pitch="0" basenote="57" pitchrange="1">
          <instrument name="zynaddsubfx"><zynaddsubfx/></instrument>
        </instrumenttrack>
      </track>
      <track type="2" name="Sample track" muted="0" solo="0">
        <sampletrack vol="100" pan="0"/>
        <sampletco pos="0" len="96" src="beats/break01.ogg" muted="0"/>
      </track>
      <track type="1" name="Beat/Bassline 0" muted="0" solo="0">
        <bbtrack>
          <trackcontainer type="bbtrackcontainer">
            <track type="0" name="Default" muted="0" solo="0">
              <instrumenttrack vol="100" pan="0" fxch="0" pitch="0" basenote="57" pitchrange="1">
                <instrument name="kicker"><kicker/></instrument>
                <fxchain enabled="0" numofeffects="0"/>
              </instrumenttrack>
              <pattern pos="0" len="192" name="" type="0" muted="0" steps="16">
                <note pos="0" len="-192" key="57" vol="100" pan="0"/>
              </pattern>
            </track>
            <track type="0" name="kick01.ogg" muted="0" solo="0">
              <instrumenttrack vol="100" pan="0" fxch="0" pitch="0" basenote="57" pitchrange="1">
                <instrument name="audiofileprocessor"><audiofileprocessor src="drums/kick01.ogg"/></instrument>
              </instrumenttrack>
            </track>
          </trackcontainer>
        </bbtrack>
        <bbtco pos="0" len="192" name="" muted="0"/>
        <bbtco pos="1200" len="192" name="" muted="0"/>
      </track>
      <track type="5" name="Automation track" muted="0" solo="0">
        <automationtrack/>
        <automationpattern pos="0" len="192" name="vol" prog="0" tens="1" mute="0"/>
      </track>
    </trackcontainer>
    <fxmixer>
      <fxchannel num="0" name="Master" muted="0" volume="1" soloed="0">
        <fxchain enabled="0" numofeffects="0"/>
      </fxchannel>
      <fxchannel num="1" name="FX 1" muted="0" volume="1" soloed="0">
        <fxchain enabled="0" numofeffects="0"/><send channel="0" amount="1"/>
      </fxchannel>
    </fxmixer>
  </song>
</lmms-project>
"""


def project(bpm=120):
    return ET.fromstring(PROJECT.format(bpm=bpm).encode())


# --- the project file -----------------------------------------------------------------------

def test_mmpz_round_trip(tmp_path):
    xml = PROJECT.format(bpm=120).encode()
    packed = lmms.pack_mmpz(xml)
    assert struct.unpack(">I", packed[:4])[0] == len(xml)  # Qt's qCompress: big-endian length first
    assert zlib.decompress(packed[4:]) == xml
    assert lmms.unpack_mmpz(packed) == xml
    (tmp_path / "a.mmpz").write_bytes(packed)
    (tmp_path / "a.mmp").write_bytes(xml)
    a = ET.tostring(lmms.read_project(tmp_path / "a.mmpz"))
    assert a == ET.tostring(lmms.read_project(tmp_path / "a.mmp"))
    # serialised again, compressed or plain, it reads back to the same tree
    root = lmms.read_project(tmp_path / "a.mmpz")
    assert ET.tostring(ET.fromstring(lmms.unpack_mmpz(lmms.project_bytes(root, compressed=True)))) == a
    assert lmms.project_bytes(root).startswith(b'<?xml version="1.0"?>\n<!DOCTYPE lmms-project>\n<lmms-project')


def test_mmpz_with_a_wrong_length_is_refused():
    packed = lmms.pack_mmpz(b"<lmms-project/>")
    with pytest.raises(ValueError):
        lmms.unpack_mmpz(struct.pack(">I", 999) + packed[4:])
    with pytest.raises(ValueError):
        lmms.unpack_mmpz(b"\x00\x01")


def test_tracks_lists_instrument_and_sample_tracks_beat_tracks_inside():
    listed = lmms.tracks(project())
    assert [(t["index"], t["name"], t["type"], t["plugin"], t["in_beat"], t["muted"]) for t in listed] == [
        (0, "Lead", "0", "tripleoscillator", False, False),
        (1, "Bass", "0", "tripleoscillator", False, False),
        (2, "Old pad", "0", "zynaddsubfx", False, True),
        (3, "Sample track", "2", "sample", False, False),
        (4, "Default", "0", "kicker", True, False),
        (5, "kick01.ogg", "0", "audiofileprocessor", True, False),
    ]
    assert listed[3]["samples"] == ["beats/break01.ogg"]
    assert listed[5]["samples"] == ["drums/kick01.ogg"]


def _amplifiers(track):
    return [e for e in track.iter("effect") if e.get("name") == "amplifier"]


def test_solo_copy_silences_the_other_instrument_tracks_and_mutes_sample_tracks():
    root = project()
    before = ET.tostring(root)
    copy = lmms.solo_project(root, 1)  # the bass alone
    assert ET.tostring(root) == before  # the original is left alone
    t = {x["index"]: x for x in lmms.tracks(copy)}
    # the kept track: as it was
    assert t[1]["element"].get("muted") == "0" and not _amplifiers(t[1]["element"])
    assert t[1]["element"].find("instrumenttrack").get("fxch") == "1"
    # other instrument tracks: still playing, into their own FX channel, through a 0 % amplifier
    for i in (0, 4, 5):
        el = t[i]["element"]
        assert el.get("muted") == "0"
        chain = el.find("instrumenttrack/fxchain")
        assert chain.get("enabled") == "1"
        effects = chain.findall("effect")
        assert int(chain.get("numofeffects")) == len(effects)
        amp = effects[-1]
        assert amp.get("name") == "amplifier" and amp.get("on") == "1" and amp.get("wet") == "1"
        assert amp.find("AmplifierControls").get("volume") == "0"
    assert t[0]["element"].find("instrumenttrack").get("fxch") == "1"
    # an effect of a chain that was switched off stays off
    lead_effects = t[0]["element"].find("instrumenttrack/fxchain").findall("effect")
    assert [e.get("name") for e in lead_effects] == ["delay", "amplifier"] and lead_effects[0].get("on") == "0"
    # a track without an effect chain gets one
    assert len(t[5]["element"].find("instrumenttrack").findall("fxchain")) == 1
    # the sample track is muted, the muted track stays muted (and untouched)
    assert t[3]["element"].get("muted") == "1"
    assert t[2]["element"].get("muted") == "1" and not _amplifiers(t[2]["element"])
    # beat/bassline and automation tracks as they were; no solo left
    types = {el.get("name"): el.get("muted") for el in copy.iter("track") if el.get("type") in ("1", "5")}
    assert types == {"Beat/Bassline 0": "0", "Automation track": "0"}
    assert all(el.get("solo") == "0" for el in copy.iter("track"))
    # the copy serialises and reads back
    again = ET.fromstring(lmms.project_bytes(copy))
    assert len(lmms.tracks(again)) == 6


def test_solo_copy_of_a_beat_track_and_the_whole_song():
    copy = lmms.solo_project(project(), 4)
    t = {x["index"]: x for x in lmms.tracks(copy)}
    assert not _amplifiers(t[4]["element"])
    assert all(_amplifiers(t[i]["element"]) for i in (0, 1, 5))
    whole = lmms.solo_project(project(), None)
    assert not list(e for e in whole.iter("effect") if e.get("name") == "amplifier")
    assert [x["element"].get("muted") for x in lmms.tracks(whole)] == ["0", "0", "1", "0", "0", "0"]
    assert all(el.get("solo") == "0" for el in whole.iter("track"))


def test_limit_project_cuts_the_song_editor_clips():
    root = project(bpm=120)  # 96 ticks a second
    assert lmms.ticks_at(root, 10.0) == pytest.approx(960.0)
    cut = lmms.limit_project(root, 10.0)
    assert cut == 11 * 96 + 192  # max_seconds + the tail, then a bar
    lead = root.find("song/trackcontainer/track[@name='Lead']")
    patterns = lead.findall("pattern")
    assert [p.get("pos") for p in patterns] == ["0", "1000"]  # the clip at 5000 is gone
    assert [n.get("pos") for n in patterns[1].findall("note")] == ["0", "200"]  # 1000 + 300 >= cut
    beat = root.find("song/trackcontainer/track[@name='Beat/Bassline 0']")
    assert [(c.get("pos"), c.get("len")) for c in beat.findall("bbtco")] == [("0", "192"), ("1200", str(cut - 1200))]
    # the beat/bassline's own pattern (positions inside the beat) is untouched
    assert root.find(".//bbtrack//pattern/note") is not None


# --- licences -------------------------------------------------------------------------------

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: Example
Files-Excluded:
 data/projects/demos/Gone-*

Files: *
Copyright:
 2004-2014 Some Programmer <p@example.org>
License: GPL-2+

Files: data/projects/demos/Alpha-*
 data/projects/demos/Sub/Beta-*
Copyright:
 2010 Alpha Person
 2011 Beta Person (beta)
License: Artistic-2

Files: data/projects/*/Gamma/*
Copyright: Gamma
License: CC-BY-SA-4

Files: data/projects/demos/Alpha-Special.mmpz
Copyright: 2012 Alpha Person
License: CC-BY-NC-3.0

Files: data/projects/demos/Odd[1]?.mmp
Copyright: Odd
License: BSD-2-clause

License: GPL-2+
 This program is free software; you can redistribute it
 .
 and so on.
"""


def test_parse_copyright_reads_the_files_stanzas():
    stanzas = lmms.parse_copyright(COPYRIGHT)
    assert [s["files"] for s in stanzas] == [
        ["*"], ["data/projects/demos/Alpha-*", "data/projects/demos/Sub/Beta-*"],
        ["data/projects/*/Gamma/*"], ["data/projects/demos/Alpha-Special.mmpz"],
        ["data/projects/demos/Odd[1]?.mmp"]]
    assert [s["licence"] for s in stanzas] == ["GPL-2+", "Artistic-2", "CC-BY-SA-4", "CC-BY-NC-3.0", "BSD-2-clause"]
    assert stanzas[1]["copyright"] == ["2010 Alpha Person", "2011 Beta Person (beta)"]
    assert stanzas[2]["copyright"] == ["Gamma"]


@pytest.mark.parametrize("relative, licence", [
    ("demos/Alpha-Song.mmpz", "Artistic-2"),
    ("demos/Sub/Beta-Tune.mmp", "Artistic-2"),
    ("demos/Gamma/Gamma-X.mmpz", "CC-BY-SA-4"),      # * matches across folders
    ("shorties/Gamma/Gamma-Y.mmpz", "CC-BY-SA-4"),
    ("demos/Odd[1]x.mmp", "BSD-2-clause"),           # [ is literal in DEP-5, ? one character
    ("demos/Odd1x.mmp", None),
    ("demos/Alpha-Special.mmpz", None),              # the last matching stanza wins: CC-BY-NC
    ("demos/Unknown-Song.mmpz", None),               # only the catch-all: unclear
])
def test_project_licence(relative, licence):
    got = lmms.project_licence(relative, lmms.parse_copyright(COPYRIGHT))
    assert got["licence"] == licence
    if licence is None:
        assert got["why"]
    else:
        assert got["why"] is None and got["copyright"]


def test_project_licence_reasons():
    stanzas = lmms.parse_copyright(COPYRIGHT)
    assert "catch-all" in lmms.project_licence("demos/Unknown.mmpz", stanzas)["why"]
    assert "CC-BY-NC-3.0" in lmms.project_licence("demos/Alpha-Special.mmpz", stanzas)["why"]
    assert lmms.project_licence("demos/X.mmpz", [])["licence"] is None


@pytest.mark.skipif(not lmms.COPYRIGHT.is_file() or not lmms.DEMOS.is_dir(),
                    reason="lmms-common is not installed (apt-get install lmms)")
def test_the_installed_demos_licences():
    stanzas = lmms.parse_copyright(lmms.COPYRIGHT.read_text(encoding="utf-8"))
    got = {str(p.relative_to(lmms.PROJECTS)): lmms.project_licence(p.relative_to(lmms.PROJECTS), stanzas)["licence"]
           for p in lmms.find_projects()}
    unclear = sorted(k for k, v in got.items() if v is None)
    assert unclear == ["demos/Shovon-ProgressiveHousePluckDemo.mmpz", "demos/StrictProduction-DearJonDoe.mmp"]
    assert got["demos/Skiessi/Skiessi-C64.mmpz"] == "CC-BY-SA-4"
    assert got["demos/Saber-FinalStep.mmpz"] == "BSD-2-clause"


# --- grouping -------------------------------------------------------------------------------

def track(name, plugin="tripleoscillator", samples=(), in_beat=False):
    return {"index": 0, "name": name, "plugin": plugin, "samples": list(samples), "in_beat": in_beat,
            "type": "2" if plugin == "sample" else "0", "muted": False}


@pytest.mark.parametrize("t, group, reason", [
    # names: the tracker modules' words first, then LMMS's
    (track("Kick BD-A", "audiofileprocessor", ["drums/bassdrum_acoustic01.ogg"]), "drums", "name"),
    (track("Breathing Snare", "audiofileprocessor", ["drumsynth/misc/breathing_snare.ds"]), "drums", "name"),
    (track("Bass Slap 02", "audiofileprocessor", ["instruments/bassslap02.ogg"]), "bass", "name"),
    (track("dub bass"), "bass", "name"),
    (track("Sub Low", "kicker"), "bass", "name"),
    (track("Chords hi", "kicker"), "other", "name"),
    (track("Lead lo rev env", "kicker"), "other", "name"),
    (track("Soft Saw Pad", "zynaddsubfx"), "other", "name"),
    (track("drop end woosh up", "kicker"), "other", "name"),
    (track("FX 1 Zip", "audiofileprocessor", ["drums/zap03.ogg"]), "other", "name"),
    # the sample's own name, then its folder
    (track("Closed HihHat 03", "audiofileprocessor", ["drums/hihat_closed03.ogg"]), "drums", "sample name"),
    (track("Default preset", "audiofileprocessor", ["drumsynth/tr808/Hat_o.ds"]), "drums", "sample name"),
    (track("E-Ping", "audiofileprocessor", ["drumsynth/instrument/E_Piano.ds"]), "other", "sample name"),
    (track("Noise Clip", "audiofileprocessor", ["drumsynth/misc/noise_clip.ds"]), "drums", "sample folder"),
    (track("x", "audiofileprocessor", ["/usr/share/lmms/samples/beats/house_loop01.ogg"]), "drums", "sample folder"),
    (track("x", "audiofileprocessor", ["basses/techno_synth01.ogg"]), "bass", "sample folder"),
    (track("x", "audiofileprocessor", ["stringsnpads/chorus01.ogg"]), "other", "sample folder"),
    # the plugin
    (track("Default preset", "lb302"), "bass", "plugin"),
    (track("Sidechain", "kicker", in_beat=True), "drums", "plugin"),
    # vocals only from a recorded voice
    (track("Lead Vocal", "audiofileprocessor", ["misc/vox.ogg"]), "vocals", "name (sampled voice)"),
    (track("choir", "sample", ["my/choir.wav"]), "vocals", "name (sampled voice)"),
])
def test_group_by_metadata(t, group, reason):
    assert lmms.group_by_metadata(t) == (group, reason)


@pytest.mark.parametrize("t", [
    track("Default preset", "zynaddsubfx"),
    track("Choir", "zynaddsubfx"),                  # a synth's choir patch is no sung line
    track("Killed Voice", "tripleoscillator"),
    track("siney accent thing", "kicker"),          # kicker outside a beat/bassline: the audio decides
    track("Sonar.ds", "audiofileprocessor", ["drumsynth/effects/Sonar.ds"]),
    track("hit01.ogg", "audiofileprocessor", ["misc/hit01.ogg"]),
    track("mix", "audiofileprocessor", ["drums/kick01.ogg", "basses/bass01.ogg"]),  # folders disagree
])
def test_the_audio_decides(t):
    assert lmms.group_by_metadata(t) == (None, None)
    assert lmms.group_of(t) == ("other", "no audio")


def test_group_of_falls_back_on_the_modules_classifier():
    time = np.arange(4 * RATE) / RATE
    low = 0.5 * np.sin(2 * np.pi * 55 * time)
    group, why = lmms.group_of(track("Default preset", "zynaddsubfx"), np.stack([low, low]))
    assert group == "bass" and isinstance(why, dict) and why["low_share"] > 0.6
    assert lmms.group_of(track("Bass"), np.stack([low, low])) == ("bass", "name")


# --- rendering helpers ----------------------------------------------------------------------

def test_residual_db():
    rng = np.random.default_rng(0)
    full = rng.standard_normal((2, RATE))
    parts = [full * 0.25, full * 0.75]
    assert lmms.residual_db(sum(parts), full) == float("-inf")
    assert lmms.residual_db(full * 1.1, full) == pytest.approx(-20.0, abs=1e-6)
    assert lmms.residual_db(full + 0.01 * rng.standard_normal(full.shape), full) == pytest.approx(-40.0, abs=0.2)
    assert lmms.residual_db(full, np.zeros_like(full)) == float("inf")
    # a track lost: the residual is that track's share
    assert lmms.residual_db(parts[1], full) == pytest.approx(20 * np.log10(0.25), abs=1e-6)


def test_db_for_json():
    assert lmms._db(float("-inf")) == lmms.FLOOR_DB
    assert lmms._db(-148.54) == -148.5
    assert lmms._db(float("inf")) is None and lmms._db(float("nan")) is None


def test_fit_cuts_or_pads():
    x = np.ones((2, 5), np.float32)
    assert lmms._fit(x, 3).shape == (2, 3)
    y = lmms._fit(x, 8)
    assert y.shape == (2, 8) and not y[:, 5:].any() and y[:, :5].all()


def test_wav_complete(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros((1000, 2), np.float32), RATE, subtype="FLOAT")
    assert lmms.wav_complete(path)
    path.write_bytes(path.read_bytes()[:-100])  # a render that died before closing its file
    assert not lmms.wav_complete(path)
    (tmp_path / "b.wav").write_bytes(b"not a wav file at all")
    assert not lmms.wav_complete(tmp_path / "b.wav")
    assert not lmms.wav_complete(tmp_path / "missing.wav")


# --- with LMMS ------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("lmms") is None or not (lmms.SAMPLES / "drums/kick01.ogg").is_file(),
                    reason="needs the lmms binary and its factory samples (apt-get install lmms)")
def test_tracks_rendered_alone_sum_to_the_song(tmp_path):
    """A 4-second song of two TripleOscillator tracks sharing an FX channel and a sampled kick:
    each track rendered alone, the three sum to the whole render to float precision."""
    root = project()
    song = root.find("song/trackcontainer")
    for el in list(song.findall("track")):
        if el.get("name") not in ("Lead", "Bass"):
            song.remove(el)
    lead = song.find("track[@name='Lead']")
    for p in lead.findall("pattern")[1:]:
        lead.remove(p)
    kick = ET.SubElement(song, "track", {"type": "0", "name": "kick01.ogg", "muted": "0", "solo": "0"})
    inst = ET.SubElement(kick, "instrumenttrack", {"vol": "100", "pan": "0", "fxch": "0", "basenote": "57"})
    plugin = ET.SubElement(inst, "instrument", {"name": "audiofileprocessor"})
    ET.SubElement(plugin, "audiofileprocessor", {"src": "drums/kick01.ogg"})
    pattern = ET.SubElement(kick, "pattern", {"pos": "0", "len": "192", "type": "1", "muted": "0", "steps": "16"})
    for pos in (0, 48, 96, 144):
        ET.SubElement(pattern, "note", {"pos": str(pos), "len": "12", "key": "57", "vol": "100", "pan": "0"})
    path = tmp_path / "song.mmpz"
    path.write_bytes(lmms.project_bytes(root, compressed=True))

    r = lmms.render_song(path, max_seconds=3.0, workdir=tmp_path)
    assert r["residual_db"] < -100, r["residual_db"]
    assert r["repeat_db"] < -100
    assert [(t["key"], t["group"]) for t in r["tracks"]] == [
        ("0: Lead [tripleoscillator]", "other"), ("1: Bass [tripleoscillator]", "bass"),
        ("2: kick01.ogg [audiofileprocessor]", "drums")]
    groups = r["groups"]
    assert not groups["vocals"].any() and all(groups[s].any() for s in ("drums", "bass", "other"))
    # the lead alone holds no bass: its energy under 100 Hz is a small share
    spectrum = np.abs(np.fft.rfft(groups["other"].mean(axis=0))) ** 2
    freqs = np.fft.rfftfreq(groups["other"].shape[1], 1 / RATE)
    assert spectrum[freqs < 100].sum() < 0.01 * spectrum.sum()
    assert not list(tmp_path.glob(".lmms-*"))  # the renders' folder is gone
