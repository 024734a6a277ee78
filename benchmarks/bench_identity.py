#!/usr/bin/env python
"""Bit-identity of the jobs' outputs across a refactor: render eight job paths (master balanced,
warm, --reference, --preset auto; enhance podcast with the roomtone and classic models; separate
with dsp and roomtone) on fixed synthetic inputs, save them to OUT.npz and print a short sha256 of
each. Run it with the code before (a worktree of the old commit linked as a ``roomtone`` package on
``PYTHONPATH``: its ``roomtone/`` files plus its job folders under their import names) and after,
and compare the two lists.

    python benchmarks/bench_identity.py after.npz
    PYTHONPATH=/tmp/oldpkg python benchmarks/bench_identity.py before.npz
"""
import sys, numpy as np, hashlib
import roomtone
print(roomtone.__file__, file=sys.stderr)
rng = np.random.default_rng(0)
sr = 44100
n = 8 * sr
t = np.arange(n) / sr
song = (0.2 * rng.standard_normal((2, n)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t)) + 0.3 * np.sin(2 * np.pi * 110 * t)).astype(np.float32)
song[1] = 0.8 * song[1] + 0.2 * song[0]
ref = (0.5 * rng.standard_normal((2, n))).astype(np.float32)
voice = (0.1 * np.sin(2 * np.pi * 150 * np.arange(4 * 16000) / 16000) * (1 + np.sin(2 * np.pi * 3 * np.arange(4 * 16000) / 16000))
         + 0.01 * rng.standard_normal(4 * 16000)).astype(np.float32)[None]
voice[0, 8000] += 0.5
out = {}
from roomtone.mastering import master
for preset in ("balanced", "warm"):
    out[f"master_{preset}"] = master(song, sr, preset=preset)[0]
out["master_ref"] = master(song, sr, reference=(ref, sr))[0]
out["master_auto"] = master(song, sr, preset="auto")[0]
from roomtone.enhance import enhance
out["enhance_podcast"] = enhance(voice, 16000, preset="podcast")[0]
out["enhance_classic"] = enhance(voice, 16000, preset="podcast", model="classic")[0]
from roomtone.separate import separate
for model in ("dsp", "roomtone"):
    stems, _ = separate(song, sr, model=model)
    out[f"separate_{model}"] = np.stack([stems[k] for k in sorted(stems)])
np.savez(sys.argv[1], **out)
for k, v in out.items():
    print(k, hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()[:16])
