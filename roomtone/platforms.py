"""Delivery targets: integrated loudness (BS.1770-4, LUFS) and true-peak ceiling (dBTP) per platform.

The table is data, ``presets/platforms.toml`` (``roomtone.presets``); every job that delivers a
file (master, enhance) reads it here. A platform may name a separate target for mono programme
(``mono_target_lufs``): podcast practice is -19 LUFS for mono against -16 LUFS for stereo, since
a mono file plays on two speakers about 3 dB louder than it meters.
"""

import dataclasses
import tomllib
from pathlib import Path

from roomtone.errors import PresetError
from roomtone.presets import PRESET_DIR

SCHEMA_VERSION = 1
TARGET_RANGE_LUFS = (-40.0, -5.0)
CEILING_RANGE_DBTP = (-12.0, 0.0)
_KEYS = ("target_lufs", "ceiling_dbtp", "mono_target_lufs", "description")


@dataclasses.dataclass(frozen=True)
class Platform:
    """A delivery target: integrated loudness in LUFS and true-peak ceiling in dBTP.

    ``mono_target_lufs``, when set, is the loudness target for single-channel programme.
    """

    name: str
    target_lufs: float
    ceiling_dbtp: float
    description: str = ""
    mono_target_lufs: float | None = None

    def target_for(self, channels):
        """``(target_lufs, why)`` for programme of ``channels`` channels; ``why`` is a sentence
        when the mono target applies, else ``None``."""
        if channels == 1 and self.mono_target_lufs is not None:
            return self.mono_target_lufs, (
                f"mono programme: {self.mono_target_lufs:g} LUFS ({self.name} practice for mono; "
                f"{self.target_lufs:g} LUFS for stereo)")
        return self.target_lufs, None


@dataclasses.dataclass(frozen=True)
class Target:
    """What a delivery stage aims at: ``integrated_lufs`` and ``ceiling_dbtp``, the platform it
    came from (``None`` when both were given explicitly) and a note when the mono target applies."""

    integrated_lufs: float
    ceiling_dbtp: float
    platform: str | None
    note: str | None = None
    # a level taken from a reference, not asked for: where it needs more limiting than the preset allows,
    # the master is delivered as close under it as the budget lets, and says so (an album track's place too)
    flexible: bool = False


def load_platforms(path=None):
    """``{name: Platform}`` from ``presets/platforms.toml`` (or ``path``), validated."""
    path = Path(path) if path else PRESET_DIR / "platforms.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise PresetError(f"{path}: cannot read platforms ({exc})") from None
    version = data.pop("schema_version", None)
    if version != SCHEMA_VERSION:
        raise PresetError(f"{path}: schema_version must be {SCHEMA_VERSION}; got {version!r}")
    platforms = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise PresetError(f"{path}: {name!r} must be a table of {', '.join(_KEYS)}")
        for key in table:
            if key not in _KEYS:
                raise PresetError(f"{path}: unknown key '{name}.{key}'; allowed: {', '.join(_KEYS)}")
        try:
            target, ceiling = float(table["target_lufs"]), float(table["ceiling_dbtp"])
            mono = float(table["mono_target_lufs"]) if "mono_target_lufs" in table else None
        except (KeyError, TypeError, ValueError):
            raise PresetError(f"{path}: platform {name!r} needs numeric target_lufs and ceiling_dbtp") from None
        where = f"{path}: platform {name!r}: "
        check_target(target, ceiling, where=where)
        if mono is not None:
            check_target(mono, ceiling, where=where + "mono_")
        platforms[name] = Platform(name, target, ceiling, table.get("description", ""), mono)
    return platforms


def check_target(target_lufs, ceiling_dbtp, where=""):
    """Raise :class:`PresetError` unless the target and ceiling lie in the supported ranges."""
    (t_low, t_high), (c_low, c_high) = TARGET_RANGE_LUFS, CEILING_RANGE_DBTP
    if not t_low <= target_lufs <= t_high:
        raise PresetError(f"{where}target_lufs={target_lufs:g} LUFS is outside {t_low:g}..{t_high:g} LUFS")
    if not c_low <= ceiling_dbtp <= c_high:
        raise PresetError(f"{where}ceiling_dbtp={ceiling_dbtp:g} dBTP is outside {c_low:g}..{c_high:g} dBTP")


def get_platform(name):
    """A platform by name, case-insensitively (``"Spotify"`` is ``spotify``)."""
    if isinstance(name, Platform):
        return name
    platforms = load_platforms()
    key = str(name).strip().lower()
    if key not in platforms:
        raise PresetError(f"unknown platform {name!r}; known: {', '.join(platforms)}")
    return platforms[key]


def resolve_target(platform, channels, target_lufs=None, ceiling_dbtp=None):
    """The :class:`Target` for programme of ``channels`` channels on ``platform`` (a name or a
    :class:`Platform`), with explicit ``target_lufs`` / ``ceiling_dbtp`` overriding the platform's.
    The mono target applies only when no ``target_lufs`` is given."""
    plat = get_platform(platform)
    note = None
    if target_lufs is None:
        target, note = plat.target_for(channels)
    else:
        target = float(target_lufs)
    ceiling = plat.ceiling_dbtp if ceiling_dbtp is None else float(ceiling_dbtp)
    check_target(target, ceiling)
    return Target(target, ceiling, plat.name, note)
