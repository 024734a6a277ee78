"""Unit conversions every processor shares: decibels to gain, a time constant to a one-pole
coefficient, a corner frequency kept below Nyquist."""

import math


def db_to_gain(db):
    """Linear amplitude factor of ``db`` decibels (20 log10)."""
    return 10.0 ** (db / 20.0)


def time_coef(ms, sample_rate):
    """One-pole coefficient reaching 1 - 1/e of a step after ``ms`` milliseconds."""
    return math.exp(-1.0 / (max(ms, 1e-3) * 1e-3 * sample_rate))


def safe_freq(freq_hz, sample_rate):
    """Keep a corner frequency below 0.45 x the sample rate (e.g. a 16 kHz shelf on 22.05 kHz audio)."""
    return min(freq_hz, 0.45 * sample_rate)
