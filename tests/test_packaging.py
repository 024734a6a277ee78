"""The package installs under one import name, and its layers hold (DESIGN.md, "Layers").

- The wheel's only top-level package is ``roomtone``; installed beside a distribution that owns the
  short names ``kernels`` and ``presets``, both import and neither overwrites the other's files.
- No module of one job (``mastering``, ``enhance``, ``separate``) imports another job, and the
  kernels and the core import no job.
- ``master`` and ``meter`` never import jax, flax or optax, nor matplotlib (only ``--plot`` does), checked in
  a fresh process.
- The training tooling (every ``training/`` subpackage) is not in the wheel, and nothing the wheel
  carries imports it.
"""

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JOBS = ("mastering", "enhance", "separate", "mix")
# folder in the repository -> its import name
PACKAGES = {"roomtone": "roomtone", "kernels": "roomtone.kernels", "presets": "roomtone.presets",
            **{job: f"roomtone.{job}" for job in JOBS}}


def _pip(*args, cwd=None):
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True,
                   cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _build_wheel(source, out_dir):
    # No build isolation: the test environment's setuptools builds it, nothing is downloaded.
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out_dir), str(source))
    (wheel,) = Path(out_dir).glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def roomtone_wheel(tmp_path_factory):
    # Built from a copy of the sources, so the checkout gets no build/ or egg-info folders.
    source = tmp_path_factory.mktemp("source") / "roomtone"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis"))
    return _build_wheel(source, tmp_path_factory.mktemp("wheel"))


def _top_level_names(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = {name.split("/")[0] for name in archive.namelist()}
    return {name for name in names if not name.endswith((".dist-info", ".data"))}


def test_wheel_has_one_top_level_package(roomtone_wheel):
    assert _top_level_names(roomtone_wheel) == {"roomtone"}
    with zipfile.ZipFile(roomtone_wheel) as archive:
        names = set(archive.namelist())
    # the mapped folders and the preset data are inside it
    for path in ("roomtone/kernels/truepeak.py", "roomtone/mastering/api.py", "roomtone/presets/platforms.toml",
                 "roomtone/presets/styles/balanced.toml", "roomtone/enhance/__init__.py",
                 "roomtone/separate/__init__.py", "roomtone/enhance/weights/roomtone.npz",
                 "roomtone/mastering/weights/assistant.npz", "roomtone/mastering/weights/assistant.json"):
        assert path in names


def _training_folders():
    """Every ``training/`` subpackage of the repository's installed folders."""
    return sorted(path.parent.relative_to(ROOT) for folder in PACKAGES
                  for path in (ROOT / folder).rglob("training/__init__.py"))


def test_the_wheel_carries_no_training_tooling(roomtone_wheel):
    """Each ``training/`` folder (the jobs' and the models') stays in the repository: none of its
    files, nor any other file under a ``training/`` folder, is in the wheel; the runtime beside it is."""
    with zipfile.ZipFile(roomtone_wheel) as archive:
        names = set(archive.namelist())
    folders = _training_folders()
    assert {Path(f).as_posix() for f in folders} >= {"roomtone/models/training", "mastering/training",
                                                     "enhance/training", "separate/training"}
    assert not [name for name in names if "/training/" in name]
    for path in ("roomtone/separate/fusion.py", "roomtone/separate/net.py", "roomtone/enhance/net.py",
                 "roomtone/mastering/assistant.py", "roomtone/models/weights.py"):
        assert path in names


def test_nothing_in_the_wheel_imports_training_tooling(roomtone_wheel, tmp_path):
    """No module the wheel carries imports a ``training`` module (at the top or inside a function),
    so an installed roomtone never needs the tooling it leaves out."""
    bad = []
    with zipfile.ZipFile(roomtone_wheel) as archive:
        for name in archive.namelist():
            if name.endswith(".py"):
                path = tmp_path / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(archive.read(name))
                bad += [f"{name} imports {m}" for m in _imported_modules(path) if "training" in m.split(".")]
    assert not bad, "\n".join(bad)


def test_installs_beside_a_distribution_owning_kernels_and_presets(roomtone_wheel, tmp_path):
    other = tmp_path / "other"
    for package in ("kernels", "presets"):
        (other / package).mkdir(parents=True)
        (other / package / "__init__.py").write_text(f"OWNER = 'other-{package}'\n")
    (other / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64", "wheel"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "other-kernels"\nversion = "1.0"\n'
        '[tool.setuptools]\npackages = ["kernels", "presets"]\n')
    other_wheel = _build_wheel(other, tmp_path / "other-wheel")
    target = tmp_path / "site"
    for wheel in (other_wheel, roomtone_wheel, other_wheel):  # either order: nothing is replaced
        _pip("install", "--no-deps", "--target", str(target), "--upgrade", str(wheel))
    code = (
        "import kernels, presets, roomtone, roomtone.kernels.truepeak, roomtone.presets\n"
        "from roomtone.mastering import master, master_file\n"
        "from roomtone.meter import measure\n"
        "assert kernels.OWNER == 'other-kernels' and presets.OWNER == 'other-presets'\n"
        f"assert roomtone.__file__.startswith({str(target)!r}), roomtone.__file__\n"
        "assert (roomtone.presets.PRESET_DIR / 'platforms.toml').is_file()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _imported_modules(path):
    """Absolute module names a source file imports (``import a.b``, ``from a.b import c``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args:
            if isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def _modules_of(folder):
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(PACKAGES))
def test_layers_jobs_never_import_each_other(folder):
    own = PACKAGES[folder]
    if folder in JOBS:
        forbidden = [f"roomtone.{job}" for job in JOBS if job != folder]
    else:  # the core and the kernels import no job
        forbidden = [f"roomtone.{job}" for job in JOBS]
    if folder == "kernels":
        forbidden += ["roomtone"]  # kernels import nothing of ours but other kernels
    bad = []
    for path in _modules_of(folder):
        for name in _imported_modules(path):
            for prefix in forbidden:
                if (name == prefix or name.startswith(prefix + ".")) and not name.startswith("roomtone.kernels"):
                    bad.append(f"{path.relative_to(ROOT)} imports {name}")
            # the short names of the repository folders are never imported: they are not installed
            top = name.split(".")[0]
            if top in PACKAGES and top != "roomtone":
                bad.append(f"{path.relative_to(ROOT)} imports {name} (use roomtone.{name})")
    assert not bad, "\n".join(bad) + f"\n({own} may not import these)"


def test_tests_and_benchmarks_use_the_roomtone_names():
    bad = []
    for folder in ("tests", "benchmarks"):
        for path in _modules_of(folder):
            for name in _imported_modules(path):
                if name.split(".")[0] in PACKAGES and not name.startswith("roomtone"):
                    bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


_FRESH_PROCESS_CHECK = r"""
import json, os, sys
import numpy as np
before_env = dict(os.environ)
before_none = {name for name, module in sys.modules.items() if module is None}
import roomtone, roomtone.meter, roomtone.loudness, roomtone.plugins, roomtone.platforms, roomtone.audio
from roomtone.mastering import master
x = (np.random.default_rng(0).standard_normal((2, 48000)) * 0.05).astype(np.float32)
out, report = master(x, 48000)
roomtone.meter.measure(out, 48000)
{cli}
print(json.dumps({
    "env_changed": sorted(k for k in set(os.environ) | set(before_env) if os.environ.get(k) != before_env.get(k)),
    "modules_hidden": sorted({n for n, m in sys.modules.items() if m is None} - before_none),
    "model_libraries": sorted(n for n in ("jax", "flax", "optax", "jaxlib", "matplotlib") if n in sys.modules),
}))
"""

_CLI_CALLS = r"""
import soundfile as sf, tempfile
from roomtone.mastering.cli import main as master_cli
from roomtone.cli_meter import main as meter_cli
folder = tempfile.mkdtemp()
sf.write(folder + "/in.wav", x.T, 48000)
for cli, args in ((master_cli, [folder + "/in.wav", "-o", folder + "/out.wav", "-q"]),
                  (meter_cli, ["--json", folder + "/out.wav"])):
    try:
        cli.main(args, standalone_mode=False)
    except SystemExit as exc:
        assert not exc.code, exc.code
"""


@pytest.mark.parametrize("with_cli", [False, True], ids=["library", "master-and-meter-cli"])
def test_nothing_process_global_and_no_model_libraries(with_cli, tmp_path):
    """In a fresh process, importing the library and mastering and metering (through the API, and
    through the master and meter commands) writes no environment variable, hides no module, and
    never imports jax, flax or optax (only code that runs a model may), nor matplotlib (only --plot)."""
    code = _FRESH_PROCESS_CHECK.replace("{cli}", _CLI_CALLS if with_cli else "")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    import json

    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"env_changed": [], "modules_hidden": [], "model_libraries": []}


def test_process_tuning_is_reached_only_from_console_scripts():
    """``roomtone.runtime`` (glibc mallopt) is imported by the command-line modules alone."""
    users = []
    for folder in PACKAGES:
        for path in _modules_of(folder):
            if "roomtone.runtime" in _imported_modules(path):
                users.append(path.name)
    assert users and all(name.startswith("cli") for name in users), users
