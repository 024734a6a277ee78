"""Presets as validated, versioned data: a TOML file fully describes a render's chain.

A preset file has ``schema_version = 1``, ``name``, ``category`` ("style" | "genre"),
``description``, a ``[limiter]`` table (``lookahead_ms``, ``release_ms``, ``max_limiting_lu``) and
an array of ``[[chain]]`` tables, each a processor ``kind`` with its parameters, and optionally a
``[target]`` table: the tonal curve (``bands_hz``, ``tonal_db``) and dynamics a fit aims at
(``master --fit-target``; :func:`roomtone.mastering.targets.check_target_table`). Any unknown key or
out-of-range value raises :class:`PresetError` naming the file and the key.
Chain -> TOML -> Chain round-trips (:meth:`Preset.to_toml`, :func:`parse_preset`).
"""

import dataclasses
from pathlib import Path

import roomtone.plugins  # noqa: F401 - importing registers every processor kind
from roomtone.errors import PresetError
from roomtone.preset_data import (LIMITER_NUMBERS, check_header, find_preset_file, parse_chain, parse_number_table,
                                  read_toml, to_toml)
from roomtone.presets import PRESET_DIR
from roomtone.processor import Chain

SCHEMA_VERSION = 1
CATEGORIES = ("style", "genre")
_TOP_KEYS = {"schema_version", "name", "category", "description", "limiter", "chain", "target"}


@dataclasses.dataclass(frozen=True)
class Preset:
    """A mastering preset: the chain, the limiter's timing and how much limiting it tolerates.

    ``max_limiting_lu`` is the most integrated loudness the limiter may remove to reach a target;
    beyond it the target cannot be met without wrecking the audio and mastering stops.
    """

    name: str
    category: str
    description: str
    chain: Chain
    lookahead_ms: float = 3.0
    release_ms: float = 80.0
    max_limiting_lu: float = 6.0
    source: str = ""
    target: dict | None = dataclasses.field(default=None, hash=False)

    def to_dict(self):
        """Preset data (what :meth:`to_toml` writes); the report adds ``source``."""
        return {
            "schema_version": SCHEMA_VERSION, "name": self.name, "category": self.category,
            "description": self.description,
            "limiter": {"lookahead_ms": self.lookahead_ms, "release_ms": self.release_ms,
                        "max_limiting_lu": self.max_limiting_lu},
            "chain": self.chain.to_dicts(),
            **({"target": {k: list(v) if isinstance(v, tuple) else v for k, v in self.target.items()}}
               if self.target else {}),
        }

    def to_toml(self):
        """Serialise to TOML text that :func:`parse_preset` reads back to an equal preset."""
        return to_toml(self.to_dict())


def parse_preset(data, source="<data>"):
    """Validate preset ``data`` (a dict as read from TOML) and build a :class:`Preset`."""
    where = f"{source}"
    check_header(where, data, _TOP_KEYS, SCHEMA_VERSION)
    if data.get("category") not in CATEGORIES:
        raise PresetError(f"{where}: key 'category' must be one of {', '.join(CATEGORIES)}; got {data.get('category')!r}")
    values = parse_number_table(where, "limiter", data.get("limiter", {}), LIMITER_NUMBERS)
    chain = parse_chain(where, data.get("chain", []))
    if "target" in data:
        from roomtone.mastering.targets import check_target_table

        values["target"] = check_target_table(data["target"], where)
    return Preset(name=data["name"], category=data["category"], description=data["description"],
                  chain=chain, source=str(source), **values)


def preset_paths():
    """Shipped presets by name: ``{name: Path}`` over styles then genres."""
    out = {}
    for category in CATEGORIES:
        for path in sorted((PRESET_DIR / f"{category}s").glob("*.toml")):
            out[path.stem] = path
    return out


def load_preset(name_or_path):
    """A shipped preset by name, case-insensitively (``"warm"``, ``"Jazz"``), or a preset file by
    path. A preset read from a path other than a shipped file is named after that file (its stem),
    so an edited copy of ``warm.toml`` saved as ``mine.toml`` reports ``mine``, not ``warm``; the
    report's ``source`` gives the path either way."""
    if isinstance(name_or_path, Preset):
        return name_or_path
    if Path(str(name_or_path)).is_dir():  # a path that exists wins over a shipped name
        raise PresetError(f"{Path(str(name_or_path))}: is a directory, not a preset file")
    paths = preset_paths()
    path = find_preset_file(name_or_path, paths)
    data = read_toml(path)
    preset = parse_preset(data, source=path)
    if path.resolve() not in {p.resolve() for p in paths.values()} and preset.name != path.stem:
        preset = dataclasses.replace(preset, name=path.stem)
    return preset
