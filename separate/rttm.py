"""NIST RTTM files of speaker turns: write (atomically) and read back.

One ``SPEAKER`` line per turn, ten space-separated fields (NIST Rich Transcription Time Marked
format, RT-09 evaluation plan, appendix A; as md-eval and pyannote read it)::

    SPEAKER <file-id> 1 <onset s> <duration s> <NA> <NA> <speaker> <NA> <NA>

Reading keeps ``SPEAKER`` lines only (other types such as ``SPKR-INFO`` are skipped, as are blank
lines and ``;;`` comments) and accepts nine fields (older files omit the last). A malformed line
raises :class:`RttmError` naming the file and line.
"""

import math
import os

from roomtone.audio import write_text_atomic
from roomtone.errors import RoomtoneError
from roomtone.separate.diarize import Turn


class RttmError(RoomtoneError, ValueError):
    """An RTTM file (or text) that cannot be read, or turns that cannot be written as RTTM."""


def _check_name(what, name):
    if not name or any(c.isspace() for c in str(name)):
        raise RttmError(f"{what} {name!r} must be non-empty and without spaces (RTTM fields are space-separated)")


def rttm_text(turns, file_id):
    """The RTTM lines of ``turns`` (sorted by onset, then speaker), seconds to the millisecond."""
    _check_name("file id", file_id)
    lines = []
    for turn in sorted(turns, key=lambda t: (t.start_s, t.speaker, t.duration_s)):
        _check_name("speaker", turn.speaker)
        if not (math.isfinite(turn.start_s) and math.isfinite(turn.duration_s)) or turn.start_s < 0 \
                or turn.duration_s < 0:
            raise RttmError(f"turn of {turn.speaker} at {turn.start_s} s for {turn.duration_s} s: onset and "
                            f"duration must be finite and >= 0 s")
        lines.append(f"SPEAKER {file_id} 1 {turn.start_s:.3f} {turn.duration_s:.3f} <NA> <NA> "
                     f"{turn.speaker} <NA> <NA>\n")
    return "".join(lines)


def write_rttm(path, turns, file_id=None):
    """Write ``turns`` to ``path`` as RTTM (temporary file, fsync, rename: nothing half-written).
    ``file_id`` defaults to the file's name without its extension."""
    if file_id is None:
        file_id = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    write_text_atomic(path, rttm_text(turns, file_id))


def _seconds(value, what, where):
    try:
        seconds = float(value)
    except ValueError:
        raise RttmError(f"{where}: {what} {value!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise RttmError(f"{where}: {what} {value!r} must be a finite number of seconds >= 0")
    return seconds


def parse_rttm(text, name="<rttm>"):
    """Turns per file id from RTTM ``text``; ``name`` names the source in errors.
    Returns ``{file_id: [Turn, ...]}`` (each list sorted)."""
    files = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith(";;"):
            continue
        where = f"{name}, line {number}"
        if fields[0] != "SPEAKER":
            if fields[0].isupper() and len(fields) >= 9:
                continue  # another RTTM type (SPKR-INFO, LEXEME, ...)
            raise RttmError(f"{where}: expected an RTTM line (SPEAKER <file> 1 <onset> <duration> <NA> <NA> "
                            f"<speaker> <NA> <NA>); got {line.strip()[:80]!r}")
        if len(fields) not in (9, 10):
            raise RttmError(f"{where}: a SPEAKER line has 9 or 10 fields; got {len(fields)}")
        onset = _seconds(fields[3], "onset", where)
        duration = _seconds(fields[4], "duration", where)
        files.setdefault(fields[1], []).append(Turn(onset, duration, fields[7]))
    return {file_id: sorted(turns) for file_id, turns in files.items()}


def read_rttm(path):
    """Turns per file id from the RTTM file at ``path`` (:func:`parse_rttm`)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RttmError(f"{path}: cannot read ({reason})") from None
    return parse_rttm(text, path)
