"""Separation training data from the POP909 MIDI songs, rendered one stem at a time:
``melody``, ``other``, ``bass`` and ``drums`` of one excerpt, sample aligned, each from its own
MIDI file through fluidsynth, so every target of a mixture is known exactly (the mixture is their
sum). :mod:`roomtone.separate.training.data` draws its POP909 items from :func:`load_stems`.

    python -m roomtone.separate.training.pop909 --out ~/pop909 --songs 300 --seconds 30 --seed 0

A POP909 file (type 1, 480 ticks per beat) holds a tempo track and three piano tracks: MELODY (the
vocal line), BRIDGE (secondary melodies) and PIANO (the accompaniment). From one song:

- **melody**: MELODY on a voice-like General MIDI program (:data:`VOICE_PROGRAMS`), a pseudo-vocal;
- **other**: BRIDGE and PIANO, each on its own channel, program (:data:`OTHER_PROGRAMS`), pan and
  velocity scale, the sustain pedal kept;
- **bass**: made up, as POP909 has none: per beat the lowest BRIDGE or PIANO pitch sounding
  (:func:`chord_roots`; where only the tune sounds, the last root goes on), in :data:`BASS_RANGE`
  at the octave nearest the last bass note, played in one of :data:`BASS_PATTERNS`; a rest where
  no chord sounds, a note never held over a chord change;
- **drums**: made up on the song's beat grid (:func:`drum_part`): one of :data:`DRUM_KINDS` of
  groove at 8th or 16th resolution, crashes at some phrase starts, fills at some 4- or 8-bar phrase
  ends, velocity humanised, onsets exactly on the 16th-note grid, on a random GM kit.

The beat grid is estimated, because POP909's time signatures are mostly 1/4 (an artefact of its
transcription; the beat annotations ship apart from the MIDI) and its notes sit on a 16th grid
that is offset from tick 0 by a per-song phase: the beat phase is the peak of the note-onset
histogram modulo a beat; the downbeat is the beat (mod the bar) where the lowest accompaniment pitch
changes most often. A bar is the time signature's bar when it holds 3 to 7 quarter notes, else
4 beats. The excerpt starts on a bar line at or after the first note (give or take a 32nd of
playing jitter), at a random bar, preferably one where the melody sounds for a quarter of it.

Every random choice comes from ``numpy.random.default_rng([seed, song number])``: a song renders
the same whatever the other songs and the order. Held out for validation: songs whose number is
0 mod :data:`VALIDATION_EVERY` (:func:`split_of`); :func:`load_stems` applies the same rule.

Output: ``OUT/<song id>/{melody,other,bass,drums}.flac`` (16-bit stereo, exactly the excerpt's
length, peaks under full scale: a stem that would clip renders again with a lower gain) and
``song.json``, written into a hidden folder renamed into place, so a stopped run leaves no half song
and a run resumes by skipping the folders there; ``OUT/manifest.json`` (rewritten atomically
after each song from the ``song.json`` files) holds every song's metadata, the licences and the
split. Licences: POP909 MIT; the soundfonts as :data:`SOUNDFONT_LICENCES` (read from
``/usr/share/doc/<package>/copyright``). TimGM6mb is GPL-2; the manifest names each song's
soundfont, so a training run that wants MIT-only renders can leave those songs out.

Shape: a stem (2, samples) int16, ``SCALE`` per step (:func:`load_stems`).
"""

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from roomtone.errors import RoomtoneError

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "sep" / "pop909"
STEMS = ("melody", "other", "bass", "drums")
SCALE = 1.0 / 32768.0  # a stem's int16 step as a float sample
VALIDATION_EVERY = 10
SONGS = 909

VOICE_PROGRAMS = (52, 53, 54, 85)  # Choir Aahs, Voice Oohs, Synth Voice, Lead 6 (voice)
OTHER_PROGRAMS = (tuple(range(32)) + tuple(range(40, 52)) + tuple(range(56, 80)) + tuple(range(80, 85))
                  + tuple(range(86, 96)))  # pianos, chromatic perc., organs, guitars, strings, brass, reeds, synths
BASS_PROGRAMS = tuple(range(32, 40))
DRUM_KITS = (0, 8, 16, 24, 25, 32, 40, 48)  # standard, room, power, electronic, TR-808, jazz, brush, orchestra
DRUM_CHANNEL = 9  # MIDI channel 10
DRUM_BANK = 128  # where a SoundFont keeps its kits
GM_DRUM_KEYS = range(35, 82)  # General MIDI percussion key map: 35 (acoustic bass drum) .. 81 (open triangle)
BASS_RANGE = (28, 52)  # E1 .. E3, MIDI note numbers
BASS_CENTRE = (33, 44)  # the register a bass line leans to: A1 .. G#2 (55-104 Hz), drawn per song
BASS_LEAP = 11  # semitones: a lowest pitch an octave or more over the last root is the tune, not a bass note
BASS_PATTERNS = ("held", "beats", "halves", "eighths", "root_fifth", "push")
DRUM_KINDS = ("straight8", "straight16", "halftime", "disco", "ride", "ballad")

DEFAULT_SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2",
                      "/usr/share/sounds/sf3/MuseScore_General.sf3")
# file name (links resolved) -> (Debian package, licence), from /usr/share/doc/<package>/copyright
SOUNDFONT_LICENCES = {
    "FluidR3_GM.sf2": ("fluid-soundfont-gm", "MIT"),
    "TimGM6mb.sf2": ("timgm6mb-soundfont", "GPL-2"),
    "MuseScore_General_Lite.sf3": ("musescore-general-soundfont-small", "MIT (parts public domain or CC0)"),
    "MuseScore_General.sf3": ("musescore-general-soundfont", "MIT (parts public domain or CC0)"),
}
POP909_LICENCE = {"licence": "MIT", "source": "POP909 dataset (Wang et al., ISMIR 2020), MIDI files"}
START_GAIN = 0.5  # fluidsynth -g of the first try
CLIP_PEAK = 10.0 ** (-0.1 / 20.0)  # a render peaking at or over this (-0.1 dBFS) is rendered again...
RETRY_PEAK = 10.0 ** (-1.0 / 20.0)  # ...with the gain that puts its peak here (-1 dBFS)
JITTER_BEATS = 1.0 / 8.0  # playing jitter tolerated around a bar line or a beat (a 32nd note)


class SongError(RoomtoneError, ValueError):
    """A song that cannot be rendered (no MELODY track, shorter than the excerpt, unreadable)."""


class Note(NamedTuple):
    start_tick: int
    end_tick: int
    pitch: int
    velocity: int


@dataclass(frozen=True)
class Song:
    """A parsed MIDI file. ``tempos``: ((tick, microseconds per beat), ...) from tick 0;
    ``time_signatures``: ((tick, numerator, denominator), ...); ``tracks``: name -> notes sorted by
    start; ``pedals``: name -> ((down tick, up tick), ...) of the sustain pedal (CC 64 >= 64)."""

    ticks_per_beat: int
    tempos: tuple
    time_signatures: tuple
    tracks: dict
    pedals: dict

    def notes(self, *names):
        return tuple(sorted(n for name in names for n in self.tracks.get(name, ())))


@dataclass(frozen=True)
class Grid:
    """The beat grid: beat ``k`` at ``phase_tick + k * ticks_per_beat``; bars of
    ``beats_per_bar`` beats, the first downbeat at beat ``downbeat``."""

    ticks_per_beat: int
    phase_tick: int
    beats_per_bar: int
    downbeat: int

    @property
    def bar_ticks(self):
        return self.beats_per_bar * self.ticks_per_beat

    def bar_tick(self, bar):
        return self.phase_tick + (self.downbeat + bar * self.beats_per_bar) * self.ticks_per_beat


@dataclass(frozen=True)
class Excerpt:
    """``[start_tick, end_tick)`` of the song: ``seconds`` from ``start_s``, ``start_bar`` (a bar of
    the grid) onwards; ``bars`` bars cover it."""

    start_tick: int
    end_tick: int
    start_bar: int
    start_s: float
    seconds: float
    bars: int


@dataclass(frozen=True)
class Part:
    """One channel of a stem's MIDI file: a program, notes (excerpt ticks), sustain-pedal spans and
    the channel's volume (CC 7), pan (CC 10), reverb (CC 91) and chorus (CC 93) sends."""

    channel: int
    program: int
    notes: tuple
    pedals: tuple = ()
    volume: int = 100
    pan: int = 64
    reverb_send: int = 40
    chorus_send: int = 0


@dataclass(frozen=True)
class Stem:
    parts: tuple
    info: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# MIDI in


def read_song(path):
    """Parse a MIDI file (mido): tempo map, time signatures, and the notes and sustain pedal of
    every named track. A note runs from its note-on to the note-off (or zero-velocity note-on) of
    the same channel and pitch, first on first off; one never closed ends at its track's end.
    Raises :class:`SongError` for a file mido cannot read."""
    import mido

    try:
        midi = mido.MidiFile(str(path))
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise SongError(f"{path}: not a readable MIDI file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    tempos, signatures, tracks, pedals = {}, [], {}, {}
    for index, track in enumerate(midi.tracks):
        name = (track.name or f"track{index}").strip().upper()
        tick, open_notes, notes, down, spans = 0, {}, [], None, []
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempos[tick] = msg.tempo
            elif msg.type == "time_signature":
                signatures.append((tick, msg.numerator, msg.denominator))
            elif msg.type == "note_on" and msg.velocity > 0:
                open_notes.setdefault((msg.channel, msg.note), []).append((tick, msg.velocity))
            elif msg.type in ("note_on", "note_off"):
                started = open_notes.get((msg.channel, msg.note))
                if started:
                    start, velocity = started.pop(0)
                    if tick > start:
                        notes.append(Note(start, tick, msg.note, velocity))
            elif msg.type == "control_change" and msg.control == 64:
                if msg.value >= 64 and down is None:
                    down = tick
                elif msg.value < 64 and down is not None:
                    if tick > down:
                        spans.append((down, tick))
                    down = None
        for (_, pitch), started in open_notes.items():
            notes += [Note(start, tick, pitch, velocity) for start, velocity in started if tick > start]
        if down is not None and tick > down:
            spans.append((down, tick))
        if notes or spans:
            tracks[name] = tuple(sorted(tracks.get(name, ()) + tuple(notes)))
            pedals[name] = tuple(sorted(pedals.get(name, ()) + tuple(spans)))
    tempos.setdefault(0, 500000)  # MIDI's default, 120 beats per minute
    return Song(ticks_per_beat=int(midi.ticks_per_beat), tempos=tuple(sorted(tempos.items())),
                time_signatures=tuple(sorted(signatures)), tracks=tracks, pedals=pedals)


def seconds_at(song, ticks):
    """Seconds from the start at ``ticks`` (scalar or array), through the tempo map."""
    change = np.array([t for t, _ in song.tempos], np.float64)
    us = np.array([u for _, u in song.tempos], np.float64)
    per_tick = us / 1e6 / song.ticks_per_beat
    at_change = np.concatenate([[0.0], np.cumsum(np.diff(change) * per_tick[:-1])])
    ticks = np.asarray(ticks, np.float64)
    i = np.searchsorted(change, ticks, side="right") - 1
    i = np.clip(i, 0, None)
    out = at_change[i] + (ticks - change[i]) * per_tick[i]
    return float(out) if out.ndim == 0 else out


def ticks_at(song, seconds):
    """The (fractional) tick at ``seconds`` from the start, through the tempo map."""
    change = np.array([t for t, _ in song.tempos], np.float64)
    at_change = seconds_at(song, change)
    at_change = np.atleast_1d(at_change)
    i = max(0, int(np.searchsorted(at_change, seconds, side="right")) - 1)
    per_tick = song.tempos[i][1] / 1e6 / song.ticks_per_beat
    return change[i] + (seconds - at_change[i]) / per_tick


def _tempos_in(song, start_tick, end_tick):
    """The tempo map of ``[start_tick, end_tick)``, shifted to start at tick 0."""
    at_start = [u for t, u in song.tempos if t <= start_tick][-1]
    return ((0, at_start),) + tuple((t - start_tick, u) for t, u in song.tempos if start_tick < t < end_tick)


# ---------------------------------------------------------------------------------------------
# grid, excerpt, chords


def chord_roots(notes, ticks_per_beat, beats, phase_tick=0, leap=BASS_LEAP):
    """Per beat, the lowest pitch sounding over its first half (a note started by the middle of
    the beat and lasting past its first 32nd), or None where nothing sounds: the bass note of the
    chord. Where that pitch leaps more than ``leap`` semitones above the previous beat's root, the
    left hand rests (only the tune sounds) and the previous root goes on. ``notes`` are
    :class:`Note` (accompaniment), the beats ``phase_tick + k * ticks_per_beat``."""
    starts = np.array([n.start_tick for n in notes], np.int64)
    ends = np.array([n.end_tick for n in notes], np.int64)
    pitches = np.array([n.pitch for n in notes], np.int64)
    jitter = int(ticks_per_beat * JITTER_BEATS)
    roots = []
    for k in range(beats):
        t0 = phase_tick + k * ticks_per_beat
        on = (starts < t0 + ticks_per_beat // 2) & (ends > t0 + jitter)
        root = int(pitches[on].min()) if on.any() else None
        if root is not None and roots and roots[-1] is not None and root > roots[-1] + leap:
            root = roots[-1]
        roots.append(root)
    return roots


def beat_grid(song):
    """The song's beat grid (:class:`Grid`): the beat phase from the note-onset histogram modulo a
    beat (its peak smoothed over +-a 48th note, then the median of the onsets within a 64th of
    it), the bar from the time signature (4 beats unless it holds 3-7 quarter notes), the downbeat
    where the lowest accompaniment pitch (:func:`chord_roots`) changes most often."""
    tpb = song.ticks_per_beat
    onsets = np.array([n.start_tick for notes in song.tracks.values() for n in notes], np.int64)
    if onsets.size == 0:
        raise SongError("the file has no notes")
    hist = np.bincount(onsets % tpb, minlength=tpb).astype(np.float64)
    half = max(1, tpb // 48)
    smooth = sum(np.roll(hist, k) for k in range(-half, half + 1))
    coarse = int(np.argmax(smooth))
    delta = (onsets - coarse + tpb // 2) % tpb - tpb // 2  # circular distance to the peak, ticks
    near = delta[np.abs(delta) <= tpb // 16]
    phase = int(coarse + np.round(np.median(near))) % tpb
    first = int(onsets.min())
    beats_per_bar = 4
    signatures = [s for s in song.time_signatures if s[0] <= first] or list(song.time_signatures[:1])
    if signatures:
        _, num, den = signatures[-1]
        quarters = num * 4 / den
        if quarters == int(quarters) and 3 <= quarters <= 7:
            beats_per_bar = int(quarters)
    accompaniment = [n for name, notes in song.tracks.items() if name != "MELODY" for n in notes]
    beats = (max((n.end_tick for n in accompaniment), default=phase) - phase) // tpb + 1
    roots = chord_roots(accompaniment, tpb, beats, phase)
    changes = np.zeros(beats_per_bar)
    for k in range(1, beats):
        if roots[k] is not None and roots[k - 1] is not None and roots[k] != roots[k - 1]:
            changes[k % beats_per_bar] += 1
    return Grid(ticks_per_beat=tpb, phase_tick=phase, beats_per_bar=beats_per_bar, downbeat=int(np.argmax(changes)))


def _covered_ticks(notes, start_tick, end_tick):
    """Ticks of ``[start_tick, end_tick)`` with at least one note on."""
    spans = sorted((max(n.start_tick, start_tick), min(n.end_tick, end_tick)) for n in notes
                   if n.end_tick > start_tick and n.start_tick < end_tick)
    total, reach = 0, start_tick
    for a, b in spans:
        a = max(a, reach)
        if b > a:
            total += b - a
            reach = b
    return total


def choose_excerpt(song, grid, seconds, rng):
    """A random ``seconds`` excerpt starting on a bar line at or after the first note that ends by
    the last note's end; among those, one where the melody sounds a quarter of the time and the
    accompaniment half of it when there is one. Raises :class:`SongError` if none fits."""
    notes = [n for ns in song.tracks.values() for n in ns]
    first = min(n.start_tick for n in notes)
    last_s = seconds_at(song, max(n.end_tick for n in notes))
    jitter = int(grid.ticks_per_beat * JITTER_BEATS)
    bar = max(0, int(np.ceil((first - jitter - grid.bar_tick(0)) / grid.bar_ticks)))
    first_bar_s = seconds_at(song, grid.bar_tick(bar))
    candidates = []
    while True:
        start = grid.bar_tick(bar)
        start_s = seconds_at(song, start)
        if start_s + seconds > last_s + 1e-9:
            break
        candidates.append((bar, start, start_s))
        bar += 1
    if not candidates:
        raise SongError(f"too short: {max(last_s - first_bar_s, 0.0):.1f} s of notes from the first bar line, "
                        f"the excerpt is {seconds:g} s")
    melody = song.notes("MELODY")
    accompaniment = [n for name, ns in song.tracks.items() if name != "MELODY" for n in ns]
    good = []
    for bar, start, start_s in candidates:
        end = int(np.ceil(ticks_at(song, start_s + seconds)))
        length = end - start
        if (_covered_ticks(melody, start, end) >= 0.25 * length
                and (not accompaniment or _covered_ticks(accompaniment, start, end) >= 0.5 * length)):
            good.append((bar, start, start_s))
    bar, start, start_s = (good or candidates)[int(rng.integers(len(good or candidates)))]
    end = int(np.ceil(ticks_at(song, start_s + seconds)))
    return Excerpt(start_tick=start, end_tick=end, start_bar=bar, start_s=float(start_s), seconds=float(seconds),
                   bars=int(np.ceil((end - start) / grid.bar_ticks)))


def clip_notes(notes, start_tick, end_tick):
    """The notes sounding in ``[start_tick, end_tick)``, cut to it and shifted to start at tick 0
    (a note held into the start begins at 0; one held past the end stops there)."""
    out = []
    for n in notes:
        a, b = max(n.start_tick, start_tick), min(n.end_tick, end_tick)
        if b > a:
            out.append(Note(a - start_tick, b - start_tick, n.pitch, n.velocity))
    return tuple(sorted(out))


def _clip_spans(spans, start_tick, end_tick):
    return tuple((max(a, start_tick) - start_tick, min(b, end_tick) - start_tick) for a, b in spans
                 if min(b, end_tick) > max(a, start_tick))


# ---------------------------------------------------------------------------------------------
# bass and drums


def place_pitch(pitch, previous, centre, low=BASS_RANGE[0], high=BASS_RANGE[1]):
    """The octave of ``pitch`` in ``[low, high]`` (a range of at least an octave) nearest the
    ``previous`` bass note (``centre`` when None), pulled half as much toward ``centre``: a line
    that moves by small steps and stays in its register."""
    ref = centre if previous is None else previous
    options = [q for q in range(low, high + 1) if q % 12 == pitch % 12]
    return min(options, key=lambda q: (abs(q - ref) + 0.5 * abs(q - centre), q))


def _bass_onsets(pattern, beats_per_bar):
    """(onset, length, interval) in 8th notes within a bar, for a pattern of :data:`BASS_PATTERNS`
    but ``held``."""
    eighths = 2 * beats_per_bar
    if pattern == "beats":
        return [(2 * k, 2, 0) for k in range(beats_per_bar)]
    if pattern == "halves":
        return [(2 * k, min(4, eighths - 2 * k), 0) for k in range(0, beats_per_bar, 2)]
    if pattern == "eighths":
        return [(k, 1, 0) for k in range(eighths)]
    if pattern == "root_fifth":
        return [(2 * k, 2, 7 if k % 2 else 0) for k in range(beats_per_bar)]
    if pattern == "push":  # beat 1 (a dotted quarter), the and of 2, beats 3 and 4
        onsets = [k for k in (0, 3, 4, 6) if k < eighths]
        return [(a, b - a, 0) for a, b in zip(onsets, onsets[1:] + [eighths])]
    raise ValueError(f"unknown bass pattern {pattern!r}; one of {', '.join(BASS_PATTERNS)}")


def bass_line(roots, ticks_per_beat, beats_per_bar, pattern, rng):
    """A bass part from per-beat chord roots (:func:`chord_roots` of the excerpt, beat 0 a
    downbeat; None: no chord). ``held``: one note per half bar, restruck where the root changes;
    the others repeat a one-bar rhythm (:func:`_bass_onsets`) whose notes take the root (or its
    fifth) of the beat they start in. A note is cut where the root changes or stops, no note starts
    on a beat without a chord; each pitch at its octave in :data:`BASS_RANGE` nearest the last
    note (:func:`place_pitch`, toward a per-song centre in :data:`BASS_CENTRE`). Velocities
    humanised.
    Returns :class:`Note` s (excerpt ticks)."""
    eighth = ticks_per_beat / 2
    base = int(rng.integers(80, 108))
    centre = int(rng.integers(*BASS_CENTRE))
    beats = len(roots)
    out = []

    def note(start, stop, pitch, accent):
        pitch = place_pitch(pitch, out[-1].pitch if out else None, centre)
        out.append(Note(start, stop, pitch, int(np.clip(round(base + accent + rng.normal(0.0, 4.0)), 1, 127))))

    def until_change(beat, stop_beat):
        """The first beat after ``beat`` (up to ``stop_beat``) whose root differs from ``beat``'s."""
        k = beat + 1
        while k < min(stop_beat, beats) and roots[k] == roots[beat]:
            k += 1
        return min(k, stop_beat, beats)

    if pattern == "held":
        half = max(1, beats_per_bar // 2)
        k = 0
        while k < beats:
            if roots[k] is None:
                k += 1
                continue
            slot_end = (k // half + 1) * half
            stop = until_change(k, slot_end)
            note(k * ticks_per_beat, stop * ticks_per_beat - ticks_per_beat // 16, roots[k],
                 8 if k % beats_per_bar == 0 else 0)
            k = stop
        return out
    bars = -(-beats // beats_per_bar)
    for bar in range(bars):
        for onset, length, interval in _bass_onsets(pattern, beats_per_bar):
            start8 = bar * 2 * beats_per_bar + onset
            beat = int(start8 // 2)
            if beat >= beats or roots[beat] is None:
                continue
            stop8 = min(start8 + length, until_change(beat, beats) * 2)
            start, stop = round(start8 * eighth), round(stop8 * eighth)
            stop -= min(ticks_per_beat // 16, (stop - start) // 4)  # detached a little
            if stop > start:
                note(start, stop, roots[beat] + interval, 8 if onset == 0 else 0)
    return out


KICK, KICK2, SIDESTICK, SNARE, SNARE2 = 36, 35, 37, 38, 40
HAT_CLOSED, HAT_PEDAL, HAT_OPEN, RIDE, CRASH, CRASH2 = 42, 44, 46, 51, 49, 57
TOMS = (50, 48, 47, 45, 43, 41)  # high to low floor


def _drum_groove(kind, beats_per_bar, rng):
    """:func:`drum_part`'s per-song groove of ``kind``, drawn from ``rng``: (16th steps a bar, phrase
    bars, kick key, snare key, hat every n 16ths, cymbal key, kick steps, backbeat steps, ghost-snare steps)."""
    steps = 4 * beats_per_bar
    phrase = int(rng.choice((4, 8)))
    kick = int(rng.choice((KICK, KICK2)))
    snare = SIDESTICK if kind == "ballad" else int(rng.choice((SNARE, SNARE2)))
    hat_every = 1 if kind == "straight16" or (kind == "halftime" and rng.random() < 0.5) else 2
    hat_key = RIDE if kind == "ride" else (HAT_PEDAL if kind == "ballad" and rng.random() < 0.4 else HAT_CLOSED)
    if beats_per_bar == 3:
        backbeats = [2] if kind in ("halftime", "ballad") else [1, 2]
        kicks = [0]
    elif kind == "halftime":
        backbeats = [beats_per_bar // 2]
        kicks = [0]
    else:
        backbeats = list(range(1, beats_per_bar, 2))
        kicks = list(range(beats_per_bar)) if kind == "disco" else list(range(0, beats_per_bar, 2))
    kick_steps = [4 * b for b in kicks]
    snare_steps = [4 * b for b in backbeats]
    extra = [s for s in (3, 6, 7, 10, 11, 14) if s < steps and s not in snare_steps and s not in kick_steps]
    if kind != "disco" and extra:
        kick_steps += [int(s) for s in rng.choice(extra, size=int(rng.integers(0, min(2, len(extra)) + 1)), replace=False)]
    ghosts = []
    if hat_every == 1 or kind == "halftime":
        cand = [s for s in range(1, steps, 2) if s not in kick_steps]
        ghosts = [int(s) for s in rng.choice(cand, size=min(len(cand), int(rng.integers(0, 3))), replace=False)]
    return steps, phrase, kick, snare, hat_every, hat_key, kick_steps, snare_steps, ghosts


def drum_part(ticks_per_beat, beats_per_bar, bars, rng, *, first_bar=0, kind=None):
    """A drum part of ``bars`` bars on the 16th-note grid (bar 0 at tick 0), its groove chosen
    per song: ``kind`` of :data:`DRUM_KINDS` (``halftime``: the backbeat on beat 3 only; ``disco``:
    four-on-the-floor under open off-beat hats; ``ride``: ride cymbal 8ths; ``ballad``: side stick,
    soft hats), a kick syncopation or two, ghost snares at 16th resolution; per bar: a crash on a
    phrase start (bar ``first_bar + b`` a multiple of the 4- or 8-bar phrase) now and then, a fill
    of 1-2 beats on snare and toms at some phrase ends, an open hat at some bar ends. Onsets are on
    the grid exactly; only velocities are humanised. Returns (:class:`Note` s, info dict)."""
    kind = kind or str(rng.choice(DRUM_KINDS))
    if kind not in DRUM_KINDS:
        raise ValueError(f"unknown drum kind {kind!r}; one of {', '.join(DRUM_KINDS)}")
    sixteenth = ticks_per_beat / 4
    steps, phrase, kick, snare, hat_every, hat_key, kick_steps, snare_steps, ghosts = _drum_groove(
        kind, beats_per_bar, rng)
    base = {"kick": 100, "snare": 60 if kind == "ballad" else 104, "ghost": 32, "hat": 78, "crash": 110, "fill": 80}
    hits = {}

    def hit(step_in_song, key, vel):
        vel = int(np.clip(round(vel + rng.normal(0.0, 5.0)), 1, 127))
        tick = round(step_in_song * sixteenth)
        hits[(tick, key)] = max(vel, hits.get((tick, key), 0))

    info = {"kind": kind, "phrase_bars": phrase, "hat": {1: "16ths", 2: "8ths"}[hat_every], "kick": kick,
            "snare": snare, "cymbal": hat_key, "crashes": 0, "fills": 0}
    for b in range(bars):
        position = (first_bar + b) % phrase
        at = b * steps
        fill_from = steps
        if position == phrase - 1 and rng.random() < (0.6 if phrase == 8 else 0.35):
            fill_from = steps - 4 * int(rng.integers(1, 3))
            info["fills"] += 1
        crash = (b == 0 and rng.random() < 0.5) or (position == 0 and b > 0 and rng.random() < 0.5)
        for s in range(0, fill_from, hat_every):
            if s == 0 and crash:
                continue
            on_beat = s % 4 == 0
            if kind == "disco":
                key = HAT_OPEN if s % 4 == 2 else HAT_CLOSED
            elif kind == "ballad" and hat_key == HAT_PEDAL and not on_beat:
                continue
            else:
                key = hat_key
            hit(at + s, key, base["hat"] - (0 if on_beat else 14 if s % 2 == 0 else 24))
        if crash:
            hit(at, int(rng.choice((CRASH, CRASH2))), base["crash"])
            hit(at, kick, base["kick"])
            info["crashes"] += 1
        if hat_key == HAT_CLOSED and kind != "disco" and fill_from == steps and rng.random() < 0.2:
            s = steps - 2
            hits.pop((round((at + s) * sixteenth), HAT_CLOSED), None)
            hit(at + s, HAT_OPEN, base["hat"] - 10)
        for s in kick_steps:
            if s < fill_from:
                hit(at + s, kick, base["kick"] - (0 if s % 4 == 0 else 12))
        for s in snare_steps:
            if s < fill_from:
                hit(at + s, snare, base["snare"])
        for s in ghosts:
            if s < fill_from:
                hit(at + s, SNARE, base["ghost"])
        if fill_from < steps:
            every = 1 if rng.random() < 0.6 else 2
            voices = [SNARE] + [t for t in TOMS if rng.random() < 0.7]
            count = (steps - fill_from) // every
            for i, s in enumerate(range(fill_from, steps, every)):
                key = voices[min(len(voices) - 1, i * len(voices) // max(1, count))]
                hit(at + s, key, base["fill"] + 30 * i / max(1, count))
            hit(at + fill_from, kick, base["kick"] - 10)
    length = max(1, ticks_per_beat // 8)
    notes = sorted(Note(t, t + length, key, vel) for (t, key), vel in hits.items())
    return notes, info


# ---------------------------------------------------------------------------------------------
# the four stems of one excerpt


_SF_CHUNKS = {b"LIST", b"phdr", b"pbag", b"pmod", b"pgen", b"inst", b"ibag", b"imod", b"igen", b"shdr"}


def _next_chunk(f, pos, length):
    """Where the RIFF chunk after the one at ``pos`` begins: after the pad byte of an odd length,
    or right after the data where a writer left the pad out (MuseScore_General.sf3 does)."""
    padded = pos + 8 + length + (length & 1)
    if length & 1:
        f.seek(pos + 8 + length)
        if f.read(4) in _SF_CHUNKS:
            return pos + 8 + length
    return padded


def soundfont_presets(path):
    """The (bank, program) pairs of a SoundFont 2 or 3 file, read from its preset headers (the
    ``phdr`` chunk of ``pdta``, 38-byte records, the last the terminal one; SoundFont 2.04
    section 7.2); the sample data is not read. Raises :class:`SongError` for another file."""
    with open(path, "rb") as f:
        riff, size, form = struct.unpack("<4sI4s", f.read(12))
        if riff != b"RIFF" or form != b"sfbk":
            raise SongError(f"{path}: not a SoundFont (RIFF sfbk) file")
        pos, end = 12, 8 + size
        while pos + 8 <= end:
            f.seek(pos)
            chunk, length = struct.unpack("<4sI", f.read(8))
            if chunk == b"LIST" and f.read(4) == b"pdta":
                sub, stop = pos + 12, pos + 8 + length
                while sub + 8 <= stop:
                    f.seek(sub)
                    name, n = struct.unpack("<4sI", f.read(8))
                    if name == b"phdr":
                        data = f.read(n)
                        return frozenset(struct.unpack_from("<HH", data, 38 * k + 20)[::-1] for k in range(n // 38 - 1))
                    sub = _next_chunk(f, sub, n)
            pos = _next_chunk(f, pos, length)
    raise SongError(f"{path}: a SoundFont without preset headers")


def _program(rng, allowed, presets, bank=0):
    """A random program of ``allowed`` that the soundfont holds in ``bank`` (any of ``allowed`` if
    it holds none: fluidsynth then substitutes its nearest)."""
    have = [p for p in allowed if (bank, p) in presets] or list(allowed)
    return int(rng.choice(have))


def _scaled(notes, scale):
    return tuple(Note(n.start_tick, n.end_tick, n.pitch, int(np.clip(round(n.velocity * scale), 1, 127))) for n in notes)


def _sends(rng):
    return {"reverb_send": int(rng.integers(0, 80)), "chorus_send": int(rng.integers(0, 50)) if rng.random() < 0.4 else 0}


def plan_stems(song, grid, excerpt, presets, rng):
    """The four stems (:class:`Stem`) of ``excerpt``: parts on their programs and channels, notes in
    excerpt ticks, and what was chosen (``info``: programs, patterns). ``presets``: the soundfont's
    (bank, program) pairs (:func:`soundfont_presets`)."""
    start, end, tpb = excerpt.start_tick, excerpt.end_tick, grid.ticks_per_beat
    melody = clip_notes(song.notes("MELODY"), start, end)
    voice = _program(rng, VOICE_PROGRAMS, presets)
    stems = {"melody": Stem((Part(0, voice, _scaled(melody, rng.uniform(0.8, 1.0)), volume=110,
                                  pan=int(rng.integers(58, 71)), **_sends(rng)),),
                            {"programs": [voice], "notes": len(melody)})}
    parts, programs = [], []
    for channel, name in ((1, "BRIDGE"), (2, "PIANO")):
        notes = clip_notes(song.notes(name), start, end)
        if not notes:
            continue
        program = _program(rng, [p for p in OTHER_PROGRAMS if p not in programs], presets)
        programs.append(program)
        parts.append(Part(channel, program, _scaled(notes, rng.uniform(0.6, 1.0)),
                          pedals=_clip_spans(song.pedals.get(name, ()), start, end), volume=int(rng.integers(80, 111)),
                          pan=int(rng.integers(24, 105)), **_sends(rng)))
    stems["other"] = Stem(tuple(parts), {"programs": programs, "notes": sum(len(p.notes) for p in parts)})
    beats = -(-(end - start) // tpb)
    roots = chord_roots(clip_notes(song.notes("BRIDGE", "PIANO"), start, end), tpb, beats)
    pattern = str(rng.choice(BASS_PATTERNS))
    bass_notes = clip_notes(bass_line(roots, tpb, grid.beats_per_bar, pattern, rng), 0, end - start)
    bass_program = _program(rng, BASS_PROGRAMS, presets)
    stems["bass"] = Stem((Part(3, bass_program, tuple(bass_notes), volume=110, pan=64, reverb_send=int(rng.integers(0, 30))),),
                         {"programs": [bass_program], "pattern": pattern, "notes": len(bass_notes)})
    drum_notes, drums = drum_part(tpb, grid.beats_per_bar, excerpt.bars, rng, first_bar=excerpt.start_bar)
    drum_notes = clip_notes(drum_notes, 0, end - start)
    kit = _program(rng, DRUM_KITS, presets, bank=DRUM_BANK)
    stems["drums"] = Stem((Part(DRUM_CHANNEL, kit, tuple(drum_notes), volume=110, pan=64, reverb_send=int(rng.integers(0, 60))),),
                          {"programs": [kit], "pattern": drums, "notes": len(drum_notes)})
    return stems


def stem_midi(stem, tempos, ticks_per_beat, end_tick, beats_per_bar=4):
    """A type-1 ``mido.MidiFile`` of one stem: a tempo track (``tempos``, excerpt ticks), a track
    per part, every track ending at ``end_tick`` (so the render lasts the excerpt)."""
    import mido

    def track(events):
        out, now = mido.MidiTrack(), 0
        for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
            out.append(msg.copy(time=tick - now))
            now = tick
        out.append(mido.MetaMessage("end_of_track", time=max(0, end_tick - now)))
        return out

    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    meta = [(0, 0, mido.MetaMessage("time_signature", numerator=beats_per_bar, denominator=4))]
    meta += [(t, 1, mido.MetaMessage("set_tempo", tempo=int(u))) for t, u in tempos]
    midi.tracks.append(track(meta))
    for part in stem.parts:
        ch = part.channel
        ev = [(0, 0, mido.Message("program_change", channel=ch, program=part.program))]
        for control, value in ((7, part.volume), (10, part.pan), (91, part.reverb_send), (93, part.chorus_send)):
            ev.append((0, 1, mido.Message("control_change", channel=ch, control=control, value=int(value))))
        for a, b in part.pedals:  # at one tick: note-offs (2), pedal (3), note-ons (4)
            ev.append((a, 3, mido.Message("control_change", channel=ch, control=64, value=127)))
            ev.append((b, 3, mido.Message("control_change", channel=ch, control=64, value=0)))
        for n in part.notes:
            ev.append((n.start_tick, 4, mido.Message("note_on", channel=ch, note=n.pitch, velocity=n.velocity)))
            ev.append((n.end_tick, 2, mido.Message("note_off", channel=ch, note=n.pitch, velocity=0)))
        midi.tracks.append(track(ev))
    return midi


# ---------------------------------------------------------------------------------------------
# rendering


def render(midi_path, soundfont, rate, *, gain, reverb, chorus, fluidsynth="/usr/bin/fluidsynth", workdir=None):
    """``midi_path`` through fluidsynth's fast renderer (no audio driver, no shell), float WAV.
    Returns (float32 (2, samples), the fluidsynth options used)."""
    import soundfile as sf

    flags = ["-ni", "-q", "-g", f"{gain:.4f}", "-r", str(int(rate)), "-R", str(int(reverb)), "-C", str(int(chorus)),
             "-o", "synth.dynamic-sample-loading=1"]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        wav = os.path.join(tmp, "stem.wav")
        cmd = [fluidsynth, *flags, "-F", wav, "-T", "wav", "-O", "float", str(soundfont), str(midi_path)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0 or not os.path.exists(wav):
            raise RoomtoneError(f"fluidsynth failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-300:]}")
        audio, got = sf.read(wav, dtype="float32", always_2d=True)
    if got != int(rate):
        raise RoomtoneError(f"fluidsynth rendered at {got} Hz, asked for {rate} Hz")
    return np.ascontiguousarray(audio.T), flags


def render_stem(midi_path, soundfont, rate, samples, *, reverb, chorus, fluidsynth, workdir=None):
    """One stem rendered and cut or padded to ``samples``; rendered again at a lower gain while it
    would peak at or over :data:`CLIP_PEAK`. Returns (float32 (2, samples), info)."""
    gain = START_GAIN
    for _ in range(4):
        audio, flags = render(midi_path, soundfont, rate, gain=gain, reverb=reverb, chorus=chorus,
                              fluidsynth=fluidsynth, workdir=workdir)
        if audio.shape[0] == 1:
            audio = np.repeat(audio, 2, axis=0)
        out = np.zeros((2, samples), np.float32)
        n = min(samples, audio.shape[1])
        out[:, :n] = audio[:2, :n]
        peak = float(np.abs(out).max()) if out.size else 0.0
        if peak < CLIP_PEAK:
            return out, {"gain": gain, "fluidsynth": flags, "reverb": bool(reverb), "chorus": bool(chorus)}
        gain *= RETRY_PEAK / peak
    raise RoomtoneError(f"{midi_path}: still peaking at {20 * np.log10(peak):.2f} dBFS after 4 renders")


def to_int16(audio):
    """float32 -> int16 on the :data:`SCALE` grid (rounded, clipped)."""
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)


def _dbfs(value):
    return round(float(20.0 * np.log10(value)), 2) if value > 0 else None


def split_of(song_id):
    """``"val"`` for a song whose number is 0 mod :data:`VALIDATION_EVERY`, else ``"train"``."""
    return "val" if int(song_id) % VALIDATION_EVERY == 0 else "train"


def soundfont_licence(path):
    """{file, path, package, licence} of a soundfont (links resolved; unknown ones say so)."""
    real = Path(path).resolve()
    package, licence = SOUNDFONT_LICENCES.get(real.name, (None, "unknown: not in SOUNDFONT_LICENCES, check before use"))
    return {"file": real.name, "path": str(path), "package": package, "licence": licence,
            "copyright": f"/usr/share/doc/{package}/copyright" if package else None}


def render_song(midi_path, out_dir, *, seconds, rate, seed, soundfonts, fluidsynth, per_stem_soundfont=False):
    """Render one song's four stems into ``out_dir/<id>/`` (a hidden folder renamed into place);
    returns its metadata (also written as ``song.json`` there). ``soundfonts``: paths, one drawn
    for the song, or with ``per_stem_soundfont`` one per stem (programs then drawn among the
    presets all of them hold; the song's ``soundfont`` is None, each stem names its own).
    Raises :class:`SongError` for a song that cannot be rendered."""
    import soundfile as sf

    began = time.perf_counter()
    midi_path, out_dir = Path(midi_path), Path(out_dir)
    song_id = midi_path.stem
    rng = np.random.default_rng([seed, int(song_id)])
    song = read_song(midi_path)
    if not song.tracks.get("MELODY"):
        raise SongError("no MELODY track (or no notes in it)")
    grid = beat_grid(song)
    excerpt = choose_excerpt(song, grid, seconds, rng)
    samples = round(seconds * rate)
    font = soundfonts[int(rng.integers(len(soundfonts)))]
    fonts = {stem: (soundfonts[int(rng.integers(len(soundfonts)))] if per_stem_soundfont else font) for stem in STEMS}
    presets = {f: soundfont_presets(f) for f in set(fonts.values())}
    stems = plan_stems(song, grid, excerpt, presets[font] if not per_stem_soundfont else
                       frozenset.intersection(*presets.values()), rng)
    tempos = _tempos_in(song, excerpt.start_tick, excerpt.end_tick)
    for stale in out_dir.glob(f".{song_id}-*.part"):
        shutil.rmtree(stale, ignore_errors=True)
    part = Path(tempfile.mkdtemp(prefix=f".{song_id}-", suffix=".part", dir=out_dir))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(part, 0o777 & ~umask)  # mkdtemp makes 0700; a song folder gets the umask's mode
    try:
        meta = {"id": song_id, "source": midi_path.name, "split": split_of(song_id), "seed": seed, "rate": int(rate),
                "samples": samples,
                "excerpt": {"start_bar": excerpt.start_bar, "start_s": round(excerpt.start_s, 4),
                            "seconds": excerpt.seconds, "start_tick": excerpt.start_tick, "end_tick": excerpt.end_tick,
                            "bars": excerpt.bars},
                "grid": {"ticks_per_beat": grid.ticks_per_beat, "phase_tick": grid.phase_tick,
                         "beats_per_bar": grid.beats_per_bar, "downbeat": grid.downbeat},
                "tempo_bpm": round(60e6 / tempos[0][1], 3),
                "tempo_bpm_mean": round((excerpt.end_tick - excerpt.start_tick) / grid.ticks_per_beat / seconds * 60, 3),
                "soundfont": None if per_stem_soundfont else soundfont_licence(font), "stems": {}}
        for stem in STEMS:
            info = dict(stems[stem].info)
            midi_file = part / f"{stem}.mid"
            stem_midi(stems[stem], tempos, grid.ticks_per_beat, excerpt.end_tick - excerpt.start_tick,
                      grid.beats_per_bar).save(str(midi_file))
            reverb, chorus = rng.random() < 0.5, rng.random() < 0.3
            if info["notes"]:
                audio, how = render_stem(midi_file, fonts[stem], rate, samples, reverb=reverb, chorus=chorus,
                                         fluidsynth=fluidsynth, workdir=part)
            else:
                audio, how = np.zeros((2, samples), np.float32), {"gain": None, "fluidsynth": None}
            midi_file.unlink()
            pcm = to_int16(audio)
            sf.write(str(part / f"{stem}.flac"), pcm.T, int(rate), format="FLAC", subtype="PCM_16")
            x = pcm.astype(np.float32) * SCALE
            info.update(how)
            info["peak_dbfs"] = _dbfs(float(np.abs(x).max()))
            info["rms_dbfs"] = _dbfs(float(np.sqrt(np.mean(x.astype(np.float64) ** 2))))
            if per_stem_soundfont:
                info["soundfont"] = soundfont_licence(fonts[stem])
            meta["stems"][stem] = info
        meta["render_s"] = round(time.perf_counter() - began, 2)
        (part / "song.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        for path in part.iterdir():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        os.rename(part, out_dir / song_id)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    return meta


# ---------------------------------------------------------------------------------------------
# the folder: manifest and loading


def _songs_in(directory):
    return sorted(p for p in Path(directory).iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (p / "song.json").is_file() and all((p / f"{s}.flac").is_file() for s in STEMS))


def write_manifest(directory, skipped, soundfonts=()):
    """``directory/manifest.json`` (atomically) from the ``song.json`` of every song folder there:
    the licences, the split, each song's metadata, the songs skipped and why."""
    from roomtone.audio import write_text_atomic

    songs = [json.loads((p / "song.json").read_text(encoding="utf-8")) for p in _songs_in(directory)]
    fonts = {s["soundfont"]["file"]: s["soundfont"] for s in songs if s.get("soundfont")}
    fonts.update({st["soundfont"]["file"]: st["soundfont"] for s in songs for st in s["stems"].values() if "soundfont" in st})
    fonts.update({info["file"]: info for info in map(soundfont_licence, soundfonts)})
    doc = {
        "format": 1,
        "stems": list(STEMS),
        "licences": {"POP909": POP909_LICENCE,
                     "soundfonts": {k: {"licence": v["licence"], "package": v["package"], "copyright": v["copyright"]}
                                    for k, v in sorted(fonts.items())}},
        "split": {"rule": f"val when int(song id) % {VALIDATION_EVERY} == 0, else train",
                  "train": [s["id"] for s in songs if split_of(s["id"]) == "train"],
                  "val": [s["id"] for s in songs if split_of(s["id"]) == "val"]},
        "songs": songs,
        "skipped": dict(sorted(skipped.items())),
    }
    write_text_atomic(Path(directory) / "manifest.json", json.dumps(doc, indent=1))
    return doc


def load_stems(directory, split="train", *, dtype="int16"):
    """The rendered songs of ``split`` (``"train"`` or ``"val"``, by :func:`split_of`) in
    ``directory``: ``[(song id, {stem: (2, samples) array})]``, sorted by id.

    ``dtype="int16"`` (the default) keeps the samples as stored, half the memory of float32 (a
    30 s song at 44.1 kHz: 21 MB for its four stems, 300 songs 6.4 GB): multiply by :data:`SCALE`
    for float samples, as each item is cut (``stem[:, a:b].astype(np.float32) * SCALE``).
    ``dtype="float32"`` converts at load."""
    import soundfile as sf

    if split not in ("train", "val"):
        raise ValueError(f"split {split!r}: 'train' or 'val'")
    if dtype not in ("int16", "float32"):
        raise ValueError(f"dtype {dtype!r}: 'int16' or 'float32'")
    out = []
    for folder in _songs_in(directory):
        if split_of(folder.name) != split:
            continue
        stems = {}
        for stem in STEMS:
            x, _ = sf.read(str(folder / f"{stem}.flac"), dtype="int16", always_2d=True)
            x = np.ascontiguousarray(x.T)
            stems[stem] = x.astype(np.float32) * np.float32(SCALE) if dtype == "float32" else x
        out.append((folder.name, stems))
    return out


# ---------------------------------------------------------------------------------------------
# command line


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the render folder (created; existing songs are kept)")
    p.add_argument("--songs", type=int, default=SONGS, help="how many songs from --first-song")
    p.add_argument("--first-song", type=int, default=1, help="number of the first song (1-909)")
    p.add_argument("--seconds", type=float, default=30.0, help="excerpt length per song (s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rate", type=int, default=44100, help="sample rate (Hz)")
    p.add_argument("--data", default=str(DATA), help="the folder of 001.mid .. 909.mid")
    p.add_argument("--soundfont", action="append", help="a soundfont to draw from (repeatable; "
                   "default: those of DEFAULT_SOUNDFONTS that exist)")
    p.add_argument("--soundfont-per-stem", action="store_true", help="draw a soundfont per stem, not per song")
    p.add_argument("--fluidsynth", default=shutil.which("fluidsynth") or "/usr/bin/fluidsynth")
    args = p.parse_args(argv)
    if args.seconds <= 0:
        p.error(f"--seconds {args.seconds:g}: an excerpt needs more than 0 s")
    if not 8000 <= args.rate <= 96000:
        p.error(f"--rate {args.rate} Hz: fluidsynth renders at 8000-96000 Hz")
    if args.songs < 1 or not 1 <= args.first_song <= 999:
        p.error(f"--songs {args.songs} from --first-song {args.first_song}: at least 1 song, numbers 1-999")
    data = Path(args.data)
    if not data.is_dir():
        p.error(f"--data {data}: no such folder")
    if not (os.path.isfile(args.fluidsynth) and os.access(args.fluidsynth, os.X_OK)):
        p.error(f"--fluidsynth {args.fluidsynth}: not an executable (apt-get install fluidsynth)")
    fonts = args.soundfont or [f for f in DEFAULT_SOUNDFONTS if os.path.isfile(f)]
    missing = [f for f in fonts if not os.path.isfile(f)]
    if not fonts or missing:
        p.error(f"soundfont {missing[0] if missing else DEFAULT_SOUNDFONTS[0]}: no such file (apt-get install fluid-soundfont-gm)")
    for f in fonts:
        try:
            soundfont_presets(f)
        except (SongError, OSError, struct.error) as exc:
            p.error(str(exc))
    out = Path(args.out)
    manifest = out / "manifest.json"
    if manifest.is_file():
        rates = {s["rate"] for s in json.loads(manifest.read_text(encoding="utf-8")).get("songs", [])}
        if rates and rates != {args.rate}:
            p.error(f"--rate {args.rate} Hz: {out} holds renders at {sorted(rates)} Hz; use that rate or another --out")
    numbers = range(args.first_song, min(args.first_song + args.songs, 1000))
    render_folder(out, data, numbers, seconds=args.seconds, rate=args.rate, seed=args.seed, soundfonts=fonts,
                  fluidsynth=args.fluidsynth, per_stem_soundfont=args.soundfont_per_stem)
    return 0


def render_folder(out, data, numbers, *, seconds, rate, seed, soundfonts, fluidsynth, per_stem_soundfont=False):
    """Render the songs ``numbers`` of ``data`` into ``out`` (:func:`render_song`), skipping those
    there, with one line per song; the manifest rewritten after each. Returns the manifest."""
    out, data = Path(out), Path(data)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.json"
    skipped = json.loads(manifest.read_text(encoding="utf-8")).get("skipped", {}) if manifest.is_file() else {}
    for number in numbers:
        song_id = f"{number:03d}"
        source = data / f"{song_id}.mid"
        if (out / song_id).is_dir():
            print(f"{song_id} exists, skipped", flush=True)
            continue
        if not source.is_file():
            print(f"{song_id} skipped: no {source}", flush=True)
            continue
        began = time.perf_counter()
        try:
            meta = render_song(source, out, seconds=seconds, rate=rate, seed=seed, soundfonts=soundfonts,
                               fluidsynth=fluidsynth, per_stem_soundfont=per_stem_soundfont)
        except SongError as exc:
            skipped[song_id] = str(exc)
            print(f"{song_id} skipped: {exc}", flush=True)
            write_manifest(out, skipped, soundfonts)
            continue
        skipped.pop(song_id, None)
        write_manifest(out, skipped, soundfonts)
        e = meta["excerpt"]
        print(f"{song_id} {meta['split']:5s} {e['seconds']:g} s from bar {e['start_bar']} ({e['start_s']:.1f} s), "
              f"{meta['tempo_bpm']:.0f} bpm, {(meta['soundfont'] or {'file': 'a soundfont per stem'})['file']}, "
              f"rendered in {time.perf_counter() - began:.1f} s",
              flush=True)
    return write_manifest(out, skipped, soundfonts)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run removes its hidden song folder too
    sys.exit(main())
