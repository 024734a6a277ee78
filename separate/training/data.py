"""Training and validation mixtures for the ``roomtone`` separator (:mod:`roomtone.separate.net`),
made on the fly at 44.1 kHz stereo from three licence-clean sources (the manifest in the weights'
config records them):

- **POP909 renders** (:mod:`roomtone.separate.training.pop909`; MIDI MIT, General MIDI soundfonts): per song
  ``drums``, ``bass``, ``other`` and ``melody`` (the vocal line on a voice-like patch), sample
  aligned. Full labels: every stem's target is known.
- **Real voices**: the speech pools of ``../shared/data/speech`` (``speech/``, ``more/speech/``) and
  the solo singing of ``../shared/data/sep/singing/``, resampled to 44.1 kHz, pitch-shifted by
  -4..+4 semitones (a speed change), random EQ, reverberation with the measured RIRs, panned near
  the centre. A clip recorded at 16 kHz has nothing above 8 kHz; so that the network does not learn
  "no air = not a voice", such a clip gets synthetic air: high-passed noise (7 kHz up) following
  the clip's own 3-8 kHz envelope, 18-30 dB under it.
- **Real instrumental music**: Debian's game-music packages (the assistant's
  :func:`roomtone.models.training.datasets.music_folders`: those of the assistant's packages and the Nexuiz soundtrack),
  as an accompaniment under a real voice.
  Partial labels: only ``vocals`` and the accompaniment (``drums + bass + other``) are known; the
  loss (:mod:`roomtone.separate.training.train`) compares the sum of the three masks with the accompaniment.

A POP909 item mixes stems of *different* songs (random remixing across songs, as Open-Unmix
trains), each brought to one RMS level (the soundfonts differ by 20 dB) then given a random gain
(+-6 dB), a tenth of the time left out (silent stem); its vocals are a real voice (60 %), the
melody render (25 %) or nothing, 8 dB under to 4 dB over the accompaniment. Before the EQ and gain, a
full-label item's ``other`` is soft-clipped 30 % of the time and given room reverberation 30 %,
its ``bass`` soft-clipped 20 % (:func:`_saturate`: General MIDI renders are clean, real guitars are
not). A game-music item is a random excerpt plus a real voice (85 %). 30 % of all items go through
a mix-bus limiter driven 2-10 dB (:func:`_bus_gain`: its gain applied to every stem alike).
Channels are swapped at random; 8 % of items are mono.
The mixture is the sum of the stems, so the targets sum to it exactly.

Held out for validation: POP909 songs by the renderer's split (id % 10 == 0), speakers by
:func:`roomtone.models.training.datasets.held_out_speaker`, music files by
:func:`roomtone.models.training.datasets.held_out`. No training item uses any of them.

Shape: mixtures (items, 2, samples) float32; targets (items, 4 stems, 2, samples); ``full``
(items,) float32, 1 for a full-label item.
"""

import json
from collections import Counter
import os
from pathlib import Path

import numpy as np

from roomtone.separate.net import SAMPLE_RATE, STEMS

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SPEECH = SHARED / "speech"
SINGING = SHARED / "sep" / "singing"
MUSIC_EXCERPT_S = 90.0
SCALE = 1.0 / 32768.0


def _read(path, mono=True):
    import soundfile as sf

    from roomtone.resample import resample

    x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.T
    if mono:
        x = x.mean(axis=0, keepdims=True)
    if rate != SAMPLE_RATE:
        x = resample(np.ascontiguousarray(x), rate, SAMPLE_RATE)
    return np.ascontiguousarray(x, dtype=np.float32), rate


def _int16(x):
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def load_voices(speech=SPEECH, singing=SINGING):
    """``{"train"|"val": [(key, mono float32 at 44.1 kHz, native rate)]}``, speakers held out as the
    denoiser holds them out."""
    from roomtone.models.training.datasets import held_out_speaker, speaker_key

    out = {"train": [], "val": []}
    folders = [Path(speech) / "speech", Path(speech) / "more" / "speech", Path(singing)]
    for folder in folders:
        for path in sorted(folder.glob("*.flac")):
            key = speaker_key(path.name)
            x, rate = _read(path)
            if x.shape[1] < SAMPLE_RATE:
                continue
            out["val" if held_out_speaker(key) else "train"].append((key, x[0], rate))
    return out


def load_rirs(speech=SPEECH):
    """The measured RIRs (``more/rir``), peak-aligned and normalised, at 44.1 kHz."""
    rirs = []
    for path in sorted((Path(speech) / "more" / "rir").glob("*.flac")):
        h, _ = _read(path)
        h = h[0]
        peak = int(np.argmax(np.abs(h)))
        h = h[max(0, peak - 32):]
        rirs.append((h / (np.abs(h).max() + 1e-9)).astype(np.float32))
    return rirs


def load_music(folders=None, seconds=MUSIC_EXCERPT_S, seed=0, cache=None, splits=("train", "val")):
    """``{"train"|"val": [(name, int16 (2, samples))]}``: one random ``seconds`` excerpt of each
    game-music file found (stereo, 44.1 kHz). With ``cache`` (an ``.npz`` path) the excerpts are
    kept there and read back when the file list and excerpt length are the same (decoding the OGG
    files takes minutes)."""
    from roomtone.models.training.datasets import held_out, music_files, music_folders

    files = music_files(music_folders() if folders is None else folders)
    names = [f"{package}/{path.name}" for package, path in files]
    key = f"{seconds}:{seed}:" + "|".join(names)
    if cache and os.path.isfile(cache):
        with np.load(cache, allow_pickle=False) as saved:
            if str(saved["key"]) == key:
                out = {"train": [], "val": []}
                for i, name in enumerate(names):
                    split = "val" if held_out(name.split("/", 1)[1]) else "train"
                    if f"m{i}" in saved.files and split in splits:
                        out[split].append((name, saved[f"m{i}"]))
                return out
    out = _decode_music(files, seconds, seed, held_out)
    if cache:
        arrays = {f"m{names.index(name)}": x for split in out.values() for name, x in split}
        os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
        temp = cache + ".tmp.npz"
        np.savez(temp, key=np.array(key), **arrays)
        os.replace(temp, cache)
    return out


def _decode_music(files, seconds, seed, held_out):
    rng = np.random.default_rng(seed)
    out = {"train": [], "val": []}
    for package, path in files:
        try:
            x, _ = _read(path, mono=False)
        except Exception:  # noqa: BLE001 - an undecodable file is skipped
            continue
        if x.shape[0] == 1:
            x = np.repeat(x, 2, axis=0)
        n = int(seconds * SAMPLE_RATE)
        if x.shape[1] > n:
            start = int(rng.integers(0, x.shape[1] - n))
            x = x[:, start:start + n]
        out["val" if held_out(path.name) else "train"].append((f"{package}/{path.name}", _int16(x[:2])))
    return out


def load_staged(folders, max_seconds=None, splits=("train", "val"), per_source=None):
    """Real multitrack songs staged as arrays (:mod:`roomtone.separate.training.multitrack`,
    :mod:`roomtone.separate.training.modules`): ``{"train"|"val": [(id, {stem: int16 (2, n)}, meta)]}``
    from every ``*.npz`` in each folder, split by the ``split`` their staging recorded. A training
    song of a source with more than :data:`MANY_SONGS` training songs keeps only its middle
    ``max_seconds`` (default :data:`MAX_SONG_S`): the 145 tracker modules whole hold some 15 GB of
    int16 stems, and a source of many songs needs variety more than length; validation songs stay
    whole (their excerpts are chosen from all of them). Only the songs of ``splits`` are read, and
    with ``per_source`` only the first that many of each source in each split (a validation run
    that needs a few held-out songs does not hold the training set)."""
    max_seconds = MAX_SONG_S if max_seconds is None else max_seconds
    paths = [path for folder in folders or [] for path in sorted(Path(folder).glob("*.npz"))]
    metas = []
    for path in paths:
        with np.load(path, allow_pickle=False) as f:
            metas.append(json.loads(str(f["meta"])))
    many = Counter(m["source"] for m in metas if m["split"] == "train")
    out = {"train": [], "val": []}
    taken = Counter()
    for path, meta in zip(paths, metas):
        if meta["split"] not in splits or (per_source and taken[meta["split"], meta["source"]] >= per_source):
            continue
        taken[meta["split"], meta["source"]] += 1
        crop = meta["split"] == "train" and many[meta["source"]] > MANY_SONGS and max_seconds
        with np.load(path, allow_pickle=False) as f:
            stems = {}
            for stem in STEMS:
                x = f[stem]
                n = int(max_seconds * SAMPLE_RATE) if crop else x.shape[1]
                start = max(0, (x.shape[1] - n) // 2)
                stems[stem] = np.ascontiguousarray(x[:, start:start + n])
                del x
        out[meta["split"]].append((path.stem, stems, meta))
    return out


def load_sources(pop909=None, speech=SPEECH, singing=SINGING, music=True, music_cache=None, stems=None,
                 splits=("train", "val"), per_source=None):
    """Everything the mixtures draw from: ``{"train"|"val": {"songs": [(id, {stem: int16 (2, n)})],
    "voices": [...], "music": [...], "multitrack": [(id, {stem: int16 (2, n)}, meta)]}, "rir": [...]}``
    (songs from the POP909 render folder ``pop909`` or each of a list of them, when given; real
    multitrack songs from the staged folders ``stems``). ``splits``: the splits whose songs, music
    and staged multitracks are read (the others empty); ``per_source``: :func:`load_staged`'s."""
    voices = load_voices(speech, singing)
    tunes = load_music(cache=music_cache, splits=splits) if music else {"train": [], "val": []}
    staged = load_staged(stems, splits=splits, per_source=per_source)
    from roomtone.separate.training import pop909 as renders

    folders = [pop909] if isinstance(pop909, (str, os.PathLike)) else list(pop909 or [])
    out = {"rir": load_rirs(speech)}
    for split in ("train", "val"):
        songs = ([song for folder in folders for song in renders.load_stems(folder, split=split)]
                 if split in splits else [])
        out[split] = {"songs": songs, "voices": voices[split], "music": tunes[split], "multitrack": staged[split]}
    return out


def manifest(sources):
    """What the sources hold (for the weights' config)."""
    out = {}
    for split in ("train", "val"):
        s = sources[split]
        out[f"{split}_songs"] = len(s["songs"])
        out[f"{split}_song_minutes"] = round(sum(next(iter(st.values())).shape[1] for _, st in s["songs"])
                                             / SAMPLE_RATE / 60, 2)
        out[f"{split}_voice_clips"] = len(s["voices"])
        out[f"{split}_voice_minutes"] = round(sum(x.size for _, x, _ in s["voices"]) / SAMPLE_RATE / 60, 2)
        out[f"{split}_music_files"] = len(s["music"])
        out[f"{split}_multitrack_songs"] = [sid for sid, _, _ in s.get("multitrack", [])]
        out[f"{split}_multitrack_minutes"] = round(sum(st["drums"].shape[1] for _, st, _ in s.get("multitrack", []))
                                                   / SAMPLE_RATE / 60, 2)
    out["multitrack_licences"] = sorted({f"{m['source']}: {m.get('package', m.get('repository', ''))} "
                                         f"({m['licence']})" for split in ("train", "val")
                                         for _, _, m in sources[split].get("multitrack", [])})
    out["train_song_ids"] = sorted({sid for sid, _ in sources["train"]["songs"]})
    out["val_song_ids"] = sorted({sid for sid, _ in sources["val"]["songs"]})
    out["val_music"] = [name for name, _ in sources["val"]["music"]]
    out["val_speakers"] = sorted({k for k, _, _ in sources["val"]["voices"]})
    out["rirs"] = len(sources["rir"])
    return out


# ---------------------------------------------------------------------------------------------
# augmentation


def _crop(rng, x, n):
    """A random ``n``-sample stretch of ``x`` (..., samples), looped when shorter."""
    size = x.shape[-1]
    if size >= n:
        start = int(rng.integers(0, size - n + 1))
        return x[..., start:start + n]
    reps = -(-n // size) + 1
    start = int(rng.integers(0, size))
    return np.tile(x, (1,) * (x.ndim - 1) + (reps,))[..., start:start + n]


def _eq(rng, x, max_db=6.0):
    """Random tilt (+-max_db/3 per octave around 1 kHz) and one random bell, on the last axis."""
    n = x.shape[-1]
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    octaves = np.log2(np.maximum(f, 30.0) / 1000.0)
    gain_db = rng.uniform(-max_db, max_db) / 3.0 * octaves
    centre = np.log2(rng.uniform(100, 8000) / 1000.0)
    gain_db += rng.uniform(-max_db, max_db) * np.exp(-0.5 * ((octaves - centre) / rng.uniform(0.3, 1.5)) ** 2)
    g = 10.0 ** (np.clip(gain_db, -12, 12) / 20.0)
    return np.fft.irfft(np.fft.rfft(x, axis=-1) * g, n=n, axis=-1).astype(np.float32)


def _band(x, lo_hz, hi_hz):
    """``x`` (..., samples) with everything outside ``lo_hz..hi_hz`` removed (FFT brick wall)."""
    n = x.shape[-1]
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    return np.fft.irfft(np.fft.rfft(x, axis=-1) * ((f >= lo_hz) & (f < hi_hz)), n=n, axis=-1).astype(np.float32)


def _air(rng, x):
    """Synthetic air for a band-limited voice ``x`` (mono): noise above 7 kHz following the
    envelope of its 3-8 kHz band (10 ms smoothing), 18-30 dB under that band."""
    presence = _band(x, 3000.0, 8000.0)
    k = int(0.01 * SAMPLE_RATE)
    env = np.sqrt(np.convolve(presence.astype(np.float64) ** 2, np.ones(k) / k, mode="same"))
    noise = _band(rng.standard_normal(x.size).astype(np.float32), 7000.0, 16000.0)
    noise *= env / (np.sqrt(np.mean(noise ** 2)) + 1e-9)
    return (x + noise * 10.0 ** (-rng.uniform(18.0, 30.0) / 20.0)).astype(np.float32)


def _reverb(rng, rirs, x):
    """``x`` (mono) through a random RIR, its wet/dry balance random; same length."""
    h = rirs[int(rng.integers(len(rirs)))]
    h = h[:int(rng.uniform(0.2, 1.0) * h.size) or 1]
    size = x.size + h.size - 1
    nfft = 1 << (size - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(h, nfft), nfft)[:x.size]
    wet *= np.sqrt(np.mean(x ** 2) / (np.mean(wet ** 2) + 1e-12))
    mix = rng.uniform(0.1, 0.6)
    return ((1 - mix) * x + mix * wet).astype(np.float32)


def _saturate(rng, x):
    """``x`` through a random soft clipper (tanh, drive 6-24 dB, the dry signal mixed back by
    0-50 %), back at its own RMS: distorted guitars and driven bass, which General MIDI patches
    render clean."""
    level = _rms(x)
    drive = 10.0 ** (rng.uniform(6.0, 24.0) / 20.0) / (4.0 * level + 1e-9)
    wet = np.tanh(drive * x)
    dry = rng.uniform(0.0, 0.5)
    y = (1.0 - dry) * wet + dry * x * (_rms(wet) / (level + 1e-9))
    return (y * (level / (_rms(y) + 1e-12))).astype(np.float32)


def _bus_gain(rng, mix):
    """A mix-bus limiter's gain curve for ``mix`` (2, n) driven 2-10 dB into a -1 dBTP ceiling
    (:class:`roomtone.plugins.limiter.TruePeakLimiter`, release 20-300 ms): one gain per sample, applied to
    every stem alike, so the stems still sum to the (now limited) mixture. Shape (n,)."""
    from roomtone.plugins import TruePeakLimiter

    limiter = TruePeakLimiter(ceiling_dbtp=-1.0, release_ms=float(rng.uniform(20.0, 300.0)))
    pre = 10.0 ** (rng.uniform(2.0, 10.0) / 20.0) * 10.0 ** (-1.0 / 20.0) / (float(np.abs(mix).max()) + 1e-9)
    return pre * limiter.gain_curve(limiter.detector(mix, SAMPLE_RATE), SAMPLE_RATE, pre_gain=pre)


def _rms(x):
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2) + 1e-12))


def voice(rng, voices, rirs, n, augment=True):
    """A real voice, (2, n) float32 near the centre, at an RMS of 0.05 when it is not silent."""
    from roomtone.resample import resample

    key, x, rate = voices[int(rng.integers(len(voices)))]
    if augment:
        shift = rng.uniform(-4.0, 4.0)  # semitones, by playing it faster or slower
        need = int(n * 2.0 ** (shift / 12.0)) + 64
        piece = _crop(rng, x, need)
        y = resample(piece[None, :], int(round(SAMPLE_RATE * 2.0 ** (shift / 12.0))), SAMPLE_RATE)[0][:n]
        if y.size < n:
            y = np.pad(y, (0, n - y.size))
    else:
        y = _crop(rng, x, n)
    y = np.asarray(y, np.float32)
    if rate <= 24000:
        y = _air(rng, y)
    if augment:
        y = _eq(rng, y)
        if rirs and rng.random() < 0.5:
            y = _reverb(rng, rirs, y)
    y *= 0.05 / _rms(y)
    pan = rng.uniform(-0.25, 0.25) if augment else 0.0
    return np.stack([y * np.sqrt(0.5 - 0.5 * pan), y * np.sqrt(0.5 + 0.5 * pan)]).astype(np.float32) * np.sqrt(2.0)


def _stem(rng, songs, stem, n):
    """The ``stem`` of a random song, a random ``n``-sample stretch, float32 (2, n)."""
    _, stems = songs[int(rng.integers(len(songs)))]
    return _crop(rng, stems[stem], n).astype(np.float32) * SCALE


SATURATED = {"other": 0.3, "bass": 0.2}  # share of a full-label item's stem given _saturate
BUS_LIMITED = 0.3  # share of items whose mixture (every stem alike) goes through _bus_gain


def songs_by_source(songs):
    """Staged songs ``[(id, stems, meta)]`` grouped by their ``meta["source"]``, each group in order:
    ``{source: [song, ...]}``."""
    out = {}
    for song in songs:
        out.setdefault(song[2]["source"], []).append(song)
    return out


MAX_SONG_S = 30.0
MANY_SONGS = 20
MULTITRACK_SHARE = 0.55  # share of items from the real multitrack songs, when there are any
COHERENT = 0.5  # share of those whose stems come from one song at one time (its own arrangement)
CLEAN_RENDERS = ("modules", "lmms")  # sources rendered here without a codec: a real voice may be added


def _multitrack_targets(rng, pool, rirs, n, augment=True):
    """The stems of a real multitrack item, (4, 2, n) float32: either one song's stems at one
    time, each given a gain of +-4 dB around the song's own balance (:data:`COHERENT`), or each
    stem from a random song and time at one level and a +-6 dB balance (remixed across songs, as
    the POP909 items are); each song drawn by source first (every source alike), then within it. A
    song with no voice at that time gets a real voice 40 % of the time
    when it is a clean render (:data:`CLEAN_RENDERS`: the tracker modules, the LMMS demo projects;
    the AAC songs never get one, so that the codec is no cue). Every stem of an item that draws on
    a band-limited song (the mobile copies) is low-passed alike at its band."""
    by_source = songs_by_source(pool["multitrack"])
    sources = sorted(by_source)

    def draw():  # a source first, then one of its songs: 4 real songs weigh as much as 145 modules
        songs = by_source[sources[int(rng.integers(len(sources)))]]
        return songs[int(rng.integers(len(songs)))]

    targets = np.zeros((len(STEMS), 2, n), np.float32)
    coherent = rng.random() < COHERENT
    band = []
    if coherent:
        _, stems, meta = draw()
        size = stems["drums"].shape[1]
        start = int(rng.integers(0, max(1, size - n)))
        picks = [(stems, meta, start)] * len(STEMS)
    else:
        picks = []
        for _ in STEMS:
            _, stems, meta = draw()
            picks.append((stems, meta, int(rng.integers(0, max(1, stems["drums"].shape[1] - n)))))
    for j, (stem, (stems, meta, start)) in enumerate(zip(STEMS, picks)):
        y = stems[stem][:, start:start + n].astype(np.float32) * SCALE
        if y.shape[1] < n:
            y = np.pad(y, ((0, 0), (0, n - y.shape[1])))
        level = _rms(y)
        if level < 1e-4 or (augment and rng.random() < 0.05):
            continue
        if meta.get("band_limited_hz"):
            band.append(float(meta["band_limited_hz"]))
        if augment:
            if not coherent:
                y = y * (0.05 / level) * 10.0 ** (rng.uniform(-6.0, 6.0) / 20.0)
            else:
                y = y * 10.0 ** (rng.uniform(-4.0, 4.0) / 20.0)
            if stem in SATURATED and rng.random() < 0.5 * SATURATED[stem]:
                y = _saturate(rng, y)
            y = _eq(rng, y, 3.0)
        targets[j] = y
    clean = all(meta.get("source") in CLEAN_RENDERS for _, meta, _ in picks)
    if augment and clean and not np.any(targets[0]) and pool["voices"] and rng.random() < 0.4:
        v = voice(rng, pool["voices"], rirs, n, augment)
        level = _rms(targets[1:].sum(axis=0)) * 10.0 ** (rng.uniform(-8.0, 4.0) / 20.0)
        targets[0] = v * (level / (_rms(v) + 1e-9))
    if band:
        targets = _band(targets, 0.0, min(band))
    return targets


def item(rng, pool, rirs, n, augment=True):
    """One training or validation item: ``(mixture (2, n), targets (4, 2, n), full)``."""
    targets = np.zeros((len(STEMS), 2, n), np.float32)
    use_songs = pool["songs"] and (not pool["music"] or rng.random() < 0.65)
    if pool.get("multitrack") and rng.random() < MULTITRACK_SHARE:
        full = 1.0
        targets = _multitrack_targets(rng, pool, rirs, n, augment)
    elif use_songs:
        full = 1.0
        for j, stem in enumerate(STEMS[1:], start=1):
            if augment and rng.random() < 0.1:
                continue
            y = _stem(rng, pool["songs"], stem, n)
            level = _rms(y)
            if level < 1e-4:  # a silent stretch stays silent
                continue
            # renders differ by 20 dB in level between soundfonts: each stem to one level, then
            # a random balance
            y = y * (0.05 / level)
            if augment:
                if stem in SATURATED and rng.random() < SATURATED[stem]:
                    y = _saturate(rng, y)
                if stem == "other" and rirs and rng.random() < 0.3:
                    y = np.stack([_reverb(rng, rirs, c) for c in y])
                y = _eq(rng, y, 3.0) * 10.0 ** (rng.uniform(-6.0, 6.0) / 20.0)
            targets[j] = y
        draw = rng.random()
        if draw < 0.6 and pool["voices"]:
            v = voice(rng, pool["voices"], rirs, n, augment)
            level = _rms(targets[1:].sum(axis=0)) * 10.0 ** (rng.uniform(-8.0, 4.0) / 20.0)
            targets[0] = v * (level / (_rms(v) + 1e-9))
        elif draw < 0.85:
            y = _stem(rng, pool["songs"], "melody", n)
            level = _rms(y)
            if level >= 1e-4:
                acc = _rms(targets[1:].sum(axis=0))
                targets[0] = y * ((acc if acc > 1e-6 else 0.05) / level) * 10.0 ** (rng.uniform(-8.0, 4.0) / 20.0)
    else:
        full = 0.0
        _, music = pool["music"][int(rng.integers(len(pool["music"])))]
        acc = _crop(rng, music, n).astype(np.float32) * SCALE
        if augment:
            acc = _eq(rng, acc, 3.0)
        targets[3] = acc
        if rng.random() < 0.85 and pool["voices"]:
            v = voice(rng, pool["voices"], rirs, n, augment)
            level = _rms(acc) * 10.0 ** (rng.uniform(-8.0, 4.0) / 20.0)
            targets[0] = v * (level / (_rms(v) + 1e-9))
    if augment and rng.random() < BUS_LIMITED:
        mix = targets.sum(axis=0)
        if np.any(mix):
            targets = targets * _bus_gain(rng, mix)[None, None, :].astype(np.float32)
    if augment and rng.random() < 0.5:
        targets = targets[:, ::-1]
    if augment and rng.random() < 0.08:
        targets = np.repeat(targets.mean(axis=1, keepdims=True), 2, axis=1)
    mix = targets.sum(axis=0)
    peak = float(np.abs(mix).max())
    gain = (10.0 ** (rng.uniform(-28.0, -12.0) / 20.0) / (_rms(mix) + 1e-9)) if augment else 0.1 / (_rms(mix) + 1e-9)
    gain = min(gain, 0.99 / peak) if peak > 0 else 1.0
    targets = np.ascontiguousarray(targets * gain, dtype=np.float32)
    return targets.sum(axis=0), targets, full


def batch(rng, pool, rirs, items, n):
    """``items`` training items stacked: (mixtures, targets, full)."""
    made = [item(rng, pool, rirs, n) for _ in range(items)]
    return (np.stack([m for m, _, _ in made]), np.stack([t for _, t, _ in made]),
            np.array([f for _, _, f in made], np.float32))


def validation_set(sources, items=24, seconds=6.0, seed=4321):
    """The fixed validation items: held-out songs, voices and music, no augmentation but the
    remixing and levels. Returns (mixtures, targets, full)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    made = [item(rng, sources["val"], sources["rir"], n, augment=False) for _ in range(items)]
    return (np.stack([m for m, _, _ in made]), np.stack([t for _, t, _ in made]),
            np.array([f for _, _, f in made], np.float32))


def real_excerpts(songs, seconds=8.0, per_song=3):
    """Fixed validation excerpts of real held-out multitrack ``songs`` ([(id, {stem: int16 (2, n)},
    meta)]): per song the ``per_song`` stretches (at least one excerpt apart) where most stems play
    (the sum over stems of each one's level, clipped to -60..-30 dB, the voice's counted thrice, is
    highest), in the song's own
    balance, no augmentation.
    Returns ``[(song id, mixture (2, n), targets (4, 2, n))]``."""
    n = int(seconds * SAMPLE_RATE)
    hop = SAMPLE_RATE
    out = []
    for sid, stems, _ in songs:
        x = np.stack([stems[s] for s in STEMS]).astype(np.float32) * SCALE  # (4, 2, samples)
        frames = x.shape[-1] // hop
        power = np.mean(x[..., :frames * hop].reshape(4, 2, frames, hop) ** 2, axis=(1, 3))  # (4, frames)
        k = n // hop
        window = np.stack([np.convolve(p, np.ones(k) / k, mode="valid") for p in power])
        weight = np.array([3.0, 1.0, 1.0, 1.0])[:, None]  # a stretch with the voice first
        score = (weight * np.clip(10.0 * np.log10(window + 1e-12), -60.0, -30.0)).sum(axis=0)
        taken = []
        for start in np.argsort(-score, kind="stable"):
            if all(abs(int(start) - t) >= k for t in taken):
                taken.append(int(start))
            if len(taken) == per_song:
                break
        for t in sorted(taken):
            targets = np.ascontiguousarray(x[..., t * hop:t * hop + n])
            quiet = np.sqrt(np.mean(targets ** 2, axis=(1, 2))) < 1e-3  # under -60 dBFS: not playing
            targets[quiet] = 0.0  # its SDR is NaN (absent), as museval leaves silent frames out
            out.append((sid, targets.sum(axis=0), targets))
    return out


def excerpt_table(sdr, song_ids):
    """Per-stem figures of a real-excerpt SDR table ``sdr`` (excerpts, stems): the mean over each
    song's excerpts, then over songs (one song's many excerpts weigh as one song). NaN entries
    (a silent stem) left out. Returns ``{song: [per stem]}`` and the list over songs, per stem."""
    per_song = {}
    for sid in dict.fromkeys(song_ids):
        rows = sdr[[i for i, s in enumerate(song_ids) if s == sid]]
        per_song[sid] = [float(np.nanmean(c)) if np.isfinite(c).any() else float("nan") for c in rows.T]
    table = np.array(list(per_song.values()))
    means = [float(np.nanmean(c)) if np.isfinite(c).any() else float("nan") for c in table.T]
    return per_song, means


def sdr_db(estimate, reference):
    """Plain SDR in dB per item and stem (BSSEval's without the distortion filter, as the
    SiSEC "new SDR" / museval's median-frame figure approximates): ``10 log10(|s|^2 / |s - y|^2)``
    over the whole item and both channels. Shape: (items, stems, channels, samples) ->
    (items, stems); NaN where the reference is silent."""
    e = np.asarray(estimate, np.float64)
    r = np.asarray(reference, np.float64)
    num = np.sum(r ** 2, axis=(-2, -1))
    den = np.sum((r - e) ** 2, axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(num > 1e-8, 10 * np.log10((num + 1e-12) / (den + 1e-12)), np.nan)


def stem_means(sdr, full):
    """The validation figure per stem of an SDR table ``sdr`` (items, stems): the mean over the
    items holding the stem, the vocals over every item, the others over the full-label ones
    (``full`` (items,) > 0.5); NaN entries (silent references) left out, NaN where none is left.
    Returns a list, one float per stem."""
    out = []
    for j in range(sdr.shape[1]):
        vals = sdr[np.ones(len(sdr), bool) if j == 0 else np.asarray(full) > 0.5, j]
        vals = vals[np.isfinite(vals)]
        out.append(float(np.mean(vals)) if vals.size else float("nan"))
    return out
