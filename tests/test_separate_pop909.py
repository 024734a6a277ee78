"""The POP909 stem renderer on small songs written here with mido (not the dataset): note and
tempo extraction, the beat grid, excerpts on bar lines, clipping, bass roots, drums on the 16th
grid, programs in their sets, the split, the SoundFont preset reader, loading; one render through
fluidsynth when it and a soundfont are installed."""

import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from roomtone.separate.training import pop909 as p

mido = pytest.importorskip("mido", reason="mido (the test or train extra) writes the test songs")

TPB = 480
BAR = 4 * TPB
# one bar each: C major, A minor, nothing, F major (root position, the root lowest)
CHORDS = [(48, 52, 55), (45, 48, 52), (), (41, 45, 48)]
GM_PRESETS = frozenset({(0, k) for k in range(128)} | {(128, k) for k in p.DRUM_KITS})


def _song(bars=8, offset=0, pickup=0, melody=True, signature=(4, 4)):
    """{track: [(start, end, pitch, velocity)]}: chords held a bar each (CHORDS over and over), a
    melody of 8th notes in the bars with a chord, a BRIDGE note per bar; every tick + ``offset``,
    the first chord after ``pickup`` beats."""
    tracks = {"MELODY": [], "BRIDGE": [], "PIANO": []}
    start = offset + pickup * TPB
    for b in range(bars):
        chord = CHORDS[b % len(CHORDS)]
        t = start + b * BAR
        for pitch in chord:
            tracks["PIANO"].append((t, t + BAR - 10, pitch, 70))
        if chord:
            tracks["BRIDGE"].append((t + TPB, t + 2 * TPB, 76, 60))
            if melody:
                tracks["MELODY"] += [(t + k * TPB // 2, t + (k + 1) * TPB // 2 - 20, 67 + k % 5, 90) for k in range(8)]
    if not melody:
        del tracks["MELODY"]
    return tracks


def _write(path, tracks, tempos=((0, 500000),), signature=(4, 4), pedals=None):
    """A type-1 MIDI file: a tempo track, then one named track per entry (note-offs as note_off,
    but PIANO's as zero-velocity note_on, as POP909 writes them)."""
    midi = mido.MidiFile(type=1, ticks_per_beat=TPB)

    def track(events, name=None):
        out = mido.MidiTrack()
        if name:
            out.append(mido.MetaMessage("track_name", name=name, time=0))
        now = 0
        for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
            out.append(msg.copy(time=tick - now))
            now = tick
        return out

    meta = [(0, 0, mido.MetaMessage("time_signature", numerator=signature[0], denominator=signature[1]))]
    meta += [(t, 1, mido.MetaMessage("set_tempo", tempo=u)) for t, u in tempos]
    midi.tracks.append(track(meta))
    for channel, (name, notes) in enumerate(tracks.items()):
        events = [(0, 0, mido.Message("program_change", channel=channel, program=0))]
        for a, b, pitch, velocity in notes:
            events.append((a, 2, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)))
            off = (mido.Message("note_on", channel=channel, note=pitch, velocity=0) if name == "PIANO"
                   else mido.Message("note_off", channel=channel, note=pitch, velocity=0))
            events.append((b, 1, off))
        for a, b in (pedals or {}).get(name, ()):
            events.append((a, 1, mido.Message("control_change", channel=channel, control=64, value=100)))
            events.append((b, 1, mido.Message("control_change", channel=channel, control=64, value=0)))
        midi.tracks.append(track(events, name))
    midi.save(str(path))
    return path


# ---------------------------------------------------------------------------------------------
# parsing


def test_notes_tempo_and_pedal_are_read(tmp_path):
    tracks = _song(bars=4)
    tempos = ((0, 500000), (2 * BAR, 600000))  # 120 bpm, then 100 bpm from bar 2
    song = p.read_song(_write(tmp_path / "a.mid", tracks, tempos, pedals={"PIANO": [(0, BAR // 2)]}))
    assert song.ticks_per_beat == TPB
    assert song.tempos == tempos
    assert song.time_signatures == ((0, 4, 4),)
    for name, notes in tracks.items():
        assert [tuple(n) for n in song.tracks[name]] == sorted(notes)
    assert song.pedals["PIANO"] == ((0, BAR // 2),)
    # 8 beats at 0.5 s, then 0.6 s a beat
    assert p.seconds_at(song, 2 * BAR) == pytest.approx(4.0)
    assert p.seconds_at(song, 3 * BAR) == pytest.approx(4.0 + 4 * 0.6)
    assert np.allclose(p.seconds_at(song, np.array([0, TPB, 2 * BAR + TPB])), [0.0, 0.5, 4.6])
    for ticks in (0, 700, 2 * BAR, 3 * BAR + 5):
        assert p.ticks_at(song, p.seconds_at(song, ticks)) == pytest.approx(ticks)


def test_overlapping_same_pitch_notes_close_first_on_first_off(tmp_path):
    song = p.read_song(_write(tmp_path / "a.mid", {"MELODY": [(0, 300, 60, 80), (100, 500, 60, 90)]}))
    assert [tuple(n) for n in song.tracks["MELODY"]] == [(0, 300, 60, 80), (100, 500, 60, 90)]


def test_an_unreadable_file_is_a_song_error(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd not really")
    with pytest.raises(p.SongError, match="not a readable MIDI file"):
        p.read_song(bad)


# ---------------------------------------------------------------------------------------------
# grid and excerpt


@pytest.mark.parametrize("offset,pickup", [(0, 0), (40, 0), (0, 1), (455, 3)])
def test_beat_grid_finds_the_phase_and_the_downbeat(tmp_path, offset, pickup):
    song = p.read_song(_write(tmp_path / "a.mid", _song(bars=8, offset=offset, pickup=pickup)))
    grid = p.beat_grid(song)
    assert grid.phase_tick == offset % TPB
    assert grid.beats_per_bar == 4
    assert grid.bar_tick(0) % BAR == (offset + pickup * TPB) % BAR  # a chord change is a bar line


@pytest.mark.parametrize("signature,beats", [((4, 4), 4), ((1, 4), 4), ((2, 4), 4), ((3, 4), 3), ((6, 8), 3)])
def test_bar_length_from_the_time_signature(tmp_path, signature, beats):
    song = p.read_song(_write(tmp_path / "a.mid", _song(bars=4), signature=signature))
    assert p.beat_grid(song).beats_per_bar == beats


@pytest.mark.parametrize("seed", range(6))
def test_excerpt_starts_on_a_bar_line_and_notes_are_clipped(tmp_path, seed):
    tempos = ((0, 500000), (5 * BAR + 100, 450000))
    song = p.read_song(_write(tmp_path / "a.mid", _song(bars=12, offset=40, pickup=1), tempos))
    grid = p.beat_grid(song)
    ex = p.choose_excerpt(song, grid, 6.0, np.random.default_rng(seed))
    first = min(n.start_tick for ns in song.tracks.values() for n in ns)
    last = max(n.end_tick for ns in song.tracks.values() for n in ns)
    assert (ex.start_tick - grid.bar_tick(0)) % grid.bar_ticks == 0 and ex.start_tick >= first
    assert ex.start_tick == grid.bar_tick(ex.start_bar)
    assert p.seconds_at(song, ex.start_tick) == pytest.approx(ex.start_s)
    assert p.seconds_at(song, ex.end_tick) - ex.start_s == pytest.approx(6.0, abs=0.5 / TPB)
    assert ex.end_tick <= last + 1
    length = ex.end_tick - ex.start_tick
    for name in song.tracks:
        clipped = p.clip_notes(song.tracks[name], ex.start_tick, ex.end_tick)
        expected = sorted((max(a, ex.start_tick) - ex.start_tick, min(b, ex.end_tick) - ex.start_tick, pitch, v)
                          for a, b, pitch, v in song.tracks[name] if b > ex.start_tick and a < ex.end_tick)
        assert [tuple(n) for n in clipped] == expected
        assert all(0 <= n.start_tick < n.end_tick <= length for n in clipped)


def test_clip_notes_cuts_and_shifts():
    notes = [p.Note(0, 100, 60, 80), p.Note(50, 250, 62, 80), p.Note(150, 180, 64, 80), p.Note(190, 400, 65, 80),
             p.Note(300, 320, 67, 80)]
    assert p.clip_notes(notes, 100, 300) == (p.Note(0, 150, 62, 80), p.Note(50, 80, 64, 80), p.Note(90, 200, 65, 80))


def test_a_song_shorter_than_the_excerpt_is_refused(tmp_path):
    song = p.read_song(_write(tmp_path / "a.mid", _song(bars=4)))  # 8 s at 120 bpm
    grid = p.beat_grid(song)
    assert p.choose_excerpt(song, grid, 8.0 - 0.1, np.random.default_rng(0)).start_tick == 0
    with pytest.raises(p.SongError, match="too short"):
        p.choose_excerpt(song, grid, 8.5, np.random.default_rng(0))


def test_a_song_without_melody_is_refused_before_any_render(tmp_path):
    path = _write(tmp_path / "007.mid", _song(bars=8, melody=False))
    with pytest.raises(p.SongError, match="no MELODY"):
        p.render_song(path, tmp_path, seconds=4.0, rate=44100, seed=0, soundfonts=[], fluidsynth="/nonexistent")
    assert sorted(os.listdir(tmp_path)) == ["007.mid"]


# ---------------------------------------------------------------------------------------------
# bass and drums


def test_chord_roots_are_the_lowest_pitch_and_the_tune_alone_is_no_chord_change():
    notes = [p.Note(0, 2 * TPB, 48, 70), p.Note(0, 2 * TPB, 55, 70),  # C in beats 0-1
             p.Note(2 * TPB, 3 * TPB, 72, 70),  # the tune alone in beat 2: C goes on
             p.Note(4 * TPB, 5 * TPB, 43, 70)]  # nothing in beat 3, G in beat 4
    assert p.chord_roots(notes, TPB, 6) == [48, 48, 48, None, 43, None]
    # jitter: a note a little early still counts; one released just after the beat does not
    early = [p.Note(TPB - 10, 2 * TPB, 50, 70), p.Note(0, TPB + 20, 40, 70)]
    assert p.chord_roots(early, TPB, 2) == [40, 50]


@pytest.mark.parametrize("register", [(24, 29, 33), (55, 57, 64)], ids=["low", "high"])  # roots under, over the bass range
@pytest.mark.parametrize("beats_per_bar", [3, 4])
@pytest.mark.parametrize("pattern", p.BASS_PATTERNS)
def test_bass_notes_are_chord_roots_in_range_and_only_under_chords(pattern, beats_per_bar, register):
    rng = np.random.default_rng(3)
    chords = [rng.choice([None, *register]) for _ in range(8)]  # a chord per half bar (2 beats)
    half = 2 * TPB
    acc = [p.Note(k * half, (k + 1) * half, int(c) + d, 70) for k, c in enumerate(chords) if c is not None
           for d in (0, 4, 7)]
    beats = 4 * len(chords) // 2
    roots = p.chord_roots(acc, TPB, beats)
    assert roots == [None if chords[k // 2] is None else int(chords[k // 2]) for k in range(beats)]
    notes = p.bass_line(roots, TPB, beats_per_bar, pattern, rng)
    assert notes
    for n in notes:
        assert p.BASS_RANGE[0] <= n.pitch <= p.BASS_RANGE[1]
        assert 1 <= n.velocity <= 127 and n.end_tick > n.start_tick
        covered = range(n.start_tick // TPB, (n.end_tick - 1) // TPB + 1)
        root = roots[n.start_tick // TPB]
        assert root is not None
        assert all(roots[k] == root for k in covered)  # never held over a change or into a rest
        allowed = {root % 12, (root + 7) % 12} if pattern == "root_fifth" else {root % 12}
        assert n.pitch % 12 in allowed
    for k, root in enumerate(roots):
        if root is None:
            assert not [n for n in notes if n.start_tick < (k + 1) * TPB and n.end_tick > k * TPB]


def test_bass_pitch_takes_the_octave_nearest_the_last_note():
    assert p.place_pitch(60, None, 36) == 36  # the first note: at the centre
    assert p.place_pitch(43, 36, 36) == 31  # G below C (a fourth) rather than above (a fifth)
    assert p.place_pitch(40, 47, 38) == 40 and p.place_pitch(5, 30, 38) == 29
    assert p.place_pitch(64, 50, 38) == 52 and p.place_pitch(4, 28, 28) == 28  # the range's ends
    for pitch in range(0, 128, 5):
        for previous in (None, 28, 40, 52):
            q = p.place_pitch(pitch, previous, 38)
            assert 28 <= q <= 52 and q % 12 == pitch % 12


@pytest.mark.parametrize("beats_per_bar", [3, 4])
@pytest.mark.parametrize("kind", p.DRUM_KINDS)
def test_drums_are_on_the_16th_grid_with_gm_keys(kind, beats_per_bar):
    fills = crashes = 0
    for seed in range(6):
        notes, info = p.drum_part(TPB, beats_per_bar, 16, np.random.default_rng(seed), first_bar=3, kind=kind)
        assert info["kind"] == kind and info["phrase_bars"] in (4, 8)
        assert notes
        for n in notes:
            assert n.start_tick % (TPB // 4) == 0
            assert n.pitch in p.GM_DRUM_KEYS
            assert 1 <= n.velocity <= 127
            assert 0 <= n.start_tick < n.end_tick <= 16 * beats_per_bar * TPB
        onsets = {(n.start_tick, n.pitch) for n in notes}
        assert len(onsets) == len(notes)  # no key struck twice at once
        kicks = {n.start_tick for n in notes if n.pitch == info["kick"]}
        assert 0 in kicks  # the groove starts on a kick
        fills += info["fills"]
        crashes += info["crashes"]
    assert fills > 0 and crashes > 0


def test_drum_velocities_are_humanised_but_timing_is_not():
    a, _ = p.drum_part(TPB, 4, 8, np.random.default_rng(0), kind="straight8")
    b, _ = p.drum_part(TPB, 4, 8, np.random.default_rng(0), kind="straight8")
    assert a == b  # seeded
    hats = [n.velocity for n in a if n.pitch == p.HAT_CLOSED and n.start_tick % TPB == 0]
    assert len(set(hats)) > 1


# ---------------------------------------------------------------------------------------------
# stems


def _plan(tmp_path, seed, presets=GM_PRESETS):
    song = p.read_song(_write(tmp_path / "a.mid", _song(bars=12)))
    grid = p.beat_grid(song)
    rng = np.random.default_rng(seed)
    excerpt = p.choose_excerpt(song, grid, 10.0, rng)
    return song, grid, excerpt, p.plan_stems(song, grid, excerpt, presets, rng)


@pytest.mark.parametrize("seed", range(8))
def test_programs_are_in_their_sets(tmp_path, seed):
    _, _, _, stems = _plan(tmp_path, seed)
    assert set(stems) == set(p.STEMS)
    (melody,) = stems["melody"].parts
    assert melody.program in p.VOICE_PROGRAMS and melody.channel != p.DRUM_CHANNEL
    other = stems["other"].parts
    assert len(other) == 2 and len({q.program for q in other}) == 2 and len({q.channel for q in other}) == 2
    assert all(q.program in p.OTHER_PROGRAMS and q.channel != p.DRUM_CHANNEL for q in other)
    (bass,) = stems["bass"].parts
    assert bass.program in p.BASS_PROGRAMS and bass.channel != p.DRUM_CHANNEL
    (drums,) = stems["drums"].parts
    assert drums.channel == p.DRUM_CHANNEL and drums.program in p.DRUM_KITS
    for stem in stems.values():
        for part in stem.parts:
            assert all(0 <= v <= 127 for v in (part.volume, part.pan, part.reverb_send, part.chorus_send))
            assert all(1 <= n.velocity <= 127 for n in part.notes)


def test_programs_a_soundfont_lacks_are_not_chosen(tmp_path):
    presets = frozenset({(0, 53), (0, 33), (0, 0), (0, 40), (128, 0)})
    for seed in range(4):
        _, _, _, stems = _plan(tmp_path, seed, presets)
        assert stems["melody"].parts[0].program == 53
        assert stems["bass"].parts[0].program == 33
        assert {q.program for q in stems["other"].parts} == {0, 40}
        assert stems["drums"].parts[0].program == 0


def test_stem_midi_round_trip(tmp_path):
    _, _, excerpt, stems = _plan(tmp_path, 1)
    length = excerpt.end_tick - excerpt.start_tick
    tempos = ((0, 500000), (TPB, 400000))
    for name, stem in stems.items():
        path = tmp_path / f"{name}.mid"
        p.stem_midi(stem, tempos, TPB, length).save(str(path))
        back = p.read_song(path)
        assert back.tempos == tempos
        midi = mido.MidiFile(str(path))
        assert all(sum(m.time for m in t) == length for t in midi.tracks)  # every track lasts the excerpt
        got = sorted(n for notes in back.tracks.values() for n in notes)
        assert got == sorted(n for part in stem.parts for n in part.notes)
        channels = {m.channel for t in midi.tracks for m in t if m.type == "note_on"}
        assert channels == {part.channel for part in stem.parts if part.notes}


def test_the_same_seed_plans_the_same_song(tmp_path):
    a = _plan(tmp_path, 5)[3]
    b = _plan(tmp_path, 5)[3]
    assert a == b


# ---------------------------------------------------------------------------------------------
# split, soundfonts, loading


def test_validation_split_is_deterministic_by_song_id():
    assert [p.split_of(i) for i in ("001", "009", "010", "100", "909", "910")] == \
        ["train", "train", "val", "val", "train", "val"]
    assert p.split_of(20) == p.split_of("020") == "val"


def _riff_chunk(name, data, pad=True):
    out = name + struct.pack("<I", len(data)) + data
    return out + (b"\0" if pad and len(data) % 2 else b"")


def test_soundfont_presets_read_from_the_preset_headers(tmp_path):
    def phdr(name, program, bank):
        return name.ljust(20, b"\0") + struct.pack("<HHHIII", program, bank, 0, 0, 0, 0)

    pdta = b"pdta" + _riff_chunk(b"phdr", phdr(b"Piano", 0, 0) + phdr(b"Kit", 16, 128) + phdr(b"EOP", 0, 0))
    for pad in (True, False):  # MuseScore_General.sf3 leaves out the pad byte of an odd chunk
        body = b"sfbk" + _riff_chunk(b"LIST", b"INFO" + _riff_chunk(b"ifil", b"\2\0\1\0")) \
            + _riff_chunk(b"LIST", b"sdta" + _riff_chunk(b"smpl", b"\0" * 7, pad), pad) + _riff_chunk(b"LIST", pdta)
        path = tmp_path / "tiny.sf2"
        path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
        assert p.soundfont_presets(path) == {(0, 0), (128, 16)}
    path.write_bytes(b"RIFF\4\0\0\0WAVE")
    with pytest.raises(p.SongError, match="not a SoundFont"):
        p.soundfont_presets(path)


def test_soundfont_licences_are_recorded():
    assert p.soundfont_licence("/usr/share/sounds/sf2/FluidR3_GM.sf2")["licence"] == "MIT"
    assert p.soundfont_licence("/somewhere/TimGM6mb.sf2")["licence"] == "GPL-2"
    assert p.soundfont_licence("/somewhere/else.sf2")["licence"].startswith("unknown")


def _fake_song(folder, song_id, samples, rate=44100):
    import soundfile as sf

    folder = folder / song_id
    folder.mkdir()
    for k, stem in enumerate(p.STEMS):
        x = np.full((samples, 2), 1000 * (k + 1), np.int16)
        x[:, 1] = -x[:, 1]
        sf.write(str(folder / f"{stem}.flac"), x, rate, subtype="PCM_16")
    (folder / "song.json").write_text(json.dumps({"id": song_id, "rate": rate, "stems": {},
                                                  "soundfont": p.soundfont_licence("x/FluidR3_GM.sf2")}))


def test_load_stems_keeps_the_split_and_the_scale(tmp_path):
    for song_id in ("001", "010", "011", "020"):
        _fake_song(tmp_path, song_id, 100)
    (tmp_path / ".012-abc.part").mkdir()  # an interrupted song is not a song
    (tmp_path / "013").mkdir()  # nor a folder without its stems
    train = p.load_stems(tmp_path, "train")
    val = p.load_stems(tmp_path, "val", dtype="float32")
    assert [i for i, _ in train] == ["001", "011"] and [i for i, _ in val] == ["010", "020"]
    stems = train[0][1]
    assert set(stems) == set(p.STEMS)
    assert stems["bass"].dtype == np.int16 and stems["bass"].shape == (2, 100)
    assert stems["bass"][0, 0] == 3000 and stems["bass"][1, 0] == -3000
    f = val[0][1]["bass"]
    assert f.dtype == np.float32 and f[0, 0] == pytest.approx(3000 * p.SCALE)
    doc = p.write_manifest(tmp_path, {"099": "too short"})
    assert doc["split"]["val"] == ["010", "020"] and doc["split"]["train"] == ["001", "011"]
    assert doc["licences"]["POP909"]["licence"] == "MIT"
    assert json.loads((tmp_path / "manifest.json").read_text())["skipped"] == {"099": "too short"}
    with pytest.raises(ValueError, match="split"):
        p.load_stems(tmp_path, "test")


def test_importing_the_module_does_not_import_mido():
    code = "import sys, roomtone.separate, roomtone.separate.training.pop909; print('mido' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------
# a render


def _smallest_soundfont():
    fonts = [f for f in p.DEFAULT_SOUNDFONTS if os.path.isfile(f)]
    return min(fonts, key=os.path.getsize) if fonts else None


def _fluidsynth_and_soundfont():
    if not os.path.isfile("/usr/bin/fluidsynth"):
        pytest.skip("/usr/bin/fluidsynth is not installed (apt-get install fluidsynth)")
    font = _smallest_soundfont()
    if font is None:
        pytest.skip(f"no General MIDI soundfont at {', '.join(p.DEFAULT_SOUNDFONTS)} (apt-get install fluid-soundfont-gm)")
    return font


@pytest.mark.fluidsynth
def test_a_stem_that_would_clip_renders_again_quieter(tmp_path, monkeypatch):
    font = _fluidsynth_and_soundfont()
    notes = tuple(p.Note(t, t + 60, key, 127) for t in range(0, 4 * TPB, TPB // 2) for key in (36, 38, 49, 42))
    stem = p.Stem((p.Part(p.DRUM_CHANNEL, 0, notes, volume=127),))
    p.stem_midi(stem, ((0, 500000),), TPB, 4 * TPB).save(str(tmp_path / "drums.mid"))
    monkeypatch.setattr(p, "START_GAIN", 8.0)
    samples = 22050 * 2
    audio, info = p.render_stem(tmp_path / "drums.mid", font, 22050, samples, reverb=False, chorus=False,
                                fluidsynth="/usr/bin/fluidsynth", workdir=tmp_path)
    assert audio.shape == (2, samples) and audio.dtype == np.float32
    assert info["gain"] < 8.0 and info["fluidsynth"][info["fluidsynth"].index("-g") + 1] == f"{info['gain']:.4f}"
    assert 0.5 < np.abs(audio).max() < p.CLIP_PEAK


@pytest.mark.fluidsynth
def test_a_synthetic_song_renders_four_aligned_stems(tmp_path, capsys):
    font = _fluidsynth_and_soundfont()
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    _write(data / "001.mid", _song(bars=2))  # 4 s at 120 bpm
    _write(data / "002.mid", _song(bars=2, melody=False))
    _write(data / "010.mid", _song(bars=1))  # 2 s: shorter than the excerpt
    args = ["--out", str(out), "--data", str(data), "--songs", "10", "--seconds", "3.5", "--seed", "1",
            "--soundfont", font, "--fluidsynth", "/usr/bin/fluidsynth"]
    assert p.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("001 train 3.5 s from bar 0")
    assert lines[1] == "002 skipped: no MELODY track (or no notes in it)"
    assert lines[2].startswith("003 skipped: no ")
    assert lines[9].startswith("010 skipped: too short")
    assert sorted(os.listdir(out)) == ["001", "manifest.json"]  # no half song, no temporary folder
    samples = round(3.5 * 44100)
    (song_id, stems), = p.load_stems(out, "train")
    assert song_id == "001"
    for name, x in stems.items():
        assert x.shape == (2, samples) and x.dtype == np.int16, name
        assert 0 < np.abs(x.astype(np.int32)).max() < 32767, name  # sound, and no clipping
    doc = json.loads((out / "manifest.json").read_text())
    (meta,) = doc["songs"]
    assert meta["samples"] == samples and meta["soundfont"]["file"] == os.path.basename(os.path.realpath(font))
    assert doc["licences"]["soundfonts"][meta["soundfont"]["file"]]["licence"] == meta["soundfont"]["licence"]
    assert set(doc["skipped"]) == {"002", "010"}
    for name in p.STEMS:
        info = meta["stems"][name]
        assert info["peak_dbfs"] < 0 and "-F" not in info["fluidsynth"] and "-g" in info["fluidsynth"]
    # resumable: a second run keeps the song as it is
    before = (out / "001" / "drums.flac").stat().st_mtime_ns
    assert p.main(args) == 0
    assert capsys.readouterr().out.splitlines()[0] == "001 exists, skipped"
    assert (out / "001" / "drums.flac").stat().st_mtime_ns == before
    shutil.rmtree(out)
