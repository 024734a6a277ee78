"""What a fitted chain aims at: the features of a reference track (or a preset's ``[target]``
table), in numpy only, so reading and checking a reference never imports JAX.

Features (the same functions measure the reference, the input, the output and the benchmark):

- tonal balance: 1/3-octave band levels (IEC 61260 base-2 centres 40 Hz .. 16 kHz, 27 bands) of
  the power spectrum summed over channels (Welch, Hann, ~5 Hz bins), in dB relative to the
  signal's integrated loudness (BS.1770-4): "loudness-normalised";
- stereo width: side/mid energy ratio in dB in four groups of bands (40-250 Hz, 250 Hz-2 kHz,
  2-6 kHz, 6-16 kHz), stereo only;
- dynamics: short-term loudness spread (p95 - p5 of the 10 Hz short-term loudness above the
  -70 LUFS gate and 20 LU under the integrated level, as LRA gates), and crest factor (sample peak
  over RMS, dB). Reported and compared; the fit itself does not move the compressor yet.

:func:`tonal_distance` is the benchmark's and the report's distance: dB RMS over the 27 bands of
the difference of two loudness-normalised curves.
"""

import dataclasses
import os

import numpy as np

from roomtone.audio import read_audio
from roomtone.errors import InvalidAudioError, PresetError
from roomtone.meter import block_powers, gated_spread, integrated_from_blocks, integrated_loudness, to_lufs

THIRD_OCTAVE_HZ = tuple(1000.0 * 2.0 ** (k / 3.0) for k in range(-14, 13))  # 39.7 Hz .. 16.0 kHz
WIDTH_GROUPS_HZ = ((40.0, 250.0), (250.0, 2000.0), (2000.0, 6000.0), (6000.0, 16500.0))
_EPS = 1e-20


def welch_nfft(sample_rate):
    """FFT size of the analysis: about 5.4 Hz bins (8192 at 44.1/48 kHz)."""
    return int(2 ** round(np.log2(sample_rate / 5.4)))


def spectra(audio, sample_rate, max_frames=1200):
    """Mean power spectra (Welch, Hann, hop nfft/2): ``(freqs, total, mid, side)``; ``total`` is
    the sum over channels, ``mid``/``side`` of the first two channels (None for mono). Long signals
    use at most ``max_frames`` evenly spread frames. Shape: each (bins,) float64."""
    audio = np.asarray(audio, dtype=np.float32)
    nfft = welch_nfft(sample_rate)
    hop = nfft // 2
    n = audio.shape[1]
    if n < nfft:
        audio = np.pad(audio, ((0, 0), (0, nfft - n)))
        n = nfft
    starts = np.arange(0, n - nfft + 1, hop)
    if starts.size > max_frames:
        starts = starts[np.linspace(0, starts.size - 1, max_frames).round().astype(int)]
    window = np.hanning(nfft).astype(np.float32)
    norm = 1.0 / (window ** 2).sum()
    total = np.zeros(nfft // 2 + 1)
    mid = np.zeros(nfft // 2 + 1) if audio.shape[0] >= 2 else None
    side = np.zeros(nfft // 2 + 1) if audio.shape[0] >= 2 else None
    for chunk in np.array_split(starts, max(1, starts.size // 64)):
        frames = np.stack([audio[:, s:s + nfft] for s in chunk], axis=1) * window  # (C, F, nfft)
        if mid is not None:
            # The first two channels as mid and side before the FFT (it is linear): |L|^2 + |R|^2 =
            # 2 (|M|^2 + |S|^2) with M = (L + R) / 2, S = (L - R) / 2, so no complex arithmetic on L, R.
            ms = np.fft.rfft(np.stack([0.5 * (frames[0] + frames[1]), 0.5 * (frames[0] - frames[1])]), axis=-1)
            ms = ms.real ** 2 + ms.imag ** 2
            m, s = ms[0].sum(axis=0) * norm, ms[1].sum(axis=0) * norm
            mid += m
            side += s
            total += 2.0 * (m + s)
            frames = frames[2:]
        if frames.shape[0]:
            spec = np.fft.rfft(frames, axis=-1)
            total += (spec.real ** 2 + spec.imag ** 2).sum(axis=(0, 1)) * norm
    count = max(1, starts.size)
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    return freqs, total / count, None if mid is None else mid / count, None if side is None else side / count


# The bells a fit adds to the chain's EQ (roomtone.mastering.fit): octave ones for a smooth target (a
# preset's [target], the assistant's proposal); for a reference's curve (a real song's, full of detail)
# bells every half octave, 40 Hz .. 14.5 kHz, Q 2.0 (about 0.7 octave between the half-gain points) so
# that neighbours overlap and sum smoothly, and two of them reach past one bell's 12 dB where asked.
FIT_BELLS_HZ = (50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0, 12800.0)
FIT_BELL_Q = 1.41
MATCH_BELLS_HZ = tuple(round(40.0 * 2.0 ** (k / 2.0), 1) for k in range(18))
MATCH_BELL_Q = 2.0


def bells_for(target):
    """``(bells_hz, q)`` a fit adds for ``target``: half-octave bells for a reference's curve
    (``target.fine``), else the octave ones."""
    return (MATCH_BELLS_HZ, MATCH_BELL_Q) if getattr(target, "fine", False) else (FIT_BELLS_HZ, FIT_BELL_Q)


def smoothing_matrix(n=len(THIRD_OCTAVE_HZ)):
    """(n, n) float64: each 1/3-octave band averaged with its two neighbours (one octave; the end
    bands with the one they have)."""
    m = np.zeros((n, n))
    for i in range(n):
        lo, hi = max(0, i - 1), min(n, i + 2)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def octave_smoothed(curve_db):
    """A 1/3-octave curve (27,) smoothed to octaves (:func:`smoothing_matrix`), float64."""
    return smoothing_matrix() @ np.asarray(curve_db, np.float64)


AGAINST_ASK_DB = 1.0  # a band the target asks to move, and a move against it, that a report names (dB)


def moves_against(input_tonal, target_tonal, output_tonal, limit_db=AGAINST_ASK_DB):
    """The bands a master moved against the direction its target asks, on octave-smoothed
    loudness-normalised curves (27,): where the target lies more than ``limit_db`` from the input and
    the output moved more than ``limit_db`` the other way. Returns ``[{"hz", "asked_db", "moved_db"}]``."""
    ask = octave_smoothed(np.asarray(target_tonal, np.float64) - np.asarray(input_tonal, np.float64))
    moved = octave_smoothed(np.asarray(output_tonal, np.float64) - np.asarray(input_tonal, np.float64))
    return [{"hz": round(float(f), 1), "asked_db": round(float(a), 2), "moved_db": round(float(d), 2)}
            for f, a, d in zip(THIRD_OCTAVE_HZ, ask, moved)
            if abs(a) > limit_db and d * np.sign(a) < -limit_db]


# Mono compatibility of a width change (mid/side: L = M + S, R = M - S, the width scales S). With M and S
# uncorrelated the channels' correlation is (P_M - P_S) / (P_M + P_S); scaling S by w gives
# (P_M - w^2 P_S) / (P_M + w^2 P_S). A proposal or a fit may widen only while that stays at or above
# MIN_CORRELATION (a goniometer's "safe" half: a mono fold-down then loses at most about 1.8 dB against
# the stereo loudness), and not at all when the input is near mono: its side is then noise, reverb and
# small mix accidents, not an image, and raising it only brings those up.
MIN_CORRELATION = 0.5
NEAR_MONO_CORRELATION = 0.95  # side/mid at or under about -16 dB


def width_bound(mid_power, side_power, limit=2.0):
    """The largest width a proposal or a fit may apply to a stereo input, and why:
    ``(max_width, input_correlation, reason)``. ``reason`` names the binding rule: ``near mono``
    (correlation at or above :data:`NEAR_MONO_CORRELATION`: no widening), ``mono compatibility``
    (the widened correlation would fall under :data:`MIN_CORRELATION`; already under it: no
    widening), or ``limit`` (the stage's own range). Narrowing is always allowed. ``mid_power``,
    ``side_power``: :func:`spectra`'s, summed over bins here (the broadband correlation)."""
    pm, ps = float(np.sum(mid_power)), float(np.sum(side_power))
    corr = 1.0 if pm + ps <= _EPS else (pm - ps) / (pm + ps)
    if corr >= NEAR_MONO_CORRELATION:
        return 1.0, corr, "near mono"
    c = MIN_CORRELATION
    # (P_M - w^2 P_S) / (P_M + w^2 P_S) >= c  <=>  w^2 <= (P_M / P_S) (1 - c) / (1 + c)
    w = float(np.sqrt(pm / max(ps, _EPS) * (1.0 - c) / (1.0 + c)))
    if w >= limit:
        return float(limit), corr, "limit"
    return max(1.0, w), corr, "mono compatibility"


def bound_width(width, mid_power, side_power, limit=2.0):
    """``width`` held under :func:`width_bound`: ``(width, report)``; the report (JSON-ready) says the
    proposed and applied width, the input's correlation, the bound and, when it bound, why."""
    most, corr, rule = width_bound(mid_power, side_power, limit)
    applied = min(float(width), most)
    report = {"proposed": round(float(width), 4), "applied": round(applied, 4), "max": round(most, 4),
              "input_correlation": round(corr, 4),
              # bound, or sitting at the bound (within 1 %): either way the report says why
              "bound_by": rule if float(width) > 1.0 and float(width) >= 0.99 * most else None}
    if report["bound_by"] is not None:
        why = {"near mono": f"the input is near mono (channel correlation {corr:.3f}): its side is noise and "
                            "reverb, not an image",
               "mono compatibility": f"wider would take the channel correlation under {MIN_CORRELATION:g} "
                                     f"(input {corr:.3f}) and lose level in mono",
               "limit": "the width stage's range"}[rule]
        asked = f" (asked {float(width) * 100:.0f} %)" if applied < float(width) else ""
        report["reason"] = f"width held at {applied * 100:.0f} %{asked}: {why}"
    return applied, report


def band_matrix(freqs, centres=THIRD_OCTAVE_HZ):
    """0/1 membership of FFT bins in 1/3-octave bands (edges at centre x 2^(+-1/6)); a band with
    no bin gets its nearest. Shape: (bands, bins) float64."""
    freqs = np.asarray(freqs)
    matrix = np.zeros((len(centres), freqs.size))
    for b, centre in enumerate(centres):
        inside = (freqs >= centre * 2 ** (-1 / 6)) & (freqs < centre * 2 ** (1 / 6))
        if not inside.any():
            inside[np.argmin(np.abs(freqs - centre))] = True
        matrix[b, inside] = 1.0
    return matrix


def group_matrix(centres=THIRD_OCTAVE_HZ, groups=WIDTH_GROUPS_HZ):
    """Which 1/3-octave bands make each width group. Shape: (groups, bands)."""
    c = np.asarray(centres)
    return np.stack([((c >= lo) & (c < hi)).astype(np.float64) for lo, hi in groups])


@dataclasses.dataclass(frozen=True)
class Features:
    """Measured features of one signal (see the module docstring)."""

    tonal_db: np.ndarray  # (27,) dB re integrated loudness
    width_db: np.ndarray | None  # (4,) side/mid dB, None for mono
    spread_lu: float | None
    crest_db: float
    integrated_lufs: float
    peak_dbfs: float = 0.0  # sample peak

    def as_dict(self):
        return {"tonal_db": [round(float(v), 2) for v in self.tonal_db],
                "width_db": None if self.width_db is None else [round(float(v), 2) for v in self.width_db],
                "short_term_spread_lu": None if self.spread_lu is None else round(self.spread_lu, 2),
                "crest_db": round(self.crest_db, 2), "integrated_lufs": round(self.integrated_lufs, 2),
                "peak_dbfs": round(self.peak_dbfs, 2)}


def short_term_spread(audio, sample_rate, pre_sos=None):
    """:func:`gated_spread` of the short-term loudness at 10 Hz, gated against the integrated
    level (the meter's ``short_term_spread_lu``); None when under 3 s. The meter's one block pass
    serves both the short-term readings and the integrated level; ``pre_sos`` (an EQ's sections)
    reads the audio as that filter would leave it (:func:`roomtone.meter.k_weighted_power`)."""
    blocks_m, blocks_s = block_powers(audio, sample_rate, pre_sos=pre_sos)
    return gated_spread(to_lufs(blocks_s), integrated_from_blocks(blocks_m))


def measure_features(audio, sample_rate, integrated_lufs=None):
    """The :class:`Features` of ``audio`` (channels, samples)."""
    audio = np.asarray(audio, dtype=np.float32)
    lufs = integrated_loudness(audio, sample_rate) if integrated_lufs is None else integrated_lufs
    freqs, total, mid, side = spectra(audio, sample_rate)
    bands = band_matrix(freqs)
    tonal = 10.0 * np.log10(bands @ total + _EPS) - lufs
    width = None
    if mid is not None:
        groups = group_matrix()
        width = 10.0 * np.log10((groups @ (bands @ side) + _EPS) / (groups @ (bands @ mid) + _EPS))
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    peak = max(float(np.abs(audio).max()), _EPS)
    crest = 20.0 * np.log10(peak / max(rms, _EPS))
    return Features(tonal_db=tonal, width_db=width, spread_lu=short_term_spread(audio, sample_rate), crest_db=crest,
                    integrated_lufs=float(lufs), peak_dbfs=20.0 * np.log10(peak))


def tonal_curve(audio, sample_rate, integrated_lufs, measured=None):
    """The loudness-normalised 1/3-octave curve alone (dB re ``integrated_lufs``); ``measured``:
    the audio's :func:`spectra`, where the caller has them. Shape: (27,)."""
    freqs, total, _, _ = spectra(audio, sample_rate) if measured is None else measured
    return 10.0 * np.log10(band_matrix(freqs) @ total + _EPS) - integrated_lufs


def tonal_distance(curve_a, curve_b):
    """dB RMS over the bands between two loudness-normalised 1/3-octave curves."""
    d = np.asarray(curve_a) - np.asarray(curve_b)
    return float(np.sqrt(np.mean(d ** 2)))


@dataclasses.dataclass(frozen=True)
class MatchTarget:
    """What a fit aims at: the tonal curve (27 bands, dB re loudness), optionally the width per
    group (dB side/mid), the short-term spread (LU), the crest factor (dB) and the loudness (LUFS);
    ``sources`` names where each part came from (reference files with weights, or a preset)."""

    tonal_db: np.ndarray
    width_db: np.ndarray | None = None
    spread_lu: float | None = None
    crest_db: float | None = None
    integrated_lufs: float | None = None
    sources: tuple = ()
    peak_dbfs: float | None = None  # the references' highest sample peak
    fine: bool = False  # a reference's measured curve: fitted with half-octave bells (a preset's is smooth)

    def as_dict(self):
        return {"sources": list(self.sources), "tonal_db": [round(float(v), 2) for v in self.tonal_db],
                "width_db": None if self.width_db is None else [round(float(v), 2) for v in self.width_db],
                "short_term_spread_lu": None if self.spread_lu is None else round(self.spread_lu, 2),
                "crest_db": None if self.crest_db is None else round(self.crest_db, 2),
                "integrated_lufs": None if self.integrated_lufs is None else round(self.integrated_lufs, 2),
                "peak_dbfs": None if self.peak_dbfs is None else round(self.peak_dbfs, 2)}


def _reference_items(reference):
    """Normalise the ``reference=`` argument to ``[(source, weight)]``; a source is a path or an
    ``(audio, sample_rate)`` pair. (The CLI's ``PATH:WEIGHT`` is parsed by the CLI.)"""
    if isinstance(reference, (str, os.PathLike)):
        return [(os.fspath(reference), 1.0)]
    if isinstance(reference, tuple) and len(reference) == 2 and isinstance(reference[0], np.ndarray):
        return [(reference, 1.0)]
    items = []
    for item in reference:
        if isinstance(item, (str, os.PathLike)):
            items.extend(_reference_items(item))
        elif isinstance(item, tuple) and len(item) == 2 and not isinstance(item[0], np.ndarray):
            source, weight = item
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
                raise InvalidAudioError(f"reference {source!r}: weight {weight!r} must be a positive number")
            items.append((os.fspath(source) if isinstance(source, os.PathLike) else source, float(weight)))
        elif isinstance(item, tuple) and len(item) == 2:
            items.append((item, 1.0))
        else:
            raise InvalidAudioError(f"reference {item!r}: give a path, (audio, sample_rate) or (source, weight)")
    if not items:
        raise InvalidAudioError("reference: an empty list; give at least one reference track")
    return items


def reference_target(reference):
    """Read and measure the reference track(s) and blend their features by weight (features in dB
    and LU averaged with the normalised weights; width only over stereo references). Errors name
    the reference: ``reference X.wav: ...`` (:class:`InvalidAudioError`)."""
    items = _reference_items(reference)
    feats, weights, names = [], [], []
    for source, weight in items:
        if isinstance(source, tuple):
            from roomtone.audio import validate_audio

            audio, rate = validate_audio(source[0], source[1], name="reference"), int(source[1])
            name = "<array>"
        else:
            try:
                audio, rate, _ = read_audio(source)
            except InvalidAudioError as exc:
                raise InvalidAudioError(f"reference {exc}") from None
            name = str(source)
        lufs = integrated_loudness(audio, rate)
        if not np.isfinite(lufs):
            raise InvalidAudioError(f"reference {name}: silent (no 400 ms block above the -70 LUFS gate); "
                                    f"nothing to match")
        feats.append(measure_features(audio, rate, lufs))
        weights.append(weight)
        names.append(f"{name}:{weight:g}")
    w = np.asarray(weights) / np.sum(weights)
    tonal = sum(wi * f.tonal_db for wi, f in zip(w, feats))
    stereo = [(wi, f.width_db) for wi, f in zip(w, feats) if f.width_db is not None]
    width = sum(wi * v for wi, v in stereo) / sum(wi for wi, _ in stereo) if stereo else None
    spreads = [(wi, f.spread_lu) for wi, f in zip(w, feats) if f.spread_lu is not None]
    spread = sum(wi * v for wi, v in spreads) / sum(wi for wi, _ in spreads) if spreads else None
    crest = float(sum(wi * f.crest_db for wi, f in zip(w, feats)))
    lufs = float(sum(wi * f.integrated_lufs for wi, f in zip(w, feats)))
    return MatchTarget(tonal_db=tonal, width_db=width, spread_lu=spread, crest_db=crest, integrated_lufs=lufs,
                       sources=tuple(names), peak_dbfs=max(f.peak_dbfs for f in feats), fine=True)


# What a reference's own loudness means. A mastered reference (peaks within MASTERED_PEAK_DBFS of full
# scale and not over it, loudness at or above QUIETEST_REFERENCE_LUFS) states a delivery loudness: with neither a
# platform nor a target given, the master matches it. An unmastered mix (headroom left for mastering,
# typically -20 to -30 LUFS with peaks at -6 dBFS) states only a tone and a dynamics: its loudness is an
# accident of its gain staging, so the default platform's target applies, and the report says so.
MASTERED_PEAK_DBFS = -3.0
OVER_FULL_SCALE_DBFS = 1.0  # a delivered master never peaks over full scale (a decoder's overshoot stays under this)
QUIETEST_REFERENCE_LUFS = -23.0  # EBU R128's programme level: no music master is delivered quieter


def reference_states_loudness(match):
    """``(follow, why)``: whether ``match``'s (a reference's) integrated loudness is a delivery target,
    and, when not, why in words."""
    lufs, peak = match.integrated_lufs, match.peak_dbfs
    if lufs is None:
        return False, "no loudness"
    if peak is not None and peak > OVER_FULL_SCALE_DBFS:
        return False, (f"the reference's peaks reach {peak:+.1f} dBFS: a float mix (a stem sum, a bounce), not a "
                       f"delivered master")
    if peak is not None and peak < MASTERED_PEAK_DBFS:
        return False, (f"the reference reads {lufs:.1f} LUFS with peaks at {peak:.1f} dBFS: an unmastered mix "
                       f"(headroom left), its loudness is gain staging, not a delivery level")
    if lufs < QUIETEST_REFERENCE_LUFS:
        return False, f"the reference reads {lufs:.1f} LUFS, under any music delivery level ({QUIETEST_REFERENCE_LUFS:g})"
    return True, None


# ---------------------------------------------------------------- a preset's [target] table

TARGET_KEYS = {"bands_hz": None, "tonal_db": (-40.0, 40.0, "dB"), "width_db": (-60.0, 0.0, "dB"),
               "short_term_spread_lu": (0.0, 30.0, "LU"), "crest_db": (0.0, 40.0, "dB")}


def check_target_table(table, where):
    """Validate a preset's ``[target]`` table; returns it with floats (lists as tuples).

    Keys: ``bands_hz`` (ascending, 20..20000 Hz) and ``tonal_db`` (same length, -40..40 dB): the
    tonal curve at those frequencies, interpolated on log frequency to the 1/3-octave centres;
    optional ``width_db`` (one side/mid ratio, -60..0 dB), ``short_term_spread_lu`` (0..30 LU),
    ``crest_db`` (0..40 dB).
    """
    if not isinstance(table, dict):
        raise PresetError(f"{where}: key 'target' must be a table")
    for key in table:
        if key not in TARGET_KEYS:
            raise PresetError(f"{where}: unknown key 'target.{key}'; allowed: {', '.join(TARGET_KEYS)}")
    for key in ("bands_hz", "tonal_db"):
        if key not in table:
            raise PresetError(f"{where}: key 'target.{key}' is missing (the tonal curve needs bands_hz and tonal_db)")
        value = table[key]
        if not isinstance(value, list) or len(value) < 2 or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
            raise PresetError(f"{where}: key 'target.{key}' must be a list of at least 2 numbers")
    hz, db = table["bands_hz"], table["tonal_db"]
    if len(hz) != len(db):
        raise PresetError(f"{where}: 'target.bands_hz' has {len(hz)} values but 'target.tonal_db' {len(db)}")
    if any(not 20.0 <= f <= 20000.0 for f in hz) or list(hz) != sorted(hz) or len(set(hz)) != len(hz):
        raise PresetError(f"{where}: 'target.bands_hz'={hz} must ascend strictly within 20..20000 Hz")
    for v in db:
        if not -40.0 <= v <= 40.0:
            raise PresetError(f"{where}: 'target.tonal_db' value {v:g} dB is outside -40..40 dB")
    out = {"bands_hz": tuple(float(v) for v in hz), "tonal_db": tuple(float(v) for v in db)}
    for key in ("width_db", "short_term_spread_lu", "crest_db"):
        if key in table:
            low, high, unit = TARGET_KEYS[key]
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise PresetError(f"{where}: key 'target.{key}'={value!r} is outside {low:g}..{high:g} {unit}")
            out[key] = float(value)
    return out


def preset_target(preset):
    """The :class:`MatchTarget` of a preset's ``[target]`` table (:class:`PresetError` when it has
    none)."""
    table = preset.target
    if not table:
        raise PresetError(f"preset {preset.name!r} has no [target] table to fit to; presets with one: "
                          f"see --list-presets")
    tonal = np.interp(np.log(THIRD_OCTAVE_HZ), np.log(table["bands_hz"]), table["tonal_db"])
    width = None if "width_db" not in table else np.full(len(WIDTH_GROUPS_HZ), table["width_db"])
    return MatchTarget(tonal_db=tonal, width_db=width, spread_lu=table.get("short_term_spread_lu"),
                       crest_db=table.get("crest_db"), sources=(f"preset {preset.name}",))
