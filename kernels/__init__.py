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
variable. :func:`cache_is_warm` tells whether a first run will compile, :func:`compile_kernels`
loads or compiles the master job's kernels (on a cold cache in several processes at once).

First-run compile time: each kernel compiles once per argument type signature (callers fix dtypes
and layouts: C-contiguous float32 audio, float64 coefficients; :data:`MASTER_KERNELS` lists the
signatures the master job uses), and numba's generic array reductions, slice assignments and IR
inlining cost far more compile time than the plain loops used here instead.
"""

import hashlib as _hashlib
import importlib as _importlib
import os as _os
import subprocess as _subprocess
import sys as _sys

_A32 = "float32[:, ::1]"  # C-contiguous (channels, samples) float32 audio
_M64 = "float64[:, ::1]"

# What the master job calls from Python, as (module, function, signature, group, seconds): a cached
# kernel holds the code of the kernels it calls, so loading these is all a job needs. ``group``
# keeps kernels that share callees in one compiling process; ``seconds`` is roughly what a cold
# compile takes on a 2-core VM (for sharing the work out, nothing else).
MASTER_KERNELS = (
    ("loudness", "loudness_pass", f"({_A32}, {_M64}, float64[::1], float32[::1], int64, int64, int64, boolean)",
     "loudness", 1.8),
    ("multiband", "multiband_compress",
     f"({_A32}, float64[:, :, ::1], {_M64}, float64[::1], float64[::1], float64[::1], float64, float64, float64, "
     f"int64, float64[:, :, ::1], {_A32}, int64, int64, int64)", "filters", 1.15),
    ("biquad", "sos_filter", f"({_A32}, {_M64}, {_A32})", "filters", 0.25),
    ("biquad", "sos_filter", f"({_M64}, {_M64}, {_M64})", "filters", 0.15),  # stereo width's side high-pass
    ("truepeak", "_reversed_taps", f"({_M64},)", "peaks", 0.15),
    ("truepeak", "_offsets", "(int64, int64)", "peaks", 0.15),
    ("truepeak", "_true_peak_blocks",
     f"({_A32}, float32[::1], {_M64}, int64, float64, float64[::1], {_M64}, int64, int64)",
     "peaks", 0.5),
    ("truepeak", "block_peak_bounds", f"({_A32}, {_M64}, int64)", "peaks", 0.45),
    ("truepeak", "_peak_pieces",
     f"({_A32}, {_M64}, int64[::1], boolean, float32[::1], int64[::1], int64[::1], int64, int64)", "peaks", 0.7),
    ("saturation", "_saturate_blocks", f"({_A32}, float64[::1], float64, float64, float64, {_A32}, int64, int64)",
     "peaks", 0.35),
    ("dynamics", "limiter_gain_peak", "(float32[::1], float64, float64, int64, float64)", "dynamics", 0.4),
    ("pcm", "quantize_grid", f"({_A32}, int64, boolean, int64, float32[::1], {_A32})", "pcm", 0.4),
    ("pcm", "quantize_codes", f"({_A32}, int64, boolean, int64, int64)", "pcm", 0.2),
)
_PROCESS_START_S = 0.4  # a compiling child's own start (Python, numba, these modules)


def _dispatcher(module, name):
    return getattr(_importlib.import_module(f"{__name__}.{module}"), name)


def _arg_types(signature):
    """The argument types of ``signature`` as the tuple numba keys a call's compile (and its cache
    index) by: ``dispatcher.compile`` given the string would index it under the string, which a
    later call would not find."""
    from numba.core import sigutils

    return tuple(sigutils.normalize_signature(signature)[0])


def _load_or_compile(kernels):
    for module, name, signature, _, _ in kernels:
        _dispatcher(module, name).compile(_arg_types(signature))


def _in_cache(dispatcher, signature=None):
    """True when numba's on-disk index for ``dispatcher`` holds an entry for ``signature`` (any,
    if None) for this CPU and this version of its source, and the entry's data file exists: what
    numba checks before it loads instead of compiling."""
    cache = getattr(dispatcher, "_cache", None)
    try:
        overloads = cache._cache_file._load_index()  # {} if missing, from another numba, or stale source
        magic = dispatcher.targetctx.codegen().magic_tuple()  # (triple, CPU name, CPU features)
        wanted = None if signature is None else _arg_types(signature)
    except (AttributeError, OSError, EOFError, ValueError, TypeError, ImportError):
        return False
    code = _hashlib.sha256(dispatcher.py_func.__code__.co_code).hexdigest()
    for key, data_name in overloads.items():
        try:
            fits = key[1] == magic and key[2][0] == code and (wanted is None or key[0] == wanted)
        except (IndexError, TypeError):
            continue
        if fits and _os.path.exists(_os.path.join(cache._cache_path, data_name)):
            return True
    return False


def _cold(kernels):
    return [k for k in kernels if not _in_cache(_dispatcher(k[0], k[1]), k[2])]


def cache_is_warm(kernels=MASTER_KERNELS):
    """True when numba's on-disk cache (wherever numba looks: ``$NUMBA_CACHE_DIR``, beside these
    sources, or the user's cache directory) already holds every kernel signature in ``kernels``
    (default: those the master job loads) for this CPU; False when a first run will compile some
    (about 7 s of CPU for the master job). Reads only numba's small index files: a few milliseconds
    once the kernel modules are imported; compiles nothing and changes nothing."""
    return not _cold(kernels)


def _shares(kernels, n):
    """``kernels`` cut into ``n`` lists of whole groups, longest first onto the least loaded (the
    first list is the calling process's, the others start later by a process start)."""
    groups = {}
    for kernel in kernels:
        groups.setdefault(kernel[3], []).append(kernel)
    loads = [0.0] + [_PROCESS_START_S] * (n - 1)
    shares = [[] for _ in range(n)]
    for group in sorted(groups.values(), key=lambda g: -sum(k[4] for k in g)):
        i = loads.index(min(loads))
        shares[i] += group
        loads[i] += sum(k[4] for k in group)
    return shares


def compile_kernels(kernels=MASTER_KERNELS, processes=None):
    """Load every kernel signature in ``kernels`` from numba's cache, compiling (and caching) the
    ones it lacks. numba compiles under one lock per process, so on a cold cache the work is shared
    out over up to ``processes`` (default: one per core, at most 4) processes at once, each a
    ``python -c`` child compiling its share into the same cache, which this process then loads.
    A child that fails costs nothing but its time: what it did not cache is compiled here. Returns
    the number of signatures that were missing from the cache."""
    from roomtone.kernels._split import cores

    cold = _cold(kernels)
    if processes is None:
        processes = min(4, cores())
    shares = _shares(cold, max(1, min(processes, len({k[3] for k in cold}))))
    children = []
    try:
        if sum(k[4] for share in shares[1:] for k in share) > _PROCESS_START_S:
            for share in shares[1:]:
                code = (f"import sys; sys.path[:0] = {_sys.path!r}; from {__name__} import compile_kernels; "
                        f"compile_kernels({[tuple(k) for k in share]!r}, processes=1)")
                children.append(_subprocess.Popen([_sys.executable, "-c", code], stdin=_subprocess.DEVNULL,
                                                  stdout=_subprocess.DEVNULL, stderr=_subprocess.DEVNULL))
            own = shares[0]
        else:
            own = cold
        _load_or_compile(own)
        for child in children:
            child.wait()
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    _load_or_compile(kernels)  # loads what the children cached (and compiles anything still missing)
    return len(cold)
