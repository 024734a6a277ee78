"""The (input, reference) pair sets of ``bench_reference.py``, and the excerpts they need.

Sets (each a list of :class:`Pair`):

- ``music``: the clips of ``../shared/data/music/`` in name order, each towards the next one (the
  last towards the first). The reference fit was tuned on these: the DEVELOPMENT set.
- ``games``: Debian's game music (:func:`roomtone.models.training.datasets.music_folders`: Wesnoth, Singularity,
  HyperRogue, Nexuiz; licences in :data:`roomtone.models.training.datasets.LICENCES`), one pair per ordered pair of
  packages (different composers and genres), the tracks picked by a fixed hash of their names among
  those of at least :data:`MIN_TRACK_S`, each a 30 s excerpt from the middle of the file.
- ``unmastered``: references that are real unmastered mixes: the stem sums of songs 2-5 (Lithium,
  Sodium, Potassium, Rubidium) of the CC0 multitrack repository ``ichbinsoftware/everythingisremixed``
  (songs 6 and 7 are reserved for another evaluation and never read), 30 s from the middle. Inputs:
  music clips and game music of other genres; and the other way round, a loud clipped master
  (maddirtmonkey, -9.2 LUFS, peaks at 0 dBFS) and a loud game track towards an unmastered mix.
- ``clipped``: loud clipped masters as input (maddirtmonkey and two game excerpts pushed +6 dB and
  hard clipped at full scale) towards mastered and unmastered references.

Every file made here (excerpts, stem sums, clipped inputs) is float WAV under :func:`cache_dir`
(``~/.cache/roomtone-bench/``, or ``$XDG_CACHE_HOME``), never in the repository; each is written
under a temporary name and renamed, and made again only when missing. ``python
benchmarks/reference_pairs.py`` makes them all and lists the sets.
"""

import dataclasses
import os
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

MUSIC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "music"
MULTITRACK = Path("/work/.mirror/ichbinsoftware+everythingisremixed/repo")  # git dir of the snapshot
UNMASTERED_SONGS = ("2.Lithium", "3.Sodium", "4.Potassium", "5.Rubidium")  # never 6 or 7: reserved
EXCERPT_S = 30.0
MIN_TRACK_S = 60.0  # game tracks shorter than this (stingers: victory, defeat) are not picked
CLIP_BOOST_DB = 6.0
SETS = ("music", "games", "unmastered", "clipped")


@dataclasses.dataclass(frozen=True)
class Pair:
    input: Path
    reference: Path
    input_label: str
    reference_label: str

    @property
    def name(self):
        return f"{self.input_label} -> {self.reference_label}"


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "roomtone-bench"


def _write(path, audio, sample_rate):
    """Float WAV, atomically. ``audio``: (samples, channels)."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.stem + ".part.wav")
    sf.write(str(temp), np.asarray(audio, dtype=np.float32), sample_rate, subtype="FLOAT")
    os.replace(temp, path)


def _middle(audio, sample_rate, seconds=EXCERPT_S):
    n = int(round(seconds * sample_rate))
    if audio.shape[0] <= n:
        return audio
    start = (audio.shape[0] - n) // 2
    return audio[start:start + n]


# ------------------------------------------------------------------------------------------ music

def music_clips(quick=False):
    clips = sorted(p for p in MUSIC.iterdir() if p.suffix in (".ogg", ".flac"))
    return [p for p in clips if not (quick and "long_3min" in p.name)]


def music_pairs(quick=False):
    clips = music_clips(quick)
    return [Pair(c, clips[(i + 1) % len(clips)], c.stem, clips[(i + 1) % len(clips)].stem)
            for i, c in enumerate(clips)]


# ------------------------------------------------------------------------------------------ games

SHORT = {"wesnoth-1.16-music": "wesnoth", "singularity-music": "singularity", "hyperrogue-music": "hyperrogue",
         "nexuiz-music": "nexuiz"}


def _game_tracks():
    """``{package: [path]}`` of the game tracks of at least MIN_TRACK_S, ordered by a fixed hash of
    their names (so the pick does not follow alphabetical order or taste)."""
    import soundfile as sf
    from roomtone.models.training.datasets import music_files, music_folders

    tracks = {}
    for package, path in music_files(music_folders()):
        try:
            info = sf.info(str(path))
        except RuntimeError:
            continue
        if info.duration >= MIN_TRACK_S:
            tracks.setdefault(package, []).append(path)
    return {k: sorted(v, key=lambda p: zlib.crc32(p.name.encode())) for k, v in sorted(tracks.items())}


def game_excerpt(path, package):
    """The 30 s middle excerpt of a game track (made once)."""
    import soundfile as sf

    out = cache_dir() / "games" / f"{SHORT.get(package, package)}__{path.stem.replace(' ', '_')}.wav"
    if not out.exists():
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
        _write(out, _middle(audio, sr), sr)
    return out


def _label(path):
    return path.stem.replace("__", ":")


def game_pairs(quick=False):
    """One pair per ordered pair of packages (12 with four packages; 6 with ``quick``): package a's
    k-th track towards package b's k-th, k counting each package's uses as input and as reference
    apart, so no track is used twice."""
    tracks = _game_tracks()
    packages = list(tracks)
    as_input = {p: 0 for p in packages}
    as_ref = {p: 0 for p in packages}
    pairs = []
    for shift in range(1, len(packages)):
        for i, a in enumerate(packages):
            b = packages[(i + shift) % len(packages)]
            # inputs from the front of a package's hashed list, references from the back
            inp = tracks[a][as_input[a]]
            ref = tracks[b][-1 - as_ref[b]]
            as_input[a] += 1
            as_ref[b] += 1
            pairs.append((a, inp, b, ref))
    if quick:
        pairs = pairs[::2]
    out = []
    for a, inp, b, ref in pairs:
        i, r = game_excerpt(inp, a), game_excerpt(ref, b)
        out.append(Pair(i, r, _label(i), _label(r)))
    return out


# ------------------------------------------------------------------------------------- unmastered

def _git(*args, **kw):
    return subprocess.run(["git", f"--git-dir={MULTITRACK}", *args], check=True, capture_output=True, **kw).stdout


def _stems(song):
    """``[(name, blob, mobile)]`` of a song's stems: the full-quality blob where the snapshot holds
    it, else its ``_mobile`` copy (24 kHz)."""
    listing = _git("ls-tree", "-r", "HEAD", f"src/{song}/").decode().splitlines()
    blobs = {}
    for line in listing:
        meta, path = line.split("\t", 1)
        blobs[path] = meta.split()[2]
    out = []
    for path in sorted(blobs):
        if "_Stem_" not in path or path.endswith("_mobile.m4a") or not path.endswith(".m4a"):
            continue
        present = subprocess.run(["git", f"--git-dir={MULTITRACK}", "cat-file", "-e", blobs[path]],
                                 capture_output=True).returncode == 0
        if present:
            out.append((Path(path).stem, blobs[path], False))
            continue
        mobile = path[:-4] + "_mobile.m4a"
        if mobile not in blobs:
            raise FileNotFoundError(f"{path}: neither the stem nor its _mobile copy is in the snapshot")
        out.append((Path(path).stem, blobs[mobile], True))
    return out


def _decode(blob, sample_rate=48000):
    """A stem's samples, (samples, 2) float32 at ``sample_rate`` (ffmpeg's resampler for the
    24 kHz mobile copies)."""
    with tempfile.NamedTemporaryFile(suffix=".m4a") as f:
        f.write(_git("cat-file", "blob", blob))
        f.flush()
        raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", f.name, "-f", "f32le", "-ac", "2", "-ar",
                              str(sample_rate), "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype=np.float32).reshape(-1, 2)


def unmastered_mix(song):
    """The 30 s middle excerpt of ``song``'s stem sum (made once), and the stems that came from
    their mobile copies."""
    if song.split(".")[0] in ("6", "7"):
        raise ValueError(f"{song}: songs 6 and 7 are reserved for another evaluation")
    out = cache_dir() / "unmastered" / f"{song.split('.', 1)[1].lower()}_mix.wav"
    stems = None
    if not out.exists():
        stems = _stems(song)
        total = np.zeros((0, 2), dtype=np.float64)
        for _, blob, _ in stems:
            audio = _decode(blob)
            if audio.shape[0] > total.shape[0]:
                total = np.pad(total, ((0, audio.shape[0] - total.shape[0]), (0, 0)))
            total[:audio.shape[0]] += audio
        _write(out, _middle(total, 48000), 48000)
    return out


def unmastered_pairs(quick=False):
    """Each unmastered mix as the reference of two inputs of other genres (a music clip, a game
    excerpt), and the other way: loud masters towards an unmastered mix."""
    mixes = {song.split(".", 1)[1].lower(): unmastered_mix(song) for song in UNMASTERED_SONGS}
    games = game_pairs()  # their excerpts, made once
    by_label = {p.input_label: p.input for p in games} | {p.reference_label: p.reference for p in games}
    pick = lambda prefix: next(by_label[k] for k in sorted(by_label, key=lambda k: zlib.crc32(k.encode()))
                               if k.startswith(prefix))
    orchestral, ambient, rogue = pick("wesnoth:"), pick("singularity:"), pick("hyperrogue:")
    loud = max((by_label[k] for k in by_label if k.startswith("nexuiz:")), key=_loudness)
    plan = [(MUSIC / "brahms.ogg", "lithium"), (orchestral, "lithium"),
            (MUSIC / "fishin.ogg", "sodium"), (ambient, "sodium"),
            (MUSIC / "nutcracker.ogg", "potassium"), (rogue, "potassium"),
            (MUSIC / "pistachio.ogg", "rubidium"), (MUSIC / "vibeace.ogg", "rubidium"),
            # the other way: a loud, clipped master towards an unmastered mix
            (MUSIC / "maddirtmonkey_electronic.flac", "sodium"), (MUSIC / "maddirtmonkey_electronic.flac", "rubidium"),
            (loud, "lithium")]
    if quick:
        plan = plan[::2]
    return [Pair(inp, mixes[song], _label(inp), f"{song} (unmastered)") for inp, song in plan]


def _loudness(path):
    from roomtone.audio import read_audio
    from roomtone.meter import integrated_loudness

    audio, sr, _ = read_audio(path)
    return integrated_loudness(audio, sr)


# ---------------------------------------------------------------------------------------- clipped

def clipped(path, label):
    """``path`` pushed +6 dB and hard clipped at full scale, float WAV (made once; a 30 s middle
    excerpt where longer)."""
    import soundfile as sf

    out = cache_dir() / "clipped" / f"{label.replace(':', '__')}_clipped.wav"
    if not out.exists():
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
        _write(out, np.clip(_middle(audio, sr) * 10 ** (CLIP_BOOST_DB / 20), -1.0, 1.0), sr)
    return out


def clipped_pairs(quick=False):
    games = game_pairs()
    excerpts = {p.input_label: p.input for p in games} | {p.reference_label: p.reference for p in games}
    by_loudness = sorted(excerpts, key=lambda k: -_loudness(excerpts[k]))
    # the loudest excerpt that is not Nexuiz (also pushed), and the loudest Nexuiz one
    nexuiz = next(k for k in by_loudness if k.startswith("nexuiz:"))
    other = next(k for k in by_loudness if not k.startswith("nexuiz:"))
    mixes = {song.split(".", 1)[1].lower(): unmastered_mix(song) for song in UNMASTERED_SONGS}
    mdm = clipped(MUSIC / "maddirtmonkey_electronic.flac", "maddirtmonkey")
    nex = clipped(excerpts[nexuiz], nexuiz)
    oth = clipped(excerpts[other], other)
    plan = [(mdm, "maddirtmonkey +6 dB clipped", MUSIC / "nutcracker.ogg", "nutcracker"),
            (mdm, "maddirtmonkey +6 dB clipped", mixes["potassium"], "potassium (unmastered)"),
            (nex, f"{nexuiz} +6 dB clipped", MUSIC / "vibeace.ogg", "vibeace"),
            (nex, f"{nexuiz} +6 dB clipped", mixes["lithium"], "lithium (unmastered)"),
            (oth, f"{other} +6 dB clipped", MUSIC / "fishin.ogg", "fishin"),
            (oth, f"{other} +6 dB clipped", mixes["rubidium"], "rubidium (unmastered)")]
    if quick:
        plan = plan[::2]
    return [Pair(i, r, il, rl) for i, il, r, rl in plan]


def pair_sets(names=SETS, quick=False):
    """``{set name: [Pair]}``, making whatever excerpts are missing."""
    makers = {"music": music_pairs, "games": game_pairs, "unmastered": unmastered_pairs, "clipped": clipped_pairs}
    unknown = [n for n in names if n not in makers]
    if unknown:
        raise ValueError(f"unknown pair set(s) {', '.join(unknown)}; the sets are {', '.join(SETS)}")
    return {n: makers[n](quick) for n in names}


def main():
    for name, pairs in pair_sets().items():
        print(f"{name} ({len(pairs)} pairs)")
        for p in pairs:
            print(f"  {p.name:<64} {p.input.name} -> {p.reference.name}")
    print(f"excerpts under {cache_dir()}")


if __name__ == "__main__":
    sys.exit(main())
