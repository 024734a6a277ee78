"""Process-level tuning for the command-line tools (never applied on import of the library).

Whole-file processing allocates and frees many arrays of tens to hundreds of MB. glibc serves those
with fresh ``mmap`` pages that are returned on ``free``, so every new array page-faults again; on a
virtual machine each fault is expensive (measured here: 763k faults and 3.4 s of system time for a
3-minute master). Keeping freed memory in the heap (no mmap, no trimming) lets later arrays reuse
it: 202k faults, 0.9 s. The cost is that the process keeps its peak heap until it exits, which is
what a short-lived CLI does anyway.
"""

import contextlib
import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory():
    """Ask glibc to serve large allocations from the heap and never trim it. Returns True if set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**30))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False


_SCIPY_BLAS = "scipy.linalg.cython_blas"


@contextlib.contextmanager
def without_scipy_blas():
    """Hide SciPy's BLAS module while numba loads its first kernel.

    On its first compile or cache load, numba probes for BLAS (for ``np.dot`` and ``np.linalg`` in
    kernels) by importing ``scipy.linalg``: about 0.2 s of a CLI's start-up here, and SciPy is
    installed (JAX needs it) whether or not anything uses it. No roomtone kernel uses BLAS, so the
    command-line tools make the probe fail fast (numba then leaves BLAS functions unsupported in
    that process). Only that one module is hidden, only inside the block, and only if nothing has
    imported it yet.
    """
    if _SCIPY_BLAS in sys.modules:
        yield
        return
    sys.modules[_SCIPY_BLAS] = None  # "import scipy.linalg.cython_blas" raises ImportError
    try:
        yield
    finally:
        if sys.modules.get(_SCIPY_BLAS, 0) is None:
            del sys.modules[_SCIPY_BLAS]
