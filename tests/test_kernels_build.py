"""CI compiles the CUDA kernel library (edgefuse/deploy/plugins/) with CMake + nvcc for one architecture and
checks its C ABI: exported symbols (nm -D), ABI version, and the parameter checks that need no GPU."""

from __future__ import annotations

import ctypes
import io
import json
import shutil
import subprocess
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from edgefuse.cli import main
from edgefuse.runtime import kernel_refs as R
from edgefuse.runtime import kernels as K

EXPORTED = {
    "ef_abi_version", "ef_status_string",
    "ef_pillar_voxelize_workspace_size", "ef_pillar_voxelize",
    "ef_pillar_scatter_workspace_size", "ef_pillar_scatter",
    "ef_camera_lift", "ef_gated_fusion_workspace_size", "ef_gated_fusion",
}  # fmt: skip

NVCC = K.find_nvcc()
needs_toolchain = pytest.mark.skipif(
    NVCC is None or shutil.which("cmake") is None,
    reason=f"needs nvcc and cmake to build the CUDA kernels (nvcc: {NVCC}, cmake: {shutil.which('cmake')})",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Built as a user would: `edgefuse build-kernels` (the sources in the package, an explicit build dir).
    One architecture (sm_87, Jetson Orin) keeps the CI build to about half a minute."""
    build = tmp_path_factory.mktemp("kernels-build")
    out = io.StringIO()
    with redirect_stdout(out):
        rc = main(["build-kernels", "--arch", "87", "--build-dir", str(build), "--jobs", "2", "--json"])
    assert rc == 0, out.getvalue()
    r = json.loads(out.getvalue())
    assert r["sources"] == str(K.PLUGINS_DIR) and r["build_dir"] == str(build)
    assert r["kernels"] == str(build / K.LIBRARY_NAME) and r["env"][K.ENV_LIBRARY] == r["kernels"]
    return Path(r["kernels"])


@pytest.mark.slow
@needs_toolchain
def test_library_builds_and_exports_the_c_abi(built):
    if shutil.which("nm") is None:
        pytest.skip("nm (binutils) is not installed")
    out = subprocess.run(
        ["nm", "-D", "--defined-only", str(built)], capture_output=True, text=True, check=True
    )
    exported = {line.split()[-1] for line in out.stdout.splitlines() if " T " in line}
    assert EXPORTED <= exported
    # hidden visibility: no C++ internals (mangled names) leak out of the library
    assert not [s for s in exported if s.startswith("_Z")]
    cuobj = shutil.which("cuobjdump", path=str(NVCC.parent))
    if cuobj:
        arch = subprocess.run([cuobj, "--list-elf", str(built)], capture_output=True, text=True)
        assert "sm_87" in arch.stdout


@pytest.mark.slow
@needs_toolchain
def test_library_abi_checks_without_a_gpu(built):
    try:
        k = K.load_kernels(built)
    except K.KernelLibraryError as e:
        pytest.skip(f"built, but cannot be loaded here: {e}")
    assert k.lib.ef_abi_version() == K.ABI_VERSION
    assert k.lib.ef_status_string(3).decode().startswith("workspace")
    # the workspace sizes are plain arithmetic of the parameter structs (checks the ctypes layouts)
    sp = K.EfScatterParams(num_pillars=10, channels=4, nx=7, ny=5, channels_first=0)
    assert k.scatter_workspace_size(sp) == 7 * 5 * 4
    fp = K.gated_fusion_params((5, 7), (3, 4, 2), 6, 3)
    assert k.gated_fusion_workspace_size(fp) == 3 * 5 * 7 * 4
    assert k.gated_fusion_workspace_size(K.gated_fusion_params((5, 7), (3, 4), 6, 2)) == 0  # even kernel
    # status codes come back before anything touches the device
    with pytest.raises(K.KernelError, match="status 1"):
        k.scatter(sp, 8, 8, 8, None, 8, 1 << 20)  # NULL output
    with pytest.raises(K.KernelError, match="status 2"):
        k.scatter(K.EfScatterParams(10, 0, 7, 5, 0), 8, 8, 8, 8, 8, 1 << 20)  # zero channels
    with pytest.raises(K.KernelError, match="status 3"):
        k.scatter(sp, 8, 8, 8, 8, 8, 7 * 5 * 4 - 1)  # workspace one byte short
    lp = K.camera_lift_params((5, 7), (0, 0), 1.0, 1, 3, (4, 4), (32, 32), [0.0])
    lp.num_heights = R.MAX_HEIGHTS + 1
    with pytest.raises(K.KernelError, match="status 2"):
        k.camera_lift(lp, 8, 8, 8, 8)
    with pytest.raises(R.KernelInputError, match="expected 3 each"):
        k.gated_fusion(fp, [8, 8], 8, [8, 8, 8], [8, 8, 8], 8, 8, 8, 8, 1 << 20)
    assert ctypes.sizeof(K.EfCameraLiftParams) == 4 * (12 + R.MAX_HEIGHTS + 1)


def test_missing_library_error_names_the_file_and_the_fix(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / K.LIBRARY_NAME
    with pytest.raises(K.KernelLibraryError) as e:
        K.load_kernels(missing)
    assert str(missing) in str(e.value) and "edgefuse build-kernels" in str(e.value)
    monkeypatch.setenv(K.ENV_LIBRARY, str(missing))
    assert K.library_path() == missing
    not_ours = tmp_path / "libnotours.so"
    not_ours.write_bytes(b"\x7fELF this is not a shared object")
    with pytest.raises(K.KernelLibraryError, match="could not load"):
        K.load_kernels(not_ours)


def test_build_kernels_without_nvcc_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(K, "find_nvcc", lambda: None)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: f"/usr/bin/{name}")  # cmake "found"
    assert main(["build-kernels", "--build-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(K.PLUGINS_DIR) in err
    assert "nvcc (CUDA 12 or 13) not found" in err
    assert list(tmp_path.iterdir()) == []  # nothing configured


def test_kernels_module_imports_no_gpu_stack():
    code = (
        "import sys, edgefuse.runtime.kernels\n"
        "mods = ('torch', 'tensorrt', 'pycuda', 'cuda', 'cupy', 'cv2', 'numba')\n"
        "bad = [m for m in mods if m in sys.modules]\n"
        "print(bad)\n"
    )
    import sys

    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
