"""What every command-line entry point shares: one-line errors, exit codes, progress on stderr."""

import atexit
import contextlib
import functools
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
