"""The master job: chain, one static gain, a true-peak limiter; every output at its target.

Signal path (all offline, whole file):

1. input trim: one static gain bringing the input to the working level (-18 LUFS), so the chain's
   thresholds mean the same on a quiet acoustic take and a loud club master;
2. the preset's chain (EQ, multiband compressor, stereo width, saturation);
3. the loudness stage: one static gain, solved so that the limited output reads the target
   integrated loudness (BS.1770-4), then the look-ahead true-peak limiter at the ceiling;
4. for 16/24-bit output, TPDF dither; the result is re-metered and, should the true peak of the
   quantized signal exceed the ceiling, the limiter is re-run a hair lower.

The loudness change comes only from these static gains, the chain and the limiter: no gain riding.
Metering runs in a second thread beside the chain (the numba kernels release the GIL).
"""

import platform as _platform
import time

import numpy as np

import roomtone
from roomtone.audio import BIT_DEPTHS, PendingWrite, check_output_path, read_audio_async, validate_audio
from roomtone.concurrency import side_executor
from roomtone.errors import InvalidAudioError, OutputError, RoomtoneError, TargetUnreachableError
from roomtone.loudness import reach_loudness
from roomtone.mastering.presets import load_preset
from roomtone.meter import ABSOLUTE_GATE_LUFS, MOMENTARY_S, integrated_loudness, loudness_stats, measure, true_peak
from roomtone.platforms import resolve_target
from roomtone.stages import Gain, TruePeakLimiter

WORKING_LEVEL_LUFS = -18.0
MAX_TOTAL_GAIN_DB = 40.0  # more than this would mostly raise the noise floor


def _run(processor, signal, sample_rate):
    """``processor(signal, sample_rate)`` without re-validating: the job validated its input once,
    and every processor keeps finite audio finite. Returns C-contiguous float32."""
    if processor.bypassed:
        return signal
    return np.ascontiguousarray(processor.process(signal, sample_rate), dtype=np.float32)


def _versions():
    import numba
    import soundfile

    return {"roomtone": roomtone.__version__, "python": _platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "soundfile": soundfile.__version__,
            "libsndfile": soundfile.__libsndfile_version__}


def master(audio, sample_rate, *, preset="balanced", platform="spotify", target_lufs=None, ceiling_dbtp=None,
           bit_depth="32f", progress=None, on_candidate=None):
    """Master ``audio`` to a platform's loudness and true-peak ceiling.

    Args:
        audio: (channels, samples) float array, any channel count (mono, stereo, 5.1...).
        sample_rate: Hz; kept as is.
        preset: a shipped preset name, a path to a preset TOML file, or a :class:`Preset`.
        platform: a platform name from ``presets/platforms.toml`` (``spotify``, ``apple``...).
        target_lufs, ceiling_dbtp: override the platform's integrated loudness target (LUFS) and
            true-peak ceiling (dBTP).
        bit_depth: ``"16"`` or ``"24"`` to quantize (with TPDF dither) here, so the returned samples
            are exactly what a file of that depth holds and meet the target; ``"32f"`` for float.
        progress: optional ``callable(str)`` told of each stage.
        on_candidate: optional ``callable(audio_out)`` told of each finished output before its
            final metering (the returned output is the last one told); :func:`master_file` starts
            writing it then.

    Returns:
        ``(audio_out, report)``: float32 (channels, samples), and a JSON-ready dict with versions,
        the preset as applied, the target, per-stage gains and before/after meter readings.

    Raises:
        InvalidAudioError: empty, non-finite, shorter than one 400 ms gating block, or silent input.
        PresetError: unknown preset or platform, bad preset file, target or ceiling out of range.
        OutputError: ``bit_depth`` not one of 16, 24, 32f.
        TargetUnreachableError: the target needs more limiting than the preset allows, more than
            40 dB of gain, or the loudness/true-peak search does not settle.
    """
    started = time.perf_counter()
    say = progress or (lambda message: None)
    audio = validate_audio(audio, sample_rate)
    sample_rate = int(sample_rate)
    preset = load_preset(preset)
    goal = resolve_target(platform, audio.shape[0], target_lufs, ceiling_dbtp)
    target, ceiling = goal.integrated_lufs, goal.ceiling_dbtp
    if str(bit_depth) not in BIT_DEPTHS:
        raise OutputError(f"bit_depth={bit_depth!r} must be one of {', '.join(BIT_DEPTHS)}")
    bits = None if str(bit_depth) == "32f" else int(bit_depth)
    if audio.shape[1] < MOMENTARY_S * sample_rate:
        raise InvalidAudioError(
            f"input is {audio.shape[1] / sample_rate * 1000:.0f} ms long (shape {audio.shape}, read as "
            f"(channels, samples)); integrated loudness needs at least one {MOMENTARY_S * 1000:.0f} ms gating block"
        )
    timings = {}
    clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    say("metering input")
    # Metering (the input's true peak, each stage's loudness) runs in a second thread beside the
    # chain: the kernels release the GIL, so on two cores it costs little wall time.
    with side_executor("meter") as meter_pool:
        input_peak = meter_pool.submit(true_peak, audio, sample_rate)  # beside the loudness pass
        input_loudness = loudness_stats(audio, sample_rate)
        input_lufs = input_loudness["integrated_lufs"]
        if not np.isfinite(input_lufs):
            raise InvalidAudioError(
                f"input is silent (no 400 ms block above the {ABSOLUTE_GATE_LUFS:g} LUFS gate): nothing to master, "
                f"no file written"
            )
        if target - input_lufs > MAX_TOTAL_GAIN_DB:
            raise TargetUnreachableError(
                f"input reads {input_lufs:.1f} LUFS; reaching {target:g} LUFS needs more than "
                f"{MAX_TOTAL_GAIN_DB:g} dB of gain, which would mostly raise the noise floor"
            )
        trim_db = float(np.clip(WORKING_LEVEL_LUFS - input_lufs, -60.0, 60.0))
        signal = _run(Gain(gain_db=trim_db), audio, sample_rate)
        lap("input_trim")
        level_futures = []
        for processor in preset.chain:
            if processor.bypassed:  # unchanged signal: nothing to run or meter
                level_futures.append(None)
                continue
            say(processor.kind)
            signal = _run(processor, signal, sample_rate)
            level_futures.append(meter_pool.submit(integrated_loudness, signal, sample_rate))
            lap(processor.kind)
        say("loudness and true-peak limiting")
        limiter = TruePeakLimiter(ceiling_dbtp=ceiling, lookahead_ms=preset.lookahead_ms,
                                  release_ms=preset.release_ms)
        detector = limiter.lazy_detector(signal, sample_rate)
        # While the last stage is metered beside it, compute the exact detector where the expected
        # gain will need it, from the last level already metered (the search itself computes
        # whatever the true level turns out to need).
        level = input_lufs + trim_db  # a static gain shifts integrated loudness exactly
        for future in level_futures:
            if future is not None and future.done():
                level = future.result()
        limiter.prepare(detector, 10.0 ** ((target - level) / 20.0))
        lap("limiter_detector")
        before = measure(audio, sample_rate, input_loudness, input_peak.result())
        stages = [{"stage": "input_trim", "gain_db": round(trim_db, 3)}]
        level = input_lufs + trim_db
        for processor, future in zip(preset.chain, level_futures):
            new_level = level if future is None else future.result()
            stages.append({"stage": processor.kind, "gain_db": round(new_level - level, 3)})
            level = new_level
        lap("metering_wait")
    result = reach_loudness(signal, sample_rate, target_lufs=target, ceiling_dbtp=ceiling, level_lufs=level,
                            limiter=limiter, detector=detector, max_limiting_lu=preset.max_limiting_lu, bits=bits,
                            on_candidate=on_candidate)
    lap("loudness_solve_and_meter_output")
    stages.append({"stage": "loudness_gain", "gain_db": round(result.gain_db, 3)})
    stages.append(result.stage_report())
    report = {
        "versions": _versions(),
        "preset": preset.to_dict(),
        "platform": goal.platform,
        "target": {"integrated_lufs": target, "true_peak_dbtp": ceiling, "note": goal.note},
        "sample_rate": sample_rate,
        "channels": int(audio.shape[0]),
        "bit_depth": str(bit_depth),
        "dither": "tpdf" if bits else None,
        "stages": stages,
        "loudness_iterations": result.iterations,
        "before": before.as_dict(),
        "after": result.after.as_dict(),
        "seconds": round(time.perf_counter() - started, 3),
        "timings_s": timings,
    }
    return result.audio, report


_WARMED_UP = False


def warm_up(preset="balanced", bit_depth="24"):
    """Once per process, load every numba kernel a :func:`master_file` call uses
    (:data:`roomtone.kernels.MASTER_KERNELS`) from numba's cache (about 0.3 s, mostly LLVM loading
    object code), or on a first run compile them (:func:`roomtone.kernels.compile_kernels`: about
    7 s of CPU, shared over up to one process per core; :func:`roomtone.kernels.cache_is_warm` tells
    which), then run the whole job on 0.5 s of quiet noise and both PCM quantizers (the job's dither
    and the file writer's) so that nothing is left to load. The ``master`` CLI calls it while the
    input decodes; library calls never do it behind the caller's back (the first real call pays the
    loading or compiling instead, in this process only). Later calls skip it. Errors are left for
    the real run to report."""
    global _WARMED_UP
    if _WARMED_UP:
        return
    from roomtone.audio import _frames, quantize_to_grid
    from roomtone.kernels import compile_kernels

    compile_kernels()
    noise = (np.random.default_rng(0).standard_normal((2, 22050)) * 0.01).astype(np.float32)
    try:
        out, _ = master(noise, 44100, preset=preset, bit_depth=bit_depth)
    except RoomtoneError:
        out = noise
    if str(bit_depth) == "32f":
        quantize_to_grid(out, 24)  # so that the cache holds every kernel whatever the depth
    _frames(out, "24", False, 0)  # the writer's quantizer (a master_file write of 16/24-bit output)
    _WARMED_UP = True


def master_file(input_path, output_path, *, preset="balanced", platform="spotify", target_lufs=None,
                ceiling_dbtp=None, bit_depth="24", overwrite_input=False, progress=None, reading=None):
    """Master a file into ``output_path`` (WAV or FLAC by extension), atomically.

    ``reading`` may be a :class:`concurrent.futures.Future` already decoding ``input_path`` with
    :func:`roomtone.audio.read_audio_async` (the CLI starts one before importing this module).

    The output keeps the input's sample rate and channel layout. The input is never modified; an
    output path equal to the input is refused unless ``overwrite_input``. Returns the report (with
    ``input`` and ``output`` paths added).
    """
    from roomtone.audio import output_format

    output_format(output_path, bit_depth)
    check_output_path(output_path, input_path, overwrite_input=overwrite_input)
    say = progress or (lambda message: None)
    say("reading")
    if reading is None:
        reading = read_audio_async(input_path)
    audio, sample_rate, info = reading.result()
    # Each finished output starts writing (to a temporary file) while it is metered; the file that
    # passes is renamed into place, any other removed. A write stays in ``pending`` until it is
    # committed or discarded, so an interrupt at any point (even inside commit's wait) finds it.
    pending = []

    def start_write(candidate):
        while pending:
            pending[-1].discard()
            pending.pop()
        pending.append(PendingWrite(output_path, candidate, sample_rate, bit_depth))

    try:
        out, report = master(audio, sample_rate, preset=preset, platform=platform, target_lufs=target_lufs,
                             ceiling_dbtp=ceiling_dbtp, bit_depth=bit_depth, progress=progress,
                             on_candidate=start_write)
        say("writing")
        pending[-1].commit()
        pending.pop()
    finally:
        while pending:
            pending[-1].discard()
            pending.pop()
    report["input"] = str(input_path)
    report["output"] = str(output_path)
    report["input_format"] = {"format": info.format, "subtype": info.subtype}
    return report
