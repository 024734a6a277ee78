"""roomtone.startup.cache_is_warm against numba's real on-disk cache, in fresh processes.

A cold cache (``NUMBA_CACHE_DIR`` an empty folder, set in the child's environment only) reads
False; after ``warm_up_master`` (which compiles through :func:`roomtone.startup.compile_kernels`,
in several processes where there are several cores) it reads True, and a second process then
compiles nothing for a whole ``master_file`` job (a preset with a stereo-width high-pass, 24-bit
output) and loads exactly the kernel signatures :data:`roomtone.startup.MASTER_KERNELS` names.
"""

import json
import os
import subprocess
import sys

import numpy as np
import soundfile as sf

CHILD = r"""
import importlib, json, sys, time
from numba.core.registry import CPUDispatcher
from roomtone.startup import MASTER_KERNELS, _arg_types, cache_is_warm, warm_up_master
import roomtone.kernels.biquad, roomtone.kernels.dynamics, roomtone.kernels.loudness, roomtone.kernels.multiband
import roomtone.kernels.pcm, roomtone.kernels.saturation, roomtone.kernels.truepeak
start = time.perf_counter()
before = cache_is_warm()
seconds = time.perf_counter() - start
from roomtone.mastering.api import master, master_file
warm_up_master(master)
after = cache_is_warm()
master_file(sys.argv[1], sys.argv[2], preset="warm", bit_depth="24")
used, compiled = [], []
for module in ("biquad", "dynamics", "loudness", "multiband", "pcm", "saturation", "truepeak"):
    mod = importlib.import_module("roomtone.kernels." + module)
    for name, obj in vars(mod).items():
        if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == mod.__name__ and obj.signatures:
            used += [[module, name, str(sig)] for sig in obj.signatures]
            if obj.stats.cache_misses:
                compiled.append([module, name])
print(json.dumps({"before": before, "after": after, "seconds": seconds, "used": sorted(used),
                  "compiled": sorted(compiled),
                  "master_kernels": sorted([m, n, str(_arg_types(sig))] for m, n, sig, _, _ in MASTER_KERNELS)}))
"""


def _child(tmp_path, cache_dir, name):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    result = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "in.wav"), str(tmp_path / f"{name}.wav")],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_cache_is_warm_cold_then_warm(tmp_path):
    noise = np.random.default_rng(1).standard_normal((44100, 2)).astype(np.float32) * 0.1
    sf.write(tmp_path / "in.wav", noise, 44100, subtype="PCM_24")
    cache_dir = tmp_path / "numba-cache"
    cache_dir.mkdir()

    cold = _child(tmp_path, cache_dir, "cold")
    assert cold["before"] is False
    assert cold["after"] is True  # warm_up_master compiled (and numba saved) everything the job loads
    assert any(name.endswith(".nbi") for _, _, files in os.walk(cache_dir) for name in files)

    warm = _child(tmp_path, cache_dir, "warm")
    assert warm["before"] is True
    assert warm["seconds"] < 0.2  # a few ms: index files only
    assert warm["compiled"] == []  # warm_up_master plus the real job compile nothing on a warm cache
    assert warm["used"] == warm["master_kernels"]  # and load exactly the signatures cache_is_warm checks


def test_cache_is_warm_false_for_a_stale_cpu_or_source(tmp_path, monkeypatch):
    """An index entry for another CPU does not count (numba would compile again)."""
    from roomtone.startup import _in_cache
    from roomtone.kernels.pcm import quantize_codes

    quantize_codes(np.zeros((1, 4), dtype=np.float32), 16, False, 0, 16)  # in this process's cache
    assert _in_cache(quantize_codes)
    codegen = quantize_codes.targetctx.codegen()
    real = codegen.magic_tuple
    monkeypatch.setattr(type(codegen), "magic_tuple", lambda self: ("other-triple",) + real()[1:])
    assert not _in_cache(quantize_codes)


def test_compile_shares_keep_groups_together():
    from roomtone.startup import MASTER_KERNELS, _shares

    for n in (1, 2, 3, 4):
        shares = _shares(MASTER_KERNELS, n)
        assert sorted(k for share in shares for k in share) == sorted(MASTER_KERNELS)
        for group in {k[3] for k in MASTER_KERNELS}:  # kernels sharing callees compile in one process
            assert sum(any(k[3] == group for k in share) for share in shares) == 1
