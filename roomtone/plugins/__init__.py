"""The processor library every job composes: each processor a registered frozen dataclass of
parameters with units in their names (:mod:`roomtone.processor`), called as
``processor(audio, sample_rate)``, chained with :class:`~roomtone.processor.Chain` (from Python or
from a TOML chain file: :meth:`Chain.from_toml`), and reporting what it did through
:meth:`~roomtone.processor.Processor.run`.

=================  ===========================================================  ==================
module             processors (kind)                                            JAX twin (fitting)
=================  ===========================================================  ==================
:mod:`.eq`         ``eq`` :class:`Equalizer`, ``highpass`` :class:`HighPass`    ``eq``
:mod:`.dynamics`   ``multiband`` :class:`MultibandCompressor`, ``compressor``   ``multiband``,
                   :class:`Compressor`, ``gate`` :class:`Gate`, ``deess``       ``compressor``
                   :class:`DeEsser`, ``leveler`` :class:`Leveler`
:mod:`.stereo`     ``width`` :class:`StereoWidth`, ``pan`` :class:`Pan`         ``width``, ``pan``
:mod:`.saturation` ``saturation`` :class:`Saturation`                           ``saturation``
:mod:`.gain`       ``gain`` :class:`Gain`                                       ``gain``
:mod:`.limiter`    ``limiter`` :class:`TruePeakLimiter`
:mod:`.repair`     ``dehum`` :class:`Dehum`, ``declick`` :class:`Declick`
:mod:`.dither`     ``dither`` :class:`Dither`
=================  ===========================================================  ==================

A processor's JAX twin (its differentiable render and its parameter mapping, for fitting a chain
to a target) is three methods beside its numba render: ``twin_params``, ``from_twin`` and
``render_twin`` (:mod:`roomtone.plugins.twin` runs a chain of them; importing this package never
imports JAX). Jobs keep only what is theirs: presets, models (the enhance job's ``denoise``
stage), API and CLI.

Shape: audio (channels, samples) float32 in and out.
"""

from roomtone.plugins.dither import Dither
from roomtone.plugins.dynamics import Compressor, DeEsser, Gate, Leveler, MultibandCompressor, split_bands, static_curve_db
from roomtone.plugins.eq import Equalizer, HighPass
from roomtone.plugins.gain import Gain
from roomtone.plugins.limiter import TruePeakLimiter
from roomtone.plugins.repair import Declick, Dehum, find_clicks, find_hum
from roomtone.plugins.saturation import Saturation
from roomtone.plugins.stereo import Pan, StereoWidth
from roomtone.plugins.units import db_to_gain, safe_freq, time_coef

__all__ = ["Compressor", "DeEsser", "Declick", "Dehum", "Dither", "Equalizer", "Gain", "Gate", "HighPass", "Leveler",
           "MultibandCompressor", "Pan", "Saturation", "StereoWidth", "TruePeakLimiter", "db_to_gain", "find_clicks",
           "find_hum", "safe_freq", "split_bands", "static_curve_db", "time_coef"]
