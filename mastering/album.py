"""Album mode: one shared chain for a set of tracks, the loudest track on the target, and every
other track at its loudness distance from it.

How an album is placed, and why:

- **Relations come from the music, not from the mix levels.** The tracks of an album reach the
  mastering engineer at levels set by accident (mixed on different days, some already mastered,
  some not): a -30 LUFS mix next to a -14 LUFS master is no musical statement. What an album's
  relations mean is that a ballad sits a few LU under the single *because its loud passages are no
  louder and the rest is quieter*. So every track is placed by its loud passages: ``L95``, the 95th
  percentile of its short-term loudness after the gates of EBU Tech 3342 (the top of its LRA), is
  gain-independent in relation to its integrated loudness ``I``. The densest track (largest
  ``I - L95``) lands on the target; track ``i`` aims at
  ``target + clip((I_i - L95_i) - (I_a - L95_a), -MAX_OFFSET_LU, 0)``: its loud passages as loud as
  the densest track's, its integrated loudness as far under the target as its own dynamics put it,
  never more than :data:`MAX_OFFSET_LU` (4 LU, a ballad's usual distance to the single) and never
  above the target. The platforms normalise an album with one gain for all its tracks, set by its
  loudest track (Spotify: "we normalize an entire album at the same time"); with the loudest track
  on the target album playback applies no gain, and playlist playback turns no track down.
- **Each track enters the chain at its place**: its input trim brings it to the working level
  (-18 LUFS) plus its offset, so the shared chain (thresholds set at the working level) meets every
  track where it will sit in the album: a ballad is compressed less than the single, not squashed
  to its density, and no track's mix-level accident reaches the compressor.
- **A large spread is reported**: the input's loudness spread (LU) beside the placed one, and a
  note when the mix levels spread far wider than the music asks, or a track's own offset was held
  at the bound.
- **One chain**: the preset's, or with ``reference`` / ``fit_target`` fitted once to the album as a
  whole (:func:`roomtone.mastering.fit.fit_chain`). The fit's analysis signal is one excerpt of
  every track (up to :data:`EXCERPT_S`, centred), each at its own trim (its place), joined end to
  end; equal lengths, so each track's spectrum counts by its power at its place: the album's
  loudness-weighted average, as the album's integrated loudness weighs its tracks. The compressor's tonal effect is measured on
  an excerpt of every track. With ``preset="auto"`` the assistant
  (:func:`roomtone.mastering.assistant.propose`) proposes the one chain from that same signal
  (and ``fit_target`` refines towards its proposal), so the album still shares one chain. Tracks of another channel layout than most are left out of the
  analysis (and named); tracks at another sample rate are resampled for the analysis only.
- **Then each track's own loudness stage** (one static gain, the true-peak limiter). No gain riding.
- A track other than the loudest whose place needs more limiting than the preset allows is
  delivered as close under its place as the budget lets, and its report says so
  (``relation_kept: false``, ``shortfall_lu``). The loudest track failing to reach the target fails,
  as a single master would; the others keep their places.
- A one-track album is that track's own master (the same as :func:`~roomtone.mastering.master`).

Python::

    from roomtone.mastering.album import analyse_album, master_album

    outputs, report = master_album([(single, 44100), (ballad, 44100)], platform="spotify")

    album = analyse_album(["a.wav", "b.wav"], preset="warm")      # files: read once here ...
    reports = [album.master_file(p, f"out/{p}") for p in ["a.wav", "b.wav"]]   # ... and again here
    summary = album.summary(reports)
"""

import dataclasses
import os

import numpy as np

from roomtone.audio import read_audio, read_audio_async, validate_audio
from roomtone.errors import InvalidAudioError, RoomtoneError, TargetUnreachableError
from roomtone.mastering import api
from roomtone.mastering.explain import chain_lines
from roomtone.mastering.presets import load_preset
from roomtone.meter import (ABSOLUTE_GATE_LUFS, LRA_RELATIVE_GATE_LU, MOMENTARY_S, block_powers,
                            integrated_from_blocks, to_lufs)
from roomtone.platforms import Target
from roomtone.startup import await_imports

EXCERPT_S = 20.0  # each track's excerpt in the fit's analysis signal
PLACEMENT = "loud passages"  # how the tracks are placed (see the module docstring)
MAX_OFFSET_LU = 4.0  # the most a track is placed under the album's target (LU)
LOUD_PERCENTILE = 95.0  # L95 of short-term loudness (EBU Tech 3342's upper LRA bound)
WIDE_SPREAD_LU = 6.0  # input loudness spread (LU) over the placed one that the summary calls out


@dataclasses.dataclass(frozen=True)
class TrackPlacement:
    """One album track's place: what :func:`roomtone.mastering.master` needs to master it as part
    of the album (``master(audio, sr, placement=...)``).

    ``goal``: its own target (``integrated_lufs`` = the album's target plus ``offset_lu``) and the
    ceiling; ``trim_db``: its input trim (dB: to the working level plus ``offset_lu``); ``preset``: the album's chain (fitted or
    not), with ``fit`` (the album fit's report) and ``match`` (its target) when fitted;
    ``anchor``: this is the loudest track. ``on_blocks`` is told the output's 400 ms gating-block
    powers (for the album's loudness as one programme)."""

    index: int
    name: str
    goal: Target
    trim_db: float
    preset: object
    fit: dict | None
    match: object
    anchor: bool
    input_lufs: float
    offset_lu: float
    album_target_lufs: float
    loud_lufs: float = float("nan")
    musical_offset_lu: float = 0.0
    on_blocks: object = dataclasses.field(default=None, compare=False, repr=False)

    def track_report(self, *, output_lufs, aim_lufs, needed_limiting_lu, max_limiting_lu):
        """``report["album"]`` of this track's master (JSON-ready)."""
        shortfall = self.goal.integrated_lufs - aim_lufs
        note = None
        if shortfall > 0:
            note = (f"{shortfall:.2f} LU under its place: keeping it needs at least {needed_limiting_lu:.1f} LU of "
                    f"limiting, the preset allows {max_limiting_lu:g} LU")
        return {"index": self.index, "track": self.name, "loudest": self.anchor, "placement": PLACEMENT,
                "input_lufs": round(self.input_lufs, 3), "input_loud_lufs": round(self.loud_lufs, 3),
                "musical_offset_lu": _round(self.musical_offset_lu), "placed_offset_lu": _round(self.offset_lu),
                "album_target_lufs": self.album_target_lufs, "placed_lufs": round(self.goal.integrated_lufs, 3),
                "output_lufs": round(output_lufs, 3), "output_offset_lu": _round(output_lufs - self.album_target_lufs),
                "trim_db": round(self.trim_db, 3), "relation_kept": shortfall <= 0,
                "shortfall_lu": round(max(shortfall, 0.0), 3),
                "needed_limiting_lu": None if needed_limiting_lu is None else round(needed_limiting_lu, 2),
                "note": note}


@dataclasses.dataclass(eq=False)
class AlbumTrack:
    """What the analysis read of one track: ``error`` (a :class:`RoomtoneError`) when it could not
    be used; else its integrated loudness (LUFS), layout and 400 ms gating-block powers."""

    index: int
    name: str
    source: object
    input_lufs: float = float("nan")
    loud_lufs: float = float("nan")  # L95 of short-term loudness (LUFS)
    channels: int = 0
    sample_rate: int = 0
    duration_s: float = 0.0
    blocks: np.ndarray | None = dataclasses.field(default=None, repr=False)
    error: RoomtoneError | None = None


def _round(value, digits=3):
    """``round`` without a negative zero (-0.0004 reads 0.0, not -0.0)."""
    return round(value, digits) + 0.0


def _name(source, index):
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else f"track {index + 1}"


def loud_passages_lufs(short_term_power):
    """L95 (LUFS): the 95th percentile of short-term loudness (3 s, 10 Hz) after EBU Tech 3342's
    gates (-70 LUFS absolute, 20 LU under the power mean of the blocks that pass it): how loud the
    track's loud passages are. ``nan`` when no block passes."""
    lk = to_lufs(short_term_power)
    keep = lk > ABSOLUTE_GATE_LUFS
    if not keep.any():
        return float("nan")
    values = lk[keep & (lk > to_lufs(short_term_power[keep].mean()) + LRA_RELATIVE_GATE_LU)]
    return float(np.percentile(values, LOUD_PERCENTILE)) if values.size else float("nan")


def _track_loudness(audio, sample_rate, name):
    """``(integrated LUFS, gating blocks, L95 LUFS)`` of a validated track; the refusals of a master."""
    if audio.shape[1] < MOMENTARY_S * sample_rate:
        raise InvalidAudioError(f"{name}: {audio.shape[1] / sample_rate * 1000:.0f} ms long; integrated loudness "
                                f"needs at least one {MOMENTARY_S * 1000:.0f} ms gating block")
    blocks, short_term = block_powers(audio, sample_rate)
    lufs = integrated_from_blocks(blocks)
    if not np.isfinite(lufs):
        raise InvalidAudioError(f"{name}: silent (no 400 ms block above the {ABSOLUTE_GATE_LUFS:g} LUFS gate): "
                                f"nothing to master")
    loud = loud_passages_lufs(short_term)
    return lufs, blocks, (loud if np.isfinite(loud) else lufs)


def _excerpt(audio, sample_rate, length_s):
    """The centred ``length_s`` of ``audio`` (all of it when shorter), as a copy."""
    length = int(length_s * sample_rate)
    if audio.shape[1] <= length:
        return audio.copy()
    start = (audio.shape[1] - length) // 2
    return audio[:, start:start + length].copy()


def analyse_album(sources, *, preset="balanced", platform=None, target_lufs=None, ceiling_dbtp=None, reference=None,
                  fit_target=False, progress=None, keep_going=False, reading=None, excerpt_s=EXCERPT_S):
    """Read and meter every track, place the album and build (or fit) its one chain: an :class:`Album`.

    Args:
        sources: the tracks in album order: paths, or ``(audio, sample_rate)`` pairs
            (``audio``: (channels, samples) float).
        preset, platform, target_lufs, ceiling_dbtp, reference, fit_target: as for
            :func:`roomtone.mastering.master`; the target is the loudest track's (a reference's
            loudness with ``reference`` and neither ``platform`` nor ``target_lufs``).
        keep_going: a track that cannot be read, is silent or too short is recorded (its
            :meth:`Album.placement` raises its error) and the album is placed from the others;
            else the first such error is raised.
        reading: an :class:`~roomtone.audio.AudioReading` already decoding the first source.
        excerpt_s: each track's excerpt in a fit's analysis signal (s).

    Raises: :class:`~roomtone.errors.PresetError` for a bad preset, platform, target or reference;
    :class:`~roomtone.errors.InvalidAudioError` for a bad track (unless ``keep_going``) or when
    no track can be used; :class:`~roomtone.errors.TargetUnreachableError` when the loudest track
    needs more than 40 dB of gain (so would every track: the album keeps their distances).
    """
    say = progress or (lambda message: None)
    sources = list(sources)
    if not sources:
        raise InvalidAudioError("an album needs at least one track")
    auto = api.is_auto(preset)
    if auto:  # the assistant proposes one chain from the album's analysis signal (as a fit sees it)
        match = api.match_target(preset, reference, fit_target)
        preset = api.base_preset(preset)
    else:
        preset = load_preset(preset)
        match = api.match_target(preset, reference, fit_target)
    api.resolve_goal(platform, 2, target_lufs, ceiling_dbtp, match)  # a bad platform or target: before any reading
    whole = len(sources) == 1  # a one-track album fits on the whole track, as its own master does
    tracks, excerpts = _read_tracks(sources, reading, say, keep_going,
                                    excerpt_s=(None if match is None and not auto else
                                               float("inf") if whole else excerpt_s))
    usable = [t for t in tracks if t.error is None]
    if not usable:
        raise InvalidAudioError("no track of the album could be used: " + "; ".join(str(t.error) for t in tracks))
    offsets = placed_offsets(usable)
    loudest = next(t for t in usable if offsets[t.index][1] == 0.0)  # the densest: on the target
    goal = api.resolve_goal(platform, loudest.channels, target_lufs, ceiling_dbtp, match)
    if goal.integrated_lufs - loudest.input_lufs > api.MAX_TOTAL_GAIN_DB:
        raise TargetUnreachableError(
            f"the album's densest track ({os.path.basename(loudest.name)}) reads {loudest.input_lufs:.1f} LUFS; "
            f"reaching {goal.integrated_lufs:g} LUFS needs more than {api.MAX_TOTAL_GAIN_DB:g} dB of gain, which "
            f"would mostly raise the noise floor")
    trims = {t.index: float(np.clip(api.WORKING_LEVEL_LUFS + offsets[t.index][1] - t.input_lufs, -60.0, 60.0))
             for t in usable}
    fit = proposal = None
    if match is not None or auto:
        album_signal = _album_signal(tracks, excerpts, loudest, trims, whole, excerpt_s)
        excerpts.clear()
        preset, match, proposal, fit = _album_chain(album_signal, preset, match, auto, goal, say)
        del album_signal
    excerpts.clear()
    return Album(tracks=tracks, goal=goal, loudest=loudest.index, trims=trims, offsets=offsets, preset=preset,
                 fit=fit, match=match, assistant=proposal)


def _read_tracks(sources, reading, say, keep_going, excerpt_s=None):
    """Every source read (the next path decoding while one is metered) and metered: ``(tracks,
    excerpts)``, an :class:`AlbumTrack` per source and, unless ``excerpt_s`` is None, each usable
    track's excerpt for the analysis signal (``{index: audio}``; ``inf``: the whole track). A track
    that cannot be used carries its error with ``keep_going``; else the error is raised."""
    tracks, excerpts = [], {}
    for index, source in enumerate(sources):
        name = _name(source, index)
        ahead = None
        if index + 1 < len(sources) and isinstance(sources[index + 1], (str, os.PathLike)):
            ahead = read_audio_async(sources[index + 1])
        say(f"analysing {os.path.basename(name)} ({index + 1} of {len(sources)})")
        track = AlbumTrack(index=index, name=name, source=source)
        try:
            if isinstance(source, (str, os.PathLike)):
                audio, rate, _ = reading.take() if reading is not None else read_audio(source)
            else:
                audio, rate = validate_audio(source[0], source[1], name=name), int(source[1])
            track.input_lufs, track.blocks, track.loud_lufs = _track_loudness(audio, rate, name)
            track.channels, track.sample_rate, track.duration_s = int(audio.shape[0]), int(rate), audio.shape[1] / rate
            if excerpt_s is not None:
                excerpts[index] = audio if excerpt_s == float("inf") else _excerpt(audio, rate, excerpt_s)
            del audio
        except InvalidAudioError as exc:
            if not keep_going:
                raise
            track.error = exc
        tracks.append(track)
        reading = ahead
    return tracks, excerpts


def _album_chain(album_signal, preset, match, auto, goal, say):
    """The album's one chain from its analysis signal (:func:`_album_signal`'s tuple): the
    assistant's proposal (``auto``) and the fit to ``match``. Returns ``(preset, match, proposal,
    fit)`` (the match becomes the proposal's curve for :data:`~roomtone.mastering.api.ASSISTANT_TARGET`)."""
    signal, rate, segments, info = album_signal
    fit = proposal = None
    if auto:
        say("proposing the album's chain")
        await_imports()
        from roomtone.mastering import assistant  # JAX: only here

        preset, proposal, predicted = assistant.propose(signal, rate, preset, with_tonal=match is api.ASSISTANT_TARGET)
        proposal["album_analysis"] = info
        if match is api.ASSISTANT_TARGET:
            from roomtone.mastering.targets import MatchTarget

            match = MatchTarget(tonal_db=predicted, sources=("assistant",))
    if match is not None:
        say("fitting the album's chain")
        await_imports()
        from roomtone.mastering.fit import fit_chain  # JAX: only here

        preset, fit = fit_chain(signal, rate, preset, match, segments=segments,
                                delivery=(goal.integrated_lufs, goal.ceiling_dbtp),
                                **({"rounds": 1, "steps": 150} if proposal else {}))
        fit["album_analysis"] = info
    return preset, match, proposal, fit


def _fmt2(value, missing="-inf"):
    """Two decimals (``missing`` for None), and no "-0.00" for a reading a hair under zero."""
    text = missing if value is None else f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def summary_lines(summary, explain=False):
    """The album table of :meth:`Album.summary`'s ``summary`` as text lines: one row per track
    (its input and output loudness, each relative to the album's target, true peak, limiting),
    then the album's loudness as one programme; with ``explain``, the shared chain's decisions."""
    lines = []
    target, loudest = summary["target"], summary["loudest"]
    lines.append(f"album: {summary['tracks']} track{'s' if summary['tracks'] != 1 else ''}, placed by their loud "
                 f"passages: the densest ({os.path.basename(loudest['input'])}, {loudest['input_lufs']:.1f} LUFS in) on "
                 f"{target['integrated_lufs']:.1f} LUFS ({target['platform'] or 'reference loudness'}), every other at "
                 f"most {summary['max_offset_lu']:g} LU under it; true peak <= {target['true_peak_dbtp']:.1f} dBTP")
    lines.append(f"{'track':<28}{'in LUFS':>9}{'place LU':>9}{'out LUFS':>10}{'rel LU':>8}{'TP dBTP':>9}{'limit LU':>10}"
                 f"  result")
    for row in summary["rows"]:
        name = os.path.basename(row["input"])[:27]
        if row["error"] is not None:
            lines.append(f"{name:<28}{_fmt2(row['input_lufs'], ''):>9}{_fmt2(row['placed_offset_lu'], ''):>9}"
                         f"{'':>10}{'':>8}{'':>9}{'':>10}  failed: {row['error']}")
            continue
        result = f"-> {row['output']}" if row["output"] else "done"
        if not row["relation_kept"]:
            result += f"  ({row['shortfall_lu']:.2f} LU under its place: limiting budget)"
        lines.append(f"{name:<28}{_fmt2(row['input_lufs']):>9}{_fmt2(row['placed_offset_lu']):>9}"
                     f"{_fmt2(row['output_lufs']):>10}{_fmt2(row['output_offset_lu']):>8}"
                     f"{_fmt2(row['true_peak_dbtp']):>9}{_fmt2(row['limiting_lu']):>10}  {result}")
    out = summary["output_album_lufs"]
    lines.append(f"album as one programme: {summary['input_album_lufs']:.1f} LUFS in, "
                 + (f"{out:.1f} LUFS out" + ("" if summary["output_album_tracks"] == summary["tracks"] else
                                             f" (over the {summary['output_album_tracks']} tracks delivered)")
                    if out is not None else "nothing delivered"))
    line = (f"shared chain: {summary['preset']['name']}, each track trimmed to its place (input loudness spread "
            f"{summary['input_spread_lu']:.1f} LU, placed {summary['placed_spread_lu']:.1f} LU)")
    if summary["fit"]:
        line += f"; fitted to {', '.join(summary['fit']['target']['sources'])} on {len(summary['fit']['album_analysis']['tracks'])} tracks"
    lines.append(line)
    if explain:
        for text in summary["chain"]:
            lines.append(f"  - {text}")
    for note in summary["notes"]:
        lines.append(f"note: {note}")
    if not summary["relations_kept"]:
        lines.append("not every track kept its place: see the rows above (each report's album.note)")
    lines.append(f"{summary['mastered']} of {summary['tracks']} mastered"
                 + (f", {summary['failed']} failed" if summary["failed"] else ""))
    return lines


def placed_offsets(tracks):
    """Each usable track's place (module docstring): ``{index: (musical offset, placed offset)}``
    in LU, the musical one ``(I_i - L95_i) - max_j (I_j - L95_j)`` (at or under 0), the placed one
    that clipped to ``[-MAX_OFFSET_LU, 0]``; the densest track's are 0."""
    density = {t.index: t.input_lufs - t.loud_lufs for t in tracks}
    top = max(density.values())
    return {i: (d - top, float(np.clip(d - top, -MAX_OFFSET_LU, 0.0))) for i, d in density.items()}


def _album_signal(tracks, excerpts, loudest, trims, whole, excerpt_s):
    """The album's analysis signal (module docstring): one excerpt per track of the album's most
    common layout, each at its trim (``trims``: {index: dB}), end to end. Returns ``(signal (channels, samples), rate,
    segments (None for a one-track album: the whole track), album_analysis report)``."""
    from roomtone.resample import resample

    usable = [t for t in tracks if t.error is None]
    layouts = [t.channels for t in usable]
    channels = max(sorted(set(layouts)), key=lambda c: (layouts.count(c), c == loudest.channels))
    included = [t for t in usable if t.channels == channels]
    rates = [t.sample_rate for t in included]
    rate = loudest.sample_rate if loudest in included else max(sorted(set(rates)), key=rates.count)
    pieces, segments, at = [], [], 0
    for track in included:
        piece = excerpts[track.index]
        if track.sample_rate != rate:
            piece = resample(piece, track.sample_rate, rate)
        piece = np.ascontiguousarray(piece * np.float32(10.0 ** (trims[track.index] / 20.0)), dtype=np.float32)
        pieces.append(piece)
        segments.append((at, at + piece.shape[1]))
        at += piece.shape[1]
    signal = pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)
    del pieces
    info = {
        "tracks": [t.name for t in included],
        "left_out": [{"track": t.name, "why": f"{t.channels} channels, the album's analysis is {channels}"}
                     for t in usable if t.channels != channels],
        "excerpt_s": None if whole else excerpt_s, "sample_rate": rate,
        "weighting": "one equal-length excerpt per track at its place: each track counts by its power there",
    }
    return signal, rate, None if whole else segments, info


@dataclasses.dataclass
class Album:
    """An analysed album (:func:`analyse_album`): its tracks, the index of the one on the target (the
    densest), the album's target, each usable track's input trim (dB) and offsets
    (:func:`placed_offsets`), and the one chain."""

    tracks: list
    goal: Target
    loudest: int
    trims: dict
    offsets: dict
    preset: object
    fit: dict | None = None
    match: object = None
    assistant: dict | None = None  # what --preset auto proposed for the album
    output_blocks: dict = dataclasses.field(default_factory=dict, repr=False)

    def placement(self, index):
        """The :class:`TrackPlacement` of track ``index`` (its analysis error raised if it had one)."""
        track = self.tracks[index]
        if track.error is not None:
            raise track.error
        musical, offset = self.offsets[index]
        anchor = index == self.loudest
        if anchor:
            note = "album: the densest track, on the target"
        else:
            note = (f"album: {-offset:.2f} LU under the target, its loud passages level with "
                    f"{os.path.basename(self.tracks[self.loudest].name)}'s"
                    + (f" (its own dynamics ask {-musical:.1f} LU; held at {MAX_OFFSET_LU:g})" if offset > musical else ""))
        if self.goal.note:
            note = f"{note}; {self.goal.note}"
        # a place other than the target is a level the album asks, not the user: approached within the
        # limiting budget where it cannot be kept (the track on the target keeps the album goal's rule)
        goal = dataclasses.replace(self.goal, integrated_lufs=self.goal.integrated_lufs + offset, note=note,
                                   flexible=self.goal.flexible or not anchor)

        def keep(blocks):
            self.output_blocks[index] = blocks

        return TrackPlacement(index=index, name=track.name, goal=goal, trim_db=self.trims[index], preset=self.preset,
                              fit=self.fit, match=self.match, anchor=anchor, input_lufs=track.input_lufs,
                              offset_lu=offset, album_target_lufs=self.goal.integrated_lufs,
                              loud_lufs=track.loud_lufs, musical_offset_lu=musical, on_blocks=keep)

    def index_of(self, source):
        """The index of the track read from ``source`` (a path as given)."""
        for track in self.tracks:
            if isinstance(track.source, (str, os.PathLike)) and os.fspath(track.source) == os.fspath(source):
                return track.index
        raise KeyError(f"{source} is not a track of this album")

    def master(self, index, audio, sample_rate, **options):
        """:func:`roomtone.mastering.master` of track ``index`` at its place: ``(audio_out, report)``.
        ``options``: ``bit_depth``, ``output_sample_rate``, ``explain``, ``analysis``, ``progress``."""
        return api.master(audio, sample_rate, placement=self.placement(index), **options)

    def master_file(self, source, output_path, **options):
        """:func:`roomtone.mastering.master_file` of the track read from ``source`` at its place
        (the file is read again); ``options`` as there, less the preset and target ones."""
        return api.master_file(source, output_path, placement=self.placement(self.index_of(source)), **options)

    def summary(self, outcomes):
        """The album's report: ``outcomes`` holds, in track order, each track's master report, or
        its error (an exception or message) where it failed. JSON-ready: the target, the loudest
        track, the shared trim and chain, the album's loudness as one programme (in, and out over
        the tracks delivered; for lossy files, of the render the encoder was given), and one row
        per track (a lossy file's loudness and true peak as decoded)."""
        rows, delivered = [], []
        for track, outcome in zip(self.tracks, outcomes):
            ok = track.error is None
            row = {"index": track.index, "input": track.name,
                   "input_lufs": round(track.input_lufs, 3) if ok else None,
                   "input_offset_lu": _round(track.input_lufs - self.goal.integrated_lufs) if ok else None,
                   "placed_offset_lu": _round(self.offsets[track.index][1]) if ok else None,
                   "trim_db": round(self.trims[track.index], 3) if ok else None}
            if isinstance(outcome, dict):  # a lossy file: its readings as decoded
                album, after = outcome["album"], outcome.get("after_encoding") or outcome["after"]
                limiter = next(s for s in outcome["stages"] if s["stage"] == "limiter")
                gains = {s["stage"]: s["gain_db"] for s in outcome["stages"]}
                row.update(output=outcome.get("output"), placed_lufs=album["placed_lufs"],
                           output_lufs=after["integrated_lufs"], output_offset_lu=album["output_offset_lu"],
                           true_peak_dbtp=after["true_peak_dbtp"], limiting_lu=round(-limiter["gain_db"], 3),
                           loudness_gain_db=gains.get("loudness_gain"), relation_kept=album["relation_kept"],
                           shortfall_lu=album["shortfall_lu"], note=album["note"], error=None)
                if track.index in self.output_blocks:
                    delivered.append(self.output_blocks[track.index])
            else:
                row.update(output=None, error=str(track.error if track.error is not None else outcome))
            rows.append(row)
        done = [r for r in rows if r["error"] is None]
        inputs = [t.blocks for t in self.tracks if t.error is None]
        loudest = self.tracks[self.loudest]
        levels = [t.input_lufs for t in self.tracks if t.error is None]
        placed = [o for _, o in self.offsets.values()]
        spread_in, spread_placed = max(levels) - min(levels), max(placed) - min(placed)
        notes = []
        if spread_in > spread_placed + WIDE_SPREAD_LU:
            notes.append(f"the inputs' loudness spreads {spread_in:.1f} LU (mix levels, not music); placed by their "
                         f"loud passages the album spreads {spread_placed:.1f} LU")
        held = [os.path.basename(t.name) for t in self.tracks
                if t.error is None and self.offsets[t.index][1] > self.offsets[t.index][0]]
        if held:
            notes.append(f"held at {MAX_OFFSET_LU:g} LU under the target (their own dynamics ask more): {', '.join(held)}")
        return {
            "tracks": len(rows), "mastered": len(done), "failed": len(rows) - len(done),
            "placement": PLACEMENT,
            "target": {"integrated_lufs": self.goal.integrated_lufs, "true_peak_dbtp": self.goal.ceiling_dbtp,
                       "platform": self.goal.platform, "note": self.goal.note},
            "loudest": {"index": loudest.index, "input": loudest.name, "input_lufs": round(loudest.input_lufs, 3)},
            "input_spread_lu": round(spread_in, 3), "placed_spread_lu": round(spread_placed, 3),
            "max_offset_lu": MAX_OFFSET_LU, "notes": notes,
            "preset": {**self.preset.to_dict(), "source": self.preset.source or None},
            "chain": chain_lines(self.preset),
            "fit": self.fit,
            "assistant": self.assistant,
            "input_album_lufs": round(integrated_from_blocks(np.concatenate(inputs)), 3),
            "output_album_lufs": round(integrated_from_blocks(np.concatenate(delivered)), 3) if delivered else None,
            "output_album_tracks": len(delivered),
            "relations_kept": all(r["relation_kept"] for r in done),
            "rows": rows,
        }


def master_album(tracks, *, preset="balanced", platform=None, target_lufs=None, ceiling_dbtp=None, bit_depth="32f",
                 output_sample_rate=None, reference=None, fit_target=False, explain=False, analysis=False,
                 progress=None):
    """Master ``tracks`` (a list of ``(audio, sample_rate)``, ``audio`` (channels, samples)) as one
    album (module docstring). Options as :func:`roomtone.mastering.master`.

    Returns ``(outputs, report)``: the mastered arrays in track order, and ``{"album": summary,
    "tracks": [each track's master report]}`` (:meth:`Album.summary`; every track report has an
    ``album`` section: its place, as delivered). Raises the first error (arrays: nothing to skip).
    """
    album = analyse_album(tracks, preset=preset, platform=platform, target_lufs=target_lufs,
                          ceiling_dbtp=ceiling_dbtp, reference=reference, fit_target=fit_target, progress=progress)
    outputs, reports = [], []
    for index, (audio, sample_rate) in enumerate(tracks):
        out, report = album.master(index, audio, sample_rate, bit_depth=bit_depth,
                                   output_sample_rate=output_sample_rate, explain=explain, analysis=analysis,
                                   progress=progress)
        outputs.append(out)
        reports.append(report)
    return outputs, {"album": album.summary(reports), "tracks": reports}
