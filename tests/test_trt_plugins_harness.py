"""The TensorRT plugins (deploy/plugins/trt/ef_trt_plugins.cpp) against the real TensorRT API, without a GPU.

CMake builds the plugin library from :data:`edgefuse.runtime.kernels.PLUGINS_DIR` against TensorRT 10.3's
public headers (JetPack 6; ``$EDGEFUSE_TRT_HEADERS``) and the lean runtime from PyPI (``tensorrt-lean-cu12``,
``libnvinfer_lean.so.10``; ``$EDGEFUSE_TRT_LIBRARY`` for another libnvinfer), then the C++ harness
(tests/trt_harness/harness.cpp) loads it through TensorRT's plugin registry and drives every plugin node of an
``edgefuse export --plugins`` file the way the ONNX parser, the builder and the runtime do (docs/kernels.md).
The expected attributes, types and shapes are read from the exported file, not from the plugin source.
Skipped, with the reason, where the headers, nvcc, cmake or the lean runtime are missing."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path

import onnx
import pytest
from _specs import TINY_SPEC as SPEC
from _trt_headers import header_dir
from onnx import helper, shape_inference

from edgefuse.runtime import kernels as K

HARNESS_DIR = Path(__file__).resolve().parent / "trt_harness"
ENV_TRT_LIBRARY = "EDGEFUSE_TRT_LIBRARY"  # libnvinfer(_lean).so.10 to use instead of the lean wheel's
CUDA_ARCH = "87"  # Orin; one architecture keeps the build short
PLUGIN_DOMAIN = "edgefuse"  # edgefuse.engine.export.PLUGIN_DOMAIN (not imported: that module needs torch)

_ONNX_TYPES = {
    onnx.TensorProto.FLOAT: "FLOAT", onnx.TensorProto.FLOAT16: "HALF", onnx.TensorProto.INT8: "INT8",
    onnx.TensorProto.INT32: "INT32", onnx.TensorProto.BOOL: "BOOL", onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.BFLOAT16: "BF16", onnx.TensorProto.INT64: "INT64",
}  # fmt: skip
_ATTR_TYPES = {
    onnx.AttributeProto.INT: "INT", onnx.AttributeProto.FLOAT: "FLOAT", onnx.AttributeProto.INTS: "INTS",
    onnx.AttributeProto.FLOATS: "FLOATS", onnx.AttributeProto.STRING: "STRING",
}  # fmt: skip


# ---------------------------------------------------------------- what is needed, and where it is


def trt_include() -> Path:
    return header_dir()  # the vendored TensorRT 10.3 headers (JetPack 6), or $EDGEFUSE_TRT_HEADERS


def trt_library() -> Path | None:
    """``$EDGEFUSE_TRT_LIBRARY``, else libnvinfer_lean.so.10 of the ``tensorrt-lean-cu12`` wheel."""
    if os.environ.get(ENV_TRT_LIBRARY):
        return Path(os.environ[ENV_TRT_LIBRARY])
    spec = importlib.util.find_spec("tensorrt_lean_libs")
    if spec is None or not spec.origin:
        return None
    lib = Path(spec.origin).parent / "libnvinfer_lean.so.10"
    return lib if lib.is_file() else None


def cmake_binary() -> Path | None:
    """The cmake of the ``cmake`` wheel (the dev extra pins 3.22, the oldest the CMakeLists accept), else
    PATH's."""
    try:
        import cmake  # the PyPI wheel

        exe = Path(cmake.CMAKE_BIN_DIR) / "cmake"
        if exe.is_file():
            return exe
    except ImportError:
        pass
    found = shutil.which("cmake")
    return Path(found) if found else None


def _missing() -> str | None:
    inc = trt_include()
    if not (inc / "NvInferRuntime.h").is_file():
        return f"TensorRT headers not found in {inc} (set EDGEFUSE_TRT_HEADERS to TensorRT 10's include/)"
    if K.find_nvcc() is None:
        return "nvcc not found (CUDA toolkit: $CUDACXX, PATH or /usr/local/cuda)"
    if cmake_binary() is None:
        return "cmake not found (pip install 'cmake==3.22.*', the dev extra)"
    lib = trt_library()
    if lib is None or not lib.is_file():
        return (
            f"TensorRT runtime not found: pip install 'tensorrt-lean-cu12==10.16.*' (the dev extra), "
            f"or set {ENV_TRT_LIBRARY} to a libnvinfer.so.10 (got {lib})"
        )
    return None


MISSING = _missing()
needs_trt = pytest.mark.skipif(MISSING is not None, reason=f"TensorRT plugin harness: {MISSING}")


# ---------------------------------------------------------------- build (once per session)


def _run(cmd, what: str, timeout: float = 900) -> str:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        out = p.stdout[-4000:] + p.stderr[-4000:]
        raise AssertionError(f"{what}: `{' '.join(map(str, cmd))}` failed (exit {p.returncode}):\n{out}")
    return p.stdout


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> dict:
    """Plugin library + harness, built with CMake into a session tmp dir → paths and timings."""
    root = tmp_path_factory.mktemp("trt-harness")
    cmake, nvcc = cmake_binary(), K.find_nvcc()
    inc, lib = trt_include(), trt_library()
    version = _run([cmake, "--version"], "cmake").split()[2]
    jobs = str(min(2, os.cpu_count() or 1))
    t0 = time.perf_counter()
    _run([cmake, "-S", K.PLUGINS_DIR, "-B", root / "plugins", f"-DEF_CUDA_ARCHITECTURES={CUDA_ARCH}",
          f"-DCMAKE_CUDA_COMPILER={nvcc}", "-DCMAKE_BUILD_TYPE=Release", "-DEF_BUILD_TRT_PLUGINS=ON",
          f"-DTENSORRT_INCLUDE_DIR={inc}", f"-DTENSORRT_LIBRARY={lib}"], "configure the plugins")  # fmt: skip
    _run([cmake, "--build", root / "plugins", "-j", jobs], "build the plugins")
    t1 = time.perf_counter()
    _run([cmake, "-S", HARNESS_DIR, "-B", root / "harness", f"-DTENSORRT_INCLUDE_DIR={inc}",
          f"-DTENSORRT_LIBRARY={lib}", f"-DCUDAToolkit_ROOT={nvcc.parent.parent}"],
         "configure the harness")  # fmt: skip
    _run([cmake, "--build", root / "harness", "-j", jobs], "build the harness")
    t2 = time.perf_counter()
    plugins = root / "plugins" / K.TRT_PLUGINS_NAME
    assert plugins.is_file(), f"{plugins}: the plugin library was not built (TensorRT headers not picked up?)"
    return {
        "plugins": plugins, "kernels": root / "plugins" / K.LIBRARY_NAME,
        "harness": root / "harness" / "ef_trt_harness", "cmake_version": version,
        "plugins_s": t1 - t0, "harness_s": t2 - t1, "trt_library": lib,
    }  # fmt: skip


# ---------------------------------------------------------------- the exported file → the harness' spec


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """``edgefuse export --plugins`` of a fresh model with the tiny tensor spec (needs torch)."""
    pytest.importorskip("torch", reason="exporting the plugin graph needs torch (the train extra)")
    from edgefuse.engine.export import PLUGIN_DOMAIN as domain
    from edgefuse.engine.export import export_onnx
    from edgefuse.model.checkpoint import new_model, save_model
    from edgefuse.model.config import ModelConfig

    assert domain == PLUGIN_DOMAIN
    d = tmp_path_factory.mktemp("plugin-export")
    net, manifest = new_model(SPEC, ModelConfig(), seed=1)
    save_model(d / "m.pt", net.eval(), manifest)
    return export_onnx(d / "m.pt", d / "plugins.onnx", plugins=True)


def _tok(s: str) -> str:
    return "s:" + urllib.parse.quote(s, safe="")


def _tensor_line(kind: str, name: str, types: dict, node) -> str:
    where = f"{node.op_type} node {node.name}: {kind} {name!r}"
    if name not in types:
        raise AssertionError(f"{where} has no type/shape in the exported file")
    elem, dims = types[name]
    if elem not in _ONNX_TYPES:
        raise AssertionError(f"{where}: element type {elem} is not one TensorRT plugins take")
    if any(not isinstance(d, int) or d <= 0 for d in dims):
        raise AssertionError(
            f"{where} has shape {dims} in the exported file, expected static dims (export types the custom "
            "nodes' outputs so that shape inference reaches every plugin input)"
        )
    return f"{kind} {_tok(name)} {_ONNX_TYPES[elem]} {len(dims)} {' '.join(map(str, dims))}"


def plugin_spec(model: onnx.ModelProto, source: str) -> str:
    """The harness' input for every custom-domain node of ``model``: op type, the parser's plugin_version /
    plugin_namespace (attributes, default "1" / ""), attributes with their ONNX types, input and output
    types and shapes (ONNX shape inference over the exported graph)."""
    inferred = shape_inference.infer_shapes(model)
    types = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in tt.shape.dim]
        types[vi.name] = (tt.elem_type, dims)
    for init in inferred.graph.initializer:
        types[init.name] = (init.data_type, list(init.dims))
    lines = [f"source {_tok(source)}"]
    for node in inferred.graph.node:
        if node.domain != PLUGIN_DOMAIN:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        version = (
            attrs["plugin_version"].decode() if "plugin_version" in attrs else "1"
        )  # the parser's defaults
        ns = attrs["plugin_namespace"].decode() if "plugin_namespace" in attrs else ""
        lines.append(f"node {_tok(node.name)} {_tok(node.op_type)} {_tok(version)} {_tok(ns)}")
        for a in node.attribute:
            if a.name in ("plugin_version", "plugin_namespace"):
                continue
            kind = _ATTR_TYPES.get(a.type)
            if kind is None:
                raise AssertionError(f"{node.op_type} node {node.name}: attribute {a.name!r}: type {a.type}")
            v = helper.get_attribute_value(a)
            if kind == "STRING":
                lines.append(f"attr {_tok(a.name)} STRING {_tok(v.decode())}")
                continue
            vals = list(v) if kind.endswith("S") else [v]
            lines.append(f"attr {_tok(a.name)} {kind} {len(vals)} {' '.join(repr(x) for x in vals)}")
        lines += [_tensor_line("input", t, types, node) for t in node.input]
        lines += [_tensor_line("output", t, types, node) for t in node.output]
        lines.append("end")
    return "\n".join(lines) + "\n"


def run_harness(built: dict, model: onnx.ModelProto, work: Path, source: str) -> tuple[int, dict]:
    spec = work / "nodes.txt"
    spec.write_text(plugin_spec(model, source))
    p = subprocess.run([str(built["harness"]), "--plugins", str(built["plugins"]), "--spec", str(spec)],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    try:
        report = json.loads(p.stdout)
    except json.JSONDecodeError:
        out = p.stdout[-3000:] + p.stderr[-3000:]
        raise AssertionError(f"harness (exit {p.returncode}) printed no JSON:\n{out}") from None
    return p.returncode, report


def failures(report: dict) -> list[str]:
    out = list(report["errors"])
    for pl in report["plugins"]:
        out += [f"{pl['node']}: {c['step']}: {c['detail']}" for c in pl["checks"] if not c["ok"]]
        if not pl["checks"]:
            out.append(f"{pl['node']}: no check ran")
    return out


# ---------------------------------------------------------------- the tests


@pytest.mark.slow
@pytest.mark.tensorrt
@needs_trt
def test_every_plugin_passes_the_tensorrt_harness(built, exported, tmp_path):
    rc, report = run_harness(built, onnx.load(str(exported)), tmp_path, str(exported))
    problems = failures(report)
    assert rc == 0 and report["ok"] and not problems, "\n".join(problems) or json.dumps(report, indent=1)
    assert report["tensorrt_headers"].startswith("10.") and report["tensorrt_library"] // 10000 == 10
    ops = sorted(pl["op_type"] for pl in report["plugins"])
    assert ops == ["EfBevFusion", "EfPillarScatter", "EfPillarScatter"], ops  # LiDAR, radar, fusion
    assert set(ops) == set(K.TRT_PLUGIN_NAMES)
    steps = {
        "registry.getCreator", "creator", "fields", "build.createPlugin", "build.capabilities",
        "build.getNbOutputs", "build.getOutputDataTypes", "build.getOutputShapes",
        "build.supportsFormatCombination", "build.configurePlugin", "build.getWorkspaceSize", "build.clone",
        "clone.same_fields", "serialize.getFieldsToSerialize", "runtime.createPlugin", "runtime.capabilities",
        "runtime.same_fields", "runtime.getOutputShapes", "runtime.same_answers", "runtime.attachToContext",
        "runtime.onShapeChange",
    }  # fmt: skip
    for pl in report["plugins"]:
        ran = {c["step"] for c in pl["checks"]}
        assert steps <= ran, (pl["node"], steps - ran)
        # the exporter writes every field the creator declares: nothing left to the plugin's defaults
        assert pl["defaulted_fields"] == [], (pl["node"], pl["defaulted_fields"])
        assert [n["step"] for n in pl["not_run"]] == ["runtime.enqueue"]
        assert "GPU" in pl["not_run"][0]["reason"]


@pytest.mark.slow
@pytest.mark.tensorrt
@needs_trt
def test_plugin_workspace_covers_what_the_kernels_need(built, exported, tmp_path):
    """Each plugin's getWorkspaceSize is at least what its enqueue hands the kernels, per the kernels' own
    workspace queries (the C ABI through ctypes; no GPU needed)."""
    try:
        k = K.load_kernels(built["kernels"])
    except K.KernelLibraryError as e:
        pytest.skip(f"the kernel library does not load here: {e}")
    model = onnx.load(str(exported))
    _, report = run_harness(built, model, tmp_path, str(exported))
    inferred = shape_inference.infer_shapes(model)
    shape = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    shape.update({i.name: list(i.dims) for i in inferred.graph.initializer})
    nodes = {n.name: n for n in inferred.graph.node}
    assert len(report["plugins"]) == 3 and all("workspace_bytes" in pl for pl in report["plugins"]), report
    for pl in report["plugins"]:
        n = nodes[pl["node"]]
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        ny, nx = attrs["ny"], attrs["nx"]
        if n.op_type == "EfPillarScatter":
            _, C, P = shape[n.input[0]]
            need = k.scatter_workspace_size(K.EfScatterParams(P, C, nx, ny, 1))
        else:
            M = attrs["num_modalities"]
            chans = [shape[n.input[0]][1]] + [shape[n.input[3 + m - 1]][1] for m in range(1, M)]
            cout = shape[n.input[3 + M]][0]
            g = K.gated_fusion_params((ny, nx), chans, cout, attrs["gate_kernel"], attrs["gate_eps"])
            # the lifted camera BEV + the fusion's scratch
            need = chans[0] * ny * nx * 4 + k.gated_fusion_workspace_size(g)
        assert pl["workspace_bytes"] >= need, (
            f"{n.op_type} node {n.name}: getWorkspaceSize = {pl['workspace_bytes']} bytes, expected ≥ {need} "
            "(what enqueue gives the kernels for the exported shapes)"
        )


def _rename_attribute(model, op, old, new):
    n = next(n for n in model.graph.node if n.op_type == op)
    next(a for a in n.attribute if a.name == old).name = new


def _int_attribute(model, op, name):
    n = next(n for n in model.graph.node if n.op_type == op)
    a = next(a for a in n.attribute if a.name == name)
    a.CopyFrom(helper.make_attribute(name, int(round(a.f))))


def _output_dim(model, op, dim, value):
    n = next(n for n in model.graph.node if n.op_type == op)
    vi = next(v for v in model.graph.value_info if v.name == n.output[0])
    vi.type.tensor_type.shape.dim[dim].dim_value = value


BROKEN_EXPORTS = {  # id: (change to the exported file, plugin, failing step, expected message)
    "renamed-attribute": (
        lambda m: _rename_attribute(m, "EfPillarScatter", "nx", "nx_"), "EfPillarScatter", "fields",
        r"EfPillarScatter \(node /EfPillarScatter\): .*attribute 'nx_' \(INT 64\) is not a field of the "
        r"creator \(fields: ny:kINT32\[1\], nx:kINT32\[1\]\): the ONNX parser drops it",
    ),
    "renamed-attribute-create": (
        lambda m: _rename_attribute(m, "EfPillarScatter", "nx", "nx_"), "EfPillarScatter",
        "build.createPlugin", r"createPlugin\(kBUILD\) returned null for fields \{ny=\[64\]\}",
    ),
    "int-for-float": (
        lambda m: _int_attribute(m, "EfBevFusion", "cell"), "EfBevFusion", "fields",
        r"field 'cell': the creator declares kFLOAT32, the exported attribute is INT 1 "
        r"\(the parser passes kINT32\)",
    ),
    "output-shape": (
        lambda m: _output_dim(m, "EfBevFusion", 1, 33), "EfBevFusion", "build.getOutputShapes",
        r"output 0 \(/EfBevFusion_output_0\) dim 1 = 32, expected 33 \(exported shape \(1, 33, 32, 32\)\)",
    ),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.tensorrt
@needs_trt
@pytest.mark.parametrize(
    ("mutate", "op", "step", "message"), BROKEN_EXPORTS.values(), ids=BROKEN_EXPORTS.keys()
)
def test_the_harness_fails_on_a_broken_export(built, exported, tmp_path, mutate, op, step, message):
    """The harness is not a rubber stamp: an export that no longer matches the plugin fails, naming the node,
    the field or tensor, and what was expected."""
    model = onnx.load(str(exported))
    mutate(model)
    rc, report = run_harness(built, model, tmp_path, "mutated " + exported.name)
    assert rc == 1 and report["ok"] is False
    checks = [(pl["op_type"], c) for pl in report["plugins"] for c in pl["checks"]]
    bad = [(o, c["step"], c["detail"]) for o, c in checks if not c["ok"]]
    hits = [d for o, s, d in bad if o == op and s == step]
    assert hits and re.search(message, hits[0]), bad


@pytest.mark.slow
@pytest.mark.tensorrt
@needs_trt
def test_build_uses_the_pinned_cmake(built):
    """With the dev extra's cmake wheel installed, the build above ran CMake 3.22 (the oldest the CMakeLists
    accept); the TensorRT runtime is the one the test found."""
    try:
        import cmake
    except ImportError:
        pytest.skip("the cmake wheel is not installed: the build used PATH's cmake")
    assert cmake.__version__.startswith(built["cmake_version"]), (built["cmake_version"], cmake.__version__)
    assert built["trt_library"] == trt_library()


def test_spec_writer_refuses_unknown_shapes():
    """An exported graph whose plugin inputs have no static shape is refused with the tensor's name (not
    handed to the harness with made-up dims)."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["B", 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    node = helper.make_node("EfPillarScatter", ["x"], ["y"], name="s", domain=PLUGIN_DOMAIN, ny=2, nx=3)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(PLUGIN_DOMAIN, 1)]
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=opsets)
    with pytest.raises(AssertionError, match=r"EfPillarScatter node s: input 'x' has shape \['B', 4\]"):
        plugin_spec(model, "t.onnx")
