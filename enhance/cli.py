"""``enhance FILE... -o DIR``: clean up voice recordings (:func:`roomtone.enhance.enhance_file` per
file). The CLI parses, checks every path and option before any work, runs the files in turn with
progress on stderr, and prints one line per file (or its JSON report).
"""

import click

import roomtone
from roomtone.cli_common import (KEPT_FORMATS, bad_options, check_destinations, count_line, fail, fmt, folder_plan,
                                 friendly_errors, json_option, quiet_option, report_dir_option, run_batch,
                                 run_command)

FORMATS = KEPT_FORMATS

# --help's line per denoiser (the registry knows names and ranks; what each is, in a user's words)
MODEL_NOTES = {
    "dfn3": "DeepFilterNet3 (published weights, run by roomtone in JAX), 48 kHz; the best figures; "
            "needs pip install 'roomtone[dfn3]'",
    "roomtone": "ours, shipped: a compact BiGRU mask network at 16 kHz (the band above 8 kHz kept); needs JAX",
    "classic": "DSP (MMSE log-spectral amplitude, MCRA noise tracking): any rate, no JAX, every install has it",
}


def model_rows():
    """``[(name, one line)]`` for every registered denoiser, best first: what it is, and whether it
    is installed here or the default on this installation."""
    from roomtone.enhance.denoisers import available_denoisers, default_denoiser, registered_denoisers

    installed, default = available_denoisers(), default_denoiser()
    rows = []
    for name in registered_denoisers():
        state = "the default on this install" if name == default else "installed" if name in installed else \
            "not installed"
        rows.append((name, f"{MODEL_NOTES.get(name, 'a registered denoiser')} [{state}]"))
    return rows


class _EnhanceCommand(click.Command):
    """``enhance``'s command: its help ends with the denoisers (:func:`model_rows`, looked up only
    when the help is shown)."""

    def format_epilog(self, ctx, formatter):
        with formatter.section("Denoiser models (--model NAME, or auto: the best installed)"):
            formatter.write_dl(model_rows())
        super().format_epilog(ctx, formatter)


def _check_options(preset, model, atten_lim_db):
    """Refuse an unknown preset or model and an out-of-range attenuation before any work."""
    from roomtone.enhance.api import with_overrides
    from roomtone.enhance.presets import load_preset

    with bad_options():
        with_overrides(load_preset(preset), model, atten_lim_db)


def _summary_line(report):
    after, before = report["after"], report["before"]
    notes = []
    for stage in report["stages"]:
        if stage["stage"] == "dehum" and stage.get("hum_found"):
            notes.append(f"hum {stage['fundamental_hz']:.1f} Hz x{stage['harmonics']}")
        elif stage["stage"] == "declick" and stage.get("clicks_repaired"):
            notes.append(f"{stage['clicks_repaired']} clicks")
        elif stage["stage"] == "deess" and stage.get("max_reduction_db"):
            notes.append(f"de-ess -{stage['max_reduction_db']:.1f} dB")
        elif stage["stage"] == "denoise" and "model" in stage:
            notes.append(f"denoiser {stage['model']}")
    return (f"{report['input']} -> {report['output']}  I {fmt(before['integrated_lufs'])} -> "
            f"{fmt(after['integrated_lufs'])} LUFS, TP {fmt(after['true_peak_dbtp'])} dBTP"
            + (f"  ({', '.join(notes)})" if notes else ""))


@click.command(cls=_EnhanceCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", metavar="FILE...", nargs=-1, type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False),
              help="Output folder (created if missing): each FILE is written as DIR/<FILE name>.wav (or .flac), "
                   "atomically; an input is never overwritten.")
@click.option("--preset", default="podcast", show_default=True,
              help="podcast: high-pass 75 Hz, hum removal (50/60 Hz series, only when found), click repair, "
                   "denoiser, de-esser (5-9 kHz), gentle leveler (at most +-6 dB, never raising pauses), then podcast "
                   "loudness: -16 LUFS for stereo, -19 LUFS for mono (common podcast practice), true peak under "
                   "-1 dBTP. denoise: the denoiser alone, loudness unchanged. Or a path to a preset .toml file.")
@click.option("--model", help="Denoiser model (default: the best installed; 'classic' is the DSP one every "
                              "installation has); listed at the end of this help.")
@click.option("--atten-lim-db", type=float, metavar="DB",
              help="Most the denoiser may attenuate, in dB, 0..100 (100: unlimited; podcast preset: 30).")
@click.option("--format", "fmt_choice", type=click.Choice(FORMATS, case_sensitive=False),
              help="Output format (default: the input's when WAV or FLAC, else WAV).")
@click.option("--per-speaker", is_flag=True,
              help="First split the voices (as separate --speakers auto) and bring every speaker to the loudest "
                   "one's integrated loudness (LUFS; at most +20 dB), so a quiet guest and a loud host end at one "
                   "level; then the preset's chain and its loudness target.")
@click.option("--bit-depth", type=click.Choice(["16", "24", "32f"]), default="24", show_default=True,
              help="Output sample format: 16/24-bit PCM with TPDF dither, or 32-bit float (WAV only).")
@report_dir_option
@json_option()
@quiet_option
@click.version_option(roomtone.__version__, "--version", prog_name="enhance (roomtone)")
@friendly_errors
def main(inputs, output_dir, preset, model, atten_lim_db, fmt_choice, per_speaker, bit_depth, report_dir, as_json,
         quiet):
    """Clean up voice recordings: noise, hum, clicks and harsh sibilance reduced, level evened,
    delivered at podcast loudness (-16 LUFS stereo, -19 LUFS mono, true peak -1 dBTP; loudness per
    ITU-R BS.1770-4, true peak 4x oversampled).

    \b
    Examples:
      enhance interview.wav -o cleaned/
      enhance *.wav -o cleaned/ --format flac --report-dir cleaned/reports
      enhance noisy.wav -o out/ --preset denoise --atten-lim-db 20
      enhance interview.wav -o out/ --per-speaker     # a quiet guest and a loud host at one level

    Every output keeps the input's sample rate, channels and length, sample-aligned. With many
    files, one that fails is reported and the rest go on; the exit status is that of the last
    failure. Exit status 2: bad input or options; 3: loudness target unreachable; 4: output not
    writable; 130: interrupted (Ctrl-C; nothing half-written is left).
    """
    if output_dir is None:
        fail("missing -o/--output (the folder to write the cleaned files into)", 2)
    if not inputs:
        fail("missing FILE (the recording to enhance)", 2)
    fmt_choice = fmt_choice.lower() if fmt_choice else None
    plan = folder_plan(list(inputs), output_dir, fmt_choice, verb="enhance")
    _check_options(preset, model, atten_lim_db)
    check_destinations(plan, bit_depth, report_dir=report_dir)
    from roomtone.enhance.api import enhance_file

    options = dict(preset=preset, model=model, atten_lim_db=atten_lim_db, bit_depth=bit_depth, per_speaker=per_speaker)

    def enhance(source, target, reading, progress):
        return enhance_file(source, target, progress=progress, **options)

    results, status = run_batch(plan, enhance, quiet=quiet, as_json=as_json, report_dir=report_dir,
                                line=_summary_line)
    if len(plan) > 1 and not as_json and not quiet:
        click.echo(count_line(results, "enhanced"))
    raise SystemExit(status)


def run():
    """The ``enhance`` console script (see :func:`roomtone.cli_common.run_command`)."""
    run_command(main)


if __name__ == "__main__":  # pragma: no cover
    run()
