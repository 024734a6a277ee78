"""``meter FILE... [--json]``: loudness and peak readings per file (BS.1770-4, EBU Tech 3341/3342)."""

import click

import roomtone
from roomtone.cli_common import fmt, friendly_errors, quiet_option, run_batch, run_command

_COLUMNS = (
    ("integrated_lufs", "I (LUFS)"), ("lra_lu", "LRA (LU)"), ("max_momentary_lufs", "max M (LUFS)"),
    ("max_short_term_lufs", "max S (LUFS)"), ("true_peak_dbtp", "TP (dBTP)"), ("sample_peak_dbfs", "SP (dBFS)"),
    ("plr_lu", "PLR (LU)"),
)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line per file (keys: path, integrated_lufs, lra_lu, max_momentary_lufs, "
                   "max_short_term_lufs, true_peak_dbtp, sample_peak_dbfs, plr_lu, sample_rate, channels, "
                   "duration_s, short_term_spread_lu: p95 - p5 of short-term loudness after LRA's gates, LU). Silence reads null loudness and LRA; an unreadable file gives "
                   "{\"path\": ..., \"error\": ...}.")
@quiet_option
@click.version_option(roomtone.__version__, "--version", prog_name="meter (roomtone)")
@friendly_errors
def main(files, as_json, quiet):
    """Meter audio FILES (WAV, FLAC, OGG, MP3, AIFF...).

    \b
    I      integrated loudness, LUFS (ITU-R BS.1770-4, gated)
    LRA    loudness range, LU (EBU Tech 3342, short-term at 10 Hz)
    max M  highest momentary loudness (400 ms), LUFS, read at every sample
    max S  highest short-term loudness (3 s), LUFS, read at every sample
    TP     true peak, dBTP (BS.1770-4 Annex 2, 4x oversampled at 44.1/48 kHz)
    SP     sample peak, dBFS
    PLR    peak-to-loudness ratio, LU (TP - I)

    Exit status: 0 when every file was metered, else the code of the last failure (2 = bad file);
    with -q only errors are printed, so `meter -q FILE...` checks that files read.
    """
    from roomtone.audio import read_audio
    from roomtone.meter import measure
    from roomtone.runtime import keep_freed_memory_for

    keep_freed_memory_for(files)

    def meter(path, _, reading, progress):
        audio, sample_rate, _ = read_audio(path)
        return {"path": path, **measure(audio, sample_rate).as_dict()}

    _, status = run_batch([(path, None) for path in files], meter, quiet=quiet, as_json=as_json, line=_table,
                          error_record=lambda path, _, message: {"path": path, "error": message})
    raise SystemExit(status)


def _table(stats):
    """One file's readings, a line per quantity."""
    lines = [f"{stats['path']}  ({stats['channels']} ch, {stats['sample_rate']} Hz, {stats['duration_s']:.2f} s)"]
    for key, label in _COLUMNS:
        lines.append(f"  {label:<14}{fmt(stats[key], missing='n/a' if key in ('plr_lu', 'lra_lu') else '-inf'):>8}")
    return "\n".join(lines)


def run():
    """The ``meter`` console script (see :func:`roomtone.cli_common.run_command`)."""
    run_command(main)


if __name__ == "__main__":  # pragma: no cover
    run()
