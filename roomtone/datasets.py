"""Training-data conventions the model jobs share (numpy-free, no job imports): who a speech
file's speaker is and which speakers are held out for validation (the enhance and separate
trainings hold out the same ones), and where Debian's free game-music packages put their files,
with their licences (the mastering assistant's and the separator's real music).
"""

import re
import zlib
from pathlib import Path


def speaker_key(name):
    """The speaker a speech file belongs to, from its name."""
    m = re.search(r"(\d+)-\d+-\d+", name)
    if m:
        return "libri" + m.group(1)
    m = re.search(r"libritts_(\d+)_", name)
    if m:
        return "libri" + m.group(1)
    m = re.search(r"(p\d{3})", name)
    if m:
        return "vctk" + m.group(1)
    if "ljspeech" in name:
        return "ljspeech"
    return Path(name).stem


def held_out_speaker(key):
    return zlib.crc32(key.encode()) % 8 == 0


PACKAGES = {"wesnoth-1.16-music": "/usr/share/games/wesnoth/1.16/data/core/music",
            "singularity-music": "/usr/share/games/singularity/music",
            "hyperrogue-music": "/usr/share/hyperrogue/music"}
LICENCES = {"wesnoth-1.16-music": "GPL-2", "singularity-music": "CC BY-SA 3.0", "hyperrogue-music": "GPL-2+"}


def held_out(name):
    return zlib.crc32(Path(name).name.encode()) % 5 == 0


def music_files(folders):
    """``[(package, path)]`` of the music files under each package's folder."""
    out = []
    for package, folder in folders.items():
        for path in sorted(Path(folder).rglob("*")):
            if path.suffix.lower() in (".ogg", ".flac", ".wav"):
                out.append((package, path))
    return out
