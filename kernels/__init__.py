"""numba sample loops: numpy in, numpy out, no validation, no I/O, no JAX.

Callers (the public wrappers in ``roomtone`` and the jobs) validate and fix dtypes at the boundary:
audio as C-contiguous ``float32`` or ``float64`` ``(channels, samples)``, coefficients ``float64``.
Every kernel has a naive numpy oracle in the tests (``tests/test_kernels.py``; the PCM quantizer's
in ``tests/test_audio.py``). Kernels release the GIL (``nogil=True``), so callers may overlap
independent ones in threads (the master job meters in a second thread while the chain runs, and
runs the multiband compressor over two overlapping halves). None is ``parallel=True`` (numba's
parallel lowering costs about 0.5 s of first-run compilation per kernel): the block kernels work on
a range of work items, and their Python wrappers give each core a share (``_split.run_split``). Whole-file kernels keep no whole-file
scratch beyond their output: they work in blocks or rings, so a job's memory is a few copies of
the signal.

numba's on-disk cache (``cache=True``) is keyed to the CPU and lives where numba puts it: beside the
sources when that folder is writable, else in the user's cache directory (``~/.cache/numba``), or
in ``$NUMBA_CACHE_DIR`` when the user sets it. Importing these modules changes no environment
variable. :func:`cache_is_warm` tells whether a first run will compile.

First-run compile time: each kernel compiles once per argument type signature (callers fix dtypes
and layouts: C-contiguous float32 audio, float64 coefficients), and numba's generic array
reductions, slice assignments and IR inlining cost far more compile time than the plain loops used
here instead.
"""

import hashlib as _hashlib
import importlib as _importlib
import os as _os

# The kernels the master job calls from Python, as (module, function): loading these from the cache
# is all its first run needs (a cached kernel holds the code of the kernels it calls).
MASTER_KERNELS = (
    ("biquad", "sos_filter"),
    ("multiband", "multiband_compress"),
    ("loudness", "loudness_pass"),
    ("truepeak", "_reversed_taps"),
    ("truepeak", "_offsets"),
    ("truepeak", "_true_peak_blocks"),
    ("truepeak", "block_peak_bounds"),
    ("truepeak", "_peak_pieces"),
    ("saturation", "_saturate_blocks"),
    ("dynamics", "sliding_max_forward"),
    ("dynamics", "limiter_gain_held"),
    ("pcm", "quantize_grid"),
    ("pcm", "quantize_codes"),
)


def _in_cache(dispatcher):
    """True when numba's on-disk index for ``dispatcher`` holds an entry for this CPU and this
    version of its source, and the entry's data file exists (what numba checks before loading)."""
    cache = getattr(dispatcher, "_cache", None)
    try:
        overloads = cache._cache_file._load_index()  # {} if missing, from another numba, or stale source
        magic = dispatcher.targetctx.codegen().magic_tuple()  # (triple, CPU name, CPU features)
    except (AttributeError, OSError, EOFError, ValueError, TypeError):
        return False
    code = _hashlib.sha256(dispatcher.py_func.__code__.co_code).hexdigest()
    for key, data_name in overloads.items():
        try:
            fits = key[1] == magic and key[2][0] == code
        except (IndexError, TypeError):
            continue
        if fits and _os.path.exists(_os.path.join(cache._cache_path, data_name)):
            return True
    return False


def cache_is_warm(kernels=MASTER_KERNELS):
    """True when numba's on-disk cache (wherever numba looks: ``$NUMBA_CACHE_DIR``, beside these
    sources, or the user's cache directory) already holds every kernel in ``kernels`` (default:
    those the master job loads) for this CPU; False when a first run will compile some of them
    (about 7 s for the master job). Reads only numba's small index files: a few milliseconds once
    the kernel modules are imported; compiles nothing and changes nothing."""
    for module, name in kernels:
        dispatcher = getattr(_importlib.import_module(f"{__name__}.{module}"), name)
        if not _in_cache(dispatcher):
            return False
    return True
