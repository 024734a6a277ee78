"""``master IN... -o OUT|DIR [--album]``: master files to a platform's loudness and true-peak ceiling.

The CLI parses, checks every path and option before any work, calls
:func:`roomtone.mastering.master_file` per file (with ``--album``, after
:func:`roomtone.mastering.album.analyse_album`), and prints the before/after table (one file) or a
summary table (many files; the album table with ``--album``).
"""

import json
import math
import os

import click

import roomtone
from roomtone.cli_common import (KEPT_FORMATS, Progress, bad_options, check_destinations, count_line, fail, fmt,
                                 folder_plan, friendly_errors, json_option,
                                 quiet_option, report_dir_option, run_batch, run_command, write_reports)
from roomtone.errors import PresetError

# --format choices; the default keeps the input's format when it is WAV or FLAC
FORMATS = KEPT_FORMATS + ("mp3", "ogg", "opus")


def _list_presets():
    from roomtone.mastering.presets import load_preset, preset_paths
    from roomtone.platforms import load_platforms

    click.echo("Presets (--preset NAME, or a path to a .toml file):")
    for name in preset_paths():
        preset = load_preset(name)
        click.echo(f"  {name:<12}{preset.category:<7}{preset.description}")
    click.echo(f"  {'auto':<12}{'model':<7}the assistant: EQ and width of the balanced chain proposed from the input")
    click.echo("\nPlatforms (--platform NAME):")
    click.echo(f"  {'name':<12}{'LUFS':>7}{'dBTP':>7}  description")
    for platform in load_platforms().values():
        click.echo(f"  {platform.name:<12}{platform.target_lufs:>7.1f}{platform.ceiling_dbtp:>7.1f}  {platform.description}")


def parse_reference(text):
    """``--reference REF[:WEIGHT]``: ``"REF.wav"`` or ``"REF.wav:0.7"`` -> ``(path, weight)``, as
    :func:`roomtone.mastering.master` takes it. A suffix after the last colon that is not a number
    is part of the path; a weight that is not positive is refused naming the option."""
    path, weight = text, 1.0
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            weight = float(tail)
            path = head
        except ValueError:
            pass
    if not math.isfinite(weight) or weight <= 0.0:
        raise PresetError(f"--reference {text}: weight {weight:g} must be a positive number (REF.wav:0.7)")
    return path, weight


AUTO = "auto"  # --preset auto: the assistant (roomtone.mastering.api.is_auto)


def _check_names(preset, platform, target_lufs, ceiling_dbtp):
    """Refuse an unknown preset or platform, a bad preset file and a target out of range (exit
    status 2) before any file is read; the list of presets includes ``auto``."""
    from roomtone.mastering.presets import load_preset, preset_paths
    from roomtone.platforms import check_target, get_platform

    with bad_options():
        if str(preset).strip().lower() != AUTO:
            try:
                load_preset(preset)
            except PresetError as exc:
                if not str(exc).startswith("unknown preset"):
                    raise
                raise PresetError(f"unknown preset {preset!r}; known: {', '.join(preset_paths())}, {AUTO} (or a path "
                                  f"to a .toml file); see --list-presets") from None
        if platform is not None:
            get_platform(platform)
        if target_lufs is not None or ceiling_dbtp is not None:
            check_target(-14.0 if target_lufs is None else target_lufs, -1.0 if ceiling_dbtp is None else ceiling_dbtp)


def _table_lines(report):
    """The before/after table of one master, as lines."""
    lines = []
    rows = (("integrated_lufs", "I (LUFS)"), ("lra_lu", "LRA (LU)"), ("true_peak_dbtp", "TP (dBTP)"),
            ("plr_lu", "PLR (LU)"))
    before, after = report["before"], report["after"]
    lines.append(f"{'':<12}{'before':>9}{'after':>9}   target")
    targets = {"integrated_lufs": f"{report['target']['integrated_lufs']:.1f}",
               "true_peak_dbtp": f"<= {report['target']['true_peak_dbtp']:.1f}"}
    for key, label in rows:
        lines.append(f"{label:<12}{fmt(before[key]):>9}{fmt(after[key]):>9}   {targets.get(key, '')}")
    gains = ", ".join(f"{s['stage']} {s['gain_db']:+.1f}" for s in report["stages"] if s["stage"] != "limiter")
    lines.append(f"stage gains (dB/LU): {gains}")
    limiter = next((s for s in report["stages"] if s["stage"] == "limiter"), None)
    if limiter is not None:
        if limiter["limited_percent"]:
            lines.append(f"limiter: peaks down up to {limiter['gain_reduction_max_db']:.1f} dB "
                       f"({limiter['gain_reduction_mean_db']:.1f} dB mean on the {limiter['limited_percent']:.1f} % of "
                       f"samples it touched), {-limiter['gain_db']:.2f} LU of loudness")
        else:
            lines.append("limiter: touched nothing")
    if report["target"].get("note"):
        lines.append(f"target: {report['target']['note']}")
    return lines


def _print_summary(results):
    """One row per file: done with its readings, or the error."""
    click.echo(f"\n{'file':<32}{'I (LUFS)':>9}{'TP (dBTP)':>10}{'LRA':>6}  result")
    for source, report, error in results:
        name = os.path.basename(source)[:31]
        if error is None:
            after = report["after"]
            click.echo(f"{name:<32}{fmt(after['integrated_lufs'], 2):>9}{fmt(after['true_peak_dbtp'], 2):>10}"
                       f"{fmt(after['lra_lu'], missing='n/a'):>6}  -> {report['output']}")
        else:
            click.echo(f"{name:<32}{'':>9}{'':>10}{'':>6}  failed: {error}")
    click.echo(count_line(results, "mastered"))


def _print_album(summary, explain):
    """The album table (:func:`roomtone.mastering.album.summary_lines`)."""
    from roomtone.mastering.album import summary_lines

    click.echo("\n" + "\n".join(summary_lines(summary, explain)))


def _is_directory_target(output_path, inputs):
    return len(inputs) > 1 or output_path.endswith(("/", os.sep)) or os.path.isdir(output_path)


def _plan(inputs, output_path, fmt_choice):
    """``[(input, output)]`` for the call; a directory target gets ``DIR/<input name>.<ext>``."""
    if not _is_directory_target(output_path, inputs):
        if fmt_choice and os.path.splitext(output_path)[1].lower() != "." + fmt_choice:
            fail(f"--format {fmt_choice} does not match the output file {output_path}; name it .{fmt_choice}, "
                 f"or give a directory", 2)
        return [(inputs[0], output_path)]
    return folder_plan(inputs, output_path, fmt_choice, verb="master")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", metavar="IN...", nargs=-1, type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output_path", type=click.Path(),
              help="Output file (one IN), or a folder for IN... (each written as FOLDER/<IN name>.<ext>; a path "
                   "ending in / or an existing folder counts as a folder; missing folders are created). Format from "
                   "the extension: .wav, .flac, .mp3, .ogg (Vorbis), .opus; a lossy file is decoded and re-metered after encoding, "
                   "and encoded again aiming lower if its true peak went over the ceiling. Written atomically.")
@click.option("--format", "fmt_choice", type=click.Choice(FORMATS, case_sensitive=False),
              help="Output format when writing into a folder (default: the input's when it is WAV or FLAC, else WAV). "
                   "Input: WAV, FLAC, OGG, MP3, AIFF...; AAC/M4A with the optional extra roomtone[aac].")
@click.option("--preset", default="balanced", show_default=True,
              help="Style (warm, balanced, open, aggressive), genre (pop, rock, hip-hop, electronic, jazz, classical, "
                   "acoustic), auto (a trained assistant proposes the EQ gains in dB and the stereo width of the balanced "
                   "chain from the input, in one forward pass; with --fit-target the fit refines its proposal) or a path "
                   "to a preset .toml file; names in any case. See --list-presets.")
@click.option("--platform", default=None,
              help="Delivery target (default spotify; with a mastered --reference, the reference's loudness unless --platform or "
                   "--target-lufs is given): spotify -14 LUFS/-1 dBTP, apple -16/-1, youtube, tidal, amazon -14/-1, deezer -15/-1, "
                   "podcast -16/-1 (-19 LUFS for mono), ebu-r128 -23/-1, atsc-a85 -24/-2. Names in any case.")
@click.option("--target-lufs", type=float, help="Integrated loudness target in LUFS (BS.1770-4); overrides the platform's.")
@click.option("--ceiling-dbtp", type=float, help="True-peak ceiling in dBTP (4x oversampled); overrides the platform's.")
@click.option("--bit-depth", type=click.Choice(["16", "24", "32f"]), default="24", show_default=True,
              help="Output sample format: 16/24-bit integer PCM with TPDF dither, or 32-bit float (WAV only).")
@click.option("--sample-rate", "output_sample_rate", type=int, metavar="HZ",
              help="Resample the output to 44100, 48000, 88200 or 96000 Hz (soxr, very high quality) before the "
                   "loudness stage, so loudness and true peak are met at the delivered rate. Default: the input's rate "
                   "(Opus, which takes only 8/12/16/24/48 kHz, is delivered at 48 kHz).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Also write the JSON report here (one IN; versions, preset as applied, per-stage gain, before/after).")
@report_dir_option
@json_option(", instead of the tables")
@click.option("--reference", "references", multiple=True, metavar="REF[:WEIGHT]",
              help="Match a reference track: the preset's chain is fitted (JAX, optax) to its tonal balance "
                   "(1/3-octave curve, never moving a band against it) and stereo width (held for mono "
                   "compatibility), then rendered by the usual chain. A mastered reference (peaks within 3 dB of "
                   "full scale, at or above -23 LUFS) also sets the target loudness (LUFS), approached as far as the "
                   "preset's limiting allows; an unmastered mix gives only its tone: spotify's -14 LUFS applies. "
                   "--platform or --target-lufs overrides; the target line says which. "
                   "Repeat to blend several, weighted: --reference A.wav:0.7 --reference B.wav:0.3.")
@click.option("--fit-target", is_flag=True,
              help="Fit the chain to the preset's own [target] table (tonal curve; balanced, warm, open have one).")
@click.option("--album", is_flag=True,
              help="Master IN... as one album: one shared chain for every track (fitted to the album as a whole "
                   "with --reference/--fit-target, or proposed for it by --preset auto: one excerpt of each track, weighted by "
                   "its loudness), and every "
                   "track placed by the music, not by its mix level: its loud passages (L95 of short-term loudness) level "
                   "with the densest track's, which lands on the target (LUFS), so a ballad sits under the single by "
                   "what its quiet passages take (at most 4 LU difference (LU) to the target), as album normalisation "
                   "(one gain for the whole album, set by its loudest track) expects; each track enters the chain at its "
                   "place; no track is raised above the target, each stays under the ceiling (dBTP); a wide spread of "
                   "the input levels is noted. A track whose place needs more limiting than the preset allows is delivered as close "
                   "under it as allowed, and the table and its report say so. Ends with the album table (and "
                   "with --json a last line {\"album\": ...}; with --report-dir also DIR/album.json). A single IN "
                   "is mastered as without --album (the table has one row).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=True), metavar="PATH",
              help="Also draw each master into a PNG: input, target and output 1/3-octave curves (dB re integrated "
                   "loudness) and short-term loudness (LUFS, 3 s) before/after. One output file: PATH is the .png; a "
                   "folder of outputs (many IN, or -o DIR/): PATH is a folder, each plot PATH/<output name>.png. "
                   "Written atomically. Needs the optional extra: pip install 'roomtone[plot]' (matplotlib).")
@click.option("--explain", is_flag=True,
              help="List the decisions in plain words with numbers (EQ, compression and its average reduction, width, "
                   "saturation, loudness gain, limiter); also in the report's \"explain\" list.")
@click.option("--overwrite-input", is_flag=True, help="Allow OUT to be the input file itself (replaced only on success).")
@click.option("--demo", is_flag=True, help="Master a 12 s demo track (drums, bass, chords) the package synthesizes; needs -o.")
@click.option("--list-presets", is_flag=True, help="List presets and platforms, then exit.")
@quiet_option
@click.version_option(roomtone.__version__, "--version", prog_name="master (roomtone)")
@friendly_errors
def main(inputs, output_path, fmt_choice, preset, platform, target_lufs, ceiling_dbtp, bit_depth, output_sample_rate,
         report_path, report_dir, as_json, references, fit_target, album, plot_path, explain, overwrite_input, demo,
         list_presets, quiet):
    """Master IN into OUT (or each IN into a folder) at a platform's loudness, with the true peak
    under its ceiling.

    \b
    Examples:
      master song.wav -o song_master.wav --preset warm --platform spotify
      master mix.flac -o mix_apple.flac --platform apple --bit-depth 24 --report mix.json
      master *.wav -o masters/ --format flac --report-dir masters/reports
      master --demo -o demo_master.wav
      master mix.wav -o mix_master.wav --reference favourite.flac --explain
      master 01.wav 02.wav 03.wav -o album/ --album --reference favourite.flac
      master song.wav -o song_master.wav --plot song_master.png

    Every output reads the target integrated loudness within 0.1 LU and a true peak at or under the
    ceiling. If that needs more limiting than the preset allows, that file is not written (exit
    status 3). With many files, one that fails is reported and the rest go on; the exit status is
    that of the last failure. Exit status 2: bad input or options; 4: output not writable;
    130: interrupted (Ctrl-C; nothing half-written is left).
    """
    if list_presets:
        _list_presets()
        return
    _check_names(preset, platform, target_lufs, ceiling_dbtp)
    if output_path is None:
        fail("missing -o/--output (where to write the master)", 2)
    fmt_choice = fmt_choice.lower() if fmt_choice else None
    inputs = list(inputs)
    if demo:
        if inputs:
            fail("--demo masters its own track; give no IN", 2)
    elif not inputs:
        fail("missing IN (the file to master), or use --demo", 2)
    plan = _plan(inputs or ["demo_mix.wav"], output_path, fmt_choice)
    if output_sample_rate is not None:
        from roomtone.resample import check_output_sample_rate

        with bad_options():  # a rate we do not deliver is a bad option
            check_output_sample_rate(output_sample_rate)
    if report_path and len(plan) > 1:
        fail("--report takes one file; with many inputs use --report-dir", 2)
    from roomtone.runtime import keep_freed_memory_for

    keep_freed_memory_for([source for source, _ in plan] if not demo else [])
    destinations = dict(overwrite_input=overwrite_input, report_path=report_path, report_dir=report_dir)
    if demo:
        plan = _demo_plan(plan[0][1], bit_depth, destinations, quiet)
        inputs = [plan[0][0]]
    check_destinations(plan, bit_depth, **destinations)
    directory_target = _is_directory_target(output_path, inputs or ["demo_mix.wav"])
    if album and report_dir and any(os.path.splitext(os.path.basename(t))[0] == "album" for _, t in plan):
        fail("--album writes the album's report as album.json into --report-dir; an output named album.* "
             "would write its own report there too: rename it or use another folder", 2)
    from roomtone.mastering.plot import plot_paths

    plots = plot_paths(plan, plot_path, directory_target)
    match = _match(preset, references, fit_target)
    from roomtone.audio import read_audio_async

    reading = read_audio_async(plan[0][0])  # decode while numba and the kernels load
    from roomtone.mastering.api import master_file

    _start_up(preset, match, bit_depth, quiet)
    targeting = dict(preset=preset, platform=platform, target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp,
                     reference=match)
    rendering = dict(bit_depth=bit_depth, output_sample_rate=output_sample_rate, overwrite_input=overwrite_input,
                     explain=explain)
    if album:
        status = _master_album(plan, reading, targeting, rendering, plots, quiet, as_json, report_path, report_dir,
                               explain)
        raise SystemExit(status)
    results, status = _master_many(plan, reading, dict(targeting, **rendering), quiet, as_json, report_dir,
                                   master_file, plots, line=_one_file_lines if len(plan) == 1 else None,
                                   warm_fit=match is not None)
    if len(plan) == 1 and results[0][1] is not None:
        write_reports(results[0][1], report_path)
    elif len(plan) > 1 and not as_json and not quiet:
        _print_summary(results)
    raise SystemExit(status)


def _demo_plan(output_path, bit_depth, destinations, quiet):
    """``--demo``: OUT checked, then the demo mix synthesized beside it as ``<OUT stem>_mix.wav``
    (the README command can be rerun); the plan ``[(mix, OUT)]``."""
    check_destinations([(None, output_path)], bit_depth, **destinations)
    from roomtone.mastering.demo import write_demo_mix

    mix_path = write_demo_mix(output_path)
    if not quiet:
        click.echo(f"  ... demo mix written to {mix_path}", err=True)
    return [(mix_path, output_path)]


def _match(preset, references, fit_target):
    """The match target of ``--reference``/``--fit-target`` (None without): the reference(s) read
    and measured before any input is decoded; a bad ``REF:WEIGHT`` is a bad option (exit status 2)."""
    if not references and not fit_target:
        return None
    from roomtone.mastering.api import match_target

    with bad_options():
        references = [parse_reference(text) for text in references]
    return match_target(preset, references or None, fit_target)


def _start_up(preset, match, bit_depth, quiet):
    """The command's start-up work (:mod:`roomtone.startup`), while the first input decodes: the
    audio kernels loaded (or on a first run compiled, said once) and the job run once on noise;
    then, for a master that fits or proposes (``match``, ``--preset auto``), JAX's import in the
    background, beside the decoding and metering of the input."""
    from roomtone import startup
    from roomtone.mastering.api import fit_modules, is_auto, master

    if not quiet and not startup.cache_is_warm():  # said once: later runs load the cached kernels
        click.echo("  ... compiling the audio kernels for this machine (first run only: about 5-10 s on 2 idle cores, "
                   "longer on a busy machine)", err=True)
    chain = preset
    if is_auto(preset):  # the assistant's chain runs the same kernels
        from roomtone.mastering.assistant import BASE_PRESET as chain
    startup.warm_up_master(master, chain, bit_depth)
    startup.import_in_background(*fit_modules(preset, match))


def _warm_fit(preset, match, reading):
    """The fit's optimiser traced in the background (:func:`roomtone.startup.after_imports`) for
    the input ``reading`` decodes, once decoded, while the job meters it. An input that cannot be
    read is left for the job to report."""
    from roomtone import startup
    from roomtone.mastering.api import fit_warm_up_args

    try:
        _, rate, info = reading.result()
    except Exception:  # noqa: BLE001 - master_file raises it again, with its usual message
        return
    args = fit_warm_up_args(preset, match, rate, info.channels)
    chain, rate, channels, has_width, steps, bells = args
    startup.after_imports(("fit", rate, channels >= 2, has_width, steps, len(chain), *bells),
                          "roomtone.mastering.fit", "warm_up", *args)


def _master_many(plan, reading, options, quiet, as_json, report_dir, master_file, plots, line=None, warm_fit=False):
    """Master every ``(input, output)`` of ``plan`` in turn on the batch runner, the next file
    decoding while one is mastered; a failing file is reported and the rest go on; each report
    printed as ``line(report)`` (unless quiet or JSON); with ``warm_fit``, each file's fit warmed up
    first (:func:`_warm_fit`). Returns ``(results, exit status)``."""
    from roomtone.audio import read_audio_async

    def master(source, target, reading, progress):
        if warm_fit:
            _warm_fit(options["preset"], options["reference"], reading)
        return master_file(source, target, progress=progress, reading=reading, plot_path=plots.get(target), **options)

    return run_batch(plan, master, quiet=quiet, as_json=as_json, report_dir=report_dir, read_ahead=read_audio_async,
                     reading=reading, line=line)


def _one_file_lines(report):
    """One file's lines: what went where, the before/after table, the plot and the decisions."""
    lines = [f"{report['input']} -> {report['output']}  ({report['preset']['name']}, "
             f"{report['platform'] or 'reference loudness'})", *_table_lines(report)]
    if report.get("plot"):
        lines.append(f"plot: {report['plot']}")
    if report.get("explain"):
        lines.append("decisions:")
        lines.extend(f"  - {line}" for line in report["explain"])
    return "\n".join(lines)


def _master_album(plan, reading, targeting, rendering, plots, quiet, as_json, report_path, report_dir, explain):
    """``--album``: analyse the album (every track read and metered, the chain fitted once), then
    master each track at its place as the batch does (a failing track is reported, the rest go on),
    then the album table or JSON line. Returns the exit status (that of the last failure)."""
    from roomtone.audio import read_audio_async, write_text_atomic
    from roomtone.mastering.album import analyse_album

    with Progress(quiet) as progress:
        album = analyse_album([source for source, _ in plan], keep_going=True, reading=reading, progress=progress,
                              **targeting)
    results, status = _master_many(plan, read_audio_async(plan[0][0]), rendering, quiet, as_json, report_dir,
                                   album.master_file, plots)
    summary = album.summary([report if error is None else error for _, report, error in results])
    if report_path and results[0][1] is not None:
        write_reports(results[0][1], report_path)
    if report_dir:
        write_text_atomic(os.path.join(report_dir, "album.json"), json.dumps(summary, indent=2) + "\n")
    if as_json:
        click.echo(json.dumps({"album": summary}))
    elif not quiet:
        _print_album(summary, explain)
    return status


def run():
    """The ``master`` console script (see :func:`roomtone.cli_common.run_command`)."""
    run_command(main)


if __name__ == "__main__":  # pragma: no cover
    run()
