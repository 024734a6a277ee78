"""The enhance job: a voice recording through the preset's chain (high-pass, hum, clicks, denoiser,
de-esser, leveler), then, for a preset with a ``[loudness]`` table, the core's loudness stage (one
static gain and the true-peak limiter, :func:`roomtone.loudness.reach_loudness`) to the platform's
target: podcast -16 LUFS stereo, -19 LUFS mono, -1 dBTP.

Every stage keeps the sample rate and the length; a stage's reported delay
(``latency_samples``) is trimmed from the start and padded at the end, so the output stays
sample-aligned with the input.

Memory: the chain works over one signal of its own (:func:`enhance` copies the caller's array once;
:func:`enhance_file` works over what it read), each stage writing its output over it
(:meth:`~roomtone.processor.Processor.run_in_place`) with a scratch that does not
grow with the length, and the loudness stage delivers a long one over it too
(:func:`roomtone.loudness.in_place_pays`).
"""

import dataclasses
import platform as _platform
import time

import numpy as np

import roomtone
from roomtone.audio import (BIT_DEPTHS, PendingWrite, check_output_path, output_format, quantize_to_grid, read_audio,
                            too_short, validate_audio)
from roomtone.enhance.denoisers import get_denoiser
from roomtone.enhance.presets import load_preset
from roomtone.enhance.processors import Denoise
from roomtone.errors import InvalidAudioError, OutputError, PresetError, TargetUnreachableError
from roomtone.loudness import in_place_pays, reach_loudness
from roomtone.meter import ABSOLUTE_GATE_LUFS, MOMENTARY_S, integrated_loudness, measure
from roomtone.platforms import resolve_target
from roomtone.processor import Chain
from roomtone.plugins import TruePeakLimiter

MAX_TOTAL_GAIN_DB = 40.0  # more than this would mostly raise the noise floor


def _versions():
    import numba
    import soundfile

    return {"roomtone": roomtone.__version__, "python": _platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "soundfile": soundfile.__version__,
            "libsndfile": soundfile.__libsndfile_version__}


def with_overrides(preset, model, atten_lim_db):
    """The preset with ``model`` / ``atten_lim_db`` put into its denoise stage (checked here)."""
    if model is None and atten_lim_db is None:
        return preset
    if not any(isinstance(p, Denoise) for p in preset.chain):
        raise PresetError(f"preset {preset.name!r} has no denoise stage for model/atten_lim_db to apply to")
    if model is not None:
        get_denoiser(model)  # an unknown name fails here, naming the available ones
    chain = Chain(dataclasses.replace(p, **{k: v for k, v in (("model", model), ("atten_lim_db", atten_lim_db))
                                            if v is not None})
                  if isinstance(p, Denoise) else p for p in preset.chain)
    return dataclasses.replace(preset, chain=chain)


def _align_over(signal, out, latency):
    """Write ``out`` trimmed by ``latency`` samples at the start, zero-padded to ``signal``'s
    length, over ``signal`` (``out`` may be ``signal`` itself)."""
    n = signal.shape[1]
    latency = min(int(latency), n)
    if out is signal:
        if latency:
            signal[:, :n - latency] = signal[:, latency:].copy()
            signal[:, n - latency:] = 0.0
        return
    out = np.asarray(out, dtype=np.float32)[:, latency:latency + n]
    signal[:, :out.shape[1]] = out
    signal[:, out.shape[1]:] = 0.0


def _run_stage(processor, signal, sample_rate, say=None):
    """``info`` of one stage, its output written over ``signal`` (validated, ours), sample-aligned.
    ``say``: the job's ``progress(str)``; the denoise stage tells it ``"denoise <done> of <total>"``
    per block of its model (the CLI's Progress draws a bar from it)."""
    if processor.bypassed:
        return {"bypassed": True}
    if isinstance(processor, Denoise) and say is not None:
        info = processor.run_in_place(signal, sample_rate, progress=lambda d, t: say(f"{processor.kind} {d} of {t}"))
    else:  # any processor: in place where it works so, else its whole output copied over
        info = processor.run_in_place(signal, sample_rate)
    _align_over(signal, signal, processor.latency_samples(sample_rate))
    return info


def enhance(audio, sample_rate, *, preset="podcast", model=None, atten_lim_db=None, bit_depth="32f", per_speaker=False,
            progress=None):
    """Clean up a voice recording.

    Args:
        audio: (channels, samples) float array (mono, stereo or more channels).
        sample_rate: Hz (16, 22.05, 44.1, 48 kHz and others); the output keeps it.
        preset: ``"podcast"`` (default), ``"denoise"``, a path to a preset TOML file, or an
            :class:`~roomtone.enhance.presets.EnhancePreset`.
        model: the denoiser (:func:`roomtone.enhance.denoisers.available_denoisers`); None: the
            preset's (``"auto"``: the best available).
        atten_lim_db: the denoiser's attenuation limit in dB, 0..100 (100: unlimited); None: the
            preset's.
        bit_depth: ``"16"`` or ``"24"`` to quantize (TPDF dither) here, ``"32f"`` for float.
        per_speaker: first split the voices (the ``speakers`` job, :func:`roomtone.separate.voices.speakers`)
            and bring every speaker to the loudest one's level (:func:`level_speakers`), so a quiet
            guest and a loud host end at one level; then the chain.
        progress: optional ``callable(str)`` told of each stage.

    The caller's ``audio`` is never modified: the chain works over one copy of it.

    Returns:
        ``(audio_out, report)``: float32 of the input's shape (sample-aligned), and a JSON-ready
        dict: versions, preset, target (or None), ``stages`` (what each did and its loudness
        change in LU), ``before`` / ``after`` meter readings.

    Raises:
        InvalidAudioError: bad audio; for a preset with a loudness stage, input shorter than one
            400 ms block or silent.
        PresetError: unknown preset or model, bad preset file, ``atten_lim_db`` out of range.
        OutputError: ``bit_depth`` not one of 16, 24, 32f.
        TargetUnreachableError: the loudness target needs more than 40 dB of gain or more limiting
            than the preset allows.
    """
    return _enhance(audio, sample_rate, owned=False, preset=preset, model=model, atten_lim_db=atten_lim_db,
                    bit_depth=bit_depth, per_speaker=per_speaker, progress=progress)


def _run_chain(chain, signal, sample_rate, level, say):
    """Run ``chain`` over ``signal`` (written over), reading the integrated loudness after each
    stage. ``level``: the input's, LUFS. Returns (stage reports, seconds per stage, the final
    loudness in LUFS)."""
    timings = {}
    stages = []
    for processor in chain:
        say(processor.kind)
        clock = time.perf_counter()
        info = _run_stage(processor, signal, sample_rate, say)
        new_level = integrated_loudness(signal, sample_rate)
        change = new_level - level if np.isfinite(new_level) and np.isfinite(level) else None
        stages.append({"stage": processor.kind, "gain_db": None if change is None else round(change, 3), **info})
        level = new_level
        timings[processor.kind] = round(time.perf_counter() - clock, 3)
    return stages, timings, level


MAX_SPEAKER_GAIN_DB = 20.0  # the most --per-speaker raises a quiet speaker


def level_speakers(audio, sample_rate, *, progress=None, max_gain_db=MAX_SPEAKER_GAIN_DB):
    """Every speaker at the loudest one's level: the voices split (the ``speakers`` job), each
    speaker measured where it talks (its track and the residual there; integrated loudness,
    BS.1770-4: its gating keeps the turns, not the silence between them) and raised to the loudest
    speaker's (at most ``max_gain_db``), the residual following whoever talks
    (:meth:`roomtone.separate.voices.SpeakerSplit.remix`).

    Returns ``(audio (channels, samples) float32, report)``; the report gives each speaker's level
    (LUFS), gain (dB) and speech time."""
    from roomtone.jobs import job

    split = job("speakers")(audio, sample_rate, n="auto", progress=progress)
    # each speaker's level where it talks, as recorded: the others and their turns' residual muted
    count = len(split.tracks)
    gates = split.gates(sample_rate)  # once for every remix below
    levels = [integrated_loudness(split.remix([0.0 if j == k else -300.0 for j in range(count)], sample_rate, gates),
                                  sample_rate) for k in range(count)]
    finite = [lv for lv in levels if np.isfinite(lv)]
    top = max(finite) if finite else 0.0
    gains_db = [float(min(max_gain_db, top - lv)) if np.isfinite(lv) else 0.0 for lv in levels]
    out = split.remix(gains_db, sample_rate, gates)
    rows = {name: {"level_lufs": round(float(lv), 2) if np.isfinite(lv) else None, "gain_db": round(g, 2),
                   "speech_s": split.report["speech_s"].get(name, 0.0)}
            for name, lv, g in zip(split.report["names"], levels, gains_db)}
    return out, {"speakers": split.report["speakers"], "embedding": split.report["embedding"], "levels": rows,
                 "overlap_share": split.report["overlap_share"]}


def _enhance(given, sample_rate, *, owned, preset, model, atten_lim_db, bit_depth, progress, per_speaker=False):
    """:func:`enhance`; ``owned``: the caller gives ``given`` away (a file job's own reading), so the
    chain works over it instead of over a copy."""
    started = time.perf_counter()
    say = progress or (lambda message: None)
    audio = validate_audio(given, sample_rate)
    sample_rate = int(sample_rate)
    preset = with_overrides(load_preset(preset), model, atten_lim_db)
    if str(bit_depth) not in BIT_DEPTHS:
        raise OutputError(f"bit_depth={bit_depth!r} must be one of {', '.join(BIT_DEPTHS)}")
    bits = None if str(bit_depth) == "32f" else int(bit_depth)
    goal = None
    if preset.loudness is not None:
        goal = resolve_target(preset.loudness.platform, audio.shape[0])
        if audio.shape[1] < MOMENTARY_S * sample_rate:
            raise too_short(audio.shape[1], sample_rate, MOMENTARY_S,
                            f"the {preset.name} preset's loudness stage (one gating block)")
    say("metering input")
    before = measure(audio, sample_rate)
    if goal is not None and not np.isfinite(before.integrated_lufs):
        raise InvalidAudioError(f"input is silent (no 400 ms block above the {ABSOLUTE_GATE_LUFS:g} LUFS gate): "
                                f"nothing to enhance to {goal.integrated_lufs:g} LUFS, no file written")
    # the chain's own signal, every stage written over it
    signal = audio if owned or not np.may_share_memory(audio, given) else audio.copy()
    del given
    speakers = None
    if per_speaker:
        say("leveling the speakers")
        signal, speakers = level_speakers(signal, sample_rate, progress=progress)
    # the chain's first stage is measured against what it was given (after --per-speaker, the leveled mix)
    start = before.integrated_lufs if speakers is None else integrated_loudness(signal, sample_rate)
    stages, timings, level = _run_chain(preset.chain, signal, sample_rate, start, say)
    target = None
    if goal is not None:
        say("loudness and true-peak limiting")
        clock = time.perf_counter()
        if not np.isfinite(level):
            raise InvalidAudioError("the chain left nothing above the -70 LUFS gate (all of it was noise): "
                                    "no file written")
        if goal.integrated_lufs - level > MAX_TOTAL_GAIN_DB:
            raise TargetUnreachableError(
                f"the cleaned voice reads {level:.1f} LUFS; reaching {goal.integrated_lufs:g} LUFS needs more than "
                f"{MAX_TOTAL_GAIN_DB:g} dB of gain, which would mostly raise the noise floor")
        limiter = TruePeakLimiter(ceiling_dbtp=goal.ceiling_dbtp, lookahead_ms=preset.loudness.lookahead_ms,
                                  release_ms=preset.loudness.release_ms)
        # the chain's output is ours (not the caller's array): long ones are delivered over it
        in_place = in_place_pays(signal)
        result = reach_loudness(signal, sample_rate, target_lufs=goal.integrated_lufs,
                                ceiling_dbtp=goal.ceiling_dbtp, level_lufs=level, limiter=limiter,
                                max_limiting_lu=preset.loudness.max_limiting_lu, bits=bits, in_place=in_place)
        signal, after = result.audio, result.after
        stages += [{"stage": "loudness_gain", "gain_db": round(result.gain_db, 3)}, result.stage_report()]
        target = {"platform": goal.platform, "integrated_lufs": goal.integrated_lufs,
                  "true_peak_dbtp": goal.ceiling_dbtp, "note": goal.note}
        timings["loudness"] = round(time.perf_counter() - clock, 3)
    else:
        if bits:
            signal = quantize_to_grid(signal, bits, in_place=True)
        after = measure(signal, sample_rate)
    denoiser = next((s for s in stages if s["stage"] == "denoise" and "model" in s), None)
    report = {
        "versions": _versions(),
        "job": "enhance",
        "preset": {**preset.to_dict(), "source": preset.source or None},
        "model": denoiser["model"] if denoiser else None,
        "target": target,
        "sample_rate": sample_rate,
        "channels": int(audio.shape[0]),
        "samples": int(audio.shape[1]),
        "bit_depth": str(bit_depth),
        "dither": "tpdf" if bits else None,
        "stages": stages,
        "before": before.as_dict(),
        "after": after.as_dict(),
        "seconds": round(time.perf_counter() - started, 3),
        "timings_s": timings,
    }
    if speakers is not None:
        report["per_speaker"] = speakers
    return signal, report


def enhance_file(input_path, output_path, *, preset="podcast", model=None, atten_lim_db=None, bit_depth="24",
                 overwrite_input=False, per_speaker=False, progress=None):
    """Enhance a file into ``output_path`` (``.wav``: 16, 24, 32f; ``.flac``: 16, 24), atomically:
    the output is written to a temporary file beside it and renamed into place only when the job
    succeeded; nothing is left on failure or interrupt. The input is never modified; an output
    path equal to the input is refused unless ``overwrite_input``. Returns the report (with
    ``input``, ``output``, ``input_format`` and ``output_format`` added).

    Raises: as :func:`enhance`, and :class:`OutputError` for an unsupported extension or bit depth,
    a missing or unwritable folder, or a failed write.
    """
    fmt, subtype = output_format(output_path, bit_depth)
    check_output_path(output_path, input_path, overwrite_input=overwrite_input)
    say = progress or (lambda message: None)
    say("reading")
    audio, sample_rate, info = read_audio(input_path)
    # the chain works over what was read (nothing else holds it)
    out, report = _enhance(audio, sample_rate, owned=True, preset=preset, model=model, atten_lim_db=atten_lim_db,
                           bit_depth=bit_depth, per_speaker=per_speaker, progress=progress)
    del audio
    say("writing")
    pending = PendingWrite(output_path, out, sample_rate, str(bit_depth))  # on the grid already: no dither
    try:
        pending.commit()
    finally:
        pending.discard()  # after a commit there is nothing left to remove
    report["input"] = str(input_path)
    report["output"] = str(output_path)
    report["input_format"] = {"format": info.format, "subtype": info.subtype}
    report["output_format"] = {"format": fmt, "subtype": subtype}
    return report
