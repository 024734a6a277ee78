"""Running numba kernels from two Python threads at once.

The kernels release the GIL (``nogil=True``), so metering can run beside processing. None of them
is ``parallel=True`` (numba's parallel lowering cost about 0.5 s of first-run compilation per
kernel for a saving of 0.1 s per call on two cores, and two parallel kernels may run at once only
under a thread-safe threading layer; :mod:`roomtone.kernels`), so any two may overlap: the work is
split into threads here, by the callers, instead.
"""

from concurrent.futures import Future, ThreadPoolExecutor


def kernels_may_overlap():
    """True: the kernels are serial and release the GIL, so two threads may run them at once."""
    return True


class SerialExecutor:
    """The :class:`~concurrent.futures.Executor` calls, run at once in the calling thread."""

    def submit(self, fn, *args, **kwargs):
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # delivered by future.result(), as a thread pool would
            future.set_exception(exc)
        return future

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


def side_executor(name):
    """One worker thread for side work (metering) beside the calling thread."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"roomtone-{name}")
