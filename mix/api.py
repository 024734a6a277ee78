"""The mix job: many tracks into one stereo mix, by rule (stage 1) and, given a reference mix, by a
fitted console (stage 2, :mod:`roomtone.mix.fit`).

Stage 1 (the two-stage automatic mixing paper's first stage): each track is read once and
measured (:func:`roomtone.mix.analysis.analyse`: loudness, refined loudness, f0, spectrum), classed
and grouped (:mod:`roomtone.mix.groups`), and given by the rules of ``presets/mix/rules.toml`` a
gain (its class's loudness offset against the mix anchor, shared among the class's tracks), a pan
(mono tracks, by group convention) and a high-pass under its range (the rule's cutoff, never
above half the frequency under which 1 % of the track's energy lies). Then each track is read again,
run through its chain of processors from :mod:`roomtone.plugins` (gain, high-pass, pan) and summed
into the mix (and its group's stem), so memory holds the mix, the stems asked for and one track.
Finally one gain brings the mix to ``mix_lufs`` (BS.1770-4) with its true peak at most
``mix_peak_dbtp`` (mastering headroom), applied to the stems alike so they sum to the mix.

Shape: a track (channels, samples) float32, mono or stereo (more channels: the first two); the mix
(2, longest track) float32 at the session rate.
"""

import dataclasses
from collections import Counter

import numpy as np

from roomtone.errors import InvalidAudioError, PresetError
from roomtone.meter import integrated_loudness, true_peak
from roomtone.mix.analysis import TrackAnalysis, analyse
from roomtone.mix.groups import classify, load_groups
from roomtone.plugins import Gain, HighPass, Pan
from roomtone.preset_data import read_toml
from roomtone.presets import PRESET_DIR
from roomtone.processor import Chain

RULES_FILE = PRESET_DIR / "mix" / "rules.toml"
RULE_KEYS = {"offset_lu", "pan", "alternate", "highpass_hz"}
MIN_HIGHPASS_HZ = 30.0


@dataclasses.dataclass(frozen=True)
class Rules:
    """The stage-1 rules (``presets/mix/rules.toml``)."""

    anchor_lufs: float
    share_exponent: float
    max_gain_db: float
    mix_lufs: float
    mix_peak_dbtp: float
    classes: dict  # class -> {offset_lu, pan, alternate, highpass_hz}
    measure: str = "refined"  # which loudness the offsets speak of: "refined", "centroid" or "plain"

    def of(self, name):
        if name not in self.classes:
            raise PresetError(f"{RULES_FILE}: no rules for track class {name!r}")
        return self.classes[name]


def load_rules(path=RULES_FILE, **overrides):
    """The :class:`Rules` of ``path``; ``overrides`` replace top-level values (the benchmark's fits)."""
    data = read_toml(path)
    classes = {}
    for name, table in data.get("class", {}).items():
        unknown = set(table) - RULE_KEYS
        if unknown:
            raise PresetError(f"{path}: class.{name}: unknown key {sorted(unknown)[0]!r}")
        classes[name] = {"offset_lu": float(table["offset_lu"]), "pan": float(table.get("pan", 0.0)),
                         "alternate": bool(table.get("alternate", False)),
                         "highpass_hz": float(table.get("highpass_hz", 0.0))}
    values = {k: float(data[k]) for k in ("anchor_lufs", "share_exponent", "max_gain_db", "mix_lufs", "mix_peak_dbtp")}
    measure = data.get("measure", "refined")
    if measure not in TrackAnalysis.MEASURES:
        raise PresetError(f"{path}: measure must be refined, centroid or plain; got {measure!r}")
    values["measure"] = measure
    values.update({k: v for k, v in overrides.items() if k != "classes"})
    return Rules(classes={**classes, **overrides.get("classes", {})}, **values)


# ------------------------------------------------------------------------------------ sources

class Source:
    """A track to mix: its name, how to get its samples, ``load() -> (audio, sample_rate)``, and
    ``rate()``, its sample rate (from the file's header where it has one: nothing decoded)."""

    def __init__(self, name, load, rate=None):
        self.name, self.load, self._rate = name, load, rate

    def rate(self):
        return self._rate() if self._rate else self.load()[1]


def _header_rate(path):
    def read():
        import soundfile as sf

        try:
            return int(sf.info(str(path)).samplerate)
        except Exception:  # noqa: BLE001 - a format libsndfile cannot read (AAC): decode it
            from roomtone.audio import read_audio

            return read_audio(path)[1]

    return read


def sources_of(tracks, sample_rate=None):
    """:class:`Source` list from a mapping of names to arrays (at ``sample_rate``) or a list of
    paths (read when needed, by :func:`roomtone.audio.read_audio`)."""
    if isinstance(tracks, dict):
        if sample_rate is None:
            raise ValueError("tracks given as arrays need their sample_rate")
        return [Source(str(name), (lambda a=np.asarray(audio, np.float32): (a if a.ndim == 2 else a[None], sample_rate)))
                for name, audio in tracks.items()]
    from pathlib import Path

    from roomtone.audio import read_audio

    return [Source(Path(p).name, (lambda p=p: read_audio(p)[:2]), _header_rate(p)) for p in tracks]


def read_at(source, rate):
    """``source``'s samples at ``rate`` (soxr), at most the first two channels. Shape: (channels, n)."""
    from roomtone.resample import resample

    audio, native = source.load()
    audio = np.ascontiguousarray(audio[:2], dtype=np.float32)
    if audio.shape[1] == 0:
        raise InvalidAudioError(f"{source.name}: the track is empty")
    return resample(audio, native, rate) if native != rate else audio


def session_rate(sources):
    """The most common sample rate of the tracks (reading their headers where they are files)."""
    rates = Counter(s.rate() for s in sources)
    return max(rates, key=lambda r: (rates[r], r))


# ------------------------------------------------------------------------------------ stage 1

def plan_tracks(sources, rate, rules, table, progress=None):
    """Pass 1: every track measured, classed and given its stage-1 settings. Returns ``(plans,
    silent names, longest length)``; a plan is a dict (name, class, group, how, analysis, gain_db,
    pan, highpass_hz, channels)."""
    plans, silent, longest = [], [], 0
    for index, source in enumerate(sources):
        if progress:
            progress(f"analysing {index + 1} of {len(sources)}: {source.name}")
        audio = read_at(source, rate)
        longest = max(longest, audio.shape[1])
        analysis = analyse(audio, rate)
        if analysis is None:
            silent.append(source.name)
            continue
        cls, group, how = classify(source.name, analysis, table)
        plans.append({"name": source.name, "source": source, "class": cls, "group": group, "how": how,
                      "analysis": analysis, "channels": int(audio.shape[0])})
    counts = Counter(p["class"] for p in plans)
    turns = Counter()
    for p in plans:
        rule = rules.of(p["class"])
        measured = p["analysis"].loudness(rules.measure)
        target = rules.anchor_lufs + rule["offset_lu"] - rules.share_exponent * 10 * np.log10(counts[p["class"]])
        p["target_lufs"] = float(target)
        p["gain_db"] = float(np.clip(target - measured, -rules.max_gain_db, rules.max_gain_db))
        side = -1.0 if rule["alternate"] and turns[p["class"]] % 2 else 1.0
        turns[p["class"]] += 1
        p["pan"] = float(side * rule["pan"]) if p["channels"] == 1 else 0.0
        # under the track's own range only: never above half the frequency under which 1 % of its
        # energy lies (a "synth" that plays the bass line keeps its low end); under 30 Hz: none
        cutoff = min(rule["highpass_hz"], 0.5 * p["analysis"].low_edge_hz)
        p["highpass_hz"] = round(cutoff, 1) if cutoff >= MIN_HIGHPASS_HZ else 0.0
    return plans, silent, longest


def track_chain(plan):
    """The processors of one planned track: gain, high-pass (where the rule has one), pan."""
    chain = [Gain(gain_db=round(plan["gain_db"], 3))]
    if plan["highpass_hz"] > 0:
        chain.append(HighPass(cutoff_hz=plan["highpass_hz"]))
    if plan["pan"]:
        chain.append(Pan(position=round(plan["pan"], 3)))
    return Chain(chain)


def render(plans, rate, longest, stems=False, progress=None):
    """Pass 2: each track read again, through its chain, summed. Returns ``(mix (2, n), {group:
    stem (2, n)} or None)``."""
    out = np.zeros((2, longest), np.float32)
    groups = {} if stems else None
    for index, plan in enumerate(plans):
        if progress:
            progress(f"mixing {index + 1} of {len(plans)}: {plan['name']}")
        audio = read_at(plan["source"], rate)
        if audio.shape[0] == 1:
            audio = np.repeat(audio, 2, axis=0)
        y = (plan.get("chain") or track_chain(plan))(audio, rate)
        out[:, :y.shape[1]] += y
        if stems:
            stem = groups.setdefault(plan["group"], np.zeros((2, longest), np.float32))
            stem[:, :y.shape[1]] += y
    return out, groups


def level_gain_db(mix, rate, rules):
    """The one gain that brings ``mix`` to ``rules.mix_lufs`` with its true peak at most
    ``rules.mix_peak_dbtp`` (dB)."""
    lufs = integrated_loudness(mix, rate)
    if not np.isfinite(lufs):
        return 0.0
    peak = true_peak(mix, rate)
    return float(min(rules.mix_lufs - lufs, rules.mix_peak_dbtp - peak))


def mix(tracks, sample_rate=None, *, reference=None, groups=None, rules=None, stems=False, progress=None):
    """Mix ``tracks`` (a mapping of names to (channels, samples) arrays at ``sample_rate``, or a
    list of paths) into a stereo mix. ``reference``: a reference mix, (channels, samples) at the
    session rate (:func:`mix_file` reads and resamples a path), that stage 2 fits the console to; ``groups``: a user's group table (TOML path);
    ``rules``: :class:`Rules` (default the shipped ones); ``stems``: also return the group stems.

    Returns ``(mix (2, n) float32, report)``, with ``report["stems"]`` holding ``{group: (2, n)}``
    when ``stems``. The session rate is ``sample_rate`` or the tracks' most common rate.
    """
    sources = sources_of(tracks, sample_rate)
    if not sources:
        raise InvalidAudioError("no tracks to mix")
    rate = int(sample_rate) if sample_rate else session_rate(sources)
    rules = rules or load_rules()
    table = load_groups(groups)
    plans, silent, longest = plan_tracks(sources, rate, rules, table, progress)
    if not plans:
        raise InvalidAudioError("every track is silent: nothing to mix")
    fit = None
    if reference is not None:
        from roomtone.mix.fit import fit_console  # JAX: only with a reference

        fit = fit_console(plans, rate, longest, reference, rules, progress=progress)
    out, group_stems = render(plans, rate, longest, stems=stems, progress=progress)
    gain_db = level_gain_db(out, rate, rules)
    scale = np.float32(10 ** (gain_db / 20))
    out *= scale
    for stem in (group_stems or {}).values():
        stem *= scale
    report = _report(plans, silent, rate, out, gain_db, rules, table, fit)
    if stems:
        report["stems"] = group_stems
    return out, report


def _report(plans, silent, rate, out, gain_db, rules, table, fit):
    tracks = []
    for p in plans:
        a = p["analysis"]
        tracks.append({"name": p["name"], "class": p["class"], "group": p["group"], "classed_by": p["how"],
                       "gain_db": round(p["gain_db"] + gain_db, 2), "pan": round(p["pan"], 2),
                       "highpass_hz": p["highpass_hz"], "loudness_lufs": round(a.loudness_lufs, 2),
                       "refined_lufs": round(a.refined_lufs, 2), "centroid_lufs": round(a.centroid_lufs, 2),
                       "f0_hz": round(a.f0_hz, 1), "band_hz": [round(b, 1) for b in a.band_hz],
                       "target_lufs": round(p["target_lufs"] + gain_db, 2),
                       **({"eq": p["eq"], "compressor": p["compressor"]} if "eq" in p else {})})
    group_names = sorted({p["group"] for p in plans})
    return {"sample_rate": rate, "tracks": tracks, "silent_tracks": silent, "groups": {
        g: {"tracks": [p["name"] for p in plans if p["group"] == g]} for g in group_names},
        "mix": {"integrated_lufs": round(float(integrated_loudness(out, rate)), 2),
                "true_peak_dbtp": round(float(true_peak(out, rate)), 2), "level_gain_db": round(gain_db, 2),
                "samples": int(out.shape[1])},
        "rules": {"measure": rules.measure, "anchor_lufs": rules.anchor_lufs, "share_exponent": rules.share_exponent,
                  "groups_files": list(table.sources)},
        **({"fit": fit} if fit else {})}


def mix_file(tracks, output_path, *, reference=None, groups=None, sample_rate=None, master=None, stems_dir=None,
             bit_depth="24", progress=None):
    """Mix ``tracks`` (paths) and write the mix to ``output_path`` (atomically; 24-bit with TPDF
    dither by default). ``master``: None, or the master job's keywords (``{"preset": "warm",
    "platform": "spotify"}``): the mix then goes through the master job and lands on its target.
    ``stems_dir``: also write each group's stem there (``<group>.wav``; they sum to the mix; with
    ``master`` they are the pre-master stems). Returns the report (``output``, ``stems`` paths)."""
    import os

    from roomtone.audio import check_output_path, read_audio, write_audio
    from roomtone.resample import resample

    check_output_path(output_path)
    ref = None
    if reference is not None:
        ref_audio, ref_rate, _ = read_audio(reference)
        ref = (ref_audio, ref_rate)
    sources = sources_of(list(tracks))
    rate = int(sample_rate) if sample_rate else session_rate(sources)
    if ref is not None:
        ref = resample(np.ascontiguousarray(ref[0][:2], np.float32), ref[1], rate)
    out, report = mix(list(tracks), rate, reference=ref, groups=groups, stems=stems_dir is not None,
                      progress=progress)
    group_stems = report.pop("stems", None)
    if master is not None:
        from roomtone.jobs import job

        if progress:
            progress("mastering the mix")
        out, master_report = job("master")(out, rate, bit_depth=bit_depth, progress=progress, **master)
        report["master"] = {k: master_report[k] for k in ("platform", "target")}
    written = {}
    if group_stems:
        os.makedirs(stems_dir, exist_ok=True)
        for group, stem in group_stems.items():
            path = os.path.join(stems_dir, f"{group}.wav")
            write_audio(path, stem, rate, bit_depth="32f")
            written[group] = path
    write_audio(output_path, out, rate, bit_depth=bit_depth)
    report["output"] = str(output_path)
    if written:
        report["stems"] = written
    return report
