"""What every command-line entry point shares: one-line errors, exit codes, progress on stderr, the
checks of options and of every destination before any work, the plan of outputs in a folder, and
the one batch loop every command runs its files through.

A command is thin: it parses, checks (:func:`bad_options`, :func:`check_format_option`,
:func:`check_destinations`), then hands :func:`run_batch` its plan and one function per file that
calls the library, and prints what comes back. A new command (e.g. ``mix``) does the same::

    @click.command()
    @click.argument("inputs", nargs=-1)
    @click.option("-o", "--output", "output_dir")
    @report_dir_option
    @json_option()
    @quiet_option
    @friendly_errors
    def main(inputs, output_dir, report_dir, as_json, quiet):
        plan = folder_plan(list(inputs), output_dir, None, verb="mix")
        with bad_options():  # a library error here is a bad option: exit status 2
            check_my_options(...)
        check_destinations(plan, "24", report_dir=report_dir)

        def one(source, target, reading, progress):  # -> the file's JSON-ready report
            return my_job_file(source, target, progress=progress)

        results, status = run_batch(plan, one, quiet=quiet, as_json=as_json, report_dir=report_dir,
                                    line=lambda report: f"{report['input']} -> {report['output']}")
        raise SystemExit(status)

Errors name the option they are about where they are raised (the library's name the keyword
argument, the command's checks the option), never by rewriting another error's text.
"""

import atexit
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time

import click

from roomtone.errors import InvalidAudioError, OutputError, PresetError, RoomtoneError, TargetUnreachableError

# Exit codes: 0 ok, 2 bad input / usage, 3 target unreachable, 4 output not writable,
# 70 internal error, 130 interrupted (meter exits with the code of its last failing file).
EXIT_CODES = {InvalidAudioError: 2, PresetError: 2, TargetUnreachableError: 3, OutputError: 4}


def fail(message, code):
    end_progress()  # an error starts on a line of its own, never after a status line
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def naming(source, message, target=None):
    """``message`` naming the file it is about: as it is when it starts with ``source`` or
    ``target`` (the reader's and writer's errors name their path), else ``"<source>: <message>"``,
    so a batch's error says which file, as the user typed it."""
    source = os.fspath(source) if source is not None else None
    for path in (source, os.fspath(target) if target is not None else None):
        if path and message.startswith(path):
            return message
    return f"{source}: {message}" if source else message


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


quiet_option = click.option("-q", "--quiet", is_flag=True,
                            help="Print nothing but errors (and the --json lines when asked): no progress, no tables.")
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
                try:
                    return func(*args, **kwargs)
                finally:
                    end_progress()
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

    Before the command runs, the process opts in to JAX's persistent compilation cache
    (:func:`roomtone.startup.use_compilation_cache`: nothing is imported for it, so a command that
    runs no model pays nothing).
    """
    from roomtone.startup import use_compilation_cache

    use_compilation_cache()
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


_ACTIVE = []  # the Progress objects whose ticker runs (at most one status line on stderr)
_COUNTED = re.compile(r"(.*?)\s*\b(\d+) of (\d+)")


class Progress:
    """The ``progress(stage)`` callback every command hands its job: it checks for Ctrl-C
    (:func:`check_interrupted`) and, unless ``quiet``, tells the user where the job is, on stderr.

    A stage is a string; one ending in ``<done> of <total>`` (``separating segment 3 of 12``) is a
    stage with a count. On a terminal (stderr a TTY) it is one status line redrawn in place,
    ``  [2/5] take.wav: denoise  14 s`` or with a count a bar; a ticker thread redraws it every
    :attr:`TICK_S`, so a long stage without a count still shows its time going. Anywhere else (a
    log, a pipe) no carriage return is written, only plain lines: one when a stage starts
    (``stage_lines="all"``; ``"first"``: only a file's first stage, for a batch), and within a
    stage at most one every :attr:`LOG_EVERY_S` (its count, or how long it has run). :meth:`end`
    stops the ticker and clears the status line: call it (or leave the ``with`` block) before
    printing anything else. ``label`` starts every line (a batch's ``[2/5] take.wav: ``)."""

    TICK_S = 0.5
    LOG_EVERY_S = 10.0
    BAR = 24

    def __init__(self, quiet=False, label="", *, stage_lines="all", stream=None, tty=None, clock=time.monotonic,
                 ticker=True):
        self.quiet = quiet
        self.label = label
        self.stage_lines = stage_lines
        self.stream = sys.stderr if stream is None else stream
        if tty is None:
            try:
                tty = self.stream.isatty()
            except (AttributeError, ValueError):
                tty = False
        self.tty = tty
        self.clock = clock
        self.ticker = ticker
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._stage = None
        self._count = None
        self._started = self._logged = 0.0
        self._stages = 0
        self._drawn = 0  # width of the status line now on the terminal

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.end()

    def __call__(self, stage):
        check_interrupted()
        if self.quiet:
            return
        match = _COUNTED.fullmatch(str(stage))
        name, count = (match.group(1), (int(match.group(2)), int(match.group(3)))) if match else (str(stage), None)
        with self._lock:
            now = self.clock()
            new = name != self._stage
            if new:
                self._stage, self._started = name, now
                self._stages += 1
            self._count = count
            if self.tty:
                self._draw(now)
            elif new and (self.stage_lines == "all" or self._stages == 1):
                self._line(self._text(now, elapsed=False), now)
            elif not new and count is not None and now - self._logged >= self.LOG_EVERY_S:
                self._line(self._text(now), now)
        if self.ticker and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="roomtone-progress", daemon=True)
            _ACTIVE.append(self)
            self._thread.start()

    def _text(self, now, elapsed=True):
        text = f"{self.label}{self._stage}"
        if self._count is not None:
            done, total = self._count
            if self.tty:
                filled = int(self.BAR * done / max(total, 1))
                text += f" [{'#' * filled}{'-' * (self.BAR - filled)}] {done}/{total}"
            else:
                text += f" {done} of {total}"
        seconds = now - self._started
        if elapsed and seconds >= 1.0:
            text += f"  {seconds:.0f} s" if self.tty else f" ({seconds:.0f} s so far)"
        return text

    def _draw(self, now):
        width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
        text = f"  ... {self._text(now)}"[:width]
        self.stream.write("\r" + text.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(text)

    def _line(self, text, now):
        self.stream.write(f"  ... {text}\n")
        self.stream.flush()
        self._logged = now

    def tick(self):
        """Redraw the status line (terminal), or write a line for a stage running for
        :attr:`LOG_EVERY_S` since the last (log). The ticker calls this; tests may too."""
        with self._lock:
            if self._stage is None or self.quiet:
                return
            now = self.clock()
            if self.tty:
                self._draw(now)
            elif now - max(self._logged, self._started) >= self.LOG_EVERY_S:
                self._line(self._text(now), now)

    def _run(self):
        while not self._stop.wait(self.TICK_S):
            self.tick()

    def end(self):
        """Stop the ticker and clear the status line (idempotent)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        with self._lock:
            if self._drawn:
                self.stream.write("\r" + " " * self._drawn + "\r")
                self.stream.flush()
                self._drawn = 0
            self._stage = None


def end_progress():
    """End every running :class:`Progress` (before an error line, and when a command returns)."""
    for progress in list(_ACTIVE):
        progress.end()


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


def check_folder_takes_files(directory, shown):
    """Fail with exit status 4 unless a file can be created in ``directory``: a trial temporary
    file, removed at once. The mode bits are not enough: root is told /sys is writable, and /proc
    takes no new file whatever its mode. ``shown``: the output path the message names."""
    try:
        with tempfile.NamedTemporaryFile(prefix=".roomtone-probe-", dir=directory):
            pass
    except OSError as exc:
        where = "this folder" if _same(shown, directory) else directory
        from roomtone.audio import cannot_create_reason

        fail(f"{shown}: cannot create a file in {where} ({cannot_create_reason(exc, directory)})", 4)


def _same(path, directory):
    return os.path.abspath(os.fspath(path)) == os.path.abspath(os.fspath(directory))


def make_output_folder(directory, shown=None):
    """Create ``directory`` if missing and check that it takes files (exit status 4 if not, the
    message naming ``shown`` or the folder)."""
    if not os.path.isdir(directory):
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            if shown is None or _same(shown, directory):
                fail(f"{directory}: cannot create the output folder ({exc.strerror})", 4)
            fail(f"{shown}: cannot create the output folder {directory} ({exc.strerror})", 4)
    check_folder_takes_files(directory, shown or directory)


def check_destinations(plan, bit_depth, *, overwrite_input=False, report_path=None, report_dir=None):
    """Refuse bad destinations for ``plan`` (``[(input, output)]``) before any work, and before any
    input is decoded: a format or bit depth we do not write (exit status 2), an output that is its
    input (unless ``overwrite_input``) or whose folder takes no file (4), a report path that is the
    output. A missing output or report folder is created."""
    from roomtone.audio import check_output_path, output_format

    folders = {}  # folder -> the first path written there, for the message
    for _, target in plan:
        folders.setdefault(os.path.dirname(os.path.abspath(target)), target)
    if report_dir:
        folders.setdefault(os.path.abspath(report_dir), report_dir)
    if report_path:
        folders.setdefault(os.path.dirname(os.path.abspath(report_path)), report_path)
    for source, target in plan:
        try:
            output_format(target, bit_depth)
        except OutputError as exc:  # a bad extension or depth is a bad option, not a failed write
            fail(str(exc), 2)
    for directory in sorted(folders):
        make_output_folder(directory, folders[directory])
    for source, target in plan:
        check_output_path(target, source, overwrite_input=overwrite_input)
    if report_path:
        check_output_path(report_path, plan[0][0])
        if os.path.abspath(report_path) == os.path.abspath(plan[0][1]):
            fail(f"{report_path}: the report path is the output path; choose another", 4)


def write_reports(report, report_path=None, report_dir=None):
    """Write the JSON ``report`` to ``report_path`` and/or into ``report_dir`` as
    ``<output name>.json`` (a report without one ``output``, as separate's: ``<input name>.json``),
    each atomically."""
    from roomtone.audio import write_text_atomic

    text = json.dumps(report, indent=2) + "\n"
    if report_path:
        write_text_atomic(report_path, text)
    if report_dir:
        stem = os.path.splitext(os.path.basename(report["output"] if "output" in report else report["input"]))[0]
        write_text_atomic(os.path.join(report_dir, stem + ".json"), text)


@contextlib.contextmanager
def bad_options():
    """Inside, any :class:`RoomtoneError` (a check of the command's options before any work) ends
    the command with ``error: <message>`` and exit status 2, whatever its type: an option the
    library refuses is a bad option, not a failed write."""
    try:
        yield
    except RoomtoneError as exc:
        fail(str(exc), 2)


def check_format_option(fmt_choice, bit_depth):
    """Refuse (exit status 2) a ``--bit-depth`` that ``--format`` does not have, in the options'
    words (``--format flac takes --bit-depth 16 or 24, not 32f``)."""
    from roomtone.audio import OUTPUT_FORMATS

    depths = OUTPUT_FORMATS["." + fmt_choice][1]
    if depths is not None and str(bit_depth) not in depths:
        fail(f"--format {fmt_choice} takes --bit-depth {' or '.join(depths)}, not {bit_depth}", 2)


def _error_record(source, target, message):
    return {"input": source, "output": target, "error": message}


def run_batch(plan, process, *, quiet, as_json, report_dir=None, line=None, read_ahead=None, reading=None,
              fatal=(), error_record=_error_record):
    """Run ``process(input, output, reading, progress)`` for every ``(input, output)`` of ``plan`` in
    turn; a file that fails is reported and the rest go on. Returns ``(results, exit status)``:
    ``results`` is ``[(input, report or None, error message or None)]`` (the message as raised), the status that of the
    last failure.

    Per file: a :class:`Progress` (``progress``; labelled ``[i/n] <name>: `` for many files, and in a
    log only each file's first stage and long stages); its report is written into ``report_dir``
    (:func:`write_reports`), then printed to stdout as one JSON line (``as_json``) or, unless
    ``quiet``, as ``line(report)``. A failure is ``error: <file>: <message>`` on stderr
    (:func:`naming`) and, with ``as_json``, a JSON line ``{"input", "output", "error"}``; an error
    of a ``fatal`` type (one that would fail every file alike) ends the batch at once.
    ``error_record(input, output, message)``: that JSON line's object (``meter``'s is
    ``{"path", "error"}``); ``output`` may be None for a command that writes nothing. With
    ``read_ahead(path)`` (e.g. ``read_audio_async``) the next input decodes while one is processed,
    and ``reading`` is that of the first; otherwise ``process`` gets ``reading=None``. Ctrl-C is
    checked before each file and after each failure (:func:`check_interrupted`).
    """
    results, status = [], 0
    many = len(plan) > 1
    for index, (source, target) in enumerate(plan):
        check_interrupted()
        ahead = read_ahead(plan[index + 1][0]) if read_ahead is not None and index + 1 < len(plan) else None
        label = f"[{index + 1}/{len(plan)}] {os.path.basename(source)}: " if many else ""
        try:
            with Progress(quiet, label, stage_lines="first" if many else "all") as progress:
                report = process(source, target, reading, progress)
            write_reports(report, None, report_dir)
            results.append((source, report, None))
            if as_json:
                click.echo(json.dumps(report))
            elif line is not None and not quiet:
                click.echo(line(report))
        except RoomtoneError as exc:
            check_interrupted()
            message = naming(source, str(exc), target)
            if isinstance(exc, fatal):
                fail(message, exit_code_for(exc))
            status = exit_code_for(exc)
            results.append((source, None, str(exc)))  # a summary row names the file itself
            click.echo(f"error: {message}", err=True)
            if as_json:
                click.echo(json.dumps(error_record(source, target, message)))
        reading = ahead
    return results, status


def count_line(results, verb):
    """``"<done> of <all> <verb>"``, and ``", <n> failed"`` when any failed, for :func:`run_batch`'s
    results."""
    failed = sum(1 for _, _, error in results if error is not None)
    return f"{len(results) - failed} of {len(results)} {verb}" + (f", {failed} failed" if failed else "")
