"""JAX runtime set-up for the model jobs: a persistent compilation cache in a private per-user
directory, and the device models run on (GPU/TPU when JAX sees one, else the CPU).

TOOLCHAIN.md: on CPU the persistent cache only stores entries with
``jax_persistent_cache_min_compile_time_secs=0`` and ``jax_persistent_cache_min_entry_size_bytes=-1``;
it saves about 0.4 s per process start. :func:`setup` is called by the model jobs before their
first compile; it changes JAX's configuration only (no environment variable).
"""

import os
import threading

_LOCK = threading.Lock()
_DONE = False


def cache_dir():
    """The compilation cache directory: ``$XDG_CACHE_HOME/roomtone/jax`` (default
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


def setup():
    """Once per process: turn on the persistent compilation cache (when its directory is private and
    writable; else compile without it). Returns the cache directory or None."""
    global _DONE
    import jax

    with _LOCK:
        path = cache_dir()
        if _DONE:
            return path if jax.config.jax_compilation_cache_dir else None
        _DONE = True
        if not _private_dir(path):
            return None
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
        return path


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
