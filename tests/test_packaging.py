"""The installed package, not the source tree: a wheel of the project, installed (not editable) into a fresh
venv, must carry the TensorRT build profiles and the CUDA kernel / TensorRT plugin sources as package data
(pyproject.toml ``[tool.setuptools.package-data]``), and find them by the same code path as a checkout.

The wheel is built from a copy of the project (so no stale ``build/`` of a checkout can leak files into it)
with this interpreter's setuptools, offline. The fresh venv gets edgefuse's dependencies from this
interpreter's site-packages through a ``.pth`` file (a ``.pth`` line only adds the directory to sys.path,
so the editable install of a development venv there is not activated), and every check runs from a
directory outside the repository with no PYTHONPATH, so only the installed copy of edgefuse is importable.
About 6-12 s on one core, most of it building the wheel (so not marked slow).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "edgefuse" / "deploy" / "profiles"
PLUGINS = ROOT / "edgefuse" / "deploy" / "plugins"
PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PIP_NO_CACHE_DIR": "1"}

# Loads every profile by name, lists the plugin sources, and says where they all came from (JSON).
PROBE = """
import json, sys
import edgefuse
from edgefuse.engine.tensorrt import PROFILES_DIR, load_profile
from edgefuse.runtime.kernels import PLUGINS_DIR

names = json.loads(sys.argv[1])
profiles = {n: load_profile(n).__dict__ for n in names}
sources = sorted(str(p.relative_to(PLUGINS_DIR)) for p in PLUGINS_DIR.rglob("*") if p.is_file())
print(json.dumps({"edgefuse": edgefuse.__file__, "profiles_dir": str(PROFILES_DIR.resolve()),
                  "plugins_dir": str(PLUGINS_DIR.resolve()), "profiles": profiles, "sources": sources}))
"""


def _plugin_sources() -> list[str]:
    """The plugin sources the package must ship (what CMakeLists.txt compiles), relative to PLUGINS."""
    files = [PLUGINS / "CMakeLists.txt", *PLUGINS.glob("*.cu"), *PLUGINS.glob("*.h")]
    files += PLUGINS.glob("trt/*.cpp")
    return sorted(str(p.relative_to(PLUGINS)) for p in files)


def _run(cmd: list[str], cwd: Path, env: dict[str, str], what: str) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"{what} failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}"
    return p


def _no_build_backend() -> str | None:
    """Why this interpreter cannot build the wheel offline (the dev extra installs what it needs), or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        setuptools = version("setuptools")  # >= 70.1 builds wheels itself (no `wheel` package needed)
    except PackageNotFoundError:
        return f"setuptools is not installed in {sys.prefix} (pip install -e '.[dev]')"
    if int(setuptools.split(".")[0]) < 77:
        return f"setuptools {setuptools} in {sys.prefix}; pyproject.toml's build-system needs >= 77"
    return None


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """Build the wheel from a copy of the project, install it into a fresh venv → {"venv", "python",
    "cwd", "env", "wheel"}."""
    why = _no_build_backend()
    if why:
        pytest.skip(f"cannot build the wheel offline: {why}")
    tmp = tmp_path_factory.mktemp("packaging")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PIP_ENV)
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
    shutil.copytree(ROOT / "edgefuse", src / "edgefuse", ignore=ignore)
    dist = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(dist)], tmp, env, "building the wheel")  # fmt: skip
    (wheel,) = dist.glob("edgefuse-*.whl")

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, env, "creating the venv")
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", str(wheel)],
         tmp, env, "installing the wheel")  # fmt: skip
    where = [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
    site = Path(_run(where, tmp, env, "asking the venv for its site-packages").stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_edgefuse_test_deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    cwd = tmp / "elsewhere"  # outside the repository: the source tree is not on sys.path
    cwd.mkdir()
    return {"venv": venv.resolve(), "python": str(py), "cwd": cwd, "env": env, "wheel": wheel}


def test_wheel_carries_profiles_and_plugin_sources(installed):
    import zipfile

    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    want = {f"edgefuse/deploy/profiles/{p.name}" for p in PROFILES.glob("*.yaml")}
    want |= {f"edgefuse/deploy/plugins/{s}" for s in _plugin_sources()}
    assert len(want) >= 4 + 10  # four profiles; CMakeLists, 4 .cu, 4 .h, the TensorRT plugin .cpp
    assert sorted(want - names) == [], "package data missing from the wheel (pyproject.toml package-data)"


def test_installed_cli_help_runs_outside_the_repo(installed):
    p = _run([installed["python"], "-m", "edgefuse.cli", "build-engine", "--profile", "orin-nano", "--help"],
             installed["cwd"], installed["env"], "edgefuse build-engine --help")  # fmt: skip
    assert "--profile" in p.stdout
    assert (installed["venv"] / "bin" / "edgefuse").is_file()  # the console script


def test_installed_package_loads_every_profile_and_finds_the_plugin_sources(installed):
    from edgefuse.engine.tensorrt import load_profile

    names = sorted(p.stem for p in PROFILES.glob("*.yaml"))
    assert {"orin-nano", "orin-nx", "orin-agx", "x86-gpu"} <= set(names)
    p = _run([installed["python"], "-c", PROBE, json.dumps(names)], installed["cwd"], installed["env"],
             "loading the profiles from the installed package")  # fmt: skip
    got = json.loads(p.stdout)
    venv, repo = installed["venv"], ROOT.resolve()
    for key in ("edgefuse", "profiles_dir", "plugins_dir"):
        where = Path(got[key]).resolve()
        assert where.is_relative_to(venv) and not where.is_relative_to(repo), (key, where)
    # the same profiles as the repository's files (read here from the source tree)
    assert got["profiles"] == {n: load_profile(PROFILES / f"{n}.yaml").__dict__ for n in names}
    assert got["sources"] == _plugin_sources()  # every source CMake compiles, nothing else (no build/)
    installed_plugins = Path(got["plugins_dir"])
    for rel in got["sources"]:
        assert (installed_plugins / rel).read_bytes() == (PLUGINS / rel).read_bytes(), rel
