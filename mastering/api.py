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
from roomtone.mastering.presets import Platform, check_target, get_platform, load_preset
from roomtone.mastering.processors import Gain, TruePeakLimiter
from roomtone.concurrency import side_executor
from roomtone.audio import (BIT_DEPTHS, PendingWrite, check_output_path, quantize_to_grid, read_audio_async,
                            validate_audio)
from roomtone.errors import InvalidAudioError, OutputError, RoomtoneError, TargetUnreachableError
from roomtone.meter import ABSOLUTE_GATE_LUFS, MOMENTARY_S, integrated_loudness, loudness_stats, measure, true_peak

WORKING_LEVEL_LUFS = -18.0
MAX_TOTAL_GAIN_DB = 40.0  # more than this would mostly raise the noise floor
LOUDNESS_TOLERANCE_LU = 0.01  # we aim well inside the 0.1 LU promise


def _resolve_target(platform, target_lufs, ceiling_dbtp):
    plat = platform if isinstance(platform, Platform) else get_platform(platform)
    target = plat.target_lufs if target_lufs is None else float(target_lufs)
    ceiling = plat.ceiling_dbtp if ceiling_dbtp is None else float(ceiling_dbtp)
    check_target(target, ceiling)
    return plat, target, ceiling


def _run(processor, signal, sample_rate):
    """``processor(signal, sample_rate)`` without re-validating: the job validated its input once,
    and every processor keeps finite audio finite. Returns C-contiguous float32."""
    if processor.bypassed:
        return signal
    return np.ascontiguousarray(processor.process(signal, sample_rate), dtype=np.float32)


def _render(audio, curve, bits, on_candidate=None):
    """``audio * curve`` as float32, quantized (TPDF-dithered) to ``bits`` unless None; passed to
    ``on_candidate`` if given."""
    if bits:
        out = quantize_to_grid(audio, bits, gain=curve)
    else:
        out = audio * curve.astype(np.float32)[None, :]
    if on_candidate is not None:
        on_candidate(out)
    return out


def _solve_loudness(audio, sample_rate, level, limiter, detector, target, ceiling, max_limiting_lu, bits,
                    on_candidate=None):
    """Find the static gain (dB) so the limited output reads ``target`` LUFS, then quantize.

    The limiter's gain curve for ``g * audio`` comes from the same held detector (peaks scale with
    g), so each step costs one gain curve and one integrated-loudness reading: a secant search on
    ``I(g) - target``, which rises monotonically with g. The first step meters ``audio * curve``
    without building it; from the second on, a step builds the quantized (dithered) output and meters
    it in full, so the usual two-step search ends with its final reading already taken. Should the
    output's true peak exceed the ceiling, the limiter aims lower and the search runs again.
    ``on_candidate(out)``, if given, is told of each built output before it is metered (the file
    job starts writing it meanwhile); the last one told is the one returned.
    ``level`` is the integrated loudness of ``audio`` in LUFS.
    Returns ``(output float32, after LoudnessStats, gain_db, limiting_lu, iterations)``.
    """
    limiter_ceiling = ceiling
    gain_db = target - level
    iterations = 0
    for attempt in range(4):
        history = []  # (gain_db, loudness) at this limiter ceiling
        after = None
        for step in range(16):
            gain = 10.0 ** (gain_db / 20.0)
            curve = limiter.gain_curve(detector, sample_rate, pre_gain=gain, ceiling_dbtp=limiter_ceiling)
            curve *= gain
            if history:  # close: build and meter the real output
                out = _render(audio, curve, bits, on_candidate)
                after = measure(out, sample_rate)
                result = after.integrated_lufs
            else:
                result = integrated_loudness(audio, sample_rate, gain=curve)  # meters audio * curve
            error = target - result
            history.append((gain_db, result))
            iterations += 1
            limiting_lu = level + gain_db - result
            if limiting_lu > max_limiting_lu + 0.5:
                break
            if abs(error) <= LOUDNESS_TOLERANCE_LU:
                if after is None:
                    out = _render(audio, curve, bits, on_candidate)
                    after = measure(out, sample_rate)
                break
            if len(history) >= 2 and history[-1][0] != history[-2][0] and history[-1][1] != history[-2][1]:
                (g0, r0), (g1, r1) = history[-2], history[-1]
                gain_db = g1 + error / max((r1 - r0) / (g1 - g0), 0.05)
            else:
                gain_db += error
        if limiting_lu > max_limiting_lu:
            raise TargetUnreachableError(
                f"reaching {target:g} LUFS under {ceiling:g} dBTP needs {limiting_lu:.1f} LU of limiting "
                f"(this preset allows {max_limiting_lu:g} LU); lower the target, raise the ceiling, "
                f"or use a preset with more compression"
            )
        if abs(target - result) > 0.05 or after is None:
            raise TargetUnreachableError(
                f"the loudness search stopped at {result:.2f} LUFS, {abs(target - result):.2f} LU from the "
                f"{target:g} LUFS target, after {iterations} steps")
        if after.true_peak_dbtp <= ceiling and abs(after.integrated_lufs - target) <= 0.05:
            return out, after, gain_db, limiting_lu, iterations
        limiter_ceiling -= max(after.true_peak_dbtp - ceiling, 0.0) + 0.01
    raise TargetUnreachableError(
        f"after 4 attempts the output reads {after.integrated_lufs:.2f} LUFS and {after.true_peak_dbtp:.2f} dBTP; "
        f"the target is {target:g} LUFS under {ceiling:g} dBTP")


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
    plat, target, ceiling = _resolve_target(platform, target_lufs, ceiling_dbtp)
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
    out, after, gain_db, limiting_lu, iterations = _solve_loudness(
        signal, sample_rate, level, limiter, detector, target, ceiling, preset.max_limiting_lu, bits,
        on_candidate)
    lap("loudness_solve_and_meter_output")
    stages.append({"stage": "loudness_gain", "gain_db": round(gain_db, 3)})
    stages.append({"stage": "limiter", "gain_db": round(-limiting_lu, 3)})
    report = {
        "versions": _versions(),
        "preset": preset.to_dict(),
        "platform": plat.name,
        "target": {"integrated_lufs": target, "true_peak_dbtp": ceiling},
        "sample_rate": sample_rate,
        "channels": int(audio.shape[0]),
        "bit_depth": str(bit_depth),
        "dither": "tpdf" if bits else None,
        "stages": stages,
        "loudness_iterations": iterations,
        "before": before.as_dict(),
        "after": after.as_dict(),
        "seconds": round(time.perf_counter() - started, 3),
        "timings_s": timings,
    }
    return out, report


_WARMED_UP = False


def warm_up(preset="balanced", bit_depth="24"):
    """Once per process, run the whole job on 0.5 s of quiet noise so every numba kernel is
    loaded from its cache (about 0.4 s, mostly LLVM loading object code) while the real input is
    still decoding. Later calls (a script mastering many files) skip it. Errors are left for the
    real run to report."""
    global _WARMED_UP
    if _WARMED_UP:
        return
    noise = (np.random.default_rng(0).standard_normal((2, 22050)) * 0.01).astype(np.float32)
    try:
        master(noise, 44100, preset=preset, bit_depth=bit_depth)
    except RoomtoneError:
        pass
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
    warm_up(preset, bit_depth)  # loads the compiled kernels while the file decodes
    audio, sample_rate, info = reading.result()
    # Each finished output starts writing (to a temporary file) while it is metered; the file that
    # passes is renamed into place, any other removed.
    pending = []

    def start_write(candidate):
        while pending:
            pending.pop().discard()
        pending.append(PendingWrite(output_path, candidate, sample_rate, bit_depth))

    try:
        out, report = master(audio, sample_rate, preset=preset, platform=platform, target_lufs=target_lufs,
                             ceiling_dbtp=ceiling_dbtp, bit_depth=bit_depth, progress=progress,
                             on_candidate=start_write)
        say("writing")
        pending.pop().commit()
    finally:
        while pending:
            pending.pop().discard()
    report["input"] = str(input_path)
    report["output"] = str(output_path)
    report["input_format"] = {"format": info.format, "subtype": info.subtype}
    return report
