"""``master IN -o OUT``: master a file to a platform's loudness and true-peak ceiling.

The CLI parses, calls :func:`roomtone.mastering.master_file`, and prints the before/after table.
"""

import json
import os

import click

from roomtone.cli_common import fail, fmt, friendly_errors, run_command, stderr_progress


def _list_presets():
    from roomtone.mastering.presets import load_preset, preset_paths
    from roomtone.platforms import load_platforms

    click.echo("Presets (--preset NAME, or a path to a .toml file):")
    for name in preset_paths():
        preset = load_preset(name)
        click.echo(f"  {name:<12}{preset.category:<7}{preset.description}")
    click.echo("\nPlatforms (--platform NAME):")
    click.echo(f"  {'name':<12}{'LUFS':>7}{'dBTP':>7}  description")
    for platform in load_platforms().values():
        click.echo(f"  {platform.name:<12}{platform.target_lufs:>7.1f}{platform.ceiling_dbtp:>7.1f}  {platform.description}")


def _print_table(report):
    rows = (("integrated_lufs", "I (LUFS)"), ("lra_lu", "LRA (LU)"), ("true_peak_dbtp", "TP (dBTP)"),
            ("plr_lu", "PLR (LU)"))
    before, after = report["before"], report["after"]
    click.echo(f"{'':<12}{'before':>9}{'after':>9}   target")
    targets = {"integrated_lufs": f"{report['target']['integrated_lufs']:.1f}",
               "true_peak_dbtp": f"<= {report['target']['true_peak_dbtp']:.1f}"}
    for key, label in rows:
        click.echo(f"{label:<12}{fmt(before[key]):>9}{fmt(after[key]):>9}   {targets.get(key, '')}")
    gains = ", ".join(f"{s['stage']} {s['gain_db']:+.1f}" for s in report["stages"] if s["stage"] != "limiter")
    click.echo(f"stage gains (dB/LU): {gains}")
    limiter = next((s for s in report["stages"] if s["stage"] == "limiter"), None)
    if limiter is not None:
        if limiter["limited_percent"]:
            click.echo(f"limiter: peaks down up to {limiter['gain_reduction_max_db']:.1f} dB "
                       f"({limiter['gain_reduction_mean_db']:.1f} dB mean on the {limiter['limited_percent']:.1f} % of "
                       f"samples it touched), {-limiter['gain_db']:.2f} LU of loudness")
        else:
            click.echo("limiter: touched nothing")
    if report["target"].get("note"):
        click.echo(f"target: {report['target']['note']}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_path", metavar="IN", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False),
              help="Output file; .wav or .flac (format from the extension). Written atomically.")
@click.option("--preset", default="balanced", show_default=True,
              help="Style (warm, balanced, open, aggressive), genre (pop, rock, hip-hop, electronic, jazz, classical, "
                   "acoustic) or a path to a preset .toml file. See --list-presets.")
@click.option("--platform", default="spotify", show_default=True,
              help="Delivery target: spotify -14 LUFS/-1 dBTP, apple -16/-1, youtube, tidal, amazon -14/-1, deezer -15/-1, "
                   "podcast -16/-1, ebu-r128 -23/-1, atsc-a85 -24/-2.")
@click.option("--target-lufs", type=float, help="Integrated loudness target in LUFS (BS.1770-4); overrides the platform's.")
@click.option("--ceiling-dbtp", type=float, help="True-peak ceiling in dBTP (4x oversampled); overrides the platform's.")
@click.option("--bit-depth", type=click.Choice(["16", "24", "32f"]), default="24", show_default=True,
              help="Output sample format: 16/24-bit integer PCM with TPDF dither, or 32-bit float (WAV only).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Also write the JSON report here (versions, preset as applied, per-stage gain, before/after).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report to stdout instead of the table.")
@click.option("--overwrite-input", is_flag=True, help="Allow OUT to be the input file itself (replaced only on success).")
@click.option("--demo", is_flag=True, help="Master a 12 s demo track (drums, bass, chords) the package synthesizes; needs -o.")
@click.option("--list-presets", is_flag=True, help="List presets and platforms, then exit.")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages on stderr.")
@friendly_errors
def main(input_path, output_path, preset, platform, target_lufs, ceiling_dbtp, bit_depth, report_path, as_json,
         overwrite_input, demo, list_presets, quiet):
    """Master IN into OUT at a platform's loudness, with the true peak under its ceiling.

    \b
    Examples:
      master song.wav -o song_master.wav --preset warm --platform spotify
      master mix.flac -o mix_apple.flac --platform apple --bit-depth 24 --report mix.json
      master --demo -o demo_master.wav

    Every output reads the target integrated loudness within 0.1 LU and a true peak at or under the
    ceiling. If that needs more limiting than the preset allows, nothing is written and the exit
    status is 3. Exit status 2: bad input or options; 4: output not writable.
    """
    if list_presets:
        _list_presets()
        return
    from roomtone.runtime import keep_freed_memory

    keep_freed_memory()
    if output_path is None:
        fail("missing -o/--output (where to write the master)", 2)
    progress = stderr_progress(quiet)
    from roomtone.audio import check_output_path, output_format

    output_format(output_path, bit_depth)
    if demo:
        if input_path:
            fail("--demo masters its own track; give no IN", 2)
        input_path = _write_demo_input(output_path)
        if progress:
            progress(f"demo mix written to {input_path}")
    elif input_path is None:
        fail("missing IN (the file to master), or use --demo", 2)
    # Refuse bad destinations before any work (and before the input is decoded).
    check_output_path(output_path, input_path, overwrite_input=overwrite_input)
    if report_path:
        check_output_path(report_path, input_path)
        if os.path.abspath(report_path) == os.path.abspath(output_path):
            fail(f"{report_path}: the report path is the output path; choose another", 4)
    from roomtone.audio import read_audio_async

    reading = read_audio_async(input_path)  # decode while numba and the kernels load
    from roomtone.mastering.api import master_file, warm_up

    warm_up(preset, bit_depth)  # loads (or compiles) the kernels while the input decodes
    report = master_file(input_path, output_path, preset=preset, platform=platform, target_lufs=target_lufs,
                         ceiling_dbtp=ceiling_dbtp, bit_depth=bit_depth, overwrite_input=overwrite_input,
                         progress=progress, reading=reading)
    if report_path:
        from roomtone.audio import write_text_atomic

        write_text_atomic(report_path, json.dumps(report, indent=2) + "\n")
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(f"{report['input']} -> {report['output']}  ({report['preset']['name']}, {report['platform']})")
        _print_table(report)


def _write_demo_input(output_path):
    """Synthesize the demo mix beside OUT as ``<OUT stem>_mix.wav`` and return its path."""
    from roomtone.mastering.demo import SAMPLE_RATE, demo_track
    from roomtone.audio import write_audio

    stem, _ = os.path.splitext(output_path)
    mix_path = f"{stem}_mix.wav"
    write_audio(mix_path, demo_track(), SAMPLE_RATE, bit_depth="24")
    return mix_path



def run():
    """The ``master`` console script (see :func:`roomtone.cli_common.run_command`)."""
    run_command(main)


if __name__ == "__main__":  # pragma: no cover
    run()
