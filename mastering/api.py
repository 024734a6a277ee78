"""The master job: chain, one static gain, a true-peak limiter; every output at its target.

Signal path (all offline, whole file):

1. input trim: one static gain bringing the input to the working level (-18 LUFS), so the chain's
   thresholds mean the same on a quiet acoustic take and a loud club master;
2. the preset's chain (EQ, multiband compressor, stereo width, saturation);
3. the loudness stage: one static gain, solved so that the limited output reads the target
   integrated loudness (BS.1770-4), then the look-ahead true-peak limiter at the ceiling;
4. for 16/24-bit output, TPDF dither; the result is re-metered and, should the true peak of the
   quantized signal exceed the ceiling, the limiter is re-run a hair lower.

A master delivered at another rate is resampled between 2 and 3 (the loudness stage runs at the
delivery rate). A lossy file (MP3, OGG Vorbis, Opus) is rendered in float, encoded, decoded and
metered again; the loudness stage re-runs aiming lower until the decoded file is under the ceiling.

The loudness change comes only from these static gains, the chain and the limiter: no gain riding.
Metering runs in a second thread beside the chain (the numba kernels release the GIL).

An album track (:mod:`roomtone.mastering.album`) runs the same path with the album's trim in step 1,
the album's chain in step 2 and its place in the album as the target of step 3.
"""

import dataclasses
import platform as _platform
import time

import numpy as np

import roomtone
from roomtone.audio import (BIT_DEPTHS, PendingWrite, check_output_channels, check_output_path, delivery_sample_rate,
                            lossy_codec, output_format, read_audio_async, too_short, validate_audio)
from roomtone.concurrency import side_executor
from roomtone.errors import InvalidAudioError, OutputError, PresetError, TargetUnreachableError
from roomtone.loudness import ACCEPT_LU, in_place_pays, reach_loudness  # ACCEPT_LU: a decoded lossy file is held to it too
from roomtone.mastering.presets import load_preset
from roomtone.meter import (ABSOLUTE_GATE_LUFS, MOMENTARY_S, SHORT_TERM_S, block_powers, integrated_loudness,
                            loudness_stats, measure, to_lufs, true_peak)
from roomtone.platforms import resolve_target
from roomtone.resample import check_output_sample_rate, resample
from roomtone.startup import await_imports
from roomtone.plugins import Gain, TruePeakLimiter
from roomtone.processor import Processor

WORKING_LEVEL_LUFS = -18.0
MAX_TOTAL_GAIN_DB = 40.0  # more than this would mostly raise the noise floor
ANALYSIS_HOP_S = 0.5  # short-term loudness readings of ``report["analysis"]`` (3 s window), every this many s
_BLOCK_HOP_S = 0.1  # the hop of :func:`roomtone.meter.block_powers`


def _versions():
    import numba
    import soundfile

    return {"roomtone": roomtone.__version__, "python": _platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "soundfile": soundfile.__version__,
            "libsndfile": soundfile.__libsndfile_version__}


def master(audio, sample_rate, *, preset="balanced", platform=None, target_lufs=None, ceiling_dbtp=None,
           bit_depth="32f", output_sample_rate=None, reference=None, fit_target=False, explain=False, analysis=False,
           placement=None, progress=None):
    """Master ``audio`` to a platform's loudness and true-peak ceiling.

    Args:
        audio: (channels, samples) float array, any channel count (mono, stereo, 5.1...).
        sample_rate: Hz.
        preset: a shipped preset name, a path to a preset TOML file, or a :class:`Preset`.
        platform: a platform name from ``presets/platforms.toml`` (``spotify``, ``apple``...);
            None: ``spotify``, or with ``reference`` the reference's loudness.
        target_lufs, ceiling_dbtp: override the platform's integrated loudness target (LUFS) and
            true-peak ceiling (dBTP).
        reference: match a reference track: a path or an ``(audio, sample_rate)`` pair; or a list
            of those, any of them as a ``(source, weight)`` pair (their features blended by weight:
            ``[("a.flac", 0.7), ("b.flac", 0.3)]``); or a
            :class:`~roomtone.mastering.targets.MatchTarget`. The preset's chain is fitted to
            the reference's tonal balance and width (:mod:`roomtone.mastering.fit`, JAX) and
            rendered by the numba chain; the reference's integrated loudness becomes the target
            unless ``platform`` or ``target_lufs`` is given.
        fit_target: fit the chain to the preset's own ``[target]`` table instead.
        explain: add ``report["explain"]``, the decisions in plain words with numbers (the
            multiband compressor's average reduction costs one more band split of the signal).
        analysis: add ``report["analysis"]``, what ``--plot`` draws (:mod:`roomtone.mastering.plot`):
            the input, target and output 1/3-octave curves (``bands_hz``; dB re each signal's
            integrated loudness; the target is the fit's, else the preset's ``[target]`` table,
            else None) and the input's and output's short-term loudness (LUFS, 3 s window, one
            reading every 0.5 s, reading ``k`` ending at ``3 + 0.5 k`` s). Costs one loudness pass
            and one spectrum of each.
        placement: an album track's place, from :func:`roomtone.mastering.album.analyse_album`
            (:class:`~roomtone.mastering.album.TrackPlacement`): its target, the album's shared
            input trim and shared (fitted) chain; ``preset``, ``platform``, ``target_lufs``,
            ``ceiling_dbtp``, ``reference`` and ``fit_target`` are then not given. Adds
            ``report["album"]``.
        bit_depth: ``"16"`` or ``"24"`` to quantize (with TPDF dither) here, so the returned samples
            are exactly what a file of that depth holds and meet the target; ``"32f"`` for float.
        output_sample_rate: None keeps ``sample_rate``; else one of 44100, 48000, 88200, 96000 Hz
            (:data:`roomtone.resample.OUTPUT_SAMPLE_RATES`): the chain runs at the input rate, its
            output is resampled (soxr VHQ), and the loudness stage runs at the new rate, so the
            output is metered, limited and on target at the rate it is delivered at.
        progress: optional ``callable(str)`` told of each stage.

    Returns:
        ``(audio_out, report)``: float32 (channels, samples') at the delivery rate, and a JSON-ready
        dict with versions, the preset as applied, the target, per-stage gains, before/after meter
        readings, ``sample_rate`` (delivered, Hz) and ``resampled_to`` (Hz, or None).

    Raises:
        InvalidAudioError: empty, non-finite, shorter than one 400 ms gating block, or silent input.
        PresetError: unknown preset or platform, bad preset file, target or ceiling out of range.
        OutputError: ``bit_depth`` not one of 16, 24, 32f; ``output_sample_rate`` not an allowed rate.
        TargetUnreachableError: the target needs more limiting than the preset allows, more than
            40 dB of gain, or the loudness/true-peak search does not settle.
    """
    job = _prepare(audio, sample_rate, preset=preset, platform=platform, target_lufs=target_lufs,
                   ceiling_dbtp=ceiling_dbtp, bit_depth=bit_depth, output_sample_rate=output_sample_rate,
                   reference=reference, fit_target=fit_target, explain=explain, analysis=analysis,
                   placement=placement, progress=progress)
    return _deliver(job, in_place=job.owns_signal and in_place_pays(job.signal))


@dataclasses.dataclass
class _Job:
    """One master, filled in by the stages of :func:`_prepare` (each stage reads what the ones
    before it set) and then handed to :func:`_deliver`, which runs the loudness stage on it, again
    if a lossy encoder needs the limiter to aim lower.

    Once prepared: ``signal``, the chain's output, float32 (channels, samples) at ``sample_rate``
    (delivery, Hz; ``input_rate``: the input's); ``level_lufs``: its integrated loudness.
    ``stages``: the report's per-stage gains so far. ``owns_signal``: no caller holds ``signal``
    (it is not the caller's array), so the loudness stage may write the output over it (the job is
    then spent).
    """

    started: float
    say: object  # progress(str)
    timings: dict = dataclasses.field(default_factory=dict)
    clock: float = 0.0
    signal: np.ndarray | None = None
    input_rate: int = 0
    sample_rate: int = 0
    level_lufs: float | None = None
    limiter: TruePeakLimiter | None = None
    detector: object = None
    preset: object = None
    goal: object = None
    bit_depth: str = "32f"
    bits: int | None = None
    stages: list | None = None
    before: object = None
    resampled_to: int | None = None
    owns_signal: bool = False
    fit: dict | None = None
    match: object = None
    reductions: dict | None = None
    placement: object = None
    analysis: dict | None = None  # the input's half of report["analysis"]
    aim_lufs: float | None = None  # where an album track's delivery aims, once lowered from its place
    assistant: dict | None = None  # what --preset auto proposed
    # the stages' working state
    auto: bool = False
    input_lufs: float | None = None
    trim_db: float = 0.0
    input_spectra: object = None  # Future of the trimmed input's spectra (mastering.targets.spectra)
    input_blocks: object = None  # Future of its block powers (report["analysis"])
    level_futures: list = dataclasses.field(default_factory=list)  # each chain stage's loudness (None: bypassed)
    resampled_level: object = None

    def lap(self, name):
        """Record the time since the last lap as ``timings[name]`` (None: only restart the clock)."""
        now = time.perf_counter()
        if name is not None:
            self.timings[name] = round(now - self.clock, 3)
        self.clock = now


AUTO_PRESET = "auto"
ASSISTANT_TARGET = type("AssistantTarget", (), {"__repr__": lambda self: "ASSISTANT_TARGET"})()
"""The target of ``preset="auto", fit_target=True``: the curve the assistant's proposal gives."""


def is_auto(preset):
    """Whether ``preset`` asks for the assistant (``"auto"``, any case)."""
    return isinstance(preset, str) and preset.lower() == AUTO_PRESET


FIT_STEPS = 250  # Adam steps per round of a fit (roomtone.mastering.fit.fit_chain)
FIT_STEPS_AUTO = 150  # one round after the assistant's proposal


def fit_modules(preset, match):
    """The modules a job with ``preset`` and match target ``match`` (:func:`match_target`) imports
    for its fit or proposal (JAX, Flax for the assistant); empty for a plain master. A command
    imports them in the background (:func:`roomtone.startup.import_in_background`)."""
    if match is None and not is_auto(preset):
        return ()
    return ("roomtone.mastering.fit",) + (("roomtone.mastering.assistant",) if is_auto(preset) else ())


def fit_warm_up_args(preset, match, sample_rate, channels):
    """The arguments of :func:`roomtone.mastering.fit.warm_up` for the fit a job with ``preset``,
    match target ``match`` (:func:`match_target`) and an input of ``sample_rate`` and ``channels``
    will run: ``(chain, sample_rate, channels, has_width, steps, bells)``; None when it fits nothing.
    A command traces that optimiser in the background while the input is metered
    (:func:`roomtone.startup.after_imports`). numpy only."""
    if match is None:
        return None
    from roomtone.mastering.targets import bells_for

    # as fit_chain decides it: a mono input fits no width (the job's warm-up traced a stereo-width
    # optimiser for mono inputs until the command took it over, a trace the fit never used)
    has_width = channels >= 2 and match is not ASSISTANT_TARGET and match.width_db is not None
    return (base_preset(preset).chain, int(sample_rate), int(channels), has_width,
            FIT_STEPS_AUTO if is_auto(preset) else FIT_STEPS, bells_for(match))


def base_preset(preset):
    """The :class:`Preset` a job starts from: ``"auto"`` starts from the assistant's base
    (``balanced``), named ``auto``; anything else is :func:`load_preset`'s."""
    if not is_auto(preset):
        return load_preset(preset)
    from roomtone.mastering.assistant import BASE_PRESET

    base = load_preset(BASE_PRESET)
    return dataclasses.replace(base, name=AUTO_PRESET, description="the assistant's proposal (EQ and width, "
                               f"predicted from the input) on the {BASE_PRESET} chain")


def match_target(preset, reference=None, fit_target=False):
    """The :class:`~roomtone.mastering.targets.MatchTarget` a fit aims at (None: no fit): the
    reference track(s) read and measured, the preset's ``[target]`` table, or for
    ``preset="auto"`` :data:`ASSISTANT_TARGET`. numpy only."""
    if reference is ASSISTANT_TARGET:
        return reference
    if reference is None and not fit_target:
        return None
    from roomtone.mastering import targets

    if reference is not None and fit_target:
        raise PresetError("give either a reference or fit_target (the preset's [target]), not both")
    if isinstance(reference, targets.MatchTarget):
        return reference
    if fit_target and is_auto(preset):  # the assistant's own proposal, known once the input is analysed
        return ASSISTANT_TARGET
    if reference is not None:
        return targets.reference_target(reference)
    return targets.preset_target(load_preset(preset))


def resolve_goal(platform, channels, target_lufs=None, ceiling_dbtp=None, match=None):
    """The :class:`~roomtone.platforms.Target` of a master: the platform's (default ``spotify``),
    overridden by ``target_lufs`` / ``ceiling_dbtp``; with a reference ``match`` and neither
    ``platform`` nor ``target_lufs``, the reference's integrated loudness (the assistant's own
    target, :data:`ASSISTANT_TARGET`, has no loudness)."""
    if match is ASSISTANT_TARGET:
        match = None
    asked = match is not None and match.integrated_lufs is not None and platform is None and target_lufs is None
    from_reference, why = False, None
    if asked:
        from roomtone.mastering.targets import reference_states_loudness

        from_reference, why = reference_states_loudness(match)
    goal = resolve_target(platform or "spotify", channels,
                          match.integrated_lufs if from_reference else target_lufs, ceiling_dbtp)
    if from_reference:
        goal = dataclasses.replace(goal, platform=None, flexible=True,
                                   note=f"loudness of the reference ({match.integrated_lufs:.1f} LUFS); --platform or "
                                        f"--target-lufs overrides it")
    elif asked:
        goal = dataclasses.replace(goal, note=f"{goal.platform}'s {goal.integrated_lufs:g} LUFS, not the reference's "
                                              f"loudness: {why}; --target-lufs {match.integrated_lufs:.1f} matches it")
    return goal


def _check_options(job, audio, sample_rate, *, preset, platform, target_lufs, ceiling_dbtp, bit_depth,
                   output_sample_rate, reference=None, fit_target=False, placement=None):
    """Stage 1, everything that can be refused before any work: sets ``job``'s input rate, preset,
    goal, bit depth, delivery rate and match target (with an album ``placement``, the preset and
    goal are its own). Returns the validated input."""
    job.auto = placement is None and is_auto(preset)
    audio = validate_audio(audio, sample_rate)
    job.input_rate = int(sample_rate)
    if output_sample_rate is not None:
        output_sample_rate = check_output_sample_rate(output_sample_rate)
    if placement is not None:
        if reference is not None or fit_target:
            raise PresetError("an album track's chain is the album's (fitted once for the album); give the "
                              "reference or fit_target to the album, not to the track")
        job.preset, job.goal, job.match = placement.preset, placement.goal, None
    else:
        job.match = match_target(preset, reference, fit_target)
        job.preset = base_preset(preset)
        job.goal = resolve_goal(platform, audio.shape[0], target_lufs, ceiling_dbtp, job.match)
    if str(bit_depth) not in BIT_DEPTHS:
        raise OutputError(f"bit_depth={bit_depth!r} must be one of {', '.join(BIT_DEPTHS)}")
    job.bit_depth = str(bit_depth)
    job.bits = None if job.bit_depth == "32f" else int(bit_depth)
    if audio.shape[1] < MOMENTARY_S * job.input_rate:
        raise too_short(audio.shape[1], job.input_rate, MOMENTARY_S, "integrated loudness (one gating block)")
    job.sample_rate = output_sample_rate or job.input_rate
    job.placement = placement
    return audio


def _meter_and_trim(job, audio, consume_input, pool):
    """Stage 2: the input's readings (true peak in ``pool`` beside the loudness pass), refused when
    silent or too quiet for the target; then the input trim, in place over an input given away."""
    job.say("metering input")
    rate = job.input_rate
    input_peak = pool.submit(true_peak, audio, rate)  # beside the loudness pass
    input_loudness = loudness_stats(audio, rate)
    job.input_lufs = input_lufs = input_loudness["integrated_lufs"]
    if not np.isfinite(input_lufs):
        raise InvalidAudioError(
            f"input is silent (no 400 ms block above the {ABSOLUTE_GATE_LUFS:g} LUFS gate): nothing to master, "
            f"no file written"
        )
    if job.goal.integrated_lufs - input_lufs > MAX_TOTAL_GAIN_DB:
        raise TargetUnreachableError(
            f"input reads {input_lufs:.1f} LUFS; reaching {job.goal.integrated_lufs:g} LUFS needs more than "
            f"{MAX_TOTAL_GAIN_DB:g} dB of gain, which would mostly raise the noise floor"
        )
    # An album track gets the album's one trim (the loudest track to the working level), so the
    # shared chain meets every track at its place in the album (roomtone.mastering.album).
    job.trim_db = (float(np.clip(WORKING_LEVEL_LUFS - input_lufs, -60.0, 60.0)) if job.placement is None
                   else float(job.placement.trim_db))
    # The input's readings are complete here (its sample peak included), so nothing below
    # needs the input itself: given away, it is trimmed in place.
    job.before = measure(audio, rate, input_loudness, input_peak.result())
    if consume_input and audio.flags.writeable:
        job.signal = np.multiply(audio, np.float32(10.0 ** (job.trim_db / 20.0)), out=audio)
    else:
        job.signal = Gain(gain_db=job.trim_db).render(audio, rate)
    job.lap("input_trim")


def _start_input_analysis(job, pool, analysis):
    """Stage 3: one Welch pass of the trimmed input, in a thread of its own (the meter's is still
    reading the input's true peak), for the report's input curve, the assistant and the fit; the
    input's short-term loudness in ``pool`` for ``report["analysis"]``."""
    shared_fit = job.placement is not None and job.placement.fit is not None
    if job.match is not None or shared_fit or analysis or job.auto:
        from roomtone.mastering import targets

        spectra_pool = side_executor("spectra")
        job.input_spectra = spectra_pool.submit(targets.spectra, job.signal, job.input_rate)
        spectra_pool.shutdown(wait=False)
    if analysis:
        job.input_blocks = pool.submit(block_powers, job.signal, job.input_rate)


def _input_curve(job):
    """The trimmed input's 1/3-octave curve. Read where it is needed: a task waiting on the spectra
    would hold the meter's thread."""
    from roomtone.mastering import targets

    return targets.tonal_curve(None, job.input_rate, job.input_lufs + job.trim_db, measured=job.input_spectra.result())


def _propose(job):
    """Stage 4 (``preset="auto"``): the assistant proposes the chain (and, for
    :data:`ASSISTANT_TARGET`, the curve the fit aims at)."""
    if not job.auto:
        return
    job.say("proposing the chain")
    await_imports()
    from roomtone.mastering import assistant  # JAX: only here

    job.preset, job.assistant, predicted = assistant.propose(job.signal, job.input_rate, job.preset,
                                                             measured=job.input_spectra.result(),
                                                             with_tonal=job.match is ASSISTANT_TARGET)
    if job.match is ASSISTANT_TARGET:
        from roomtone.mastering.targets import MatchTarget

        job.match = MatchTarget(tonal_db=predicted, sources=("assistant",))
    job.lap("assistant")


def _fit(job):
    """Stage 5: the chain fitted to the match target (JAX), or an album track's shared fit."""
    if job.match is not None:
        job.say("fitting the chain")
        await_imports()
        from roomtone.mastering.fit import fit_chain  # JAX: only here

        delivery = (job.goal.integrated_lufs, job.goal.ceiling_dbtp, job.input_lufs + job.trim_db)
        job.preset, job.fit = fit_chain(job.signal, job.input_rate, job.preset, job.match, delivery=delivery,
                                        measured=job.input_spectra, **({"rounds": 1, "steps": FIT_STEPS_AUTO}
                                                                       if job.assistant else {"steps": FIT_STEPS}))
        job.lap("fit")
    elif job.placement is not None and job.placement.fit is not None:  # the album's chain, reported per track
        job.fit, job.match = dict(job.placement.fit), job.placement.match
    if job.fit is not None:
        job.fit["input_tonal_db"] = _input_curve(job)


def _run_chain(job, pool, explain):
    """Stage 6: the preset's chain, each stage's loudness metered in ``pool`` beside the next; with
    ``explain``, what each processor measures of its input (:meth:`Processor.measure`: the
    multiband compressor's reduction) too."""
    job.reductions = {} if explain else None
    for index, processor in enumerate(job.preset.chain):
        if processor.bypassed:  # unchanged signal: nothing to run or meter
            job.level_futures.append(None)
            continue
        job.say(processor.kind)
        if explain and type(processor).measure is not Processor.measure:  # the protocol's report hook
            job.reductions[index] = pool.submit(processor.measure, job.signal, job.input_rate)
        job.signal = processor.render(job.signal, job.input_rate)
        job.level_futures.append(pool.submit(integrated_loudness, job.signal, job.input_rate))
        job.lap(processor.kind)


def _resample(job, pool):
    """Stage 7: the chain's output to the delivery rate (metered in ``pool``)."""
    if job.sample_rate == job.input_rate:
        return
    job.say(f"resampling {job.input_rate} -> {job.sample_rate} Hz")
    job.signal = resample(job.signal, job.input_rate, job.sample_rate)
    job.resampled_level = pool.submit(integrated_loudness, job.signal, job.sample_rate)
    job.resampled_to = job.sample_rate
    job.lap("resample")


def _set_up_limiter(job):
    """Stage 8: the limiter and its detector at the delivery rate. While the last stage is metered
    beside it, the exact detector is computed where the expected gain will need it, from the last
    level already metered (the search itself computes whatever the true level turns out to need)."""
    job.say("loudness and true-peak limiting")
    job.limiter = TruePeakLimiter(ceiling_dbtp=job.goal.ceiling_dbtp, lookahead_ms=job.preset.lookahead_ms,
                                  release_ms=job.preset.release_ms)
    job.detector = job.limiter.lazy_detector(job.signal, job.sample_rate)
    level = job.input_lufs + job.trim_db  # a static gain shifts integrated loudness exactly
    for future in job.level_futures:
        if future is not None and future.done():
            level = future.result()
    job.limiter.prepare(job.detector, 10.0 ** ((job.goal.integrated_lufs - level) / 20.0))
    job.lap("limiter_detector")


def _collect_readings(job, analysis):
    """Stage 9: the per-stage gains of the report from the meter's readings, the multiband
    reductions, and the input's half of ``report["analysis"]``."""
    job.stages = [{"stage": "input_trim", "gain_db": round(job.trim_db, 3)}]
    level = job.input_lufs + job.trim_db
    for processor, future in zip(job.preset.chain, job.level_futures):
        new_level = level if future is None else future.result()
        job.stages.append({"stage": processor.kind, "gain_db": round(new_level - level, 3)})
        level = new_level
    if job.resampled_level is not None:  # the filter cuts above the lower Nyquist: a hair of loudness
        new_level = job.resampled_level.result()
        job.stages.append({"stage": "resample", "gain_db": round(new_level - level, 3)})
        level = new_level
    job.level_lufs = level
    if job.reductions:
        measured = {index: future.result() for index, future in job.reductions.items()}
        job.reductions = {index: m["reduction_db"] for index, m in measured.items() if "reduction_db" in m}
    if analysis:
        job.analysis = {"input_tonal_db": _input_curve(job),
                        "input_short_term_lufs": _short_term_readings(job.input_blocks.result()[1]) - job.trim_db}
    job.lap("metering_wait")
    job.level_futures = job.resampled_level = job.input_blocks = None


def _prepare(audio, sample_rate, *, progress=None, consume_input=False, explain=False, analysis=False, **options):
    """Check the options, meter the input, run the input trim and the preset's chain, resample to
    the delivery rate, and set up the limiter's detector there: the stages above over one
    :class:`_Job`, which this returns. ``options``: :func:`_check_options`'s.

    ``consume_input``: the caller gives the audio away (the file job, which decoded it), as a
    one-item list ``audio`` that this empties: the input trim then scales it in place, one
    whole-file copy fewer. :func:`master` never does this."""
    job = _Job(started=time.perf_counter(), say=progress or (lambda message: None))
    if consume_input:  # a one-item list, emptied here: no caller's frame or argument tuple keeps the array
        audio = audio.pop()
    callers = None if consume_input else audio  # to tell whether the signal is still the caller's array
    audio = _check_options(job, audio, sample_rate, **options)
    job.lap(None)
    # Metering (the input's true peak, each stage's loudness) runs in a second thread beside the
    # chain: the kernels release the GIL, so on two cores it costs little wall time.
    with side_executor("meter") as pool:
        _meter_and_trim(job, audio, consume_input, pool)
        del audio
        _start_input_analysis(job, pool, analysis)
        _propose(job)
        _fit(job)
        _run_chain(job, pool, explain)
        _resample(job, pool)
        _set_up_limiter(job)
        _collect_readings(job, analysis)
    job.owns_signal = callers is None or not np.may_share_memory(job.signal, callers)
    return job


def _short_term_readings(short_term_power):
    """Short-term loudness (LUFS) every :data:`ANALYSIS_HOP_S` from the 100 ms short-term block
    powers of :func:`~roomtone.meter.block_powers`. Shape: (readings,) float64."""
    return to_lufs(short_term_power[::int(round(ANALYSIS_HOP_S / _BLOCK_HOP_S))])


def _json_numbers(values, digits=2):
    """A list of rounded floats, ``None`` for -inf (silence)."""
    return [round(float(v), digits) if np.isfinite(v) else None for v in values]


def _deliver(job, *, aim_below_db=0.0, target_shift_lu=0.0, on_candidate=None, in_place=False):
    """The loudness stage of ``job`` and its report: ``(audio_out, report)``.

    ``aim_below_db`` lowers the ceiling the stage limits and checks to (for a lossy encoder's
    overshoot); ``target_shift_lu`` moves the loudness it aims at (for an encoder's loudness shift).
    The report's target stays the job's. ``in_place`` (only where ``job.owns_signal``): the output
    is written over the job's signal, which leaves the job spent (no second delivery).
    """
    clock = time.perf_counter()
    if job.signal is None:
        raise RuntimeError("this job's signal was delivered in place already")
    if in_place and not job.owns_signal:
        raise ValueError("in_place delivery would overwrite the caller's array")
    target, ceiling = job.goal.integrated_lufs, job.goal.ceiling_dbtp
    channels = int(job.signal.shape[0])
    signal, detector = job.signal, job.detector
    if in_place:  # the job lets go of both, so the stage can free the detector and reuse the signal
        job.signal = job.detector = None

    def reach(aim_lufs, probe=False):  # a probe builds nothing in place and tells no one of its output
        return reach_loudness(signal, job.sample_rate, target_lufs=aim_lufs + target_shift_lu,
                              ceiling_dbtp=ceiling - aim_below_db, level_lufs=job.level_lufs, limiter=job.limiter,
                              detector=detector, max_limiting_lu=job.preset.max_limiting_lu, bits=job.bits,
                              on_candidate=None if probe else on_candidate, in_place=in_place and not probe)

    result, aim, needed_lu = _reach_placed(job, reach, target if job.aim_lufs is None else job.aim_lufs)
    job.aim_lufs = None if aim == target else aim  # a lossy re-encode starts from the lowered aim
    del signal, detector
    timings = dict(job.timings, loudness_solve_and_meter_output=round(time.perf_counter() - clock, 3))
    stages = job.stages + [{"stage": "loudness_gain", "gain_db": round(result.gain_db, 3)}, result.stage_report()]
    note = job.goal.note
    if aim != target and job.placement is not None:
        note = (f"{target - aim:.2f} LU under the track's place in the album ({target:.2f} LUFS): keeping the place "
                f"needs at least {needed_lu:.1f} LU of limiting, the preset allows {job.preset.max_limiting_lu:g} LU")
    elif aim != target:
        note = (f"{target - aim:.2f} LU under the reference's loudness ({target:.2f} LUFS): matching it needs at least "
                f"{needed_lu:.1f} LU of limiting, the preset allows {job.preset.max_limiting_lu:g} LU; "
                f"--target-lufs or a preset with more compression changes that")
    report = {
        "versions": _versions(),
        "preset": {**job.preset.to_dict(), "source": job.preset.source or None},
        "platform": job.goal.platform,
        "target": {"integrated_lufs": round(aim, 4), "true_peak_dbtp": ceiling, "note": note},
        "sample_rate": job.sample_rate,
        "resampled_to": job.resampled_to,
        "channels": channels,
        "bit_depth": job.bit_depth,
        "dither": "tpdf" if job.bits else None,
        "stages": stages,
        "loudness_iterations": result.iterations,
        "before": job.before.as_dict(),
        "after": result.after.as_dict(),
        "seconds": round(time.perf_counter() - job.started, 3),
        "timings_s": timings,
    }
    if job.goal.platform is None and job.match is not None:
        report["target"]["source"] = "reference"
    if job.assistant is not None:
        report["assistant"] = job.assistant
    if job.fit is not None:
        report["fit"] = _fit_report(job, result)
    if job.placement is not None or job.analysis is not None:
        _album_and_analysis(job, result, report, aim, needed_lu)
    if job.reductions is not None:
        from roomtone.mastering.explain import explain

        report["multiband_reduction_db"] = {str(k): [round(float(x), 2) for x in v] for k, v in job.reductions.items()}
        report["explain"] = explain(report, job.reductions)
    report["seconds"] = round(time.perf_counter() - job.started, 3)
    return result.audio, report


def _fit_report(job, result):
    """``report["fit"]``: the fit's record with the input's and the output's distance to the target
    (dB), the bands the output moved against it, the output's curve and spread."""
    from roomtone.mastering.targets import moves_against, tonal_curve, tonal_distance

    fit = dict(job.fit)
    output_curve = tonal_curve(result.audio, job.sample_rate, result.after.integrated_lufs)
    input_curve = fit.pop("input_tonal_db")
    fit["tonal_distance_db"] = {"input": round(tonal_distance(input_curve, job.match.tonal_db), 2),
                                "output": round(tonal_distance(output_curve, job.match.tonal_db), 2)}
    # the fit's model never moves a band against the target; the rendered output (limiter, loudness
    # normalisation) can still: said, not hidden
    fit["against_target"] = moves_against(input_curve, job.match.tonal_db, output_curve)
    fit["output_tonal_db"] = [round(float(v), 2) for v in output_curve]
    if fit.get("dynamics"):  # read in the output's own metering pass
        spread = result.after.short_term_spread_lu
        fit["dynamics"] = dict(fit["dynamics"], output_spread_lu=round(spread, 2) if np.isfinite(spread) else None)
    return fit


FALLBACK_TRIES = 4  # lower aims an album track that cannot keep its place tries, each twice as far down
FALLBACK_MARGIN_LU = 0.1  # the first lower aim leaves this much more than the excess limiting
FALLBACK_RESOLUTION_LU = 0.1  # then bisection between the last aim that failed and one that passed, to this


def _reach_placed(job, reach, aim):
    """``reach(aim)`` (the loudness stage to ``aim`` LUFS) for ``job``: ``(result, aim reached,
    limiting needed at the first aim or None)``.

    A goal the user did not ask for (``goal.flexible``: an album track's place off the target, a
    reference's loudness) that needs more limiting than the preset allows is delivered as close
    under it as the budget lets, within :data:`FALLBACK_RESOLUTION_LU`:
    probes (``reach(aim, probe=True)``: no output told to the caller, nothing built in place; for a
    long track that is one whole output more in memory) step down by the excess limiting, then
    twice as far each time (at most :data:`FALLBACK_TRIES`), then bisect between the highest aim
    that failed and the lowest that passed; the aim found is then reached for real. Any other
    failure, and any failure to reach a goal that was asked for, is raised."""
    try:
        return reach(aim), aim, None
    except TargetUnreachableError as exc:
        if not job.goal.flexible or exc.limiting_lu is None:
            raise
        first = exc

    def passes(candidate):
        try:
            reach(candidate, probe=True)
            return True
        except TargetUnreachableError as exc:
            if exc.limiting_lu is None:
                raise
            return False

    failed, passed = aim, None
    step = max(first.limiting_lu - first.max_limiting_lu, 0.0) + FALLBACK_MARGIN_LU
    for _ in range(FALLBACK_TRIES):
        if passes(failed - step):
            passed = failed - step
            break
        failed, step = failed - step, 2.0 * step
    if passed is None:
        raise TargetUnreachableError(
            f"{'its place in the album' if job.placement is not None and not job.placement.anchor else 'the reference loudness'}"
            f" ({aim:.1f} LUFS) needs "
            f"{first.limiting_lu:.1f} LU of limiting (the preset allows "
            f"{first.max_limiting_lu:g} LU), and so does {failed:.1f} LUFS; use a preset with more compression",
            limiting_lu=first.limiting_lu, max_limiting_lu=first.max_limiting_lu)
    while failed - passed > FALLBACK_RESOLUTION_LU:
        middle = 0.5 * (failed + passed)
        if passes(middle):
            passed = middle
        else:
            failed = middle
    return reach(passed), passed, first.limiting_lu


def _album_and_analysis(job, result, report, aim, needed_lu):
    """``report["album"]`` for an album track (its place, as delivered) and ``report["analysis"]``
    (what ``--plot`` draws), from one loudness pass over the output."""
    from roomtone.mastering import targets

    sink = job.placement.on_blocks if job.placement is not None else None
    if job.analysis is None and sink is None:
        blocks = None
    else:
        blocks = block_powers(result.audio, job.sample_rate)
    if sink is not None:  # the album's loudness as one programme needs every track's gating blocks
        sink(blocks[0])
    if job.placement is not None:
        report["album"] = job.placement.track_report(output_lufs=result.after.integrated_lufs, aim_lufs=aim,
                                                     needed_limiting_lu=needed_lu,
                                                     max_limiting_lu=job.preset.max_limiting_lu)
    if job.analysis is None:
        return
    if job.match is not None:
        target_curve, target_source = job.match.tonal_db, "fit: " + ", ".join(job.match.sources)
    elif job.preset.target:
        target_curve, target_source = targets.preset_target(job.preset).tonal_db, f"preset {job.preset.name} [target], not fitted"
    else:
        target_curve, target_source = None, None
    output_curve = report.get("fit", {}).get("output_tonal_db")
    if output_curve is None:
        output_curve = targets.tonal_curve(result.audio, job.sample_rate, result.after.integrated_lufs)
    report["analysis"] = {
        "bands_hz": [round(f, 1) for f in targets.THIRD_OCTAVE_HZ],
        "input_tonal_db": _json_numbers(job.analysis["input_tonal_db"]),
        "output_tonal_db": _json_numbers(output_curve),
        "target_tonal_db": None if target_curve is None else _json_numbers(target_curve),
        "target_source": target_source,
        "short_term_window_s": SHORT_TERM_S, "short_term_hop_s": ANALYSIS_HOP_S,
        "input_short_term_lufs": _json_numbers(job.analysis["input_short_term_lufs"]),
        "output_short_term_lufs": _json_numbers(_short_term_readings(blocks[1])),
    }


ENCODE_ATTEMPTS = 4  # encodings of one lossy output at most
ENCODE_MARGIN_DB = 0.05  # a re-encode aims this much lower than the overshoot alone asks for


def master_file(input_path, output_path, *, preset="balanced", platform=None, target_lufs=None,
                ceiling_dbtp=None, bit_depth="24", output_sample_rate=None, overwrite_input=False, progress=None,
                reading=None, reference=None, fit_target=False, explain=False, analysis=False, placement=None,
                plot_path=None):
    """Master a file into ``output_path``, atomically; the format comes from its extension.

    Formats: ``.wav`` (16, 24, 32f), ``.flac`` (16, 24), and the lossy ``.mp3`` (320 kbps CBR),
    ``.ogg`` (Vorbis q8) and ``.opus`` (:data:`roomtone.audio.LOSSY_CODECS`). A lossy output has no
    bit depth: ``bit_depth`` is ignored there (any of 16, 24, 32f or None is accepted). The master
    is rendered in float, encoded to a temporary file beside ``output_path``, and that file is
    decoded and metered: should its true peak be over the ceiling (or its loudness more than
    0.05 LU off the target), the loudness stage runs again with the limiter aiming lower by the
    overshoot plus 0.05 dB (and the loudness aim moved by the miss), at most four encodings in all.
    Only a file that passes is renamed into place; the report's ``after_encoding`` gives its
    readings (``codec``, ``quality``, ``integrated_lufs``, ``true_peak_dbtp``, ``sample_peak_dbfs``,
    ``attempts``, ``limiter_ceiling_dbtp``, ``loudness_aim_lufs``).

    ``output_sample_rate``: None keeps the input's rate where the format takes it; a lossy format
    that does not (Opus from 44.1 kHz, MP3 from 96 kHz) gets the nearest delivery rate it takes,
    e.g. 48000 Hz for Opus (the report's ``resampled_to`` and ``resampled_reason`` say so). Else one
    of 44100, 48000, 88200, 96000 Hz that the format takes; anything else is refused before the
    input is read. Resampling happens before the loudness stage (see :func:`master`).

    ``reading`` may be a :class:`concurrent.futures.Future` already decoding ``input_path`` with
    :func:`roomtone.audio.read_audio_async` (the CLI starts one before importing this module).

    ``plot_path``: also draw ``report["analysis"]`` (``analysis`` is then on) into this PNG
    (:func:`roomtone.mastering.plot.write_plot`: 1/3-octave curves and short-term loudness, input,
    target and output), written atomically once the master is in place; ``report["plot"]`` gives
    its path. Needs matplotlib (``pip install 'roomtone[plot]'``), checked before any work.

    The output keeps the input's channel layout. The input is never modified; an output path equal
    to the input is refused unless ``overwrite_input``. Returns the report (with ``input``,
    ``output``, ``input_format`` and ``output_format`` added).

    Raises: as :func:`master`, and :class:`OutputError` for an unsupported extension, bit depth,
    sample rate or channel count (MP3 holds two) or a failed write; :class:`TargetUnreachableError`
    when the encoded file cannot be brought under the ceiling in four encodings;
    :class:`~roomtone.errors.OptionalDependencyError` for ``plot_path`` without matplotlib.
    """
    reference = _refuse_early(input_path, output_path, bit_depth=bit_depth, output_sample_rate=output_sample_rate,
                              overwrite_input=overwrite_input, plot_path=plot_path, preset=preset,
                              reference=reference, fit_target=fit_target)
    analysis = analysis or plot_path is not None
    fit_target = False
    say = progress or (lambda message: None)
    say("reading")
    if reading is None:
        reading = read_audio_async(input_path)
    audio, sample_rate, info = reading.take() if hasattr(reading, "take") else reading.result()
    rate_out = delivery_sample_rate(output_path, sample_rate, output_sample_rate)
    check_output_channels(output_path, audio.shape[0])
    # The decoded audio is ours: handed down in a box and taken out there, so the job can trim it
    # in place with no other reference keeping a second copy alive.
    owned = [audio]
    del audio
    codec = lossy_codec(output_path)
    options = dict(preset=preset, platform=platform, target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp,
                   output_sample_rate=rate_out if rate_out != sample_rate else None, progress=progress,
                   reference=reference, fit_target=fit_target, explain=explain, analysis=analysis, placement=placement)
    if codec is None:
        report = _write_pcm(owned, sample_rate, rate_out, output_path, bit_depth, options, say)
        report["output_format"] = dict(zip(("format", "subtype"), output_format(output_path, bit_depth)))
    else:
        report = _write_lossy(owned, sample_rate, output_path, codec, options, say)
        report["output_format"] = {"format": codec.format, "subtype": codec.subtype}
    report["resampled_reason"] = None
    if report["resampled_to"] is not None:
        report["resampled_reason"] = ("requested" if output_sample_rate is not None else
                                      f"{codec.name} takes {codec.rates_text()}, not {sample_rate} Hz")
    report.update(input=str(input_path), output=str(output_path),
                  input_format={"format": info.format, "subtype": info.subtype})
    if plot_path is not None:
        from roomtone.mastering.plot import write_plot

        say("plotting")
        write_plot(report, plot_path)
        report["plot"] = str(plot_path)
    return report


def _refuse_early(input_path, output_path, *, bit_depth, output_sample_rate, overwrite_input, plot_path, preset,
                  reference, fit_target):
    """:func:`master_file`'s checks before the input is read: the output's format, bit depth,
    rate and path, the plot's place (and matplotlib), the reference. Returns the match target
    (:func:`match_target`)."""
    output_format(output_path, bit_depth)
    if plot_path is not None:  # no matplotlib, or a bad place for the PNG
        from roomtone.mastering.plot import check_plot_path

        check_plot_path(plot_path, input_path, output_path)
    if output_sample_rate is not None:
        delivery_sample_rate(output_path, None, output_sample_rate)
    check_output_path(output_path, input_path, overwrite_input=overwrite_input)
    return match_target(preset, reference, fit_target)


def _write_pcm(owned, sample_rate, rate_out, output_path, bit_depth, options, say):
    """WAV/FLAC (``owned``: a one-item list holding the decoded input, given away): the output
    (built over the job's signal when that pays, :func:`~roomtone.loudness.in_place_pays`) starts
    writing (to a temporary file) while it is metered; the file that passes is renamed into place,
    any other removed. A write stays in ``pending`` until it
    is committed or discarded, so an interrupt at any point (even inside commit's wait) finds it."""
    pending = []

    def drop():
        while pending:
            pending[-1].discard()
            pending.pop()

    def start_write(candidate):
        drop()
        if candidate is not None:  # None: the last candidate is superseded; only drop it
            pending.append(PendingWrite(output_path, candidate, rate_out, bit_depth))

    try:
        job = _prepare(owned, sample_rate, bit_depth=bit_depth, consume_input=True, **options)
        out, report = _deliver(job, on_candidate=start_write, in_place=in_place_pays(job.signal))
        del job
        say("writing")
        pending[-1].commit()
        pending.pop()
    finally:
        drop()
    return report


def _meter_encoded(audio, sample_rate):
    """The decoded lossy file's readings (:class:`~roomtone.meter.LoudnessStats`)."""
    return measure(audio, sample_rate)


def _write_lossy(owned, sample_rate, output_path, codec, options, say):
    """MP3/OGG/Opus: master in float (no dither before a lossy encoder), encode to a temporary file,
    decode it and meter it; re-run the loudness stage aiming lower while the decoded true peak is
    over the ceiling (or its loudness off the target), then rename the file that passed into place."""
    job = _prepare(owned, sample_rate, bit_depth="32f", consume_input=True, **options)
    target, ceiling = job.goal.integrated_lufs, job.goal.ceiling_dbtp
    aim_below_db, shift_lu = 0.0, 0.0
    pending = None
    try:
        for attempt in range(1, ENCODE_ATTEMPTS + 1):
            try:
                out, report = _deliver(job, aim_below_db=aim_below_db, target_shift_lu=shift_lu)
            except TargetUnreachableError as exc:
                if attempt == 1:
                    raise
                raise TargetUnreachableError(
                    f"{output_path}: {codec.name} encoding {attempt - 1} read {decoded.true_peak_dbtp:.2f} dBTP "
                    f"against the {ceiling:g} dBTP ceiling; limiting {aim_below_db:.2f} dB lower fails: {exc}") from None
            say(f"encoding {codec.name}" + (f" again (attempt {attempt})" if attempt > 1 else ""))
            target = report["target"]["integrated_lufs"]  # an album track may aim under its place
            pending = PendingWrite(output_path, out, job.sample_rate, None)
            decoded = _meter_encoded(*pending.read_back())
            over_db = decoded.true_peak_dbtp - ceiling
            miss_lu = decoded.integrated_lufs - target
            if over_db <= 0.0 and abs(miss_lu) <= ACCEPT_LU:
                break
            pending.discard()
            pending = None
            if over_db > 0.0:
                aim_below_db += over_db + ENCODE_MARGIN_DB
            if abs(miss_lu) > ACCEPT_LU:
                shift_lu -= miss_lu
        else:
            raise TargetUnreachableError(
                f"{output_path}: after {ENCODE_ATTEMPTS} {codec.name} encodings the decoded file reads "
                f"{decoded.integrated_lufs:.2f} LUFS and {decoded.true_peak_dbtp:.2f} dBTP; the target is "
                f"{target:g} LUFS under {ceiling:g} dBTP")
        say("writing")
        pending.commit()
        pending = None
    finally:
        if pending is not None:
            pending.discard()
    if "album" in report:  # an album track's place as a player reads the file
        album = report["album"]
        album["output_lufs"] = round(decoded.integrated_lufs, 3)
        album["output_offset_lu"] = round(decoded.integrated_lufs - album["album_target_lufs"], 3) + 0.0
    report["bit_depth"] = None
    report["after_encoding"] = {
        "codec": codec.name, "quality": codec.quality,
        "integrated_lufs": round(decoded.integrated_lufs, 4), "true_peak_dbtp": round(decoded.true_peak_dbtp, 4),
        "sample_peak_dbfs": round(decoded.sample_peak_dbfs, 4), "attempts": attempt,
        "limiter_ceiling_dbtp": round(ceiling - aim_below_db, 3), "loudness_aim_lufs": round(target + shift_lu, 3)}
    return report
