"""Enhance presets as validated, versioned data (``presets/enhance/*.toml``), mirroring the master
job's (:mod:`roomtone.mastering.presets`; jobs do not import each other).

A preset file has ``schema_version = 1``, ``name``, ``description``, an optional ``[loudness]``
table (``platform``, ``lookahead_ms``, ``release_ms``, ``max_limiting_lu``: with it the output is
delivered at the platform's loudness under its true-peak ceiling; without it the loudness is left
as the chain makes it) and ``[[chain]]`` tables, each a processor ``kind`` and its parameters.
Any unknown key or out-of-range value raises :class:`PresetError` naming the file and the key.
"""

import dataclasses
import tomllib
from pathlib import Path

import roomtone.enhance.processors  # noqa: F401 - importing registers the enhance processor kinds
from roomtone.errors import PresetError
from roomtone.platforms import get_platform
from roomtone.presets import PRESET_DIR
from roomtone.processor import Chain
from roomtone.stages import TruePeakLimiter

SCHEMA_VERSION = 1
ENHANCE_PRESET_DIR = PRESET_DIR / "enhance"
_TOP_KEYS = {"schema_version", "name", "description", "loudness", "chain"}
_LOUDNESS_NUMBERS = {
    "lookahead_ms": (*TruePeakLimiter.__dataclass_fields__["lookahead_ms"].metadata["range"], "ms"),
    "release_ms": (*TruePeakLimiter.__dataclass_fields__["release_ms"].metadata["range"], "ms"),
    "max_limiting_lu": (0.0, 20.0, "LU"),
}


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
    for key in data:
        if key not in _TOP_KEYS:
            raise PresetError(f"{where}: unknown key {key!r}; allowed: {', '.join(sorted(_TOP_KEYS))}")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise PresetError(f"{where}: schema_version must be {SCHEMA_VERSION}; got {data.get('schema_version')!r}")
    for key in ("name", "description"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise PresetError(f"{where}: key {key!r} must be a non-empty string")
    loudness = None
    if "loudness" in data:
        table = data["loudness"]
        if not isinstance(table, dict):
            raise PresetError(f"{where}: key 'loudness' must be a table")
        values = {}
        for key, value in table.items():
            if key == "platform":
                try:
                    values[key] = get_platform(value).name
                except PresetError as exc:
                    raise PresetError(f"{where}: key 'loudness.platform': {exc}") from None
                continue
            if key not in _LOUDNESS_NUMBERS:
                raise PresetError(f"{where}: unknown key 'loudness.{key}'; allowed: platform, "
                                  f"{', '.join(_LOUDNESS_NUMBERS)}")
            low, high, unit = _LOUDNESS_NUMBERS[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise PresetError(f"{where}: key 'loudness.{key}'={value!r} is outside {low:g}..{high:g} {unit}")
            values[key] = float(value)
        loudness = Loudness(**values)
    items = data.get("chain", [])
    if not isinstance(items, list):
        raise PresetError(f"{where}: key 'chain' must be an array of tables ([[chain]])")
    processors = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise PresetError(f"{where}: chain[{index}] must be a table")
        try:
            processors.append(Chain.from_dicts([item])[0])
        except (PresetError, TypeError) as exc:
            raise PresetError(f"{where}: chain[{index}] ({item.get('kind', '?')}): {exc}") from None
    return EnhancePreset(name=data["name"], description=data["description"], chain=Chain(processors),
                         loudness=loudness, source=where)


def preset_paths():
    """Shipped enhance presets by name: ``{name: Path}``."""
    return {path.stem: path for path in sorted(ENHANCE_PRESET_DIR.glob("*.toml"))}


def load_preset(name_or_path):
    """A shipped preset by name, case-insensitively (``"podcast"``), or a preset file by path."""
    if isinstance(name_or_path, EnhancePreset):
        return name_or_path
    text = str(name_or_path)
    paths = preset_paths()
    shipped = text.strip().lower()
    if shipped in paths and not Path(text).exists():
        path = paths[shipped]
    elif text.endswith(".toml") or Path(text).exists():
        path = Path(text)
        if not path.is_file():
            raise PresetError(f"{path}: preset file not found")
    else:
        raise PresetError(f"unknown preset {text!r}; known: {', '.join(paths)} (or a path to a .toml file)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PresetError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise PresetError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_preset(data, source=path)
