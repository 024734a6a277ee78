"""Multitrack separation training data from the tracker modules (.mod/.xm/.it/.s3m) that Debian's
game packages ship, rendered one instrument at a time so the parts sum exactly to the song.

    python -m roomtone.separate.training.modules --out ~/.cache/roomtone/stems/modules

Sources: the packages of :data:`PACKAGES` (Debian bookworm, all in ``main``), each with the licence
read from its ``/usr/share/doc/<package>/copyright`` (GPL-2/2+/3+, LGPL-2/2.1, BSD-2/3-Clause,
Zlib, public domain: every one allows redistribution and derived use). They are fetched without
installing them, into ``--src`` (default ``~/.cache/roomtone/stems/modules-src``)::

    apt-get download <package>            # into SRC/debs
    dpkg -x SRC/debs/<package>_*.deb SRC/<package>

(already extracted packages are not fetched again). ``heroes-sound-tracks`` is RESERVED FOR
EVALUATION: it is never fetched, rendered or read here (:data:`RESERVED`; asking for it is an
error). Files with the same bytes in two packages (tuxmath-data and tuxtype-data share theirs) are
rendered once, under the first package; armagetronad's ``.mod`` files are 3D models, not music,
and its package is not listed.

Renderer: libopenmpt (``apt-get install openmpt123`` brings ``libopenmpt.so.0``), called through
ctypes: 44.1 kHz stereo float, the main subsong played once (no repeat), default interpolation and
stereo separation, master gain -12 dB so nothing clips inside the mixer. ``openmpt123`` itself has
no mute option, so the song is loaded once per *part* through libopenmpt_ext's ``interactive``
interface, and every instrument but one is muted (``set_instrument_mute_status``; in modules
without instruments, .mod and .s3m, the index is the sample's). Mixing in libopenmpt is linear per
voice (interpolation, volume ramping, panning and the IT filters act on one voice at a time, and
the float output has no limiter), so the parts sum to the full render to float precision: -111 to
-146 dB residual on the checked songs (:func:`render_song` measures it for every song and the
manifest keeps it). A part is an instrument rather than a tracker channel because tracker channels
often alternate kick, snare and bass notes on one channel; an instrument is one sound. Instrument
muting is not always exact, though (bb.s3m: a few seconds where a part differs, -25 dB over the
song), so a song whose parts sum worse than :data:`RESIDUAL_LIMIT_DB` is rendered again one
tracker channel at a time (``set_channel_mute_status``, exact there), a channel named by the
instruments its pattern notes play; if that fails too the song is skipped.

Grouping (:func:`classify`): vocals are left empty (none of these songs has a sung or spoken
line). A part whose name (for a channel: every one of its instruments' names) says so is drums (kick, bd, snare, sd, hh, hat, cymbal, crash, ride, tom,
perc, drum, clap, ...; :data:`DRUM_NAME`) or bass (bass, but not bass drum; :data:`BASS_NAME`).
Otherwise its rendered audio decides (:func:`audio_features`, :func:`classify_audio`):

- **drums** when it is noisy (median spectral flatness over its sounding frames above
  :data:`NOISY_FLATNESS`), or when its notes decay fast (median 20 dB decay under
  :data:`PERCUSSIVE_DECAY_S`) and it is either somewhat noisy (flatness above
  :data:`PERC_FLATNESS`) or a short low thump (a kick: decay under :data:`KICK_DECAY_S` and most
  energy under 250 Hz);
- **bass** when at least :data:`BASS_LOW_SHARE` of its energy lies under :data:`BASS_HZ`;
- **other** otherwise.

Output, per song, ``OUT/modules_<package>_<song>.npz`` with ``vocals``, ``drums``, ``bass``,
``other``: int16, shape (2, n), the same n for all, 44.1 kHz; the stems share one gain, so their
sum (the song) peaks at :data:`PEAK` of full scale and no stem clips; a group with no part is all
zeros. ``meta`` is a 0-d string array of JSON: ``source``, ``package``, ``song``, ``licence``,
``channels`` (``"<instrument index>: <name>"``, or ``"channel <index>: <instrument names>"``
where the song was rendered by channel, -> group, for every sounding part), ``split``,
``band_limited_hz`` (null). Songs are trimmed of leading and trailing silence and to at most
:data:`MAX_SECONDS`; a song shorter than :data:`MIN_SECONDS` or whose sum is mostly silent (under
half of its seconds above -45 dB re its peak) is skipped. Split: ``val`` when
``zlib.crc32(song id) % 7 == 0`` (about 14 %; :func:`split_of`), the song id being
``<package>_<song>``, so a song is in one split for good. Each file is written to a temporary name
and renamed into place; a rerun skips the files already there. ``OUT/manifest.json`` lists every
song with its package, licence, split, seconds, group energies (mean square per group, dB re full
scale) and sum residual.
"""

import argparse
import ctypes
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from roomtone.audio import write_bytes_atomic, write_text_atomic

SAMPLE_RATE = 44100
STEMS = ("vocals", "drums", "bass", "other")
EXTENSIONS = (".mod", ".xm", ".it", ".s3m")
MAX_SECONDS = 240.0
MIN_SECONDS = 20.0
PEAK = 10 ** (-1.0 / 20)  # the song's (the stems' sum's) peak: -1 dBFS
MASTER_GAIN_MB = -1200  # libopenmpt master gain in millibel while rendering
SILENCE_DB = -45.0  # a second whose RMS is this far under the song's peak is silent
VALIDATION_MODULUS = 7
RESIDUAL_LIMIT_DB = -60.0  # parts summing worse than this to the full render: by channel, else skipped

RESERVED = frozenset({"heroes-sound-tracks"})  # evaluation only: never fetched or rendered here

# Debian package -> licence of its music, from /usr/share/doc/<package>/copyright.
PACKAGES = {
    "ballz-data": "BSD-3-Clause",
    "bb": "GPL-2+",
    "biniax2-data": "Zlib",
    "black-box": "GPL",
    "bomberclone-data": "GPL-2",
    "bugsquish": "GPL-2",
    "ceferino-data": "GPL-2+",
    "criticalmass-data": "GPL-2+",
    "cuyo-data": "GPL-2+",
    "dodgindiamond2": "GPL-2+",
    "fb-music-high": "GPL-2",
    "flobopuyo": "GPL-2+",
    "freedroid-data": "GPL-2+",
    "gemdropx": "GPL-2",
    "gl-117-data": "GPL-2",
    "gltron": "GPL-2",
    "gweled": "GPL-2+",
    "ironseed-data": "GPL-3+",
    "madbomber-data": "GPL-2",
    "monsterz-data": "public-domain",  # sound/music.s3m, put in the public domain by MenTaLguY
    "njam-data": "GPL-2+",
    "open-invaders-data": "GPL-2+",
    "pachi-data": "GPL-2+",
    "pathogen": "GPL-2+",
    "pekka-kana-2-data": "BSD-2-Clause",
    "penguin-command": "GPL-2+",
    "pingus-data": "GPL-2+",
    "rafkill-data": "LGPL-2",
    "ri-li-data": "GPL-2 or GPL-3",
    "rockdodger": "GPL-2+",
    "solarwolf": "LGPL-2.1",
    "tecnoballz-data": "GPL-3+",
    "tomatoes-data": "Zlib",
    "tuxmath-data": "GPL-3+",
    "tuxtype-data": "GPL-2",
    "vectoroids": "GPL-2+",
    "vodovod": "GPL-2+",
    "vor": "GPL-2+",
}
assert not RESERVED & set(PACKAGES)

DRUM_NAME = re.compile(
    r"kick|bass\s*-?drum|bassdr|\bbd\d*\b|snare|snr|\bsd\d*\b|\bhh\d*\b|hi-?hat|\bhat|cymb|crash|\bride"
    r"|\btoms?\d*\b|perc|drum|clap|\brim|tamb|shaker|conga|bongo|cowbell|\bkck|\bkik", re.IGNORECASE)
BASS_NAME = re.compile(r"bass|\bbas\b", re.IGNORECASE)

N_FFT = 2048
HOP = 1024
BASS_HZ = 250.0
NOISY_FLATNESS = 0.25
PERC_FLATNESS = 0.05
PERCUSSIVE_DECAY_S = 0.25
KICK_DECAY_S = 0.15
BASS_LOW_SHARE = 0.6
ONSET_RISE_DB = 6.0
DECAY_DB = 20.0


def split_of(song_id):
    """``"val"`` for about one song in seven (a stable hash of the id), else ``"train"``."""
    return "val" if zlib.crc32(song_id.encode("utf-8")) % VALIDATION_MODULUS == 0 else "train"


# --- classification -------------------------------------------------------------------------

def audio_features(audio, rate=SAMPLE_RATE):
    """Flatness, low-band share and note decay of one part's render ((2, n) or (n,) float).

    Returns a dict: ``flatness`` (median spectral flatness, 50 Hz-16 kHz, over the frames within
    40 dB of the loudest), ``low_share`` (share of the energy under :data:`BASS_HZ`), ``decay_s``
    (median time for a note to fall 20 dB after an onset, a rise of 6 dB frame to frame; inf
    when no note decays within a second) and ``active`` (number of sounding frames)."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0)
    if len(x) < N_FFT:
        x = np.pad(x, (0, N_FFT - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * np.hanning(N_FFT), axis=1)) ** 2
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / rate)
    energy = power.sum(axis=1)
    if energy.max() <= 0:
        return {"flatness": 0.0, "low_share": 0.0, "decay_s": float("inf"), "active": 0}
    active = energy > energy.max() * 1e-4
    band = (freqs >= 50) & (freqs <= 16000)
    p = power[active][:, band] + 1e-20
    flat = np.exp(np.mean(np.log(p), axis=1)) / np.mean(p, axis=1)
    low_share = power[active][:, freqs < BASS_HZ].sum() / energy[active].sum()
    level = 10 * np.log10(energy + energy.max() * 1e-12)
    floor = level.max() - 40
    frame_s = HOP / rate
    decays = []
    rise = np.diff(level, prepend=level[0] - 100)
    onsets = np.flatnonzero((rise > ONSET_RISE_DB) & (level > floor))
    max_frames = int(round(1.0 / frame_s))
    for t in onsets:
        peak_at = t + int(np.argmax(level[t:t + 3]))
        after = level[peak_at:peak_at + max_frames] < level[peak_at] - DECAY_DB
        if after.any():
            decays.append(int(np.argmax(after)) * frame_s)
        else:
            decays.append(float("inf"))
    decay = float(np.median(decays)) if decays else float("inf")
    return {"flatness": float(np.median(flat)), "low_share": float(low_share), "decay_s": decay,
            "active": int(active.sum())}


def classify_audio(features):
    """``"drums"``, ``"bass"`` or ``"other"`` from :func:`audio_features` (the rule in the module
    docstring)."""
    f = features
    if f["active"] == 0:
        return "other"
    percussive = f["decay_s"] < PERCUSSIVE_DECAY_S
    low = f["low_share"] >= BASS_LOW_SHARE
    if f["flatness"] > NOISY_FLATNESS:
        return "drums"
    if percussive and (f["flatness"] > PERC_FLATNESS or (low and f["decay_s"] < KICK_DECAY_S)):
        return "drums"
    if low:
        return "bass"
    return "other"


def _name_group(name):
    if DRUM_NAME.search(name):
        return "drums"
    if BASS_NAME.search(name):
        return "bass"
    return None


def classify(name, audio=None, rate=SAMPLE_RATE):
    """The group of one part: its name when it names a drum or a bass, else its audio.

    Returns ``(group, reason)``, the reason ``"name"`` or the features that decided."""
    named = [_name_group(n) for n in name.split(", ")] if name else []
    if named and named[0] is not None and all(g == named[0] for g in named):
        return named[0], "name"
    if audio is None:
        return "other", "no audio"
    f = audio_features(audio, rate)
    return classify_audio(f), f


# --- writing and reading ----------------------------------------------------------------------

def write_song(path, stems, meta):
    """Write one song's npz atomically: ``stems`` maps each of :data:`STEMS` to int16 (2, n)
    (a missing group is written as zeros), ``meta`` a JSON-able dict."""
    path = Path(path)
    shapes = {s.shape for s in stems.values()}
    if len(shapes) != 1:
        raise ValueError(f"stems of different shapes: {shapes}")
    shape = shapes.pop()
    if len(shape) != 2 or shape[0] != 2:
        raise ValueError(f"a stem must be (2, n), not {shape}")
    arrays = {}
    for name in STEMS:
        a = stems.get(name)
        arrays[name] = np.zeros(shape, np.int16) if a is None else np.ascontiguousarray(a, np.int16)
    arrays["meta"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


def read_song(path):
    """``(stems, meta)``: the four int16 (2, n) arrays by name and the decoded meta dict."""
    with np.load(path, allow_pickle=False) as z:
        stems = {name: z[name] for name in STEMS}
        meta = json.loads(str(z["meta"][()]))
    return stems, meta


def write_json(path, obj):
    write_text_atomic(path, json.dumps(obj, indent=1))


# --- fetching -------------------------------------------------------------------------------

def fetch_package(package, src):
    """Extract ``package`` under ``src/<package>`` (apt-get download, dpkg -x) unless there."""
    if package in RESERVED:
        raise ValueError(f"{package} is reserved for evaluation")
    dest = Path(src) / package
    if dest.is_dir():
        return dest
    debs = Path(src) / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
    deb = sorted(debs.glob(f"{package}_*.deb"))[-1]
    tmp = Path(tempfile.mkdtemp(prefix="." + package, dir=src))
    subprocess.run(["dpkg", "-x", str(deb), str(tmp)], check=True)
    os.replace(tmp, dest)
    return dest


def find_modules(package_dir):
    """The module files of one extracted package, sorted."""
    return sorted(p for p in Path(package_dir).rglob("*")
                  if p.is_file() and p.suffix.lower() in EXTENSIONS and "/doc/" not in str(p))


# --- rendering ------------------------------------------------------------------------------

class _Interactive(ctypes.Structure):
    """libopenmpt_ext.h's openmpt_module_ext_interface_interactive (0.6), function pointers in order."""
    _SET = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int)
    _fields_ = ([(n, ctypes.c_void_p) for n in (
        "set_current_speed", "set_current_tempo", "set_tempo_factor", "get_tempo_factor",
        "set_pitch_factor", "get_pitch_factor", "set_global_volume", "get_global_volume",
        "set_channel_volume", "get_channel_volume")]
        + [("set_channel_mute_status", _SET), ("get_channel_mute_status", ctypes.c_void_p),
           ("set_instrument_mute_status", _SET), ("get_instrument_mute_status", ctypes.c_void_p),
           ("play_note", ctypes.c_void_p), ("stop_note", ctypes.c_void_p)])


_LIB = None


def _lib():
    global _LIB
    if _LIB is None:
        try:
            lib = ctypes.CDLL("libopenmpt.so.0")
        except OSError as e:
            raise RuntimeError("libopenmpt is missing: apt-get install -y openmpt123") from e
        vp, i32 = ctypes.c_void_p, ctypes.c_int32
        lib.openmpt_module_ext_create_from_memory.restype = vp
        lib.openmpt_module_ext_create_from_memory.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, vp, vp, vp, vp, ctypes.POINTER(ctypes.c_int), vp, vp]
        lib.openmpt_module_ext_get_module.restype = vp
        lib.openmpt_module_ext_get_module.argtypes = [vp]
        lib.openmpt_module_ext_get_interface.argtypes = [vp, ctypes.c_char_p, vp, ctypes.c_size_t]
        lib.openmpt_module_ext_destroy.argtypes = [vp]
        lib.openmpt_module_read_interleaved_float_stereo.restype = ctypes.c_size_t
        lib.openmpt_module_read_interleaved_float_stereo.argtypes = [vp, i32, ctypes.c_size_t, vp]
        lib.openmpt_module_get_order_pattern.argtypes = [vp, i32]
        lib.openmpt_module_get_order_pattern.restype = i32
        lib.openmpt_module_get_pattern_num_rows.argtypes = [vp, i32]
        lib.openmpt_module_get_pattern_num_rows.restype = i32
        lib.openmpt_module_get_pattern_row_channel_command.argtypes = [vp, i32, i32, i32, ctypes.c_int]
        lib.openmpt_module_get_pattern_row_channel_command.restype = ctypes.c_uint8
        for name in ("get_num_channels", "get_num_instruments", "get_num_samples", "get_num_orders"):
            getattr(lib, "openmpt_module_" + name).argtypes = [vp]
            getattr(lib, "openmpt_module_" + name).restype = i32
        for name in ("get_instrument_name", "get_sample_name"):
            getattr(lib, "openmpt_module_" + name).argtypes = [vp, i32]
            getattr(lib, "openmpt_module_" + name).restype = vp
        lib.openmpt_free_string.argtypes = [vp]
        lib.openmpt_module_set_render_param.argtypes = [vp, ctypes.c_int, i32]
        lib.openmpt_module_select_subsong.argtypes = [vp, i32]
        lib.openmpt_module_set_repeat_count.argtypes = [vp, i32]
        _LIB = lib
    return _LIB


class _Module:
    def __init__(self, data):
        lib = _lib()
        err = ctypes.c_int(0)
        self.ext = lib.openmpt_module_ext_create_from_memory(data, len(data), None, None, None, None,
                                                             ctypes.byref(err), None, None)
        if not self.ext:
            raise ValueError(f"libopenmpt cannot load it (error {err.value})")
        self.mod = lib.openmpt_module_ext_get_module(self.ext)
        self.inter = _Interactive()
        if not lib.openmpt_module_ext_get_interface(self.ext, b"interactive", ctypes.byref(self.inter),
                                                    ctypes.sizeof(self.inter)):
            raise RuntimeError("libopenmpt has no interactive interface")
        lib.openmpt_module_select_subsong(self.mod, 0)
        lib.openmpt_module_set_repeat_count(self.mod, 0)
        lib.openmpt_module_set_render_param(self.mod, 1, MASTER_GAIN_MB)  # OPENMPT_MODULE_RENDER_MASTERGAIN_MILLIBEL

    def _string(self, fn, i):
        p = fn(self.mod, i)
        if not p:
            return ""
        s = ctypes.string_at(p).decode("latin-1")
        _lib().openmpt_free_string(p)
        return " ".join(s.split())

    def parts(self):
        """(index, name) of every instrument, or of every sample where there are no instruments."""
        lib = _lib()
        n = lib.openmpt_module_get_num_instruments(self.mod)
        fn = lib.openmpt_module_get_instrument_name
        if n == 0:
            n = lib.openmpt_module_get_num_samples(self.mod)
            fn = lib.openmpt_module_get_sample_name
        return [(i, self._string(fn, i)) for i in range(n)]

    def channels(self):
        """(channel, names of the instruments its notes play), from the pattern data."""
        lib = _lib()
        mod = self.mod
        n = lib.openmpt_module_get_num_channels(mod)
        names = dict(self.parts())
        used = [set() for _ in range(n)]
        for order in range(lib.openmpt_module_get_num_orders(mod)):
            pattern = lib.openmpt_module_get_order_pattern(mod, order)
            for row in range(max(lib.openmpt_module_get_pattern_num_rows(mod, pattern), 0)):
                for c in range(n):
                    i = lib.openmpt_module_get_pattern_row_channel_command(mod, pattern, row, c, 1)
                    if i:
                        used[c].add(i - 1)  # OPENMPT_MODULE_COMMAND_INSTRUMENT, 1-based
        return [(c, ", ".join(names.get(i, "") or f"#{i}" for i in sorted(used[c]))) for c in range(n)]

    def solo(self, part, count, by="instrument"):
        mute = self.inter.set_instrument_mute_status if by == "instrument" else self.inter.set_channel_mute_status
        for i in range(count):
            mute(self.ext, i, int(i != part))

    def render(self, max_frames):
        lib = _lib()
        out = np.zeros((max_frames, 2), np.float32)
        done = 0
        while done < max_frames:
            k = lib.openmpt_module_read_interleaved_float_stereo(
                self.mod, SAMPLE_RATE, min(16384, max_frames - done), out[done:].ctypes.data)
            if k == 0:
                break
            done += k
        return out[:done].T

    def close(self):
        if self.ext:
            _lib().openmpt_module_ext_destroy(self.ext)
            self.ext = None


def render_song(data, max_seconds=MAX_SECONDS, tail_seconds=1.0, by="instrument"):
    """Render one module: the full song and every sounding part alone, each (2, n) float32; a part
    is an instrument (``by="instrument"``) or a tracker channel (``by="channel"``).

    Returns ``(full, parts, residual_db)``: ``parts`` a list of ``(index, name, audio)`` for the
    parts that are not silent (a channel's name lists the instruments it plays),
    ``residual_db`` the energy of (sum of all parts - full) re the full render's energy."""
    max_frames = int((max_seconds + tail_seconds) * SAMPLE_RATE)
    m = _Module(data)
    try:
        names = m.parts() if by == "instrument" else m.channels()
        full = m.render(max_frames)
    finally:
        m.close()
    total = np.zeros(full.shape, np.float64)
    parts = []
    for index, name in names:
        m = _Module(data)
        try:
            m.solo(index, len(names), by)
            audio = m.render(full.shape[1])
        finally:
            m.close()
        if audio.shape != full.shape:  # should not happen: muting changes no timing
            raise RuntimeError(f"part {index} renders {audio.shape}, the song {full.shape}")
        if not np.any(audio):
            continue
        total += audio
        parts.append((index, name, audio))
    err = np.sum((total - full) ** 2)
    ref = np.sum(full.astype(np.float64) ** 2)
    residual_db = float(10 * np.log10(err / ref)) if err > 0 and ref > 0 else float("-inf")
    return full, parts, residual_db


def active_span(mix, rate=SAMPLE_RATE):
    """First and last sample above the silence level, and the share of sounding seconds."""
    mono = np.abs(mix).max(axis=0)
    peak = mono.max()
    if peak <= 0:
        return 0, 0, 0.0
    above = np.flatnonzero(mono > peak * 10 ** (SILENCE_DB / 20))
    start, end = int(above[0]), int(above[-1]) + 1
    seg = mix[:, start:end]
    n = seg.shape[1] // rate
    if n == 0:
        return start, end, 0.0
    rms = np.sqrt(np.mean(seg[:, :n * rate].reshape(2, n, rate) ** 2, axis=(0, 2)))
    return start, end, float(np.mean(rms > peak * 10 ** (SILENCE_DB / 20)))


def stage_song(data, package, song, max_seconds=MAX_SECONDS):
    """Render, group and scale one module song. Returns ``(stems, meta, info)`` or ``None`` with
    the reason as a string when the song is skipped."""
    by = "instrument"
    full, parts, residual_db = render_song(data, max_seconds, by=by)
    if residual_db > RESIDUAL_LIMIT_DB:
        by = "channel"
        full, parts, residual_db = render_song(data, max_seconds, by=by)
        if residual_db > RESIDUAL_LIMIT_DB:
            return f"parts do not sum to the song ({residual_db:.1f} dB)"
    groups = {s: np.zeros(full.shape, np.float64) for s in STEMS}
    channels = {}
    reasons = {}
    for index, name, audio in parts:
        group, why = classify(name, audio)
        groups[group] += audio
        key = f"{index}: {name}" if by == "instrument" else f"channel {index}: {name}"
        channels[key] = group
        reasons[key] = why if isinstance(why, str) else {k: round(v, 3) for k, v in why.items()}
    stems, scaled = scale_stems(groups, max_seconds)
    if stems is None:
        return scaled["skip"]
    song_id = f"{package}_{song}"
    meta = {"source": "modules", "package": package, "song": song, "licence": PACKAGES[package],
            "channels": channels, "split": split_of(song_id), "band_limited_hz": None}
    info = {"seconds": scaled["seconds"], "parts": by, "residual_db": round(residual_db, 1),
            "int16_residual_db": round(scaled["int16_residual_db"], 1), "energy_db": scaled["energy_db"],
            "reasons": reasons}
    return stems, meta, info


def scale_stems(groups, max_seconds=MAX_SECONDS):
    """A rendered song's stems as staged: ``groups`` ({stem: (2, n) float}) trimmed to the span
    where their sum sounds (:func:`active_span`, at most ``max_seconds``), scaled by one gain so
    that neither the sum nor any stem peaks over :data:`PEAK`, and rounded to int16. Returns
    ``(stems, figures)``: ``figures`` holds ``seconds``, the int16 rounding's ``int16_residual_db``
    (the stems' sum against the scaled float sum, dB) and each stem's ``energy_db``; or ``(None,
    {"seconds", "skip": why})`` for a song too short or mostly silent."""
    mix = sum(g.astype(np.float64) for g in groups.values())
    start, end, sounding = active_span(mix)
    end = min(end, start + int(max_seconds * SAMPLE_RATE))
    seconds = (end - start) / SAMPLE_RATE
    if seconds < MIN_SECONDS:
        return None, {"seconds": round(seconds, 2), "skip": f"short ({seconds:.1f} s)"}
    if sounding < 0.5:
        return None, {"seconds": round(seconds, 2), "skip": f"mostly silent ({sounding:.0%} sounding)"}
    seg = mix[:, start:end]
    peak = max([np.abs(seg).max()] + [np.abs(g[:, start:end]).max() for g in groups.values()])
    gain = PEAK / peak
    stems = {s: np.round(g[:, start:end].astype(np.float64) * gain * 32767).astype(np.int16) for s, g in groups.items()}
    q = sum(a.astype(np.float64) for a in stems.values()) / 32767 - seg * gain
    return stems, {"seconds": round(seconds, 2),
                   "int16_residual_db": float(10 * np.log10(np.sum(q ** 2) / np.sum((seg * gain) ** 2))),
                   "energy_db": {s: (round(float(10 * np.log10(np.mean((a / 32768.0) ** 2))), 1) if np.any(a) else None)
                                 for s, a in stems.items()}}


def song_name(path):
    return re.sub(r"[^a-z0-9]+", "-", Path(path).stem.lower()).strip("-")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("~/.cache/roomtone/stems/modules").expanduser())
    ap.add_argument("--src", type=Path, default=Path("~/.cache/roomtone/stems/modules-src").expanduser())
    ap.add_argument("--packages", nargs="*", default=sorted(PACKAGES))
    ap.add_argument("--max-seconds", type=float, default=MAX_SECONDS)
    ap.add_argument("--force", action="store_true", help="render again songs already written")
    args = ap.parse_args(argv)
    out = args.out.expanduser()
    out.mkdir(parents=True, exist_ok=True)
    args.src.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    old = {}
    if manifest_path.exists():
        old = {e["file"]: e for e in json.loads(manifest_path.read_text()).get("songs", [])}
    entries, skipped, seen = [], [], {}
    for package in args.packages:
        if package in RESERVED:
            raise SystemExit(f"{package} is reserved for evaluation and is never used here")
        if package not in PACKAGES:
            raise SystemExit(f"{package}: no licence recorded in PACKAGES")
        files = find_modules(fetch_package(package, args.src))
        for path in files:
            data = path.read_bytes()
            digest = hashlib.sha1(data).hexdigest()
            if digest in seen:
                skipped.append({"package": package, "path": str(path), "why": f"same bytes as {seen[digest]}"})
                continue
            song = song_name(path)
            seen[digest] = f"{package}/{song}"
            target = out / f"modules_{package}_{song}.npz"
            if target.exists() and not args.force and target.name in old:
                entries.append(old[target.name])
                continue
            t0 = time.time()
            try:
                result = stage_song(data, package, song, args.max_seconds)
            except (ValueError, RuntimeError) as e:
                result = f"render failed: {e}"
            if isinstance(result, str):
                print(f"skip {package}/{song}: {result}", flush=True)
                skipped.append({"package": package, "path": str(path), "why": result})
                continue
            stems, meta, info = result
            write_song(target, stems, meta)
            entry = {"file": target.name, "package": package, "song": song, "module": path.name,
                     "licence": meta["licence"], "split": meta["split"], "sha1": digest, **info,
                     "channels": meta["channels"]}
            entries.append(entry)
            print(f"{package}/{song}: {info['seconds']:.0f} s {meta['split']} residual {info['residual_db']} dB "
                  f"groups {sorted(set(meta['channels'].values()))} ({time.time() - t0:.1f} s)", flush=True)
            write_json(manifest_path, _manifest(entries, skipped))
    write_json(manifest_path, _manifest(entries, skipped))
    summary = _manifest(entries, skipped)["summary"]
    print(json.dumps(summary, indent=1))
    return 0


def _manifest(entries, skipped):
    minutes = {s: 0.0 for s in STEMS}
    for e in entries:
        for s in STEMS:
            if e["energy_db"][s] is not None:
                minutes[s] += e["seconds"] / 60
    packages = sorted({e["package"] for e in entries})
    return {"source": "modules", "sample_rate": SAMPLE_RATE, "renderer": "libopenmpt (ctypes), per instrument",
            "reserved_never_used": sorted(RESERVED),
            "summary": {"songs": len(entries),
                        "train": sum(e["split"] == "train" for e in entries),
                        "val": sum(e["split"] == "val" for e in entries),
                        "minutes": round(sum(e["seconds"] for e in entries) / 60, 1),
                        "minutes_with_group": {s: round(v, 1) for s, v in minutes.items()},
                        "worst_residual_db": max((e["residual_db"] for e in entries), default=None),
                        "packages": {p: PACKAGES[p] for p in packages}},
            "songs": entries, "skipped": skipped}


if __name__ == "__main__":
    sys.exit(main())
