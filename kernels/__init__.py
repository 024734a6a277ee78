"""numba sample loops: numpy in, numpy out, no validation, no I/O, no JAX.

Callers (the public wrappers in ``roomtone`` and the jobs) validate and fix dtypes at the boundary:
audio as C-contiguous ``float32`` or ``float64`` ``(channels, samples)``, coefficients ``float64``.
Every kernel has a naive numpy oracle in the tests (``tests/test_kernels.py``; the PCM quantizer's
in ``tests/test_audio.py``). Kernels release the GIL (``nogil=True``), so callers may overlap
independent ones in threads (the master job meters in a second thread while the chain runs, and
runs the multiband compressor over two overlapping halves). Whole-file kernels keep no whole-file
scratch beyond their output: they work in blocks or rings, so a job's memory is a few copies of
the signal.

numba's on-disk cache must be writable and is keyed to the CPU, so it lives in the user's cache
directory (``$NUMBA_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/roomtone/numba``), never in the package.
"""

import os as _os

if "NUMBA_CACHE_DIR" not in _os.environ:
    _base = _os.environ.get("XDG_CACHE_HOME") or _os.path.join(_os.path.expanduser("~"), ".cache")
    _os.environ["NUMBA_CACHE_DIR"] = _os.path.join(_base, "roomtone", "numba")
