"""Album mode: one shared chain for a set of tracks, the loudest track on the target, and every
other track at its loudness distance from it.

How an album is placed, and why:

- **The loudest track lands on the target; every other track keeps its distance to it.** Track
  ``i`` aims at ``target + (L_i - L_loudest)``, ``L`` the input's integrated loudness (BS.1770-4),
  so the loudness differences between the tracks (LU) are those of the input: a quiet ballad stays
  as far under the single as it was mixed, and no track is pushed above the target. The platforms
  normalise an album with one gain for all its tracks (Spotify: "we normalize an entire album at
  the same time, so gain compensation doesn't change between tracks"); that gain has been
  measured to put the album's *loudest track* at -14 LUFS, not the album as one programme. With
  the loudest track on the target, album playback applies no gain, and playlist playback, which
  normalises each track alone, turns no track down. (The album's integrated loudness as one
  programme on the target would push its loudest tracks above it: more limiting, and turned down
  in playlists. It is reported, in and out, not used.)
- **One input trim for every track**: the one that brings the loudest track to the chain's working
  level (-18 LUFS). The shared chain's thresholds are set at that level, so it meets every track at
  its place in the album, as a chain with fixed settings would if the album ran through it in one
  pass: a quiet track is compressed less than the loud single, not squashed to its density.
- **One chain**: the preset's, or with ``reference`` / ``fit_target`` fitted once to the album as a
  whole (:func:`roomtone.mastering.fit.fit_chain`). The fit's analysis signal is one excerpt of
  every track (up to :data:`EXCERPT_S`, centred), at the album's trim, joined end to end; equal
  lengths, so each track's spectrum counts by its power: the album's loudness-weighted average, as
  the album's integrated loudness weighs its tracks. The compressor's tonal effect is measured on
  an excerpt of every track. With ``preset="auto"`` the assistant
  (:func:`roomtone.mastering.assistant.propose`) proposes the one chain from that same signal
  (and ``fit_target`` refines towards its proposal), so the album still shares one chain. Tracks of another channel layout than most are left out of the
  analysis (and named); tracks at another sample rate are resampled for the analysis only.
- **Then each track's own loudness stage** (one static gain, the true-peak limiter): the tracks'
  gains differ only by what the chain did to each one's loudness. No gain riding.
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
from roomtone.meter import ABSOLUTE_GATE_LUFS, MOMENTARY_S, block_powers, integrated_from_blocks
from roomtone.platforms import Target

EXCERPT_S = 20.0  # each track's excerpt in the fit's analysis signal
PLACEMENT = "loudest"  # what lands on the target (see the module docstring)


@dataclasses.dataclass(frozen=True)
class TrackPlacement:
    """One album track's place: what :func:`roomtone.mastering.master` needs to master it as part
    of the album (``master(audio, sr, placement=...)``).

    ``goal``: its own target (``integrated_lufs`` = the album's target plus ``offset_lu``) and the
    ceiling; ``trim_db``: the album's input trim (dB); ``preset``: the album's chain (fitted or
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
    on_blocks: object = dataclasses.field(default=None, compare=False, repr=False)

    def track_report(self, *, output_lufs, aim_lufs, needed_limiting_lu, max_limiting_lu):
        """``report["album"]`` of this track's master (JSON-ready)."""
        shortfall = self.goal.integrated_lufs - aim_lufs
        note = None
        if shortfall > 0:
            note = (f"{shortfall:.2f} LU under its place: keeping it needs at least {needed_limiting_lu:.1f} LU of "
                    f"limiting, the preset allows {max_limiting_lu:g} LU")
        return {"index": self.index, "track": self.name, "loudest": self.anchor, "placement": PLACEMENT,
                "input_lufs": round(self.input_lufs, 3), "input_offset_lu": _round(self.offset_lu),
                "album_target_lufs": self.album_target_lufs, "placed_lufs": round(self.goal.integrated_lufs, 3),
                "output_lufs": round(output_lufs, 3), "output_offset_lu": _round(output_lufs - self.album_target_lufs),
                "shared_trim_db": round(self.trim_db, 3), "relation_kept": shortfall <= 0,
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


def _track_loudness(audio, sample_rate, name):
    """``(integrated LUFS, gating blocks)`` of a validated track; the refusals of a master."""
    if audio.shape[1] < MOMENTARY_S * sample_rate:
        raise InvalidAudioError(f"{name}: {audio.shape[1] / sample_rate * 1000:.0f} ms long; integrated loudness "
                                f"needs at least one {MOMENTARY_S * 1000:.0f} ms gating block")
    blocks = block_powers(audio, sample_rate)[0]
    lufs = integrated_from_blocks(blocks)
    if not np.isfinite(lufs):
        raise InvalidAudioError(f"{name}: silent (no 400 ms block above the {ABSOLUTE_GATE_LUFS:g} LUFS gate): "
                                f"nothing to master")
    return lufs, blocks


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
    api.preload_for(preset, reference, fit_target)  # JAX's import beside reading the tracks
    if auto:  # the assistant proposes one chain from the album's analysis signal (as a fit sees it)
        match = api.match_target(preset, reference, fit_target)
        preset = api.base_preset(preset)
    else:
        preset = load_preset(preset)
        match = api.match_target(preset, reference, fit_target)
    api.resolve_goal(platform, 2, target_lufs, ceiling_dbtp, match)  # a bad platform or target: before any reading
    tracks, excerpts = [], {}
    whole = len(sources) == 1  # a one-track album fits on the whole track, as its own master does
    for index, source in enumerate(sources):
        name = _name(source, index)
        is_path = isinstance(source, (str, os.PathLike))
        ahead = None
        if index + 1 < len(sources) and isinstance(sources[index + 1], (str, os.PathLike)):
            ahead = read_audio_async(sources[index + 1])
        say(f"analysing {os.path.basename(name)} ({index + 1} of {len(sources)})")
        track = AlbumTrack(index=index, name=name, source=source)
        try:
            if is_path:
                audio, rate, _ = reading.take() if reading is not None else read_audio(source)
            else:
                audio, rate = validate_audio(source[0], source[1], name=name), int(source[1])
            track.input_lufs, track.blocks = _track_loudness(audio, rate, name)
            track.channels, track.sample_rate, track.duration_s = int(audio.shape[0]), int(rate), audio.shape[1] / rate
            if match is not None or auto:
                excerpts[index] = audio if whole else _excerpt(audio, rate, excerpt_s)
            del audio
        except InvalidAudioError as exc:
            if not keep_going:
                raise
            track.error = exc
        tracks.append(track)
        reading = ahead
    usable = [t for t in tracks if t.error is None]
    if not usable:
        raise InvalidAudioError("no track of the album could be used: " + "; ".join(str(t.error) for t in tracks))
    loudest = max(usable, key=lambda t: t.input_lufs)
    goal = api.resolve_goal(platform, loudest.channels, target_lufs, ceiling_dbtp, match)
    if goal.integrated_lufs - loudest.input_lufs > api.MAX_TOTAL_GAIN_DB:
        raise TargetUnreachableError(
            f"the album's loudest track reads {loudest.input_lufs:.1f} LUFS; reaching {goal.integrated_lufs:g} LUFS "
            f"needs more than {api.MAX_TOTAL_GAIN_DB:g} dB of gain (as does every track at its distance), which "
            f"would mostly raise the noise floor")
    trim_db = float(np.clip(api.WORKING_LEVEL_LUFS - loudest.input_lufs, -60.0, 60.0))
    fit = proposal = None
    if match is not None or auto:
        signal, rate, segments, info = _album_signal(tracks, excerpts, loudest, trim_db, whole, excerpt_s)
        excerpts.clear()
        if auto:
            say("proposing the album's chain")
            api.await_preload()
            from roomtone.mastering import assistant  # JAX: only here

            preset, proposal, predicted = assistant.propose(signal, rate, preset,
                                                            with_tonal=match is api.ASSISTANT_TARGET)
            proposal["album_analysis"] = info
            if match is api.ASSISTANT_TARGET:
                from roomtone.mastering.targets import MatchTarget

                match = MatchTarget(tonal_db=predicted, sources=("assistant",))
        if match is not None:
            say("fitting the album's chain")
            api.await_preload()
            from roomtone.mastering.fit import fit_chain  # JAX: only here

            preset, fit = fit_chain(signal, rate, preset, match, segments=segments,
                                    delivery=(goal.integrated_lufs, goal.ceiling_dbtp),
                                    **({"rounds": 1, "steps": 150} if proposal else {}))
            fit["album_analysis"] = info
        del signal
    excerpts.clear()
    return Album(tracks=tracks, goal=goal, loudest=loudest.index, trim_db=trim_db, preset=preset, fit=fit,
                 match=match, assistant=proposal)


def _album_signal(tracks, excerpts, loudest, trim_db, whole, excerpt_s):
    """The album's analysis signal (module docstring): one excerpt per track of the album's most
    common layout at the album's trim, end to end. Returns ``(signal (channels, samples), rate,
    segments (None for a one-track album: the whole track), album_analysis report)``."""
    from roomtone.resample import resample

    usable = [t for t in tracks if t.error is None]
    layouts = [t.channels for t in usable]
    channels = max(sorted(set(layouts)), key=lambda c: (layouts.count(c), c == loudest.channels))
    included = [t for t in usable if t.channels == channels]
    rates = [t.sample_rate for t in included]
    rate = loudest.sample_rate if loudest in included else max(sorted(set(rates)), key=rates.count)
    gain = np.float32(10.0 ** (trim_db / 20.0))
    pieces, segments, at = [], [], 0
    for track in included:
        piece = excerpts[track.index]
        if track.sample_rate != rate:
            piece = resample(piece, track.sample_rate, rate)
        piece = np.ascontiguousarray(piece * gain, dtype=np.float32)
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
        "weighting": "one equal-length excerpt per track at the album's trim: each track counts by its power",
    }
    return signal, rate, None if whole else segments, info


@dataclasses.dataclass
class Album:
    """An analysed album (:func:`analyse_album`): its tracks, the loudest one's index, the
    album's target (the loudest track's), the one input trim (dB) and the one chain."""

    tracks: list
    goal: Target
    loudest: int
    trim_db: float
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
        offset = track.input_lufs - self.tracks[self.loudest].input_lufs
        anchor = index == self.loudest
        if anchor:
            note = "album: the loudest track, on the target"
        else:
            note = (f"album: {-offset:.2f} LU under the loudest track ({os.path.basename(self.tracks[self.loudest].name)}), "
                    f"as in the input")
        if self.goal.note:
            note = f"{note}; {self.goal.note}"
        goal = dataclasses.replace(self.goal, integrated_lufs=self.goal.integrated_lufs + offset, note=note)

        def keep(blocks):
            self.output_blocks[index] = blocks

        return TrackPlacement(index=index, name=track.name, goal=goal, trim_db=self.trim_db, preset=self.preset,
                              fit=self.fit, match=self.match, anchor=anchor, input_lufs=track.input_lufs,
                              offset_lu=offset, album_target_lufs=self.goal.integrated_lufs, on_blocks=keep)

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
            row = {"index": track.index, "input": track.name,
                   "input_lufs": None if track.error is not None else round(track.input_lufs, 3),
                   "input_offset_lu": None if track.error is not None else
                   _round(track.input_lufs - self.tracks[self.loudest].input_lufs)}
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
        return {
            "tracks": len(rows), "mastered": len(done), "failed": len(rows) - len(done),
            "placement": PLACEMENT,
            "target": {"integrated_lufs": self.goal.integrated_lufs, "true_peak_dbtp": self.goal.ceiling_dbtp,
                       "platform": self.goal.platform, "note": self.goal.note},
            "loudest": {"index": loudest.index, "input": loudest.name, "input_lufs": round(loudest.input_lufs, 3)},
            "shared_trim_db": round(self.trim_db, 3),
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
