"""Enhance presets as validated, versioned data (``presets/enhance/*.toml``), mirroring the master
job's (:mod:`roomtone.mastering.presets`; jobs do not import each other, so what both file formats
share is :mod:`roomtone.preset_data`).

A preset file has ``schema_version = 1``, ``name``, ``description``, an optional ``[loudness]``
table (``platform``, ``lookahead_ms``, ``release_ms``, ``max_limiting_lu``: with it the output is
delivered at the platform's loudness under its true-peak ceiling; without it the loudness is left
as the chain makes it) and ``[[chain]]`` tables, each a processor ``kind`` and its parameters.
Any unknown key or out-of-range value raises :class:`PresetError` naming the file and the key.
"""

import dataclasses

import roomtone.enhance.processors  # noqa: F401 - importing registers the denoise stage
import roomtone.plugins  # noqa: F401 - importing registers every processor kind
from roomtone.platforms import get_platform
from roomtone.preset_data import (LIMITER_NUMBERS, check_header, find_preset_file, parse_chain, parse_number_table,
                                  read_toml)
from roomtone.presets import PRESET_DIR
from roomtone.processor import Chain

SCHEMA_VERSION = 1
ENHANCE_PRESET_DIR = PRESET_DIR / "enhance"
_TOP_KEYS = {"schema_version", "name", "description", "loudness", "chain"}


@dataclasses.dataclass(frozen=True)
class Loudness:
    """The delivery stage of a preset: the platform's target and the limiter's timing."""

    platform: str = "podcast"
    lookahead_ms: float = 3.0
    release_ms: float = 80.0
    max_limiting_lu: float = 6.0


@dataclasses.dataclass(frozen=True)
class EnhancePreset:
    """An enhance preset: the chain, and the loudness stage (None: no loudness change)."""

    name: str
    description: str
    chain: Chain
    loudness: Loudness | None = None
    source: str = ""

    def to_dict(self):
        data = {"schema_version": SCHEMA_VERSION, "name": self.name, "description": self.description}
        if self.loudness is not None:
            data["loudness"] = dataclasses.asdict(self.loudness)
        data["chain"] = self.chain.to_dicts()
        return data


def parse_preset(data, source="<data>"):
    """Validate preset ``data`` (a dict as read from TOML) and build an :class:`EnhancePreset`."""
    where = str(source)
    check_header(where, data, _TOP_KEYS, SCHEMA_VERSION)
    loudness = None
    if "loudness" in data:
        values = parse_number_table(where, "loudness", data["loudness"], LIMITER_NUMBERS,
                                    others={"platform": lambda name: get_platform(name).name})
        loudness = Loudness(**values)
    chain = parse_chain(where, data.get("chain", []))
    return EnhancePreset(name=data["name"], description=data["description"], chain=chain, loudness=loudness,
                         source=where)


def preset_paths():
    """Shipped enhance presets by name: ``{name: Path}``."""
    return {path.stem: path for path in sorted(ENHANCE_PRESET_DIR.glob("*.toml"))}


def load_preset(name_or_path):
    """A shipped preset by name, case-insensitively (``"podcast"``), or a preset file by path."""
    if isinstance(name_or_path, EnhancePreset):
        return name_or_path
    path = find_preset_file(name_or_path, preset_paths())
    return parse_preset(read_toml(path), source=path)
