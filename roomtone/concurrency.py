"""Running numba kernels from two Python threads at once, only where that is safe.

The kernels release the GIL, so metering can run beside processing. Several kernels are
``parallel=True``; two of those may run at once only under a thread-safe numba threading layer
(OpenMP or TBB). Numba's fallback layer, ``workqueue``, aborts the process on concurrent use, so
there the work runs serially instead.
"""

from concurrent.futures import Future, ThreadPoolExecutor

import numba
import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True, nogil=True)
def _parallel_probe(x):
    total = 0.0
    for i in prange(x.shape[0]):
        total += x[i]
    return total


_OVERLAP_OK = None


def kernels_may_overlap():
    """True when numba's threading layer (omp or tbb) allows concurrent parallel kernels."""
    global _OVERLAP_OK
    if _OVERLAP_OK is None:
        _parallel_probe(np.zeros(4))  # the layer is chosen on the first parallel call
        _OVERLAP_OK = numba.threading_layer() in ("omp", "tbb")
    return _OVERLAP_OK


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
    """One worker thread for side work (metering) where kernels may overlap, else serial."""
    if kernels_may_overlap():
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"roomtone-{name}")
    return SerialExecutor()
