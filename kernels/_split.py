"""Work split over threads for the block kernels: numba's ``parallel=True`` costs about 0.5 s of
first-run compilation per kernel (plus the threading layer's start), so the kernels are serial
over a range of work items ``[first, last)`` and release the GIL, and their Python wrappers hand
one contiguous share of the items to each core here. Each item is computed by the same code
whichever thread runs it, so the result does not depend on the split."""

import os
from concurrent.futures import ThreadPoolExecutor


def cores():
    """CPUs this process may run on (numba's parallel kernels used as many threads)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_split(kernel, n_items, *args):
    """``kernel(*args, first, last)`` over ``[0, n_items)`` in one contiguous share per core; the
    calling thread runs the first share. Errors are raised here."""
    k = min(cores(), n_items)
    if k <= 1:
        kernel(*args, 0, n_items)
        return
    bounds = [n_items * i // k for i in range(k + 1)]
    with ThreadPoolExecutor(max_workers=k - 1, thread_name_prefix="roomtone-kernel") as pool:
        futures = [pool.submit(kernel, *args, bounds[i], bounds[i + 1]) for i in range(1, k)]
        kernel(*args, bounds[0], bounds[1])
        for future in futures:
            future.result()
