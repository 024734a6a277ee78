"""numba sample loops: numpy in, numpy out, no validation, no I/O, no JAX.

Callers (the public wrappers in ``roomtone`` and the jobs) validate and fix dtypes at the boundary:
audio as C-contiguous ``float32`` or ``float64`` ``(channels, samples)``, coefficients ``float64``.
Every kernel has a naive numpy oracle in the tests (``tests/test_kernels.py``; the PCM quantizer's
in ``tests/test_audio.py``). Kernels release the GIL (``nogil=True``), so callers may overlap
independent ones in threads (the master job meters in a second thread while the chain runs, and
runs the multiband compressor over two overlapping halves). None is ``parallel=True`` (numba's
parallel lowering costs about 0.5 s of first-run compilation per kernel): the block kernels work on
a range of work items, and their Python wrappers give each core a share (``_split.run_split``).
Whole-file kernels keep no whole-file scratch beyond their output: they work in blocks or rings, so
a job's memory is a few copies of the signal.

numba's on-disk cache (``cache=True``) is keyed to the CPU and lives where numba puts it: beside the
sources when that folder is writable, else in the user's cache directory (``~/.cache/numba``), or
in ``$NUMBA_CACHE_DIR`` when the user sets it. Importing these modules changes no environment
variable. Whether a first run will compile, and compiling the master job's kernels ahead of it (on
a cold cache in several processes at once), is the commands' start-up work: :mod:`roomtone.startup`.

First-run compile time: each kernel compiles once per argument type signature (callers fix dtypes
and layouts: C-contiguous float32 audio, float64 coefficients; :data:`roomtone.startup.MASTER_KERNELS`
lists the signatures the master job uses), and numba's generic array reductions, slice assignments
and IR inlining cost far more compile time than the plain loops used here instead.
"""
