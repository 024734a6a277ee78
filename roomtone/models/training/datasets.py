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
# Packages whose music ships inside an archive: (archive, member prefix). Their files are extracted
# once into music_cache()/<package> (:func:`archived_music`), never into the project.
ARCHIVES = {"nexuiz-music": ("/usr/share/games/nexuiz/data/music.pk3", "sound/cdtracks/")}
# every music package's licence, folder or archive (from /usr/share/doc/<package>/copyright)
LICENCES = {"wesnoth-1.16-music": "GPL-2", "singularity-music": "CC BY-SA 3.0", "hyperrogue-music": "GPL-2+",
            "nexuiz-music": "GPL-2+"}


def music_cache():
    import os

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "roomtone" / "music"


def archived_music():
    """``{package: folder}`` of the archived packages found on this machine (:data:`ARCHIVES`: the
    Nexuiz soundtrack is a zip, ``music.pk3``), their OGG files extracted on first use (each
    written under a temporary name, then renamed)."""
    import os
    import shutil
    import zipfile

    out = {}
    for package, (archive, prefix) in ARCHIVES.items():
        if not os.path.isfile(archive):
            continue
        folder = music_cache() / package
        folder.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                name = info.filename
                if not name.startswith(prefix) or not name.lower().endswith((".ogg", ".flac", ".wav")):
                    continue
                target = folder / Path(name).name
                if target.exists() and target.stat().st_size == info.file_size:
                    continue
                temp = target.with_name(target.name + ".part")
                with z.open(info) as src, open(temp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.replace(temp, target)
        out[package] = str(folder)
    return out


def music_folders():
    """``{package: folder}`` of every music package on this machine: the installed folders of
    :data:`PACKAGES` and the archived ones (:func:`archived_music`, extracted on first use)."""
    import os

    return {**{k: v for k, v in PACKAGES.items() if os.path.isdir(v)}, **archived_music()}


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
