"""Start-up work for the console scripts, kept out of the library: what makes a command's first run
on a machine, and every later start, cost less. The commands call it (every console script through
:func:`roomtone.cli_common.run_command`; the ``master`` command for the rest); no library function
does, so a Python caller of :func:`roomtone.mastering.master` gets no background thread, no
compiling child process and no changed JAX setting from us. Each piece is kept because it was
measured to help (``benchmarks/README.md``, ``bench_master.py --cold-start``; README, "Cost"):

- **numba's first run**: :data:`MASTER_KERNELS` names the kernel signatures the master job calls,
  :func:`cache_is_warm` tells whether a run will compile them (numba has no public way to ask, so it
  reads numba's own cache index), and :func:`compile_kernels` loads them, or on a cold cache
  compiles them in several processes at once (numba compiles under one lock per process).
  :func:`warm_up_master` does that and runs the job once on 0.5 s of noise, while the command's
  input decodes.
- **JAX's import in the background** (about 1.2 s on a 2-core CPU), beside the decoding and
  metering of the input: :func:`import_in_background`, and :func:`after_imports` for work that
  needs those modules (the fit's optimiser traced while the input is metered). A job that is about
  to import JAX itself calls :func:`await_imports` first, which returns at once when no command
  started anything.
- **JAX's persistent compilation cache**: :func:`use_compilation_cache` opts a command in, through
  JAX's own environment variables, before JAX is imported. The library never sets it: a model job
  keeps its traced functions (:func:`roomtone.models.runtime.exported`) beside whatever cache JAX
  is configured with, and compiles without one otherwise.

numba's on-disk cache (``cache=True``) is keyed to the CPU and lives where numba puts it: beside
the kernel sources when that folder is writable, else in the user's cache directory
(``~/.cache/numba``), or in ``$NUMBA_CACHE_DIR`` when the user sets it.
"""

import hashlib as _hashlib
import importlib as _importlib
import os as _os
import subprocess as _subprocess
import sys as _sys
import threading as _threading

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
    return getattr(_importlib.import_module(f"roomtone.kernels.{module}"), name)


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
    """True when numba's on-disk cache (wherever numba looks: ``$NUMBA_CACHE_DIR``, beside the
    kernel sources, or the user's cache directory) already holds every kernel signature in
    ``kernels`` (default: those the master job loads) for this CPU; False when a first run will
    compile some (about 7 s of CPU for the master job). Reads only numba's small index files: a few
    milliseconds once the kernel modules are imported; compiles nothing and changes nothing."""
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


def warm_up_master(master, preset="balanced", bit_depth="24"):
    """Load every numba kernel a master job uses (:data:`MASTER_KERNELS`) from numba's cache
    (about 0.3 s, mostly LLVM loading object code), or on a first run compile them
    (:func:`compile_kernels`: about 7 s of CPU, shared over up to one process per core;
    :func:`cache_is_warm` tells which), then run ``master`` (:func:`roomtone.mastering.master`) with
    ``preset`` (a name of a numba chain: the command gives the assistant's base chain for ``auto``)
    on 0.5 s of quiet noise, and both PCM quantizers (the job's dither and the file writer's), so
    that nothing is left to load. The ``master`` command calls it while the input decodes; without
    it, the first real call pays the loading or compiling instead. Errors are left for the real run
    to report."""
    import numpy as np

    from roomtone.audio import pcm_frames, quantize_to_grid
    from roomtone.errors import RoomtoneError

    compile_kernels()
    noise = (np.random.default_rng(0).standard_normal((2, 22050)) * 0.01).astype(np.float32)
    try:
        out, _ = master(noise, 44100, preset=preset, bit_depth=bit_depth)
    except RoomtoneError:
        out = noise
    if str(bit_depth) == "32f":
        quantize_to_grid(out, 24)  # so that the cache holds every kernel whatever the depth
    pcm_frames(out, "24", False, 0)  # the writer's quantizer (a master_file write of 16/24-bit output)


# Background work a command started: a module name (its import) or a key (work after the imports)
# -> its thread. Written by the command's thread only.
_background = {}


def import_in_background(*modules):
    """Start importing ``modules`` (and running a module's ``preload()``, where it has one: what it
    imports and loads at its first call, Flax and weights) in background threads, one after the
    other, so that JAX's import overlaps the command's decoding and metering. Idempotent per
    module; an error there is left for the job's own import to raise with its usual message."""
    for name in modules:
        if name in _background:
            continue
        earlier = _import_threads()

        def load(name=name, earlier=earlier):
            for thread in earlier:  # one import of JAX at a time (await_imports)
                thread.join()
            try:
                module = _importlib.import_module(name)
                if hasattr(module, "preload"):
                    module.preload()
            except Exception:  # noqa: BLE001 - the job imports it again and reports there
                pass

        _start(name, load)


def after_imports(key, module, function, *args):
    """Once every background import is done, call ``module.function(*args)`` in a background
    thread (once per ``key``): work that needs the imported modules, e.g. the fit's optimiser
    traced (``roomtone.mastering.fit.warm_up``) while the input is metered. An error there is left
    for the job to meet and report."""
    if key in _background:
        return
    imports = _import_threads()

    def run():
        for thread in imports:  # after every import: JAX's own lazy imports meet no half-done module
            thread.join()
        try:
            getattr(_importlib.import_module(module), function)(*args)
        except Exception:  # noqa: BLE001 - the job itself meets and reports whatever failed here
            pass

    _start(("after", key), run)


def _start(key, target):
    thread = _threading.Thread(target=target, name="roomtone-startup", daemon=True)
    _background[key] = thread
    thread.start()


def _import_threads():
    return [thread for key, thread in _background.items() if not isinstance(key, tuple)]


def await_imports():
    """Wait until the background imports (:func:`import_in_background`) are done, not the work
    after them; at once when none was started (a library call). A job calls this before it imports
    or calls into JAX itself: a second thread importing JAX while the first is still initialising
    it meets half-initialised modules (``ImportError: cannot import name ... from partially
    initialized module 'jax._src.dtypes'``, as ``--preset auto`` did when the assistant imported
    ``jax.numpy`` in the job's thread)."""
    for thread in _import_threads():
        thread.join()


_JAX_CACHE_SETTINGS = {  # TOOLCHAIN.md: on CPU the cache stores nothing without these two
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
}


def use_compilation_cache():
    """Opt this process (a command) in to JAX's persistent compilation cache in
    :func:`roomtone.models.runtime.cache_dir` (``~/.cache/roomtone/jax``, mode 0700), which saves
    about 0.4 s per process start, and the traced functions kept beside it. It is set through JAX's
    own environment variables, so it costs nothing until a job imports JAX (a plain ``master``
    never does); a cache the user configured (``$JAX_COMPILATION_CACHE_DIR``) is left as it is, and
    a directory that is not private is not used. Returns the cache directory in use, or None."""
    from roomtone.models.runtime import cache_dir, private_dir

    own = _os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if own:
        return own
    if "jax" in _sys.modules:  # too late for the environment: JAX read it at its import
        return None
    path = cache_dir()
    if not private_dir(path):
        return None
    _os.environ["JAX_COMPILATION_CACHE_DIR"] = path
    for name, value in _JAX_CACHE_SETTINGS.items():
        _os.environ.setdefault(name, value)
    return path
