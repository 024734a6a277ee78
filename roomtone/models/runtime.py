"""JAX runtime helpers for the model jobs: where roomtone keeps its per-user caches, the persistent
compilation cache JAX is configured with (if any), functions traced once per machine, and the
device models run on (GPU/TPU when JAX sees one, else the CPU).

The library changes no JAX setting: a model job uses a persistent compilation cache only when JAX
already has one (set by the host application, by JAX's environment variables, or by a roomtone
command, which opts in to :func:`cache_dir` through :func:`roomtone.startup.use_compilation_cache`).
TOOLCHAIN.md: on CPU that cache only stores entries with
``jax_persistent_cache_min_compile_time_secs=0`` and ``jax_persistent_cache_min_entry_size_bytes=-1``;
it saves about 0.4 s per process start.
"""

import functools
import os
import threading


def cache_dir():
    """The compilation cache directory the commands use: ``$XDG_CACHE_HOME/roomtone/jax`` (default
    ``~/.cache/roomtone/jax``), created with mode 0700 (compiled code is kept private to the user)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "roomtone", "jax")


def _private_dir(path):
    """Create ``path`` (mode 0700) unless it exists; refuse one another user owns or others may
    write. Returns True when the cache may be used there."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.stat(path)
    except OSError:
        return False
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return False
    return not info.st_mode & 0o022


private_dir = _private_dir  # public name: model jobs keep their converted-weight caches the same way


def compilation_cache_dir():
    """The directory of the persistent compilation cache JAX is configured with, or None. Read only:
    the library never sets it (module docstring)."""
    import jax

    return jax.config.jax_compilation_cache_dir or None


def device():
    """The device models run on: the first GPU or TPU JAX sees, else the CPU."""
    import jax

    for kind in ("gpu", "tpu"):
        try:
            found = jax.devices(kind)
        except RuntimeError:
            continue
        if found:
            return found[0]
    return jax.devices("cpu")[0]


def device_name():
    """``"cpu"``, ``"gpu"`` or ``"tpu"``: where :func:`device` runs (for reports)."""
    return device().platform


def release_free_memory():
    """Hand the C heap's free pages back to the operating system: glibc's ``malloc_trim(0)``
    (elsewhere nothing). A model run leaves XLA's scratch freed but still mapped in the malloc arenas
    of its worker threads (measured: about 170 MiB after 30 minutes of mono 48 kHz audio through the
    roomtone model, 2 cores), which would count on top of whatever the stages after it map anew. A
    job calls this once its model is done with a long input. It changes no setting: later
    allocations behave as before. Returns True when the heap was trimmed."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):  # not glibc (musl): nothing to hand back this way
        return False


_EXPORTS = {}
_EXPORT_LOCK = threading.Lock()


def exported(name, fn, args, static, sources=()):
    """``fn`` (a :func:`jax.jit` function) for the shapes of ``args`` and the static keyword
    arguments ``static``, traced once per machine instead of once per process: its
    :mod:`jax.export` (StableHLO) is kept in :func:`export_dir` under a key of
    ``name``, the JAX version, the backend, the argument shapes and dtypes, ``static`` and the bytes
    of ``sources`` (the files whose code it traces, so an edit re-traces), and later processes
    deserialise it (a few ms) where tracing took about 0.4 s and lowering more; the XLA compile
    then comes from the persistent compilation cache. Without a compilation cache (or with one
    that is not private), or when a stored file cannot be read, it traces as usual (and stores it where it
    may). Returns a jitted callable taking ``*args`` positionally (the same pytree out as ``fn``),
    one per key per process; threads asking for the same key wait for the first."""
    import hashlib

    import jax

    leaves, treedef = jax.tree_util.tree_flatten(args)
    digest = hashlib.sha256()
    for part in (name, jax.__version__, jax.default_backend(), str(treedef), repr(sorted(static.items())),
                 repr([(tuple(getattr(v, "shape", ())), str(getattr(v, "dtype", type(v)))) for v in leaves]),
                 *(_source_digest(path) for path in sources)):
        digest.update(part.encode() + b"\0")
    key = digest.hexdigest()[:32]
    with _EXPORT_LOCK:
        call = _EXPORTS.get(key)
        if call is None:
            call = _EXPORTS[key] = jax.jit(_load_or_export(key, fn, args, static).call)
    return call


@functools.lru_cache(maxsize=None)
def _source_digest(path):
    """SHA-256 of a traced source file, read once per process (a fit asks for its optimiser every round)."""
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def export_dir():
    """Where :func:`exported` keeps the traced functions: ``exported`` beside JAX's persistent
    compilation cache (None without one: then it traces in every process)."""
    folder = compilation_cache_dir()
    return None if folder is None else os.path.join(folder, "exported")


def _load_or_export(key, fn, args, static):
    from jax import export

    folder = export_dir()
    path = None if folder is None else os.path.join(folder, f"{key}.stablehlo")
    if path is not None and os.path.exists(path):
        try:
            with open(path, "rb") as f:
                return export.deserialize(bytearray(f.read()))
        except Exception:  # noqa: BLE001 - a truncated or foreign file (or no flatbuffers): trace again
            pass
    result = export.export(fn)(*args, **static)
    if path is not None and private_dir(os.path.dirname(path)):
        try:
            blob = result.serialize()
        except ImportError:  # jax's serialiser needs flatbuffers (declared): without it, trace each time
            return result
        temp = f"{path}.{os.getpid()}.tmp"
        try:
            with open(temp, "wb") as f:
                f.write(blob)
            os.replace(temp, path)
        except OSError:  # a full or read-only disk: the next process traces again
            try:
                os.remove(temp)
            except OSError:
                pass
    return result
