"""Multitrack separation training data from the demo projects of Debian's ``lmms-common`` (LMMS
1.2.2), rendered one LMMS track at a time so the tracks sum to the song.

    apt-get install -y lmms faketime  # lmms-common (projects, samples) comes with lmms
    python -m roomtone.separate.training.lmms --out ~/.cache/roomtone/stems/lmms

(``--max-seconds 60`` renders only the first minute of each song, ``--projects N`` the first N
usable projects, ``--only NAME`` the projects whose file name holds NAME; every LMMS process runs
under ``nice -n 19`` on one CPU, whatever this one's priority.)

Sources: ``/usr/share/lmms/projects/demos/**/*.mmpz|*.mmp`` (:data:`DEMOS`, :func:`find_projects`;
20 files in 1.2.2+dfsg1-6, whose Debian source already leaves out the projects its copyright file
lists under ``Files-Excluded``). Each
project's licence is read from ``/usr/share/doc/lmms-common/copyright`` (:data:`COPYRIGHT`, DEP-5:
the last ``Files:`` stanza whose pattern matches ``data/projects/<path>`` decides;
:func:`parse_copyright`, :func:`project_licence`). A project named by a stanza of its own is used
when that licence allows redistribution and derived works (:data:`FREE_LICENCES`): Artistic-2
(12 demos), BSD-2-clause (1), CC-BY-SA-3 (2), CC-BY-SA-4 (3), 18 in all. The staged stems are
derived works: CC-BY-SA songs must credit their authors and keep their licence, so the meta and
the manifest keep the stanza's ``Copyright`` lines. A project that only the catch-all ``Files: *``
stanza covers is left out as unclear (the manifest's ``excluded`` says so): that stanza is the
program's (GPL-2+, its authors LMMS's programmers), Debian's comment on it points to a dispute
over it (LMMS issue 2752), and upstream listed both such demos as lacking licence information
(LMMS pull request 4481): ``Shovon-ProgressiveHousePluckDemo.mmpz`` and
``StrictProduction-DearJonDoe.mmp``. Every song also sounds LMMS's stock samples and presets,
shipped under that same ``Files: *`` stanza (GPL-2+; upstream has doubted where some stock
samples come from: LMMS issue 5126, LMMS/assets issue 43); the manifest lists the sample files
each track plays.

Renderer: ``taskset -c <one cpu> nice -n 19 lmms --allowroot --config <own> render <project>
--format wav --float --samplerate 44100 --interpolation sincfastest --oversampling 2 --output
<wav>`` (:func:`render_project`; ``QT_QPA_PLATFORM=offscreen``, no display), 32-bit float stereo,
unclipped. LMMS 1.2.2's ``rendertracks`` action is not used: it renders the tracks one after the
other in one process, and the state carried between renders shifted every later track by about
20 samples against the song and left non-finite samples at the start of some (their sum missed the
song by -4 dB on CapDan-ReggaeTry). Instead every render is its own LMMS process, from its own
copy of the project:

- the whole song, twice (the second shows what run-to-run differences alone amount to);
- per instrument or sample track, a copy where only that track is heard (:func:`solo_project`).
  The other instrument tracks keep playing into their own FX-mixer channels but are silenced by
  an Amplifier at 0 % appended to their own effect chains (:func:`silence_track`); sample tracks
  are muted (``muted="1"``). Beat/bassline tracks (``type="1"``) stay as they are, so a track
  inside a beat/bassline plays wherever the song editor places that beat/bassline.

Why not simply mute the other tracks: LMMS seeds the C library's random numbers from the wall
clock (``srand(time(NULL))`` when its first ZynAddSubFX instance starts), ZynAddSubFX draws its
random phases from that one sequence shared by every instance and by other plugins, and LMMS's
mixer threads interleave the draws. Muted tracks stop drawing, so the kept ZynAddSubFX track got
other random phases than in the song (sums off by -5 to +2 dB on Thomasso-AxeFromThe80s). So every
render runs every instrument alike, sees the same clock (libfaketime's ``FAKETIME``, when Debian's
``faketime`` is installed: :func:`faketime_library`), runs on one CPU (the threads then seldom
race: of six pairs of full renders of Thomasso-AxeFromThe80s four agreed to -180 dB or better and
two differed by -65 and -55 dB; not pinned, two of three pairs differed by -5 dB) and keeps
every effect running (``disableautoquit``, :data:`LMMS_CONFIG`: by default an effect stops once
its output stays under its gate for its decay time and wakes on input, a switch that depends on
what else plays into its channel). A peak controller on a track's own chain should still duck
what it controls, as its track still plays (not checked: no demo with one was rendered here).

Each render is cut or zero-padded to the full render's length (LMMS renders up to one bar past
the last sounding clip; a track alone may end earlier). ``--max-seconds`` is applied before
rendering (:func:`limit_project`: clips starting past that point plus a bar are removed, notes
past it dropped, crossing clips shortened), so a minute's excerpt costs a minute of rendering.
Tracks muted in the project stay muted; tracks that render silent are dropped; a render with
non-finite samples or a peak over :data:`MAX_PEAK` fails the song.

Residual: the energy of (sum of the tracks - the full render) in dB re the full render's energy,
against the nearer of the two full renders (:func:`render_song`), kept in the meta and the
manifest with ``repeat_db`` (the two full renders against each other; -200 means identical). A
song over :data:`RESIDUAL_LIMIT_DB` (-30 dB) is skipped, the manifest says why. Measured at
60 s: CapDan-ReggaeTry (samples only) -148.5 dB, Thomasso-AxeFromThe80s (ZynAddSubFX, DrumSynth,
reverb and delay FX channels) -138.1 dB (in one earlier run a thread race made its two full renders
differ by -55.5 dB, and the tracks matched only one: hence the nearer), Skiessi-C64 -14.6 dB with
its full renders agreeing to -50 dB (skipped: LMMS's SID instrument leaves part of its buffer unset
when the emulator hands back too few samples, its "Not enough samples" message, so each render
has clicks of its own). Where the mixing after the tracks is linear the sum
is exact to float precision, so the limit only meets non-linear processing of several tracks
together: a compressor, limiter or distortion on a shared FX channel or the master, a peak
controller effect on an FX channel (its channel hears only the rendered track), an instrument
that is not deterministic. Under -30 dB such processing acts on less than 3 % of the song's
amplitude and the stems are still the tracks as heard; above it, part of the song is not in the
stems the way it sounds, too much for a separation target. The training mixture is the stems'
sum either way, never the full render. At full length (the 240 s cap, 2026-12-08) three of the
first four demos were skipped: Alf42red-Mauiwowi (full renders -6.4 dB apart, tracks -21.1 dB) and
CapDan-TwilightArea (full renders -0.8 dB apart) are not deterministic at that length despite the
pinned clock; CapDan-ReggaetonTry's full renders agree exactly but its tracks miss the song by
0.0 dB, which points at the silencing (a track silent in every render, or one heard twice), not
yet examined.

Grouping (:func:`group_of`), the first rule that decides:

- **vocals**: a track whose name says vocal, vox, voice, choir, sing(er) *and* that plays a
  recorded sample (AudioFileProcessor or a sample track): a synthesiser's "voice" or "choir" patch
  is not a sung line. No demo has one (Settel-InnerRecreation's "Choir" is a ZynAddSubFX pad; of
  the shorties, DirtyLove's "Killed Voice" is a TripleOscillator), so vocals stay empty;
- **the track's name**: the tracker modules' drum and bass words (:func:`modules.classify` by
  name), then LMMS's: ``sub`` is bass (:data:`BASS_NAME_EXTRA`); lead, pad, chord, strings, arp,
  piano, organ, guitar, pluck, bell, brass, melody and sound effects (woosh, riser, sweep, fx) are
  other (:data:`OTHER_NAME`);
- **the sample it plays** (AudioFileProcessor's ``src``, a sample track's clips; relative to
  ``/usr/share/lmms/samples``): the file's name by the same words, then its folder
  (:data:`SAMPLE_FOLDERS`): ``drums/``, ``beats/`` and the DrumSynth kits are drums (not
  ``drumsynth/instrument``, ``effects``, ``misc_fx``, ``misc_synth``, ``misc_bass``), ``basses/``
  and ``bassloops/`` bass, ``instruments/``, ``stringsnpads/``, ``latin/`` other;
- **the instrument plugin** (:data:`PLUGIN_GROUPS`): ``lb302`` (LMMS's TB-303, a bass line synth)
  is bass; ``kicker`` is drums only inside a beat/bassline (Jousboxx-BuzzerBeater plays its leads,
  chords and basses on kicker too);
- **the audio**: :func:`modules.audio_features`, :func:`modules.classify_audio` (noisy or fast
  decaying: drums; mostly under 250 Hz: bass; else other). Beat/bassline tracks are not drums by
  default: they hold bass lines and chords too.

Output, as :mod:`roomtone.separate.training.modules` writes it (:func:`modules.write_song`,
atomic): ``OUT/lmms_<song>.npz`` with ``vocals``, ``drums``, ``bass``, ``other``, int16, shape
(2, n), the same n for all, 44.1 kHz, one gain for all so their sum peaks at -1 dBFS; ``meta``
(JSON): ``source`` ``"lmms"``, ``package`` ``"lmms-common"``, ``song``, ``licence``, ``channels``
(``"<track index>: <name> [<plugin>(, beat/bassline)]"`` -> group, for every sounding track),
``split``, ``band_limited_hz`` null, and ``project``, ``copyright``, ``residual_db``. Songs are
trimmed of leading and trailing silence and to ``--max-seconds`` (default
:data:`modules.MAX_SECONDS`); shorter than :data:`modules.MIN_SECONDS` or mostly silent: skipped.
Split: :func:`modules.split_of` of ``lmms-common_<song>`` (``val`` for about one in seven). A
rerun skips the songs already in the folder and in its manifest. ``OUT/manifest.json`` (rewritten
after each song; a narrower rerun keeps the entries of the projects it leaves alone): every
staged song (licence, copyright, split, seconds, residual, repeat, group energies, each track's
group, reason, energy and samples, render seconds), every skipped song and why, every project
left out for its licence and why. Of the 18 usable demos, Oglsdl-PpTrip, Saber-FinalStep and
Skiessi-Onion fall in ``val``.

Cost: a song of N sounding tracks takes N + 2 renders of its length, each running every
instrument; the 18 usable demos hold 8 to 55 tracks, about 70,000 s of rendered audio at 240 s a
song. On one CPU shared with a training run, niced, the measured renders ran 16x (ZynAddSubFX and
samples) to 23x (samples only) faster than real time.
"""

import argparse
import copy as copy_module
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf

from roomtone.separate.training import modules
from roomtone.separate.training.modules import SAMPLE_RATE, STEMS

PROJECTS = Path("/usr/share/lmms/projects")
DEMOS = PROJECTS / "demos"
SAMPLES = Path("/usr/share/lmms/samples")
COPYRIGHT = Path("/usr/share/doc/lmms-common/copyright")
SOURCE_PREFIX = "data/projects/"  # where the copyright file's patterns place PROJECTS
PACKAGE = "lmms-common"
SOURCE = "lmms"

# DEP-5 licence names (as lmms-common's copyright writes them, compared case-blind) that allow
# redistribution and derived works.
FREE_LICENCES = frozenset(s.lower() for s in (
    "Artistic-2", "BSD-2-clause", "BSD-3-clause", "CC-BY-3", "CC-BY-4", "CC-BY-SA-3", "CC-BY-SA-4",
    "CC0", "CC0-1.0", "Expat", "GPL-2", "GPL-2+", "GPL-3+", "LGPL-2+", "LGPL-2.1+", "public-domain"))

RESIDUAL_LIMIT_DB = -30.0  # sum of the tracks vs the full render, energy dB re the full render
TAIL_SECONDS = 1.0  # rendered past --max-seconds, so the trim finds the end of the last note
TICKS_PER_QUARTER = 48  # LMMS: 192 ticks per 4/4 bar
MAX_PEAK = 1000.0  # a render peaking over this (+60 dBFS) holds garbage (an instrument's unset buffer)
FLOOR_DB = -200.0  # residuals are written no lower: -200 means the two agree to the last bit
SILENT_PEAK = 1e-6  # a track render whose peak is under this (-120 dBFS) is silent
RENDER_TIMEOUT_S = 3600.0
# LMMS's settings for every render: effects never auto-quit (by default an effect stops after its
# output has stayed under its gate for its decay time, and wakes on new input: a switch that depends
# on what else plays into its channel, so tracks rendered alone would not sum to the song), and the
# working folders inside the render's own temporary folder.
LMMS_CONFIG = """<?xml version="1.0"?>
<!DOCTYPE lmms-config-file>
<lmms version="1.2.2">
  <ui disableautoquit="1"/>
  <paths workingdir="{work}" vstdir="{work}" laddir="{work}" sf2dir="{work}" gigdir="{work}" defaultsf2=""/>
</lmms>
"""
FAKE_CLOCK = "2020-01-01 00:00:00"  # the wall clock every LMMS process sees (libfaketime), when installed

INSTRUMENT_TRACK, BB_TRACK, SAMPLE_TRACK = "0", "1", "2"
CLIP_TAGS = ("pattern", "bbtco", "sampletco", "automationpattern")

VOCAL_NAME = re.compile(r"vocal|\bvox\b|voice|choir|\bsing(er|ing)?\b", re.IGNORECASE)
BASS_NAME_EXTRA = re.compile(r"\bsub\b|sub-?bass", re.IGNORECASE)
OTHER_NAME = re.compile(
    r"lead|\bpads?\b|chord|string|\barp|piano|organ|guitar|rhodes|pluck|bell|brass|trumpet|flute"
    r"|violin|cello|melody|woosh|whoosh|riser|sweep|\bs?fx\b|chime", re.IGNORECASE)
# (pattern on the sample's path under SAMPLES, group or None: name and audio decide), first match
SAMPLE_FOLDERS = (
    (re.compile(r"^drumsynth/(instrument|effects|misc_fx|misc_synth|misc_bass)/"), None),
    (re.compile(r"^(drums|beats|drumsynth)/"), "drums"),
    (re.compile(r"^(basses|bassloops)/"), "bass"),
    (re.compile(r"^(instruments|stringsnpads|latin)/"), "other"),
)
# instrument plugin -> group; (plugin, True) only for a track inside a beat/bassline
PLUGIN_GROUPS = {("lb302", False): "bass", ("lb302", True): "bass", ("kicker", True): "drums"}


# --- project files ----------------------------------------------------------------------------

def unpack_mmpz(data):
    """XML bytes of a ``.mmpz``: a 4-byte big-endian length, then the zlib stream (Qt's qCompress)."""
    if len(data) < 4:
        raise ValueError("too short for a .mmpz")
    (n,) = struct.unpack(">I", data[:4])
    xml = zlib.decompress(data[4:])
    if len(xml) != n:
        raise ValueError(f".mmpz says {n} bytes, holds {len(xml)}")
    return xml


def pack_mmpz(xml):
    """The ``.mmpz`` bytes of XML bytes (the inverse of :func:`unpack_mmpz`)."""
    return struct.pack(">I", len(xml)) + zlib.compress(xml, 9)


def read_project(path):
    """The project's XML root element, from a ``.mmpz`` or a plain ``.mmp``."""
    data = Path(path).read_bytes()
    if Path(path).suffix.lower() == ".mmpz":
        data = unpack_mmpz(data)
    return ET.fromstring(data)


def project_bytes(root, compressed=False):
    """Serialise a project root (with the XML declaration and LMMS's doctype) to ``.mmp`` bytes, or
    ``.mmpz`` bytes when ``compressed``."""
    xml = b'<?xml version="1.0"?>\n<!DOCTYPE lmms-project>\n' + ET.tostring(root, encoding="utf-8")
    return pack_mmpz(xml) if compressed else xml


def _song_container(root):
    tc = root.find("song/trackcontainer")
    if tc is None:
        raise ValueError("no <song><trackcontainer> in the project")
    return tc


def tracks(root):
    """The instrument and sample tracks of a project, in document order: a list of dicts with
    ``index``, ``element`` (the ``<track>``), ``name``, ``type`` ("0" instrument, "2" sample),
    ``plugin`` (the instrument's name, ``"sample"`` for a sample track), ``samples`` (sample file
    paths as the project writes them), ``in_beat`` (inside the beat/bassline container) and
    ``muted`` (as saved)."""
    out = []

    def walk(container, in_beat):
        for t in container.findall("track"):
            kind = t.get("type")
            if kind == BB_TRACK:
                inner = t.find("bbtrack/trackcontainer")
                if inner is not None:
                    walk(inner, True)
                continue
            if kind not in (INSTRUMENT_TRACK, SAMPLE_TRACK):
                continue
            if kind == SAMPLE_TRACK:
                plugin = "sample"
                samples = sorted({c.get("src") for c in t.iter("sampletco") if c.get("src")})
            else:
                inst = t.find("instrumenttrack/instrument")
                plugin = inst.get("name", "") if inst is not None else ""
                samples = sorted({e.get("src") for e in (inst.iter() if inst is not None else ())
                                  if e.tag == "audiofileprocessor" and e.get("src")})
            out.append({"index": len(out), "element": t, "name": t.get("name", ""), "type": kind,
                        "plugin": plugin, "samples": samples, "in_beat": in_beat,
                        "muted": t.get("muted") == "1"})

    walk(_song_container(root), False)
    return out


def solo_project(root, keep):
    """A copy of the project in which only the instrument or sample track of index ``keep`` (of
    :func:`tracks`) is heard; ``keep=None``: the whole song. ``root`` itself is not changed.

    Every other instrument track keeps playing into its own FX-mixer channel, silenced by an
    Amplifier at 0 % appended to its own effect chain (:func:`silence_track`; the effects already
    there keep the state they had), so every render runs every instrument, effect and FX channel
    alike: the C library's random numbers, which ZynAddSubFX and DrumSynth draw from one shared
    sequence, are drawn in the same order in every copy, and a peak controller on a track's chain
    still ducks the tracks it controls. (Muting the others, ``muted="1"``, stops them and shifts
    that sequence: the kept ZynAddSubFX track then renders other random phases than in the song.)
    Sample tracks, which draw no random numbers, are muted. Tracks muted in the project stay
    muted; beat/bassline and automation tracks are left as they are; solo flags are cleared."""
    copy = copy_module.deepcopy(root)
    for el in copy.iter("track"):
        if el.get("solo") == "1":
            el.set("solo", "0")
    if keep is None:
        return copy
    for t in tracks(copy):
        if t["index"] == keep or t["muted"]:
            continue
        if t["type"] == SAMPLE_TRACK or t["element"].find("instrumenttrack") is None:
            t["element"].set("muted", "1")
        else:
            silence_track(t["element"])
    return copy


def silence_track(track):
    """Append an Amplifier at 0 % volume, fully wet, to an instrument ``<track>``'s own effect chain
    (enabling the chain; effects of a chain that was off are switched off one by one instead), so
    the track plays on but sends exact zeros to its FX channel. In place."""
    inst = track.find("instrumenttrack")
    chain = inst.find("fxchain")
    if chain is None:
        chain = ET.SubElement(inst, "fxchain", {"enabled": "0", "numofeffects": "0"})
    effects = chain.findall("effect")
    if chain.get("enabled", "1") == "0":
        for e in effects:
            e.set("on", "0")
    chain.set("enabled", "1")
    amp = ET.SubElement(chain, "effect", {"name": "amplifier", "on": "1", "wet": "1", "gate": "0", "autoquit": "1",
                                          "autoquit_numerator": "4", "autoquit_denominator": "4", "syncmode": "0"})
    ET.SubElement(amp, "AmplifierControls", {"volume": "0", "pan": "0", "left": "100", "right": "100"})
    ET.SubElement(amp, "key")
    chain.set("numofeffects", str(len(effects) + 1))
    return track


def tempo_bpm(root):
    """The project's tempo in quarter notes per minute (``<head bpm>``, or a ``<bpm value>`` child)."""
    head = root.find("head")
    if head is None:
        return 140.0
    child = head.find("bpm")
    value = child.get("value") if child is not None else head.get("bpm")
    return float(value) if value else 140.0


def ticks_per_bar(root):
    head = root.find("head")
    num = int((head.get("timesig_numerator") if head is not None else None) or 4)
    den = int((head.get("timesig_denominator") if head is not None else None) or 4)
    return max(1, 4 * TICKS_PER_QUARTER * num // den)


def ticks_at(root, seconds):
    """Song position in ticks at ``seconds`` of the project's (constant) tempo."""
    return seconds * tempo_bpm(root) * TICKS_PER_QUARTER / 60.0


def limit_project(root, max_seconds):
    """Cut the song editor's clips at ``max_seconds`` + :data:`TAIL_SECONDS` + one bar: clips that
    start there or later are removed, notes of a crossing pattern that start past it dropped, and a
    crossing sample or beat/bassline clip shortened. In place; returns the cut in ticks. The
    beat/bassline container's own patterns (positions inside the beat) are left alone."""
    cut = int(math.ceil(ticks_at(root, max_seconds + TAIL_SECONDS))) + ticks_per_bar(root)
    for track in _song_container(root).findall("track"):
        for clip in [c for c in track if c.tag in CLIP_TAGS]:
            pos = int(clip.get("pos", "0"))
            if pos >= cut:
                track.remove(clip)
                continue
            room = cut - pos
            if clip.tag == "pattern":
                for note in [n for n in clip.findall("note") if int(n.get("pos", "0")) >= room]:
                    clip.remove(note)
            elif clip.tag in ("sampletco", "bbtco") and int(clip.get("len", "0")) > room:
                clip.set("len", str(room))
    return cut


# --- licences ---------------------------------------------------------------------------------

def parse_copyright(text):
    """The ``Files:`` stanzas of a DEP-5 copyright file, in order: ``[{"files": [pattern, ...],
    "copyright": [line, ...], "licence": str}]`` (the licence's first line, its short name)."""
    stanzas = []
    for block in re.split(r"\n[ \t]*\n", text):
        fields, key = {}, None
        for line in block.splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            if line[0] in " \t":
                if key is not None:
                    fields[key].append(line.strip())
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = [value.strip()] if value.strip() else []
        if "files" not in fields:
            continue
        patterns = [p for line in fields["files"] for p in line.split()]
        stanzas.append({"files": patterns,
                        "copyright": [c for c in fields.get("copyright", []) if c != "."],
                        "licence": (fields.get("license") or [""])[0]})
    return stanzas


def _pattern(glob):
    """DEP-5 wildcards: ``*`` any run of characters (``/`` too), ``?`` one; nothing else special."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob) + r"\Z",
                      re.DOTALL)


def licence_of(path, stanzas):
    """``(stanza, pattern)`` of the last stanza matching ``path`` (DEP-5: the last match wins), or
    ``(None, None)``."""
    found = (None, None)
    for stanza in stanzas:
        for glob in stanza["files"]:
            if _pattern(glob).match(path):
                found = (stanza, glob)
    return found


def project_licence(relative, stanzas):
    """The licence of a project at ``relative`` (under :data:`PROJECTS`, e.g. ``"demos/X.mmpz"``).

    Returns a dict: ``licence`` (None when not usable), ``copyright`` (the stanza's lines),
    ``pattern`` and ``why`` (why it is not usable, else None)."""
    path = SOURCE_PREFIX + str(relative).lstrip("/")
    stanza, glob = licence_of(path, stanzas)
    if stanza is None:
        return {"licence": None, "copyright": [], "pattern": None, "why": "no stanza of the copyright file covers it"}
    if glob == "*":
        return {"licence": None, "copyright": [], "pattern": glob,
                "why": f"only the catch-all 'Files: *' stanza ({stanza['licence']}, the program's code) covers it: "
                       "no licence of its own"}
    if stanza["licence"].lower() not in FREE_LICENCES:
        return {"licence": None, "copyright": stanza["copyright"], "pattern": glob,
                "why": f"licence {stanza['licence']!r} is not among those allowing redistribution and derived use"}
    return {"licence": stanza["licence"], "copyright": stanza["copyright"], "pattern": glob, "why": None}


# --- grouping ---------------------------------------------------------------------------------

def _words_group(text):
    """drums/bass/other by the tracker modules' drum and bass words, then LMMS's (sub: bass; lead,
    pad, chords, ...: other); None when the words say nothing."""
    if not text:
        return None
    group, why = modules.classify(text)
    if why == "name":
        return group
    if BASS_NAME_EXTRA.search(text):
        return "bass"
    if OTHER_NAME.search(text):
        return "other"
    return None


def _sample_key(src):
    """A sample path relative to :data:`SAMPLES` (LMMS writes factory samples that way)."""
    s = str(src).replace("\\", "/")
    prefix = str(SAMPLES) + "/"
    return s[len(prefix):] if s.startswith(prefix) else s.lstrip("/")


def group_by_metadata(track):
    """The group a track's name, samples and plugin give it: ``(group, reason)``, or ``(None, None)``
    when the audio must decide (the rules in the module docstring)."""
    sampled = track["plugin"] in ("audiofileprocessor", "sample")
    if sampled and VOCAL_NAME.search(track["name"]):
        return "vocals", "name (sampled voice)"
    group = _words_group(track["name"])
    if group:
        return group, "name"
    samples = [_sample_key(s) for s in track["samples"]]
    if samples:
        by_file = {_words_group(re.sub(r"[_\-.]+", " ", Path(s).stem)) for s in samples}
        if len(by_file) == 1 and None not in by_file:
            return by_file.pop(), "sample name"
        by_folder = set()
        for s in samples:
            for pattern, g in SAMPLE_FOLDERS:
                if pattern.match(s):
                    by_folder.add(g)
                    break
            else:
                by_folder.add(None)
        if len(by_folder) == 1 and None not in by_folder:
            return by_folder.pop(), "sample folder"
    group = PLUGIN_GROUPS.get((track["plugin"], bool(track["in_beat"])))
    if group:
        return group, "plugin"
    return None, None


def group_of(track, audio=None):
    """``(group, reason)`` of one track: :func:`group_by_metadata`, else its rendered audio
    ((2, n) float) through the tracker modules' classifier (the reason is then its features)."""
    group, why = group_by_metadata(track)
    if group is not None:
        return group, why
    if audio is None:
        return "other", "no audio"
    f = modules.audio_features(audio)
    return modules.classify_audio(f), f


# --- rendering --------------------------------------------------------------------------------

def residual_db(parts_sum, full):
    """Energy of ``parts_sum - full`` in dB re the energy of ``full`` (same shapes); -inf when they
    agree exactly, +inf when ``full`` is silent but the sum is not."""
    a = np.asarray(full, dtype=np.float64)
    err = float(np.sum((np.asarray(parts_sum, dtype=np.float64) - a) ** 2))
    ref = float(np.sum(a ** 2))
    if err == 0:
        return float("-inf")
    if ref == 0:
        return float("inf")
    return 10 * math.log10(err / ref)


def wav_complete(path):
    """Whether a RIFF file's own size field matches the file (LMMS writes it when it closes the
    file; a render that died before that leaves it wrong)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return False
    return struct.unpack("<I", head[4:8])[0] + 8 == os.path.getsize(path)


def lmms_binary():
    return shutil.which("lmms")


def faketime_library():
    """libfaketime (Debian's ``faketime`` package), or None: LMMS seeds the C library's random numbers
    with the wall clock (``srand(time(NULL))`` when its first ZynAddSubFX instance starts), so two
    renders a second apart differ wherever a ZynAddSubFX patch or a DrumSynth sample draws them."""
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1")) + sorted(
        Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    return str(found[0]) if found else None


def render_project(project, wav, timeout_s=RENDER_TIMEOUT_S):
    """Render one project file to a float WAV with ``nice -n 19 lmms ... render``; returns the audio,
    float32 (2, n). LMMS 1.2.2 sometimes crashes on exit after writing a complete file: a run that
    exits non-zero is accepted when the file is complete (:func:`wav_complete`), else tried once more."""
    exe = lmms_binary()
    if exe is None:
        raise RuntimeError("lmms is missing: apt-get install -y lmms")
    wav = Path(wav)
    config = wav.with_suffix(".lmmsrc.xml")
    config.write_text(LMMS_CONFIG.format(work=escape(str(wav.parent / "lmms-home")) + "/"), encoding="utf-8")
    cmd = ["nice", "-n", "19", exe, "--allowroot", "--config", str(config), "render", str(project),
           "--format", "wav", "--float", "--samplerate", str(SAMPLE_RATE), "--interpolation", "sincfastest",
           "--oversampling", "2", "--output", str(wav)]
    if shutil.which("taskset"):  # one CPU: LMMS's mixer threads then rarely race (see the module docstring)
        cmd = ["taskset", "-c", str(min(os.sched_getaffinity(0)))] + cmd
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    fake = faketime_library()
    if fake:  # time() stands still at FAKE_CLOCK; the monotonic clock (Qt's timers) runs on
        env.update({"LD_PRELOAD": fake, "FAKETIME": FAKE_CLOCK, "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    last = ""
    for _ in range(2):
        if wav.exists():
            wav.unlink()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                                start_new_session=True)
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # LMMS and its RemoteZynAddSubFx children, all started here
            proc.communicate()
            raise RuntimeError(f"lmms took over {timeout_s:.0f} s")
        if wav_complete(wav):
            x, rate = sf.read(str(wav), dtype="float32", always_2d=True)
            if rate != SAMPLE_RATE:
                raise RuntimeError(f"lmms wrote {rate} Hz")
            wav.unlink()
            x = x.T
            if x.shape[0] == 1:
                x = np.repeat(x, 2, axis=0)
            if not np.all(np.isfinite(x)) or np.max(np.abs(x), initial=0.0) > MAX_PEAK:
                raise RuntimeError(f"lmms wrote non-finite or absurd samples (peak {np.max(np.abs(x)):.3g})")
            return np.ascontiguousarray(x[:2])
        last = err.decode("utf-8", "replace").replace("\r", "\n").strip().splitlines()[-1:] if err else ""
    raise RuntimeError(f"lmms failed (exit {proc.returncode}): {last}")


def _fit(x, n):
    """(2, m) -> (2, n): cut or zero-padded at the end."""
    if x.shape[1] >= n:
        return x[:, :n]
    return np.pad(x, ((0, 0), (0, n - x.shape[1])))


def render_song(path, max_seconds=modules.MAX_SECONDS, workdir=None, timeout_s=RENDER_TIMEOUT_S, log=None):
    """Render one project whole, twice, then every one of its instrument and sample tracks alone,
    each from its own copy (:func:`solo_project`) in its own LMMS process.

    Returns a dict: ``groups`` ({stem: float32 (2, n)}: the sounding tracks summed by group),
    ``tracks`` (per sounding track: ``key``, ``group``, ``reason``, ``energy_db`` re the full
    render, ``samples``), ``silent`` (keys of tracks that rendered silent), ``residual_db`` (sum of
    the tracks vs the nearer of the two full renders: both are renders of the song), ``repeat_db``
    (the second full render vs the first) and ``render_s`` (wall seconds of all renders)."""
    root = read_project(path)
    limit_project(root, max_seconds)
    listed = tracks(root)
    n_max = int(round((max_seconds + TAIL_SECONDS) * SAMPLE_RATE))
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix=".lmms-", dir=workdir) as tmp:
        tmp = Path(tmp)

        def render(keep, tag):
            copy = tmp / f"{tag}.mmp"
            copy.write_bytes(project_bytes(solo_project(root, keep)))
            return render_project(copy, tmp / f"{tag}.wav", timeout_s)

        full = render(None, "full")
        n = min(full.shape[1], n_max)
        full = full[:, :n]
        again = _fit(render(None, "again"), n)
        groups = {s: np.zeros((2, n), np.float32) for s in STEMS}
        total = np.zeros((2, n), np.float64)
        ref = float(np.sum(full.astype(np.float64) ** 2))
        out, silent = [], []
        for t in listed:
            if t["muted"]:
                continue
            key = f"{t['index']}: {t['name']} [{t['plugin']}{', beat/bassline' if t['in_beat'] else ''}]"
            audio = _fit(render(t["index"], f"track{t['index']}"), n)
            if np.max(np.abs(audio), initial=0.0) < SILENT_PEAK:
                silent.append(key)
                continue
            group, why = group_of(t, audio)
            groups[group] += audio
            total += audio
            energy = float(np.sum(audio.astype(np.float64) ** 2))
            out.append({"key": key, "group": group,
                        "reason": why if isinstance(why, str) else {k: round(v, 3) for k, v in why.items()},
                        "energy_db": _db(10 * math.log10(energy / ref)) if ref > 0 else None,
                        "samples": [_sample_key(s) for s in t["samples"]]})
            if log:
                log(f"  {key} -> {group} ({why if isinstance(why, str) else 'audio'})")
    return {"groups": groups, "tracks": out, "silent": silent,
            "residual_db": min(residual_db(total, full), residual_db(total, again)),
            "repeat_db": residual_db(again, full), "render_s": time.time() - t0}


# --- staging ----------------------------------------------------------------------------------

def find_projects(root=DEMOS):
    """The project files under ``root`` (``*.mmpz``, ``*.mmp``), sorted by path."""
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and p.suffix.lower() in (".mmpz", ".mmp"))


def song_name(path):
    return modules.song_name(path)


def _db(x):
    """A level in dB for JSON, to 0.1 dB: at least :data:`FLOOR_DB` (-inf: identical), None for NaN
    or +inf (a silent reference)."""
    if x is None or math.isnan(x) or x == float("inf"):
        return None
    return round(max(float(x), FLOOR_DB), 1)


def stage_song(path, licence, max_seconds=modules.MAX_SECONDS, workdir=None, timeout_s=RENDER_TIMEOUT_S, log=None):
    """Render, group and scale one project. Returns ``(stems, meta, info)``, or the reason (a
    string) it is skipped together with what was measured: ``(reason, info)``."""
    song = song_name(path)
    r = render_song(path, max_seconds, workdir, timeout_s, log)
    info = {"residual_db": _db(r["residual_db"]), "repeat_db": _db(r["repeat_db"]),
            "render_s": round(r["render_s"], 1), "tracks": r["tracks"], "silent_tracks": r["silent"]}
    if not r["tracks"]:
        return "no track sounds", info
    if r["residual_db"] > RESIDUAL_LIMIT_DB:
        return f"tracks do not sum to the song ({r['residual_db']:.1f} dB > {RESIDUAL_LIMIT_DB:.0f} dB)", info
    stems, scaled = modules.scale_stems(r["groups"], max_seconds)
    info["seconds"] = scaled["seconds"]
    if stems is None:
        return scaled["skip"], info
    song_id = f"{PACKAGE}_{song}"
    meta = {"source": SOURCE, "package": PACKAGE, "song": song, "licence": licence["licence"],
            "channels": {t["key"]: t["group"] for t in r["tracks"]}, "split": modules.split_of(song_id),
            "band_limited_hz": None, "project": _project_name(path), "copyright": licence["copyright"],
            "residual_db": info["residual_db"]}
    info["int16_residual_db"] = _db(scaled["int16_residual_db"])
    info["energy_db"] = scaled["energy_db"]
    return stems, meta, info


def _project_name(path):
    """A project's path under :data:`PROJECTS` (``demos/X.mmpz``), else its file name."""
    try:
        return str(Path(path).relative_to(PROJECTS))
    except ValueError:
        return Path(path).name


def main(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--out", type=Path, default=Path("~/.cache/roomtone/stems/lmms"))
    ap.add_argument("--projects-dir", type=Path, default=DEMOS, help="where the projects are (default: the demos)")
    ap.add_argument("--copyright", type=Path, default=COPYRIGHT)
    ap.add_argument("--max-seconds", type=float, default=modules.MAX_SECONDS)
    ap.add_argument("--projects", type=int, default=None, metavar="N", help="only the first N usable projects")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="only projects whose file name holds NAME (case-blind; repeatable)")
    ap.add_argument("--timeout", type=float, default=RENDER_TIMEOUT_S, help="seconds one LMMS render may take")
    ap.add_argument("--force", action="store_true", help="render again songs already written")
    args = ap.parse_args(argv)
    out = args.out.expanduser()
    out.mkdir(parents=True, exist_ok=True)
    if lmms_binary() is None:
        raise SystemExit("lmms is missing: apt-get install -y lmms")
    stanzas = parse_copyright(args.copyright.read_text(encoding="utf-8"))
    manifest_path = out / "manifest.json"
    previous = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    old = {e["file"]: e for e in previous.get("songs", [])}
    entries, skipped, excluded = [], [], []

    def save():  # this run's songs, and the earlier runs' for the projects this run left alone
        seen = {e["project"] for e in entries + skipped + excluded}
        kept = [e for e in previous.get("songs", []) if e["project"] not in seen and (out / e["file"]).exists()]
        modules.write_json(manifest_path, _manifest(
            entries + kept, skipped + [e for e in previous.get("skipped", []) if e["project"] not in seen],
            excluded + [e for e in previous.get("excluded", []) if e["project"] not in seen]))

    usable = []
    for path in find_projects(args.projects_dir):
        if args.only and not any(o.lower() in path.name.lower() for o in args.only):
            continue
        relative = _project_name(path)
        lic = project_licence(relative, stanzas)
        if lic["licence"] is None:
            excluded.append({"project": str(relative), "why": lic["why"]})
            print(f"leave out {relative}: {lic['why']}", flush=True)
            continue
        usable.append((path, relative, lic))
    if args.projects is not None:
        usable = usable[:args.projects]
    for path, relative, lic in usable:
        song = song_name(path)
        target = out / f"{SOURCE}_{song}.npz"
        if target.exists() and not args.force and target.name in old:
            entries.append(old[target.name])
            continue
        print(f"{relative} ({lic['licence']}):", flush=True)
        try:
            result = stage_song(path, lic, args.max_seconds, workdir=out, timeout_s=args.timeout,
                                log=lambda s: print(s, flush=True))
        except (ValueError, RuntimeError, ET.ParseError) as e:
            result = (f"render failed: {e}", {})
        if isinstance(result[0], str):
            why, info = result
            print(f"skip {relative}: {why}", flush=True)
            skipped.append({"project": str(relative), "licence": lic["licence"], "why": why,
                            "max_seconds": args.max_seconds, **info})
            save()
            continue
        stems, meta, info = result
        modules.write_song(target, stems, meta)
        entry = {"file": target.name, "song": song, "project": meta["project"], "licence": meta["licence"],
                 "copyright": meta["copyright"], "split": meta["split"], "max_seconds": args.max_seconds, **info}
        entries.append(entry)
        groups = {g: sum(1 for t in info["tracks"] if t["group"] == g) for g in STEMS}
        print(f"{relative}: {info['seconds']:.0f} s {meta['split']} residual {info['residual_db']} dB "
              f"(repeat {info['repeat_db']} dB) tracks per group {groups} ({info['render_s']:.0f} s)", flush=True)
        save()
    save()
    print(json.dumps(json.loads(manifest_path.read_text())["summary"], indent=1))
    return 0


def _manifest(entries, skipped, excluded):
    minutes = {s: 0.0 for s in STEMS}
    for e in entries:
        for s in STEMS:
            if e["energy_db"][s] is not None:
                minutes[s] += e["seconds"] / 60
    residuals = [e["residual_db"] for e in entries if e["residual_db"] is not None]
    return {"source": SOURCE, "package": PACKAGE, "sample_rate": SAMPLE_RATE,
            "renderer": "lmms 1.2.2 render, one process per track (other instrument tracks silenced by a 0 % "
                        "Amplifier, sample tracks muted) plus the whole song twice; one CPU, effects never auto-quit",
            "clock_pinned": faketime_library() is not None,
            "residual_limit_db": RESIDUAL_LIMIT_DB,
            "summary": {"songs": len(entries),
                        "train": sum(e["split"] == "train" for e in entries),
                        "val": sum(e["split"] == "val" for e in entries),
                        "minutes": round(sum(e["seconds"] for e in entries) / 60, 1),
                        "minutes_with_group": {s: round(v, 1) for s, v in minutes.items()},
                        "worst_residual_db": max(residuals, default=None),
                        "licences": sorted({e["licence"] for e in entries}),
                        "skipped": len(skipped), "left_out_for_licence": len(excluded)},
            "songs": entries, "skipped": skipped, "excluded": excluded}


if __name__ == "__main__":
    sys.exit(main())
