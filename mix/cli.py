"""``mix TRACK_OR_FOLDER... -o OUT.wav``: a multitrack session into a stereo mix
(:func:`roomtone.mix.api.mix_file`). The CLI parses, checks every path and option before any
work, gathers the tracks (a folder: every audio file in it, sorted), runs the job with progress on
stderr and prints one line (or the JSON report).
"""

import json
import os

import click

import roomtone
from roomtone.cli_common import Progress, fail, friendly_errors, json_option, quiet_option, run_command

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".m4a", ".aac", ".mp4")


def gather(inputs):
    """The track paths: each FILE, and every audio file (by suffix) of each folder, sorted by name.
    A path that does not exist, or a folder with no audio file, is an error naming it."""
    tracks = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, f) for f in os.listdir(item) if f.lower().endswith(AUDIO_SUFFIXES)
                           and os.path.isfile(os.path.join(item, f)))
            if not found:
                fail(f"{item}: no audio files in this folder ({', '.join(AUDIO_SUFFIXES)})", 2)
            tracks += found
        elif os.path.exists(item):
            tracks.append(item)
        else:
            fail(f"{item}: no such file or folder", 2)
    return tracks


def explain_lines(report):
    """Plain words for the report: per track where it sits and why."""
    lines = []
    for t in report["tracks"]:
        why = f"a {t['class'].replace('_', ' ')} track (by its {t['classed_by']})"
        measure = f"refined loudness {t['refined_lufs']:.1f} LUFS" + (f" (f0 {t['f0_hz']:.0f} Hz: band "
                                                                       f"{t['band_hz'][0]:.0f}-{t['band_hz'][1]:.0f} Hz)"
                                                                       if t["f0_hz"] else "")
        place = f"gain {t['gain_db']:+.1f} dB to {t['target_lufs']:.1f} LUFS"
        pan = f", pan {t['pan']:+.2f}" if t["pan"] else ""
        hp = f", high-pass {t['highpass_hz']:.0f} Hz" if t["highpass_hz"] else ""
        lines.append(f"  {t['name']}: {why}; {measure}; {place}{pan}{hp}")
    if report["silent_tracks"]:
        lines.append(f"  left out (silent): {', '.join(report['silent_tracks'])}")
    m = report["mix"]
    lines.append(f"  mix: {m['integrated_lufs']:.1f} LUFS, true peak {m['true_peak_dbtp']:.1f} dBTP")
    return lines


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", metavar="TRACK_OR_FOLDER...", nargs=-1, type=click.Path())
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False),
              help="The mix: a stereo file (wav/flac/...), as long as the longest track, true peak at most -3 dBTP "
                   "(mastering headroom) unless --master.")
@click.option("--reference", type=click.Path(dir_okay=False), metavar="REF",
              help="A reference mix: stage 2 fits each group's gain (within 6 dB of stage 1) and EQ (150 Hz shelf, "
                   "1 kHz bell, 5 kHz shelf, within 6 dB) to its loudness-normalised 1/3-octave mid/side spectrum.")
@click.option("--groups", type=click.Path(dir_okay=False), metavar="G.toml",
              help="Extra track classes (name patterns and groups), tried before the shipped table "
                   "(presets/mix/groups.toml has the shape).")
@click.option("--master", "do_master", is_flag=True, help="Master the mix too (the master job) onto --platform's target.")
@click.option("--preset", default="balanced", show_default=True, help="With --master: the mastering preset.")
@click.option("--platform", default="spotify", show_default=True,
              help="With --master: the delivery target (spotify -14 LUFS, apple -16 LUFS, ...; -1 dBTP).")
@click.option("--sample-rate", type=int, metavar="HZ",
              help="Session rate (Hz): every track is resampled to it. Default: the tracks' most common rate.")
@click.option("--stems-dir", type=click.Path(file_okay=False), metavar="D",
              help="Also write each group's stem (drums.wav, bass.wav, vocals.wav, ...; 32-bit float) to D: they sum "
                   "to the mix (before mastering).")
@click.option("--bit-depth", type=click.Choice(["16", "24", "32f"]), default="24", show_default=True,
              help="Output sample format: 16/24-bit PCM with TPDF dither, or 32-bit float.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), metavar="R.json",
              help="Write the JSON report here (per track: class, group, gain dB, pan, high-pass Hz, loudness).")
@click.option("--explain", is_flag=True, help="Print, in plain words, where each track sits and why.")
@json_option()
@quiet_option
@click.version_option(roomtone.__version__, "--version", prog_name="mix (roomtone)")
@friendly_errors
def main(inputs, output_path, reference, groups, do_master, preset, platform, sample_rate, stems_dir, bit_depth,
         report_path, explain, as_json, quiet):
    """Mix a multitrack session (a folder of stems, or the track files) into a stereo mix.

    \b
    Examples:
      mix session/ -o mix.wav
      mix session/ -o mix.wav --master --preset warm --platform spotify
      mix kick.wav snare.wav bass.flac vox.wav -o mix.wav --stems-dir stems/ --explain
      mix session/ -o mix.wav --reference ref.wav --report mix.json

    Stage 1 sets each track by rule: its class from its name (kick, snare, hh, bass, vox, bgv, gtr,
    keys, pad, fx, ...) or from its audio, its loudness (BS.1770-4; the f0-band and centroid-band
    readings are reported too), a gain to its class's place in the mix (LU offsets fitted on real
    multitracks), a pan for mono tracks and a high-pass under its range. Stage 2 (--reference) fits a console to the reference. Memory holds the mix and one
    track, whatever the track count. Exit status 2: bad input or options (a track that cannot be
    read stops the mix, naming it); 4: output not writable; 130: interrupted (nothing written).
    """
    if output_path is None:
        fail("missing -o/--output (the mix file to write)", 2)
    if not inputs:
        fail("missing TRACK_OR_FOLDER (the tracks to mix)", 2)
    if (preset != "balanced" or platform != "spotify") and not do_master:
        fail("--preset and --platform apply with --master; add --master or leave them out", 2)
    from roomtone.audio import check_output_path, output_format

    tracks = gather(inputs)
    output_format(output_path, bit_depth)
    check_output_path(output_path)
    if any(os.path.abspath(t) == os.path.abspath(output_path) for t in tracks):
        fail(f"{output_path}: the output is one of the tracks; choose another path", 2)
    from roomtone.mix.api import mix_file

    master = {"preset": preset, "platform": platform} if do_master else None
    with Progress(quiet=quiet or as_json) as progress:
        report = mix_file(tracks, output_path, reference=reference, groups=groups, sample_rate=sample_rate,
                          master=master, stems_dir=stems_dir, bit_depth=bit_depth, progress=progress)
    if report_path:
        from roomtone.audio import write_text_atomic

        write_text_atomic(report_path, json.dumps(report, indent=1))
    if as_json:
        click.echo(json.dumps(report, indent=1))
    elif not quiet:
        m = report["mix"]
        click.echo(f"{len(report['tracks'])} tracks -> {output_path}  [{m['integrated_lufs']:.1f} LUFS before "
                   f"{'mastering' if do_master else 'headroom'}, {len(report['groups'])} groups"
                   + (f", {len(report['silent_tracks'])} silent left out" if report["silent_tracks"] else "") + "]")
        if explain:
            for line in explain_lines(report):
                click.echo(line)


def run():
    """The ``mix`` console script (see :func:`roomtone.cli_common.run_command`)."""
    run_command(main)


if __name__ == "__main__":  # pragma: no cover
    run()
