"""Running numba kernels from two Python threads at once.

The kernels release the GIL (``nogil=True``), so metering can run beside processing. None of them
is ``parallel=True`` (numba's parallel lowering cost about 0.5 s of first-run compilation per
kernel for a saving of 0.1 s per call on two cores, and two parallel kernels may run at once only
under a thread-safe threading layer; :mod:`roomtone.kernels`), so any two may overlap: the work is
split into threads here, by the callers, instead.
"""

import threading
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


def map_two(fn, items):
    """``[fn(item) for item in items]``, the items shared between the calling thread and one worker
    (each takes the next one not yet taken, so uneven items balance): for kernel-bound work, about
    half the wall time on two cores. The first exception is raised once both threads stopped."""
    items = list(items)
    if len(items) < 2:
        return [fn(item) for item in items]
    results = [None] * len(items)
    lock = threading.Lock()
    taken = [0]
    failed = []

    def work():
        while not failed:
            with lock:
                index = taken[0]
                taken[0] += 1
            if index >= len(items):
                return
            try:
                results[index] = fn(items[index])
            except BaseException as exc:  # the other thread stops at its next item
                failed.append(exc)
                return

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="roomtone-pair") as pool:
        other = pool.submit(work)
        work()
        other.result()
    if failed:
        raise failed[0]
    return results
