"""edgefuse's TensorRT code calls only what TensorRT 10.3 has: every ``trt.Enum.MEMBER``, ``trt.name`` and
method/property use on a TensorRT object in the modules that use tensorrt is looked up in TensorRT 10.3's
public headers (``tests/_trt_headers.py``; skipped with the reason where they are absent). Also: the
TensorRT plugin source compiles against those headers."""

from __future__ import annotations

import ast
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from _trt_headers import REPO, TrtHeaders, cpp_method_for, headers_or_skip

from edgefuse.runtime.kernels import PLUGINS_DIR

# what the module-level names of ``tensorrt`` stand for in the C++ API
TOP_LEVEL = {
    "Builder": "IBuilder",  # createInferBuilder
    "Runtime": "IRuntime",  # createInferRuntime
    "Logger": "ILogger",
    "OnnxParser": "IParser",  # nvonnxparser: NvOnnxParser.h is not among the vendored headers
    "get_plugin_registry": "IPluginRegistry",  # getPluginRegistry()
}
PYTHON_ONLY = {"__version__", "nptype"}  # defined by the tensorrt package's Python code
NOT_VENDORED = {"IParser": "NvOnnxParser.h (nvonnxparser::IParser) is not among the vendored headers"}
# names edgefuse's TensorRT code gives TensorRT objects where the scan cannot follow where they come from
# (parameters, tuple assignments)
NAMED = {"builder": "IBuilder", "engine": "ICudaEngine", "logger": "ILogger", "config": "IBuilderConfig"}


@dataclass(frozen=True)
class Use:
    """One use of the TensorRT API at ``where``: ``kind`` "enum" (owner = enum), "module" (a ``trt.name``),
    "call" or "property" (owner = the C++ class of the object)."""

    where: str
    kind: str
    owner: str
    name: str


def trt_modules() -> list[Path]:
    """The edgefuse modules that import tensorrt or take it as a ``trt`` argument."""
    out = []
    for p in sorted((REPO / "edgefuse").rglob("*.py")):
        text = p.read_text()
        if "import tensorrt" in text or "(trt," in text or "trt=None" in text:
            out.append(p)
    return out


def _key(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return f"self.{node.attr}"
    return None


class _Scan(ast.NodeVisitor):
    """Types TensorRT objects by where they come from (``trt.Builder(…)``, a method whose C++ declaration
    returns an ``I…`` interface, a known parameter) and records every use."""

    def __init__(self, h: TrtHeaders, name: str):
        self.h, self.name, self.uses = h, name, []
        self.self_env: dict[str, str] = {}
        self.env: dict[str, str] = {}

    def type_of(self, node) -> str | None:
        k = _key(node)
        if k is not None:
            return self.self_env.get(k) if k.startswith("self.") else self.env.get(k, NAMED.get(k))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f = node.func
            if isinstance(f.value, ast.Name) and f.value.id == "trt":
                return TOP_LEVEL.get(f.attr)
            owner = self.type_of(f.value)
            if owner and owner not in NOT_VENDORED:
                cpp = cpp_method_for(self.h, owner, f.attr, True)
                return self.h.methods_of(owner).get(cpp) if cpp else None
        return None

    def visit_FunctionDef(self, node):
        saved = self.env
        self.env = {}
        self.generic_visit(node)
        self.env = saved

    def visit_Assign(self, node):
        self.generic_visit(node)
        t = self.type_of(node.value)
        for target in node.targets:
            k = _key(target)
            if t and k:
                (self.self_env if k.startswith("self.") else self.env)[k] = t

    def visit_Call(self, node):
        if isinstance(node.func, ast.Attribute):
            self._attribute(node.func, call=True)
            self.visit(node.func.value)
        else:
            self.visit(node.func)
        for a in [*node.args, *(k.value for k in node.keywords)]:
            self.visit(a)

    def visit_Attribute(self, node):
        self._attribute(node, call=False)
        self.generic_visit(node)

    def _attribute(self, node, call: bool):
        where = f"{self.name}:{node.lineno}"
        v = node.value
        if isinstance(v, ast.Name) and v.id == "trt":
            self.uses.append(Use(where, "module", "tensorrt", node.attr))
        elif isinstance(v, ast.Attribute) and isinstance(v.value, ast.Name) and v.value.id == "trt":
            enum = "Severity" if v.attr == "Logger" else v.attr
            if enum in self.h.enums or v.attr == "Logger":
                self.uses.append(Use(where, "enum", enum, node.attr))
        else:
            owner = self.type_of(v)
            if owner:
                self.uses.append(Use(where, "call" if call else "property", owner, node.attr))


def scan(h: TrtHeaders, source: str, name: str) -> list[Use]:
    s = _Scan(h, name)
    tree = ast.parse(source)
    s.visit(tree)  # twice: attributes set in __init__ are typed before the methods that use them
    s.uses = []
    s.visit(tree)
    return sorted(set(s.uses), key=lambda u: (u.where.split(":")[0], int(u.where.split(":")[1]), u.name))


def problem(h: TrtHeaders, u: Use) -> str | None:
    """Why TensorRT 10.3 does not have ``u``, or None."""
    if u.kind == "enum":
        if u.name not in h.enums.get(u.owner, {}):
            return f"{u.where}: trt.{u.owner}.{u.name}: TensorRT 10.3's enum {u.owner} has no k{u.name}"
    elif u.kind == "module":
        if u.name not in TOP_LEVEL and u.name not in PYTHON_ONLY and u.name not in h.enums:
            return f"{u.where}: trt.{u.name}: not a TensorRT 10.3 class, function or enum"
    elif u.owner not in NOT_VENDORED and cpp_method_for(h, u.owner, u.name, u.kind == "call") is None:
        return f"{u.where}: {u.owner} has no {u.kind} {u.name!r} in TensorRT 10.3"
    return None


@pytest.fixture(scope="module")
def headers():
    return headers_or_skip()


@pytest.fixture(scope="module")
def uses(headers):
    out = []
    for p in trt_modules():
        out += scan(headers, p.read_text(), str(p.relative_to(REPO)))
    return out


def test_every_tensorrt_call_exists_in_tensorrt_10_3(headers, uses):
    problems = [x for u in uses if (x := problem(headers, u))]
    assert problems == []
    unchecked = sorted({f"{u.owner}.{u.name}" for u in uses if u.owner in NOT_VENDORED})
    assert unchecked == ["IParser.get_error", "IParser.num_errors", "IParser.parse"], (
        "calls on objects whose header is not vendored (not checked): keep this list short and known"
    )


def test_the_scan_sees_the_build_and_run_flow(uses):
    """The scan types the objects it must (a scan that sees nothing would pass the test above)."""
    seen = {(u.owner, u.name) for u in uses}
    for want in [("IBuilderConfig", "set_flag"), ("IBuilderConfig", "plugins_to_serialize"),
                 ("IBuilderConfig", "builder_optimization_level"), ("IBuilder", "build_serialized_network"),
                 ("IRuntime", "engine_host_code_allowed"), ("IRuntime", "deserialize_cuda_engine"),
                 ("ICudaEngine", "get_tensor_mode"), ("IExecutionContext", "execute_async_v3"),
                 ("IExecutionContext", "set_tensor_address"), ("IEngineInspector", "get_engine_information"),
                 ("ITimingCache", "serialize"), ("IPluginRegistry", "load_library"),
                 ("IPluginRegistry", "get_creator"), ("BuilderFlag", "VERSION_COMPATIBLE"),
                 ("Severity", "WARNING"), ("TensorIOMode", "INPUT")]:  # fmt: skip
        assert want in seen, want
    files = {u.where.split(":")[0] for u in uses}
    assert {f"edgefuse/{m}.py" for m in ("engine/tensorrt", "runtime/tensorrt", "runtime/kernels")} <= files


def test_the_scan_reports_what_tensorrt_10_3_does_not_have(headers):
    """TensorRT 8.x API that 10.x removed, written the way older code wrote it."""
    src = '''
def build(trt, onnx_bytes):
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_PRECISION))
    config = builder.create_builder_config()
    config.max_workspace_size = 1 << 30
    config.set_flag(trt.BuilderFlag.STRICT_TYPES)
    engine = builder.build_engine(network, config)
    ctx = trt.Runtime(logger).deserialize_cuda_engine(b"").create_execution_context()
    ctx.execute_async_v2([], 0)
    return trt.volume((1, 2))
'''
    got = [x for u in scan(headers, src, "old.py") if (x := problem(headers, u))]
    assert got == [
        "old.py:5: trt.NetworkDefinitionCreationFlag.EXPLICIT_PRECISION: TensorRT 10.3's enum "
        "NetworkDefinitionCreationFlag has no kEXPLICIT_PRECISION",
        "old.py:7: IBuilderConfig has no property 'max_workspace_size' in TensorRT 10.3",
        "old.py:8: trt.BuilderFlag.STRICT_TYPES: TensorRT 10.3's enum BuilderFlag has no kSTRICT_TYPES",
        "old.py:9: IBuilder has no call 'build_engine' in TensorRT 10.3",
        "old.py:11: IExecutionContext has no call 'execute_async_v2' in TensorRT 10.3",
        "old.py:12: trt.volume: not a TensorRT 10.3 class, function or enum",
    ]


def test_trt_plugin_source_compiles_against_the_tensorrt_10_3_headers(headers, tmp_path):
    cxx = shutil.which("g++") or shutil.which("c++")
    cuda = next((Path(p) for p in ("/usr/local/cuda/include", "/usr/include") if
                 (Path(p) / "cuda_runtime_api.h").is_file()), None)  # fmt: skip
    if cxx is None or cuda is None:
        pytest.skip(f"needs a C++ compiler ({cxx}) and the CUDA runtime headers ({cuda})")
    src = PLUGINS_DIR / "trt" / "ef_trt_plugins.cpp"
    cmd = [cxx, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-isystem", str(headers.path),
           "-isystem", str(cuda), "-I", str(src.parents[1]), str(src)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
