"""Which class and group each track belongs to: from its name where the name speaks (the table in
``presets/mix/groups.toml``, extended or overridden by a user's file of the same shape), else from
its audio (:func:`classify_audio`, thresholds in the same file's ``[audio]`` table).

A name is split into lower-case words at every non-alphanumeric character and at letter/digit
boundaries (``"01_KickIn"`` -> ``01``, ``kickin``; ``"BGVOX 2"`` -> ``bgvox``, ``2``); a class
matches when one of its patterns (one or more words) occurs as consecutive words. Strong patterns
decide in the table's order; weak ones only when no strong one matched anywhere.
"""

import dataclasses
import re
from pathlib import Path

from roomtone.errors import PresetError
from roomtone.preset_data import check_header, read_toml
from roomtone.presets import PRESET_DIR

GROUPS_FILE = PRESET_DIR / "mix" / "groups.toml"
AUDIO_KEYS = {"percussive_db", "percussive_voiced_max", "bass_low_share", "bass_f0_max_hz"}


@dataclasses.dataclass(frozen=True)
class TrackClass:
    name: str
    group: str
    patterns: tuple  # of word tuples
    weak: tuple


@dataclasses.dataclass(frozen=True)
class GroupTable:
    classes: tuple
    audio: dict
    sources: tuple  # the files read, user's first

    def class_named(self, name):
        for c in self.classes:
            if c.name == name:
                return c
        raise KeyError(name)


def words(name):
    """The lower-case words of a track name (see the module docstring)."""
    stem = Path(str(name)).stem
    spaced = re.sub(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])|(?<=[a-z])(?=[A-Z])", " ", stem)
    return tuple(w for w in re.split(r"[^0-9a-z&]+", spaced.lower()) if w)


def _pattern(text):
    return tuple(w for w in re.split(r"[^0-9a-z&]+", str(text).lower()) if w)


def _classes(where, data):
    items = data.get("class", [])
    if not isinstance(items, list):
        raise PresetError(f"{where}: 'class' must be an array of tables ([[class]])")
    out = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("group"), str):
            raise PresetError(f"{where}: class[{index}] needs a name and a group (strings)")
        unknown = set(item) - {"name", "group", "patterns", "weak"}
        if unknown:
            raise PresetError(f"{where}: class[{index}] ({item['name']}): unknown key {sorted(unknown)[0]!r}")
        pats = item.get("patterns", [])
        weak = item.get("weak", [])
        if not all(isinstance(p, str) for p in list(pats) + list(weak)):
            raise PresetError(f"{where}: class[{index}] ({item['name']}): patterns are strings")
        out.append(TrackClass(item["name"], item["group"], tuple(_pattern(p) for p in pats),
                              tuple(_pattern(p) for p in weak)))
    return out


def load_groups(extra=None):
    """The :class:`GroupTable`: ``extra`` (a user's TOML path) first, then the shipped table."""
    files = ([Path(extra)] if extra else []) + [GROUPS_FILE]
    classes, audio = [], {}
    for path in files:
        data = read_toml(path)
        check_header(str(path), data, {"schema_version", "name", "description", "class", "audio"}, 1) \
            if path == GROUPS_FILE else None
        classes += _classes(str(path), data)
        for key, value in data.get("audio", {}).items():
            if key not in AUDIO_KEYS:
                raise PresetError(f"{path}: [audio] has no key {key!r}; known: {', '.join(sorted(AUDIO_KEYS))}")
            audio.setdefault(key, float(value))
    return GroupTable(tuple(classes), audio, tuple(str(p) for p in files))


def _has(seq, pattern):
    k = len(pattern)
    return any(seq[i:i + k] == pattern for i in range(len(seq) - k + 1))


def class_from_name(name, table):
    """The class whose pattern the name holds (strong patterns first, in table order), or None."""
    seq = words(name)
    for attribute in ("patterns", "weak"):
        for c in table.classes:
            if any(_has(seq, p) for p in getattr(c, attribute)):
                return c.name
    return None


def classify_audio(analysis, table):
    """A class for a track from its :class:`~roomtone.mix.analysis.TrackAnalysis` (see the
    ``[audio]`` table): ``drums``, ``bass``, ``synth`` or ``pad``."""
    a = table.audio
    if analysis.percussiveness >= a["percussive_db"] and analysis.voiced_share <= a["percussive_voiced_max"]:
        return "drums"
    if analysis.low_share >= a["bass_low_share"] and 0 < analysis.f0_hz <= a["bass_f0_max_hz"]:
        return "bass"
    return "synth" if analysis.f0_hz > 0 else "pad"


def classify(name, analysis, table):
    """``(class, group, how)``: ``how`` is ``"name"`` or ``"audio"``."""
    found = class_from_name(name, table)
    how = "name"
    if found is None:
        found, how = classify_audio(analysis, table), "audio"
    return found, table.class_named(found).group, how
