"""Stage real multitrack songs for the ``roomtone`` separator's training: the CC0 stems of
``ichbinsoftware/everythingisremixed`` (EIR), grouped into the four stems and kept as int16 arrays.

    python -m roomtone.separate.training.multitrack --repo /path/to/everythingisremixed.git --out ~/.cache/roomtone/stems/eir

Source: the snapshot's ``src/<n>.<Name>/<n>.<Name>_Stem_<NAME>.m4a`` files (AAC, 48 kHz), CC0 1.0.
Songs 1-5 only: **songs 6 (Caesium) and 7 (Francium) are reserved for evaluation** and are refused
here. Where the snapshot lacks a stem's full-quality file it holds its ``_mobile`` copy (24 kHz,
about 48 kb/s, nothing above about 11 kHz): a song made wholly of mobile copies (Hydrogen) is
staged from them and marked ``band_limited_hz``, and so is a song that lacks more than two
full-quality stems or the only stem of a group (all its stems from the mobile copies, never a mix
of both); in the others a missing stem is left out (the song is a slightly sparser arrangement of
itself). The mixture is always the sum of what is staged, and training low-passes every stem of an
item that draws on a band-limited song (:mod:`roomtone.separate.training.data`), so no stem's bandwidth or
codec is a cue to its kind.

Grouping (:func:`group_of`, by the stem's name): ``VOX``/``BGVOX`` -> vocals; kick, snare, hats,
cymbals, toms, claps, percussion, beats and breaks -> drums; names with ``BASS`` -> bass (``PAD +
BASS`` too: its low end is the bass line); everything else (synths, pads, effects, plucks, keys,
risers) -> other.

Split: song 3 (Sodium: full-band, every group played by its own stems) is held out for validation
(``split = "val"``); songs 1, 2, 4 and 5 train.

Each song becomes ``<out>/eir_<name>.npz``: ``vocals``, ``drums``, ``bass``, ``other`` int16
(2, n) at 44.1 kHz (a group with no stem is zeros) and ``meta``, a JSON string (source, song,
licence, stems and their groups, mobile copies used, split, band_limited_hz). Written atomically.
The arrays are data for training and validation only; nothing here ships in the weights.
"""

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from roomtone.audio import write_bytes_atomic
from roomtone.separate.net import SAMPLE_RATE, STEMS

RESERVED = ("6", "7")  # Caesium, Francium: evaluation only
VALIDATION = ("3",)
MOBILE_BAND_HZ = 11000.0
MAX_LEFT_OUT = 2  # full-quality stems a song may lack and still be staged full-band without them
_DRUMS = re.compile(r"\b(KICK|SNARE|SN|HH|HATS?|CRASH|CYMBALS?|TOMS?|CLAPS?|PERC|PRC|DRUMS?|BEAT|BREAKBEAT|BREAK|"
                    r"TOPS|RIDE)\b")
_NOT_DRUMS = re.compile(r"\b(PIANO|PAD|SYNTH|SWEEP|MELODY)\b")


def group_of(name):
    """The stem group of an EIR stem name (the part after ``_Stem_``): ``"vocals"``, ``"drums"``,
    ``"bass"`` or ``"other"``."""
    upper = name.upper().replace("_", " ")
    if re.search(r"\b(BG)?VOX\b", upper):
        return "vocals"
    if "BASS" in upper:
        return "bass"
    if _DRUMS.search(upper) and not _NOT_DRUMS.search(upper):
        return "drums"
    return "other"


def _git(repo, *args):
    return subprocess.run(["git", f"--git-dir={repo}", *args], check=True, capture_output=True).stdout


def song_stems(repo, song):
    """``[(stem name, blob, mobile)]`` of ``song`` (e.g. ``"2.Lithium"``): its full-quality files when
    the snapshot lacks at most :data:`MAX_LEFT_OUT` of them and each missing one's group keeps
    another stem (those are left out); else every ``_mobile`` copy (the song band-limited alike)."""
    blobs = {}
    for line in _git(repo, "ls-tree", "-r", "HEAD", f"src/{song}/").decode().splitlines():
        meta, path = line.split("\t", 1)
        if "_Stem_" in path and path.endswith(".m4a"):
            blobs[path] = meta.split()[2]
    present = lambda blob: subprocess.run(["git", f"--git-dir={repo}", "cat-file", "-e", blob],
                                          capture_output=True).returncode == 0
    wanted = [p for p in sorted(blobs) if not p.endswith("_mobile.m4a")]
    full = [p for p in wanted if present(blobs[p])]
    missing = [p for p in wanted if p not in full]
    kept_groups = {group_of(_name(p)) for p in full}
    if len(missing) <= MAX_LEFT_OUT and all(group_of(_name(p)) in kept_groups for p in missing):
        chosen = [(p, blobs[p]) for p in full]
    else:  # too much would be missing: the whole song from its mobile copies
        chosen = [(p, blobs[p]) for p in sorted(blobs) if p.endswith("_mobile.m4a") and present(blobs[p])]
    return [(_name(p), b, p.endswith("_mobile.m4a")) for p, b in chosen]


def _name(path):
    return Path(path).stem.split("_Stem_", 1)[1].removesuffix("_mobile")


def decode(repo, blob):
    """A stem's samples, float32 (2, n) at 44.1 kHz (FFmpeg decodes the AAC and resamples)."""
    with tempfile.NamedTemporaryFile(suffix=".m4a") as f:
        f.write(_git(repo, "cat-file", "blob", blob))
        f.flush()
        raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", f.name, "-f", "f32le", "-ac", "2",
                              "-ar", str(SAMPLE_RATE), "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype=np.float32).reshape(-1, 2).T


def stage_song(repo, song, out_dir):
    """Decode, group and write one song; returns the path written."""
    number, name = song.split(".", 1)
    if number in RESERVED:
        raise ValueError(f"{song}: songs 6 and 7 are reserved for evaluation")
    stems = song_stems(repo, song)
    groups = {stem: np.zeros((2, 0), np.float64) for stem in STEMS}
    for stem_name, blob, _ in stems:
        x = decode(repo, blob)
        g = groups[group_of(stem_name)]
        if x.shape[1] > g.shape[1]:
            g = np.pad(g, ((0, 0), (0, x.shape[1] - g.shape[1])))
        g[:, :x.shape[1]] += x
        groups[group_of(stem_name)] = g
    n = max(g.shape[1] for g in groups.values())
    total = sum(np.pad(g, ((0, 0), (0, n - g.shape[1]))) for g in groups.values())
    scale = min(1.0, 0.99 / (float(np.abs(total).max()) + 1e-12))  # int16 must hold the sum's peak
    arrays = {stem: np.clip(np.round(np.pad(g, ((0, 0), (0, n - g.shape[1]))) * scale * 32767.0), -32768, 32767)
              .astype(np.int16) for stem, g in groups.items()}
    mobile = [s for s, _, m in stems if m]
    meta = {"source": "everythingisremixed", "song": song, "licence": "CC0 1.0",
            "repository": "github.com/ichbinsoftware/everythingisremixed",
            "stems": {s: group_of(s) for s, _, _ in stems}, "mobile_copies": mobile,
            "split": "val" if number in VALIDATION else "train",
            "band_limited_hz": MOBILE_BAND_HZ if mobile else None,
            "seconds": round(n / SAMPLE_RATE, 2)}
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"eir_{name.lower()}.npz")
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
    write_bytes_atomic(path, buffer.getvalue())  # nothing half-written left on failure
    return path, meta


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", default="/work/.mirror/ichbinsoftware+everythingisremixed/repo",
                   help="the snapshot's git directory")
    p.add_argument("--out", default=os.path.join(os.path.expanduser("~"), ".cache", "roomtone", "stems", "eir"))
    p.add_argument("--songs", default="1.Hydrogen,2.Lithium,3.Sodium,4.Potassium,5.Rubidium")
    args = p.parse_args(argv)
    for song in args.songs.split(","):
        path, meta = stage_song(args.repo, song, args.out)
        groups = {}
        for stem, group in meta["stems"].items():
            groups.setdefault(group, []).append(stem)
        print(f"{path}: {meta['seconds']} s, {meta['split']}, mobile {len(meta['mobile_copies'])}, "
              + "; ".join(f"{g}: {', '.join(s)}" for g, s in sorted(groups.items())), flush=True)


if __name__ == "__main__":
    sys.exit(main())
