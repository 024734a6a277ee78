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
import math
import tomllib
from pathlib import Path

import roomtone.mastering.processors  # noqa: F401 - importing registers the mastering processor kinds
from roomtone.errors import PresetError
from roomtone.presets import PRESET_DIR
from roomtone.processor import Chain
from roomtone.stages import TruePeakLimiter

SCHEMA_VERSION = 1
CATEGORIES = ("style", "genre")
_TOP_KEYS = {"schema_version", "name", "category", "description", "limiter", "chain", "target"}
# limiter key -> (low, high, unit); the timing ranges are the limiter processor's own
_LIMITER_KEYS = {
    "lookahead_ms": (*TruePeakLimiter.__dataclass_fields__["lookahead_ms"].metadata["range"], "ms"),
    "release_ms": (*TruePeakLimiter.__dataclass_fields__["release_ms"].metadata["range"], "ms"),
    "max_limiting_lu": (0.0, 20.0, "LU"),
}


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
        data = self.to_dict()
        lines = [f"schema_version = {SCHEMA_VERSION}", f"name = {_toml_value(self.name)}",
                 f"category = {_toml_value(self.category)}", f"description = {_toml_value(self.description)}",
                 "", "[limiter]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in data["limiter"].items()]
        for item in data["chain"]:
            lines += ["", "[[chain]]"] + [f"{k} = {_toml_value(v)}" for k, v in item.items()]
        if "target" in data:
            lines += ["", "[target]"] + [f"{k} = {_toml_value(v)}" for k, v in data["target"].items()]
        return "\n".join(lines) + "\n"


def _toml_value(value):
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    return str(value)


def parse_preset(data, source="<data>"):
    """Validate preset ``data`` (a dict as read from TOML) and build a :class:`Preset`."""
    where = f"{source}"
    for key in data:
        if key not in _TOP_KEYS:
            raise PresetError(f"{where}: unknown key {key!r}; allowed: {', '.join(sorted(_TOP_KEYS))}")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise PresetError(f"{where}: schema_version must be {SCHEMA_VERSION}; got {data.get('schema_version')!r}")
    for key in ("name", "description"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise PresetError(f"{where}: key {key!r} must be a non-empty string")
    if data.get("category") not in CATEGORIES:
        raise PresetError(f"{where}: key 'category' must be one of {', '.join(CATEGORIES)}; got {data.get('category')!r}")
    limiter = data.get("limiter", {})
    if not isinstance(limiter, dict):
        raise PresetError(f"{where}: key 'limiter' must be a table")
    values = {}
    for key, value in limiter.items():
        if key not in _LIMITER_KEYS:
            raise PresetError(f"{where}: unknown key 'limiter.{key}'; allowed: {', '.join(_LIMITER_KEYS)}")
        low, high, unit = _LIMITER_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise PresetError(f"{where}: key 'limiter.{key}'={value!r} is outside {low:g}..{high:g} {unit}")
        values[key] = float(value)
    chain_items = data.get("chain", [])
    if not isinstance(chain_items, list):
        raise PresetError(f"{where}: key 'chain' must be an array of tables ([[chain]])")
    processors = []
    for index, item in enumerate(chain_items):
        if not isinstance(item, dict):
            raise PresetError(f"{where}: chain[{index}] must be a table")
        try:
            processors.append(Chain.from_dicts([item])[0])
        except (PresetError, TypeError) as exc:
            raise PresetError(f"{where}: chain[{index}] ({item.get('kind', '?')}): {exc}") from None
    if "target" in data:
        from roomtone.mastering.targets import check_target_table

        values["target"] = check_target_table(data["target"], where)
    return Preset(name=data["name"], category=data["category"], description=data["description"],
                  chain=Chain(processors), source=str(source), **values)


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
    text = str(name_or_path)
    paths = preset_paths()
    shipped = text.strip().lower()
    if shipped in paths and not Path(text).exists():
        path = paths[shipped]
    elif text.endswith(".toml") or Path(text).exists():
        path = Path(text)
        if path.is_dir():
            raise PresetError(f"{path}: is a directory, not a preset file")
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
    preset = parse_preset(data, source=path)
    if path.resolve() not in {p.resolve() for p in paths.values()} and preset.name != path.stem:
        preset = dataclasses.replace(preset, name=path.stem)
    return preset
