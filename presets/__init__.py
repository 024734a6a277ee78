"""Preset data (TOML): ``platforms.toml`` (loudness targets), ``styles/*.toml`` and ``genres/*.toml``
(mastering chains). Loaded and validated by :mod:`roomtone.platforms` (targets) and the jobs' preset loaders
(chains, e.g. :mod:`roomtone.mastering.presets`, on :mod:`roomtone.preset_data`); this package holds only data."""

from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parent
