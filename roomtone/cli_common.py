"""What every command-line entry point shares: one-line errors, exit codes, progress on stderr, and
for the file jobs (``master``, ``enhance``) the plan of outputs in a folder, the checks of every
destination before any work, the batch loop and its reports."""

import atexit
import contextlib
import functools
import json
import os
import signal
import sys
import threading

import click

from roomtone.errors import InvalidAudioError, OutputError, PresetError, RoomtoneError, TargetUnreachableError

# Exit codes: 0 ok, 2 bad input / usage, 3 target unreachable, 4 output not writable,
# 70 internal error, 130 interrupted (meter exits with the code of its last failing file).
EXIT_CODES = {InvalidAudioError: 2, PresetError: 2, TargetUnreachableError: 3, OutputError: 4}


def fail(message, code):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def exit_code_for(exc):
    for kind, code in EXIT_CODES.items():
        if isinstance(exc, kind):
            return code
    return 2


class _Interrupts:
    """Ctrl-C for a command: the first SIGINT only sets a flag, which the command checks at its
    stage boundaries (:func:`check_interrupted`, called by every progress callback), so the
    KeyboardInterrupt is raised in the main thread between two kernel calls, never inside one
    (raised there, numba's dispatcher turned it into ``SystemError: ... returned a result with an
    exception set``) and never between a temporary file and its rename. A second Ctrl-C interrupts
    at once."""

    def __init__(self):
        self.requested = False

    def handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def installed(self):
        self.requested = False
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self.handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


INTERRUPTS = _Interrupts()


def check_interrupted():
    """Raise KeyboardInterrupt if Ctrl-C was pressed since the command started."""
    if INTERRUPTS.requested:
        raise KeyboardInterrupt


_JSON_HELP = ("Print each file's JSON report to stdout, one line per file ({\"input\": ..., \"error\": ...} "
              "for a file that failed)")


def json_option(instead=""):
    """The file CLIs' ``--json`` flag (``as_json``); ``instead`` ends its help (", instead of the tables")."""
    return click.option("--json", "as_json", is_flag=True, help=_JSON_HELP + instead + ".")


quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
report_dir_option = click.option("--report-dir", type=click.Path(file_okay=False),
                                 help="Write one JSON report per file into this folder, as <output name>.json.")


def friendly_errors(func):
    """Turn our errors into ``error: <one line>`` on stderr and an exit code; never a traceback
    (set ``ROOMTONE_DEBUG=1`` to see one for an internal error). Ctrl-C is always ``interrupted``
    with exit status 130, whatever it interrupted."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            with INTERRUPTS.installed():
                return func(*args, **kwargs)
        except RoomtoneError as exc:
            if INTERRUPTS.requested:
                fail("interrupted; no partial output was written", 130)
            fail(str(exc), exit_code_for(exc))
        except KeyboardInterrupt:
            fail("interrupted; no partial output was written", 130)
        except BrokenPipeError:
            # stdout closed early (`master ... | head`): the work is done, nothing left to say.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except MemoryError:
            fail("out of memory; try a shorter file or free some memory", 70)
        except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
            if INTERRUPTS.requested:  # whatever the interrupt surfaced as (e.g. a SystemError)
                fail("interrupted; no partial output was written", 130)
            if os.environ.get("ROOMTONE_DEBUG"):
                raise
            fail(f"internal error ({type(exc).__name__}: {exc}); rerun with ROOMTONE_DEBUG=1 for details", 70)

    return wrapper


def run_command(command):
    """Console-script entry point: run a click ``command``, then leave without interpreter teardown.

    When a whole-file job is done and every file is closed, Python's teardown (numba's and LLVM's
    objects, a heap of several hundred MB) still takes 0.15 to 0.3 s, which a user waiting on the
    shell prompt pays for nothing (measured 2026-12-01, 3-minute master, median of 5: 2.01 s
    against 2.16 s). So first every ``atexit`` handler runs, as at a normal exit (logging's
    shutdown, JAX's compilation cache and anything else registered), then stdout and stderr are
    flushed and the process ends with ``os._exit`` and the command's exit status (141 if stdout
    was closed early). Only the console scripts do this; the library never exits.
    """
    try:
        command.main()  # standalone mode: always ends in SystemExit
        code = 0
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()  # what a normal exit runs first; it reports its handlers' errors itself
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = 141
    try:
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code)


def stderr_progress(quiet):
    """A ``progress(stage)`` callback: it checks for Ctrl-C (:func:`check_interrupted`) and, unless
    ``quiet``, writes ``  ... stage`` to stderr."""

    def progress(stage):
        check_interrupted()
        if not quiet:
            click.echo(f"  ... {stage}", err=True)

    return progress


def fmt(value, digits=1, missing="-inf"):
    """A meter value for a table. JSON-ready readings carry ``None`` where there is no number:
    ``-inf`` for a loudness of silence, ``missing="n/a"`` for a quantity that is undefined (PLR)."""
    if value is None:
        return missing
    return f"{value:.{digits}f}"


# Formats a file job keeps when writing into a folder without --format; anything else becomes WAV.
KEPT_FORMATS = ("wav", "flac")


def folder_plan(inputs, folder, fmt_choice, *, verb):
    """``[(input, FOLDER/<input name>.<ext>)]``: ``ext`` is ``fmt_choice`` when given, else the
    input's when it is one of :data:`KEPT_FORMATS`, else ``wav``. Two inputs landing on one name
    are refused (exit status 2; ``verb`` says what to do to them in separate calls)."""

    def target(source):
        stem, ext = os.path.splitext(os.path.basename(source))
        ext = "." + fmt_choice if fmt_choice else (ext.lower() if ext.lower()[1:] in KEPT_FORMATS else ".wav")
        return os.path.join(folder, stem + ext)

    return unique_plan(inputs, target, verb=verb)


def unique_plan(inputs, target, *, verb, shown=lambda path: path):
    """``[(input, target(input))]``; two inputs with one target are refused (exit status 2, the
    message showing the target as ``shown(target)`` and saying to ``verb`` them in separate calls)."""
    plan, seen = [], {}
    for source in inputs:
        destination = target(source)
        key = os.path.abspath(destination)
        if key in seen:
            fail(f"{source} and {seen[key]} would both be written to {shown(destination)}; "
                 f"{verb} them in separate calls", 2)
        seen[key] = source
        plan.append((source, destination))
    return plan


def check_destinations(plan, bit_depth, *, overwrite_input=False, report_path=None, report_dir=None):
    """Refuse bad destinations for ``plan`` (``[(input, output)]``) before any work, and before any
    input is decoded: a format or bit depth we do not write (exit status 2), an output that is its
    input (unless ``overwrite_input``) or cannot be written (4), a report path that is the output.
    A missing output or report folder is created."""
    from roomtone.audio import check_output_path, output_format

    folders = {os.path.dirname(os.path.abspath(target)) for _, target in plan}
    if report_dir:
        folders.add(os.path.abspath(report_dir))
    if report_path:
        folders.add(os.path.dirname(os.path.abspath(report_path)))
    for directory in sorted(folders):
        if not os.path.isdir(directory):
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                fail(f"{directory}: cannot create the output folder ({exc.strerror})", 4)
    for source, target in plan:
        try:
            output_format(target, bit_depth)
        except OutputError as exc:  # a bad extension or depth is a bad option, not a failed write
            fail(str(exc), 2)
        check_output_path(target, source, overwrite_input=overwrite_input)
    if report_path:
        check_output_path(report_path, plan[0][0])
        if os.path.abspath(report_path) == os.path.abspath(plan[0][1]):
            fail(f"{report_path}: the report path is the output path; choose another", 4)


def write_reports(report, report_path=None, report_dir=None):
    """Write the JSON ``report`` to ``report_path`` and/or into ``report_dir`` as
    ``<output name>.json``, each atomically."""
    from roomtone.audio import write_text_atomic

    text = json.dumps(report, indent=2) + "\n"
    if report_path:
        write_text_atomic(report_path, text)
    if report_dir:
        stem = os.path.splitext(os.path.basename(report["output"]))[0]
        write_text_atomic(os.path.join(report_dir, stem + ".json"), text)


def run_batch(plan, process, *, label, show_bar, as_json, report_dir=None, line=None, error_gap="",
              read_ahead=None, reading=None):
    """Run ``process(input, output, reading)`` for every ``(input, output)`` of ``plan`` in turn; a
    file that fails is reported and the rest go on. Returns ``(results, exit status)``: ``results``
    is ``[(input, report or None, error message or None)]``, the status that of the last failure.

    Per file: its report is written into ``report_dir`` (:func:`write_reports`), then printed to
    stdout as one JSON line (``as_json``) or as ``line(report)`` when ``line`` is given; a failure
    is ``error: <message>`` on stderr (after ``error_gap``) and, with ``as_json``, a JSON line
    ``{"input", "output", "error"}``. With ``read_ahead(path)`` (e.g. ``read_audio_async``) the
    next input decodes while one is processed, and ``reading`` is that of the first; otherwise
    ``process`` gets ``reading=None``. ``show_bar``: a progress bar labelled ``label`` on stderr.
    Ctrl-C is checked before each file and after each failure (:func:`check_interrupted`).
    """
    results, status = [], 0
    bar = click.progressbar(length=len(plan), label=label, file=sys.stderr,
                            item_show_func=lambda item: item and os.path.basename(item))
    with (bar if show_bar else contextlib.nullcontext(_NoBar())) as shown:
        for index, (source, target) in enumerate(plan):
            check_interrupted()
            ahead = read_ahead(plan[index + 1][0]) if read_ahead is not None and index + 1 < len(plan) else None
            shown.update(0, source)
            try:
                report = process(source, target, reading)
                write_reports(report, None, report_dir)
                results.append((source, report, None))
                if as_json:
                    click.echo(json.dumps(report))
                elif line is not None:
                    click.echo(line(report))
            except RoomtoneError as exc:
                check_interrupted()
                status = exit_code_for(exc)
                results.append((source, None, str(exc)))
                click.echo(f"{error_gap}error: {exc}", err=True)
                if as_json:
                    click.echo(json.dumps({"input": source, "output": target, "error": str(exc)}))
            shown.update(1)
            reading = ahead
    return results, status


def count_line(results, verb):
    """``"<done> of <all> <verb>"``, and ``", <n> failed"`` when any failed, for :func:`run_batch`'s
    results."""
    failed = sum(1 for _, _, error in results if error is not None)
    return f"{len(results) - failed} of {len(results)} {verb}" + (f", {failed} failed" if failed else "")


class _NoBar:
    """What :func:`run_batch` updates when no progress bar is shown."""

    def update(self, steps, item=None):
        pass
