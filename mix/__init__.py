"""The mix job: a folder of multitrack stems into a stereo mix, by rule (stage 1) and, with a
reference mix, by a fitted console (stage 2). ``roomtone.mix.mix(tracks, sample_rate)`` returns
``(mix, report)``; the ``mix`` command writes it (:mod:`roomtone.mix.cli`)."""

from roomtone.mix.api import mix

__all__ = ["mix"]
