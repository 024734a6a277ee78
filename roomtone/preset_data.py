"""What every job's preset file shares: finding and reading the TOML file, the header checks
(``schema_version``, ``name``, ``description``, no unknown key), a table of numbers checked against
``(low, high, unit)`` ranges, the ``[[chain]]`` array built into a :class:`~roomtone.processor.Chain`,
and writing preset data back as TOML.

Every error is a one-line :class:`PresetError` that starts with the file (``where``) and names the
key; the jobs (:mod:`roomtone.mastering.presets`, :mod:`roomtone.enhance.presets`) add only their
own keys and dataclasses.
"""

import math
import tomllib
from pathlib import Path

from roomtone.errors import PresetError
from roomtone.processor import Chain
from roomtone.plugins import TruePeakLimiter

# The limiter stage's numbers in a preset (mastering ``[limiter]``, enhance ``[loudness]``):
# key -> (low, high, unit); the timing ranges are the limiter processor's own.
LIMITER_NUMBERS = {
    "lookahead_ms": (*TruePeakLimiter.__dataclass_fields__["lookahead_ms"].metadata["range"], "ms"),
    "release_ms": (*TruePeakLimiter.__dataclass_fields__["release_ms"].metadata["range"], "ms"),
    "max_limiting_lu": (0.0, 20.0, "LU"),
}


def find_preset_file(name_or_path, paths):
    """The file for a shipped preset name in ``paths`` (``{name: Path}``, matched
    case-insensitively) or for a path to a ``.toml`` file. A path that exists wins over a shipped
    name; a name that is neither lists the known ones."""
    text = str(name_or_path)
    shipped = text.strip().lower()
    if shipped in paths and not Path(text).exists():
        return paths[shipped]
    if text.endswith(".toml") or Path(text).exists():
        path = Path(text)
        if not path.is_file():
            raise PresetError(f"{path}: preset file not found")
        return path
    raise PresetError(f"unknown preset {text!r}; known: {', '.join(paths)} (or a path to a .toml file)")


def read_toml(path):
    """The TOML file at ``path`` as a dict; an unreadable or malformed file is a one-line error."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PresetError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise PresetError(f"{path}: cannot read ({exc.strerror})") from None


def check_header(where, data, allowed, schema_version):
    """Refuse a top-level key not in ``allowed``, another ``schema_version``, and a missing or empty
    ``name`` or ``description``."""
    for key in data:
        if key not in allowed:
            raise PresetError(f"{where}: unknown key {key!r}; allowed: {', '.join(sorted(allowed))}")
    if data.get("schema_version") != schema_version:
        raise PresetError(f"{where}: schema_version must be {schema_version}; got {data.get('schema_version')!r}")
    for key in ("name", "description"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise PresetError(f"{where}: key {key!r} must be a non-empty string")


def parse_number_table(where, name, table, numbers, others=None):
    """Validate the table ``[name]``: each key of ``numbers`` (``key -> (low, high, unit)``) must
    be a number (not a bool) in ``[low, high]`` and comes back as a float. ``others`` maps the
    table's non-numeric keys to a converter, whose :class:`PresetError` is given the key; its keys
    come first in the list of allowed keys. Returns ``{key: value}`` for the keys present."""
    others = others or {}
    if not isinstance(table, dict):
        raise PresetError(f"{where}: key {name!r} must be a table")
    values = {}
    for key, value in table.items():
        if key in others:
            try:
                values[key] = others[key](value)
            except PresetError as exc:
                raise PresetError(f"{where}: key '{name}.{key}': {exc}") from None
            continue
        if key not in numbers:
            raise PresetError(f"{where}: unknown key '{name}.{key}'; allowed: {', '.join([*others, *numbers])}")
        low, high, unit = numbers[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise PresetError(f"{where}: key '{name}.{key}'={value!r} is outside {low:g}..{high:g} {unit}")
        values[key] = float(value)
    return values


def parse_chain(where, items):
    """Build the :class:`Chain` of a preset's ``[[chain]]`` tables; an error names the item's index
    and kind."""
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
    return Chain(processors)


def toml_value(value):
    """``value`` (str, bool, int, float, or a list of them) as a TOML value; floats keep their
    ``repr``, so the file reads back to the same numbers."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    return str(value)


def to_toml(data):
    """Preset data as TOML text: the top-level values first, in order, then each table
    (``[name]``) and each array of tables (``[[name]]``, one per item), in order, a blank line
    before each. A list of tables that is empty writes nothing (an empty ``[[chain]]`` reads as
    no key), so a preset's ``to_dict`` data reads back to an equal preset."""
    lines = [f"{key} = {toml_value(value)}" for key, value in data.items() if not _is_table(value)]
    for key, value in data.items():
        if isinstance(value, dict):
            lines += ["", f"[{key}]"] + [f"{k} = {toml_value(v)}" for k, v in value.items()]
        elif _is_table(value):
            for item in value:
                lines += ["", f"[[{key}]]"] + [f"{k} = {toml_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _is_table(value):
    """A table, or an array of tables (a list whose items are all dicts, the empty list too)."""
    return isinstance(value, dict) or (isinstance(value, list) and all(isinstance(item, dict) for item in value))
