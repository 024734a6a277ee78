"""File boundary: reading and validating audio, and writing it atomically with dither.

Inside the library audio is float32 ``(channels, samples)``; files are frames x channels. The
layout is converted here, once, from the file's own channel count, never guessed from a shape.

Output formats: WAV and FLAC (integer PCM or float, :data:`BIT_DEPTHS`) and the lossy MP3, OGG Vorbis
and Opus (:data:`LOSSY_CODECS`), all through libsndfile. Input: whatever libsndfile reads, plus
AAC/M4A through PyAV (the optional ``aac`` extra).
"""

import os
import struct
import tempfile
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from roomtone.errors import InvalidAudioError, OutputError

# extension -> (libsndfile format, allowed bit depths); None: a lossy format (see LOSSY_CODECS), where
# a bit depth does not apply
OUTPUT_FORMATS = {
    ".wav": ("WAV", ("16", "24", "32f")),
    ".flac": ("FLAC", ("16", "24")),
    ".mp3": ("MP3", None),
    ".ogg": ("OGG", None),
    ".opus": ("OGG", None),
}
_SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "32f": "FLOAT"}
BIT_DEPTHS = tuple(_SUBTYPES)  # "16", "24", "32f"
AAC_EXTENSIONS = (".m4a", ".aac", ".mp4")  # read through PyAV (libsndfile has no AAC decoder)
AAC_HINT = "AAC/M4A input needs the optional decoder: pip install 'roomtone[aac]'"
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 768000
MAX_CHANNELS = 64  # more is a (samples, channels) array read the wrong way round, not a layout


@dataclass(frozen=True)
class LossyCodec:
    """How libsndfile encodes one lossy output format, at delivery quality.

    ``compression_level`` is libsndfile's 0 (best) .. 1 (smallest); ``bitrate_mode`` its
    ``CONSTANT``/``AVERAGE``/``VARIABLE`` or None for the codec's own. ``sample_rates``: the rates
    (Hz) the encoder takes, or ``(low, high)`` with ``rate_range`` for a continuous range.
    ``max_channels``: the most the format holds. ``quality``: the setting in words, for the report.
    """

    name: str
    format: str
    subtype: str
    compression_level: float
    bitrate_mode: str | None
    sample_rates: tuple
    rate_range: bool
    max_channels: int
    quality: str

    def takes(self, sample_rate):
        """Whether the encoder takes ``sample_rate`` (Hz)."""
        if self.rate_range:
            return self.sample_rates[0] <= sample_rate <= self.sample_rates[1]
        return sample_rate in self.sample_rates

    def rates_text(self):
        if self.rate_range:
            return f"{self.sample_rates[0]}..{self.sample_rates[1]} Hz"
        return ", ".join(str(rate) for rate in self.sample_rates) + " Hz"


# Delivery settings (libsndfile 1.2.2 with LAME, libvorbis and libopus; bitrates measured on stereo
# white noise): MP3 at 320 kbps CBR; Vorbis at quality 8 (about 200 kbps); Opus at about 270 kbps
# stereo (libsndfile maps the level onto 6..256 kbps per channel). MP3 (MPEG-1/2/2.5) takes only its
# nine rates and two channels; Opus only 8/12/16/24/48 kHz. libvorbis takes any rate, but crashed the
# process at 384 kHz here (192 kHz and 200 kHz worked), so Vorbis stops at 192 kHz.
LOSSY_CODECS = {
    ".mp3": LossyCodec("mp3", "MP3", "MPEG_LAYER_III", 0.0, "CONSTANT",
                       (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000), False, 2, "320 kbps CBR"),
    ".ogg": LossyCodec("vorbis", "OGG", "VORBIS", 0.2, None, (8000, 192000), True, 255, "quality 8 VBR"),
    ".opus": LossyCodec("opus", "OGG", "OPUS", 0.5, None, (8000, 12000, 16000, 24000, 48000), False, 255,
                        "about 135 kbps per channel VBR"),
}


def lossy_codec(path):
    """The :class:`LossyCodec` for ``path``'s extension, or None for WAV/FLAC (and anything else)."""
    return LOSSY_CODECS.get(os.path.splitext(os.fspath(path))[1].lower())


@dataclass(frozen=True)
class AudioFileInfo:
    """What the reader found: ``subtype`` is libsndfile's (e.g. ``PCM_16``), ``frames`` per channel."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str


def validate_audio(audio, sample_rate, *, name="audio"):
    """Check an in-memory signal and return it as C-contiguous float32 ``(channels, samples)``.

    Raises :class:`InvalidAudioError` for a wrong rank, no channels or more than
    :data:`MAX_CHANNELS` (a (samples, channels) array: the message says to transpose), a bad sample
    rate or non-finite samples. A 1-D array is taken as mono.
    """
    array = np.asarray(audio)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise InvalidAudioError(f"{name} must have shape (channels, samples); got shape {array.shape}")
    if array.shape[0] < 1:
        raise InvalidAudioError(f"{name} has no channels")
    if array.shape[0] > MAX_CHANNELS:
        raise InvalidAudioError(
            f"{name} has shape {array.shape}, read as {array.shape[0]} channels of {array.shape[1]} samples; the "
            f"layout is (channels, samples) with at most {MAX_CHANNELS} channels: transpose it (audio.T) if it is "
            f"(samples, channels)")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InvalidAudioError(f"{name} must be real integer or float samples; got dtype {array.dtype}")
    # Below 8 kHz the BS.1770-4 K-weighting shelf (1.68 kHz) has no stable digital version.
    if not (isinstance(sample_rate, (int, np.integer)) or float(sample_rate).is_integer()) or not (
        MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE
    ):
        raise InvalidAudioError(f"sample_rate={sample_rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InvalidAudioError(f"{name} contains {bad} NaN or infinite samples")
    return array


def length_text(samples, sample_rate):
    """A length as a user reads it: ``"1 sample long (0.02 ms at 48000 Hz)"``,
    ``"4800 samples long (100 ms at 48000 Hz)"``, ``"0 samples long (empty)"``."""
    samples, sample_rate = int(samples), int(sample_rate)
    if samples == 0:
        return "0 samples long (empty)"
    ms = samples / sample_rate * 1000.0
    shown = f"{ms:.2f}" if ms < 1 else f"{ms:.1f}" if ms < 10 else f"{ms:.0f}"
    return f"{samples} sample{'s' if samples != 1 else ''} long ({shown} ms at {sample_rate} Hz)"


def too_short(samples, sample_rate, needed_s, what):
    """The :class:`InvalidAudioError` for input of ``samples`` at ``sample_rate`` shorter than
    ``needed_s`` seconds, which ``what`` needs: ``input is 1 sample long (0.02 ms at 48000 Hz);
    <what> needs at least 400 ms``."""
    needed_ms = needed_s * 1000.0
    return InvalidAudioError(f"input is {length_text(samples, sample_rate)}; {what} needs at least "
                             f"{needed_ms:.0f} ms ({int(np.ceil(needed_s * sample_rate))} samples at {int(sample_rate)} Hz)")


def _wav_data_shortfall(path):
    """Bytes missing from a RIFF/WAVE file's ``data`` chunk (0 if complete or not a plain WAV).

    libsndfile quietly shortens a truncated WAV to what is there, so the header is read here.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0
        offset = 12
        while offset + 8 <= size:
            handle.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF):
                    return 0
                return max(0, offset + 8 + chunk_size - size)
            offset += 8 + chunk_size + (chunk_size & 1)
    return 0


def read_audio(path):
    """Read an audio file as float32 ``(channels, samples)``.

    Returns ``(audio, sample_rate, AudioFileInfo)``. Raises :class:`InvalidAudioError` with one
    line for a missing, empty, non-audio or truncated file and for NaN/Inf samples.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InvalidAudioError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InvalidAudioError(f"{path}: is a directory, not an audio file")
    try:
        if os.path.getsize(path) == 0:
            raise InvalidAudioError(f"{path}: file is empty (0 bytes)")
        missing = _wav_data_shortfall(path)
    except OSError as exc:
        raise InvalidAudioError(f"{path}: cannot read ({exc.strerror})") from None
    if missing:
        raise InvalidAudioError(f"{path}: truncated: the WAV header declares {missing} more bytes of audio than the file holds")
    if os.path.splitext(path)[1].lower() in AAC_EXTENSIONS:
        data, info = _read_with_pyav(path)
    else:
        data, info = _read_with_libsndfile(path)
    if data.shape[1] < info.frames:
        raise InvalidAudioError(
            f"{path}: truncated: the header declares {info.frames} frames but only {data.shape[1]} are present"
        )
    if data.shape[1] == 0:
        raise InvalidAudioError(f"{path}: contains no audio frames")
    audio = validate_audio(data, info.sample_rate, name=path)  # already (channels, samples) float32: no copy
    return audio, info.sample_rate, info


READ_CHUNK = 1 << 16  # frames decoded at a time into the (channels, samples) array


def _read_with_libsndfile(path):
    """``((channels, frames) float32, AudioFileInfo)`` by libsndfile; one-line errors. Decoded in
    chunks straight into the library's layout, so reading holds one whole-file copy, not two."""
    try:
        with sf.SoundFile(path) as handle:
            info = AudioFileInfo(path, int(handle.samplerate), int(handle.channels), int(handle.frames),
                                 handle.format, handle.subtype)
            data = np.empty((info.channels, max(info.frames, 0)), dtype=np.float32)
            filled = 0
            block = np.empty((READ_CHUNK, info.channels), dtype=np.float32)
            while True:
                got = handle.read(out=block, dtype="float32", always_2d=True).shape[0]
                if got == 0:
                    break
                if filled + got > data.shape[1]:  # more frames than declared: grow (rare)
                    data = np.concatenate((data[:, :filled], np.empty((info.channels, filled + got), np.float32)), 1)
                data[:, filled:filled + got] = block[:got].T
                filled += got
            data = data[:, :filled] if filled < data.shape[1] else data
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError) as exc:
        reason = str(exc).split("\n")[0].strip()
        if "lost sync" in reason or "unexpected end" in reason.lower():
            raise InvalidAudioError(f"{path}: truncated or corrupt audio data ({reason})") from None
        raise InvalidAudioError(f"{path}: not a readable audio file ({reason})") from None
    return data, info


def _read_with_pyav(path):
    """``((channels, frames) float32, AudioFileInfo)`` of the first audio stream of an AAC/M4A/MP4
    file, decoded by PyAV (FFmpeg) at the stream's own rate and layout. FFmpeg skips the encoder's
    priming samples; the padding of the last frame is cut to the duration the container declares."""
    try:
        import av
    except ImportError:
        raise InvalidAudioError(f"{path}: {AAC_HINT}") from None
    try:
        with av.open(path) as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise InvalidAudioError(f"{path}: has no audio stream")
            rate = int(stream.codec_context.sample_rate)
            # every frame to planar float32 at the stream's layout and rate: rows are channels
            converter = av.AudioResampler(format="fltp", layout=stream.codec_context.layout, rate=rate)
            chunks = []
            for frame in container.decode(stream):
                chunks.extend(out.to_ndarray() for out in converter.resample(frame))
            chunks.extend(out.to_ndarray() for out in converter.resample(None))
            channels = int(stream.codec_context.channels)
            codec = stream.codec_context.name
            container_name = container.format.name
            declared = None
            if stream.duration and stream.time_base:
                declared = int(round(float(stream.duration * stream.time_base) * rate))
    except av.FFmpegError as exc:
        raise InvalidAudioError(f"{path}: not a readable AAC/M4A file ({str(exc).splitlines()[0]})") from None
    data = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), dtype=np.float32)
    if declared is not None and 0 < declared < data.shape[1]:
        data = data[:, :declared]
    data = np.ascontiguousarray(data, dtype=np.float32)
    return data, AudioFileInfo(path, rate, channels, data.shape[1], container_name.split(",")[0].upper(), codec.upper())


def _in_background(name, fn, *args):
    """Start ``fn(*args)`` in a thread of its own; returns its :class:`~concurrent.futures.Future`
    (errors are raised by ``future.result()``)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"roomtone-{name}")
    try:
        return pool.submit(fn, *args)
    finally:
        pool.shutdown(wait=False)  # the submitted call still runs to completion


class AudioReading:
    """:func:`read_audio` of ``path`` running in a background thread (libsndfile decodes without
    the GIL, so the caller can import and load kernels meanwhile). :meth:`result` waits and returns
    ``(audio, sample_rate, AudioFileInfo)`` (errors are raised there); :meth:`take` does the same
    and forgets the result, so a job that processes the audio in place holds the only copy."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._future = _in_background("read", read_audio, self.path)

    def result(self):
        if self._future is None:
            raise RuntimeError(f"{self.path}: the decoded audio was already taken")
        return self._future.result()

    def take(self):
        value = self.result()
        self._future = None
        return value


def read_audio_async(path):
    """Start :func:`read_audio` of ``path`` in a background thread: an :class:`AudioReading`."""
    return AudioReading(path)


def output_format(path, bit_depth):
    """(libsndfile format, subtype) for ``path``'s extension and ``bit_depth`` ("16", "24", "32f").

    A lossy format (.mp3, .ogg, .opus) has no bit depth: its encoder takes the float samples. There
    ``bit_depth`` may be None or any of :data:`BIT_DEPTHS` and is ignored (a caller such as the CLI
    passes its default "24" whatever the format, and cannot tell it from one typed on purpose); a
    value that is no bit depth roomtone writes at all (e.g. "20") is refused for every format.
    """
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise OutputError(f"{path}: unsupported output extension {ext or '(none)'!r}; use one of "
                          f"{', '.join(OUTPUT_FORMATS)}")
    fmt, depths = OUTPUT_FORMATS[ext]
    if depths is None:
        if bit_depth is not None and str(bit_depth) not in BIT_DEPTHS:
            raise OutputError(f"{path}: bit depth {bit_depth} is not one of {', '.join(BIT_DEPTHS)}; for {ext} "
                              f"(lossy) no bit depth applies: leave it out")
        return fmt, LOSSY_CODECS[ext].subtype
    if str(bit_depth) not in depths:
        raise OutputError(f"{path}: bit depth {bit_depth} is not available for {ext}; choose one of {', '.join(depths)}")
    return fmt, _SUBTYPES[str(bit_depth)]


def delivery_sample_rate(path, sample_rate, output_sample_rate=None):
    """The rate (Hz) a master of ``sample_rate`` audio is written to ``path`` at.

    ``output_sample_rate`` None keeps ``sample_rate`` where the format takes it; a lossy encoder that
    does not (Opus from 44.1 kHz, MP3 from 96 kHz) gets the highest rate of
    :data:`roomtone.resample.OUTPUT_SAMPLE_RATES` it takes, of the same family (44.1 or 48 kHz) where
    one is. A rate asked for must be one of those and one the format takes (``sample_rate`` may
    then be None: the check runs before the input is read). Raises :class:`OutputError` with the
    allowed rates.
    """
    from roomtone.resample import OUTPUT_SAMPLE_RATES, check_output_sample_rate

    codec = lossy_codec(path)
    if output_sample_rate is not None:
        rate = check_output_sample_rate(output_sample_rate)
        if codec is not None and not codec.takes(rate):
            allowed = [str(r) for r in OUTPUT_SAMPLE_RATES if codec.takes(r)]
            raise OutputError(f"{path}: output_sample_rate={rate} Hz is not available for {codec.name}, which takes "
                              f"{codec.rates_text()}; choose {' or '.join(allowed)} Hz")
        return rate
    if codec is None or codec.takes(int(sample_rate)):
        return int(sample_rate)
    candidates = [rate for rate in OUTPUT_SAMPLE_RATES if codec.takes(rate)]
    family = [rate for rate in candidates if (rate % 11025 == 0) == (int(sample_rate) % 11025 == 0)]
    return max(family or candidates)


def check_output_channels(path, channels):
    """Refuse more channels than ``path``'s format holds (MP3: two) with :class:`OutputError`."""
    codec = lossy_codec(path)
    if codec is not None and channels > codec.max_channels:
        raise OutputError(f"{path}: {codec.name} holds at most {codec.max_channels} channels; the audio has "
                          f"{channels}: write .ogg, .opus, .flac or .wav instead")


def quantize_to_grid(audio, bits, seed=0, gain=None, in_place=False):
    """``audio`` (times the per-sample ``gain`` if given, shape (samples,), as float32) quantized to
    ``bits``-bit PCM with TPDF dither of +-1 LSB (the difference of two independent uniform
    LSB-wide variables), rounding and clipping to the code range, returned as float32 (exactly
    representable, so writing it at ``bits`` bits without dither stores these very samples). Each
    output sample is within 1.5 LSB of its input (:func:`quantization_error_bound`).
    ``in_place``: overwrite ``audio`` (C-contiguous float32) with the result and return it.
    Shape: unchanged."""
    from roomtone.kernels.pcm import quantize_grid  # numba loads lazily: reading files needs none of it

    gain = np.zeros(0, dtype=np.float32) if gain is None else np.ascontiguousarray(gain, dtype=np.float32)
    if in_place:
        if audio.dtype != np.float32 or not audio.flags.c_contiguous or not audio.flags.writeable:
            raise ValueError("in_place quantization needs writeable C-contiguous float32 audio")
        return quantize_grid(audio, bits, True, seed, gain, audio)
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    return quantize_grid(audio, bits, True, seed, gain, np.empty(audio.shape, dtype=np.float32))


def quantization_error_bound(bits):
    """The most :func:`quantize_to_grid` moves a sample inside the code range: 1.5 LSB (dither
    under 1 LSB, rounding at most 0.5), in full-scale units."""
    return 1.5 / float(2 ** (bits - 1))


def check_output_path(output_path, input_path=None, *, overwrite_input=False):
    """Refuse an output equal to the input (unless asked) and an unwritable or missing directory."""
    output_path = os.fspath(output_path)
    if input_path is not None and not overwrite_input:
        same = os.path.abspath(output_path) == os.path.abspath(os.fspath(input_path))
        if not same and os.path.exists(output_path) and os.path.exists(input_path):
            same = os.path.samefile(output_path, input_path)
        if same:
            raise OutputError(f"{output_path}: output is the input file; choose another path (the input is never overwritten unless asked)")
    directory = os.path.dirname(os.path.abspath(output_path))
    if not os.path.isdir(directory):
        raise OutputError(f"{output_path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"{output_path}: directory {directory} is not writable")
    if os.path.isdir(output_path):
        raise OutputError(f"{output_path}: is a directory")


WRITE_CHUNK = 1 << 16  # frames converted and written at a time when no dither sequence runs through


def pcm_frames(audio, bit_depth, dither, dither_seed):
    """Validated float32 ``(channels, samples)`` as the C-contiguous frames libsndfile writes for
    ``bit_depth`` (``"16"``, ``"24"``: int32 codes at the top bits, TPDF-dithered when ``dither``
    with ``dither_seed``; ``"32f"``: float32). Shape: (samples, channels)."""
    if bit_depth == "32f":
        return np.ascontiguousarray(audio.T)
    bits = int(bit_depth)
    # libsndfile maps int32 full scale onto the PCM width: the codes go to the top bits.
    from roomtone.kernels.pcm import quantize_codes

    return quantize_codes(np.ascontiguousarray(audio), bits, dither, dither_seed, 32 - bits)


def _write_frames(handle, audio, sample_rate, bit_depth, dither, dither_seed, fmt, subtype, codec=None):
    """Encode ``audio`` into the open binary ``handle``. Dithered output is converted in one piece
    (one dither sequence through the file); otherwise in chunks, so no whole-file integer copy. A
    lossy ``codec`` (:class:`LossyCodec`) takes the float samples in chunks at its settings."""
    if codec is not None:
        with sf.SoundFile(handle, "w", int(sample_rate), audio.shape[0], codec.subtype, format=codec.format,
                          compression_level=codec.compression_level, bitrate_mode=codec.bitrate_mode) as out:
            for start in range(0, audio.shape[1], WRITE_CHUNK):
                out.write(np.ascontiguousarray(audio[:, start:start + WRITE_CHUNK].T))
        return
    with sf.SoundFile(handle, "w", int(sample_rate), audio.shape[0], subtype, format=fmt) as out:
        if dither and bit_depth != "32f":
            out.write(pcm_frames(audio, bit_depth, True, dither_seed))
            return
        for start in range(0, audio.shape[1], WRITE_CHUNK):
            out.write(pcm_frames(audio[:, start:start + WRITE_CHUNK], bit_depth, False, 0))


def _check_encodable(path, audio, sample_rate):
    """Refuse a rate or channel count ``path``'s lossy format does not take, before any encoding."""
    codec = lossy_codec(path)
    if codec is not None and not codec.takes(int(sample_rate)):
        raise OutputError(f"{path}: {codec.name} takes {codec.rates_text()}, not {sample_rate} Hz; resample first "
                          f"(master_file's output_sample_rate)")
    check_output_channels(path, audio.shape[0])
    return codec


def write_audio(path, audio, sample_rate, *, bit_depth="24", dither=True, dither_seed=0):
    """Write float32 ``(channels, samples)`` atomically: a temporary file in the same directory,
    flushed and fsynced, then renamed over ``path``. Nothing is left behind on failure.

    WAV/FLAC: 16- and 24-bit output is TPDF-dithered (as :func:`quantize_to_grid`) unless
    ``dither=False`` (for audio already quantized to that depth, e.g. by :func:`quantize_to_grid`,
    which is then written exactly); 32f is written as is. MP3/OGG/Opus: the float samples go to the
    encoder at :data:`LOSSY_CODECS` settings; ``bit_depth`` and ``dither`` are ignored.
    """
    path = os.fspath(path)
    fmt, subtype = output_format(path, bit_depth)
    check_output_path(path)
    audio = validate_audio(audio, sample_rate)
    codec = _check_encodable(path, audio, sample_rate)
    _commit(_write_temp(path, "wb", lambda handle: _write_frames(handle, audio, sample_rate, bit_depth, dither,
                                                                  dither_seed, fmt, subtype, codec)), path)


class PendingWrite:
    """:func:`write_audio` (without dither: for audio already on the ``bit_depth`` grid) started in a
    background thread into a temporary file beside ``path``; :meth:`commit` waits, then renames it
    over ``path``, :meth:`discard` removes it. A job can so write its output while it meters it, and
    keep or drop the file on the reading; for a lossy format, :meth:`read_back` decodes what the
    encoder wrote, so the job meters the file itself. Nothing is left at ``path`` unless committed.
    """

    def __init__(self, path, audio, sample_rate, bit_depth):
        self.path = os.fspath(path)
        fmt, subtype = output_format(self.path, bit_depth)
        check_output_path(self.path)
        audio = validate_audio(audio, sample_rate)
        codec = _check_encodable(self.path, audio, sample_rate)
        self._future = _in_background(
            "write", _write_temp, self.path, "wb",
            lambda handle: _write_frames(handle, audio, sample_rate, bit_depth, False, 0, fmt, subtype, codec))

    def read_back(self):
        """Wait for the write and decode the temporary file: ``(audio, sample_rate)``, float32
        (channels, samples), as a player would read the file. Raises :class:`OutputError`."""
        tmp = self._future.result()
        try:
            with sf.SoundFile(tmp) as handle:
                data = handle.read(dtype="float32", always_2d=True)
                rate = int(handle.samplerate)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise OutputError(f"{self.path}: the file just written does not decode ({str(exc).splitlines()[0]})") from None
        return np.ascontiguousarray(data.T), rate

    def wait(self):
        """Wait for the write (a job writing several files waits for all before renaming any);
        raises :class:`OutputError`."""
        self._future.result()

    def commit(self):
        """Wait for the write and rename the file into place; raises :class:`OutputError`."""
        _commit(self._future.result(), self.path)

    def discard(self):
        """Wait for the write (whatever its outcome) and remove the temporary file."""
        try:
            _unlink(self._future.result())
        except BaseException:  # noqa: BLE001 - a failed write left nothing; the file is dropped either way
            pass


def clip_limit(bits):
    """The largest magnitude a ``bits``-bit output may have so TPDF dither (1 LSB) and rounding (half
    an LSB) never reach past the code range: ``1 - 3 LSB``."""
    return 1.0 - 3.0 / float(2 ** (int(bits) - 1))


class StreamWrite:
    """An output file written block by block (a long job's output never whole in memory) into a
    temporary file beside ``path``; :meth:`commit` renames it into place, :meth:`discard` removes
    it, so nothing half-written is ever at ``path``. 16/24-bit blocks are TPDF-dithered (a seed per
    block) after clamping to the code range (:attr:`clipped` counts the samples clamped);
    32f is written as is.
    """

    def __init__(self, path, sample_rate, channels, bit_depth, *, seed=0):
        self.path = os.fspath(path)
        self.fmt, self.subtype = output_format(self.path, bit_depth)
        check_output_path(self.path)
        self.bit_depth, self.seed = str(bit_depth), int(seed)
        self.blocks = self.clipped = 0
        try:
            fd, self.tmp = _temp_beside(self.path)
        except OSError as exc:
            folder = os.path.dirname(os.path.abspath(self.path))
            raise OutputError(f"{self.path}: cannot create a file in {folder} "
                              f"({cannot_create_reason(exc, folder)})") from None
        self._handle = os.fdopen(fd, "wb")
        try:
            self._file = sf.SoundFile(self._handle, "w", int(sample_rate), int(channels), self.subtype,
                                      format=self.fmt)
        except BaseException:
            self.discard()
            raise

    def write(self, audio):
        """Append ``audio`` (channels, samples) float32."""
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        try:
            if self.bit_depth != "32f":
                limit = clip_limit(self.bit_depth)
                over = np.abs(audio) > limit
                if over.any():
                    self.clipped += int(np.count_nonzero(over))
                    audio = np.clip(audio, -limit, limit)
            self._file.write(pcm_frames(audio, self.bit_depth, self.bit_depth != "32f", self.seed + self.blocks))
        except (OSError, sf.LibsndfileError) as exc:
            raise OutputError(f"{self.path}: could not write ({exc})") from None
        self.blocks += 1

    def commit(self):
        """Finish the file and rename it into place; raises :class:`OutputError`."""
        try:
            self._file.close()
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
        except (OSError, sf.LibsndfileError) as exc:
            self.discard()
            raise OutputError(f"{self.path}: could not write ({exc})") from None
        _commit(self.tmp, self.path)

    def discard(self):
        """Close and remove the temporary file (nothing after a commit)."""
        for close in (getattr(self, "_file", None), self._handle):
            try:
                if close is not None and not close.closed:
                    close.close()
            except Exception:  # noqa: BLE001 - the file is dropped either way
                pass
        _unlink(self.tmp)


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` via a temporary file and a rename (for JSON reports)."""
    path = os.fspath(path)
    check_output_path(path)
    _commit(_write_temp(path, "w", lambda handle: handle.write(text)), path)


def write_bytes_atomic(path, data):
    """Write ``data`` (bytes, e.g. a PNG) to ``path`` via a temporary file and a rename."""
    path = os.fspath(path)
    check_output_path(path)
    _commit(_write_temp(path, "wb", lambda handle: handle.write(data)), path)


def cannot_create_reason(exc, directory):
    """Why no file could be created in ``directory`` (an existing folder), in words: the system's
    reason, except that a folder that exists yet answers "No such file or directory" (/proc, a virtual
    file system) is said to take no new files."""
    import errno

    if getattr(exc, "errno", None) == errno.ENOENT and os.path.isdir(directory):
        return "it takes no new files: a virtual file system"
    return exc.strerror or str(exc)


def _write_temp(path, mode, fill):
    """Write a temporary file beside ``path`` with ``fill(handle)``, flush and fsync it; returns its
    name. On any failure (including KeyboardInterrupt) it is removed; OS and libsndfile errors become
    :class:`OutputError` with one line."""
    try:
        fd, tmp = _temp_beside(path)
    except OSError as exc:  # e.g. /sys (EACCES even for root) or /proc (ENOENT): one line, exit status 4
        folder = os.path.dirname(os.path.abspath(path))
        raise OutputError(f"{path}: cannot create a file in {folder} ({cannot_create_reason(exc, folder)})") from None
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as exc:
        _unlink(tmp)
        if isinstance(exc, (OSError, sf.LibsndfileError)):
            raise OutputError(f"{path}: could not write ({exc})") from None
        raise
    return tmp


def _commit(tmp, path):
    """Rename the finished temporary file ``tmp`` over ``path`` (atomic on one file system)."""
    try:
        os.replace(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        raise OutputError(f"{path}: could not write ({exc})") from None


def _temp_beside(path):
    """``(fd, name)`` of a new hidden temporary file in ``path``'s directory, with the mode a
    finished file gets (mkstemp makes 0600; the umask decides)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".roomtone-", suffix=os.path.splitext(path)[1] + ".part", dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    return fd, tmp


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
