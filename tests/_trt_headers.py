"""TensorRT 10.3's public C++ headers, read at test time (never copied into the repo): enums, classes with
their methods (and the interface type each returns), and the version.

The headers are NVIDIA's, vendored beside the project in ``../shared/vendor/tensorrt-10.3.0/include``
(``$EDGEFUSE_TRT_HEADERS`` overrides). Where they are absent, :func:`headers_or_skip` skips the calling test
with that reason. The Python bindings name things after the C++ API: enum member ``kFP16`` → ``FP16``,
method ``setMemoryPoolLimit`` → ``set_memory_pool_limit``, setter/getter pairs → a property
(``setBuilderOptimizationLevel`` → ``builder_optimization_level``), ``getNbX`` → ``num_x``.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO.parent / "shared" / "vendor" / "tensorrt-10.3.0" / "include"
HEADERS = ("NvInfer.h", "NvInferRuntime.h", "NvInferRuntimeBase.h", "NvInferRuntimeCommon.h",
           "NvInferRuntimePlugin.h", "NvInferLegacyDims.h", "NvInferVersion.h")  # fmt: skip


@dataclass(frozen=True)
class CppClass:
    """One C++ class of the headers: its bases and, per method, the interface type it returns (None when
    it returns no ``I…`` interface)."""

    name: str
    bases: tuple[str, ...]
    methods: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class TrtHeaders:
    """What the tests need of the headers: ``enums`` (C++ enum name → {Python member name: value}),
    ``classes`` (name → :class:`CppClass`), ``functions`` (free functions → returned interface) and
    ``version`` ("10.3.0.26")."""

    path: Path
    enums: dict[str, dict[str, int]]
    classes: dict[str, CppClass]
    functions: dict[str, str | None]
    version: str

    def methods_of(self, cls: str) -> dict[str, str | None]:
        """Every method of ``cls`` and of its bases (name → returned interface)."""
        out: dict[str, str | None] = {}
        todo, seen = [cls], set()
        while todo:
            c = todo.pop()
            if c in seen or c not in self.classes:
                continue
            seen.add(c)
            for k, v in self.classes[c].methods.items():
                out.setdefault(k, v)
            todo.extend(self.classes[c].bases)
        return out


def header_dir() -> Path:
    return Path(os.environ.get("EDGEFUSE_TRT_HEADERS", DEFAULT_DIR))


def missing_reason() -> str | None:
    """Why the headers cannot be read here, or None."""
    d = header_dir()
    absent = [h for h in HEADERS if not (d / h).is_file()]
    if absent:
        return f"TensorRT 10.3 headers not found: {d} lacks {absent} (set EDGEFUSE_TRT_HEADERS)"
    return None


def headers_or_skip() -> TrtHeaders:
    import pytest

    why = missing_reason()
    if why:
        pytest.skip(why)
    return read_headers(header_dir())


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


_ENUM = re.compile(r"enum\s+class\s+(\w+)\s*:\s*\w+\s*\{(.*?)\}\s*;", re.S)
_CLASS = re.compile(r"\bclass\s+(?:TRT_DEPRECATED\s+|TENSORRTAPI\s+)*(\w+)(?:\s+final)?\s*(:[^{;]*)?\{")
_METHOD = re.compile(r"(?:(\w+)\s*(?:const\s*)?[*&]\s*|\b)(\w+)\s*\(")
_FREE = re.compile(r"(?:inline|TENSORRTAPI)\s+(?:nvinfer1::)?(\w+)\s*[*&]\s*(\w+)\s*\(")


def python_member(cpp: str) -> str:
    """``kFP16`` → ``FP16`` (the bindings drop the ``k``)."""
    return cpp[1:] if re.match(r"k[A-Z0-9_]", cpp) else cpp


def _enum_members(body: str, consts: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    nxt = 0
    for item in body.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, expr = item.partition("=")
        name, expr = name.split()[0], expr.strip()  # "kEXPLICIT_BATCH TRT_DEPRECATED_ENUM = 0"
        if expr:
            expr = re.sub(r"static_cast<\w+>|\bu\b", "", re.sub(r"(\d)[uUlL]+\b", r"\1", expr))
            try:  # literals, <<, |, earlier members, constexpr constants
                nxt = int(eval(expr, {"__builtins__": {}}, consts | out))  # noqa: S307
            except Exception:  # noqa: BLE001 - an expression this reader does not follow: next value
                pass
        out[name] = nxt
        nxt += 1
    return {python_member(k): v for k, v in out.items()}


def _class_body(text: str, start: int) -> str:
    depth, i = 0, start
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return text[start + 1 :]


def _top_level(body: str) -> str:
    """``body`` with every nested brace block removed (method bodies, nested types)."""
    out, depth = [], 0
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            out.append(";")
        elif depth == 0:
            out.append(ch)
    return "".join(out)


@functools.lru_cache(maxsize=4)
def read_headers(d: Path) -> TrtHeaders:
    enums: dict[str, dict[str, int]] = {}
    classes: dict[str, CppClass] = {}
    functions: dict[str, str | None] = {}
    defines: dict[str, int] = {}
    texts = [_strip_comments(h.read_text(errors="replace")) for h in sorted(d.glob("NvInfer*.h"))]
    for text in texts:
        for m in re.finditer(r"constexpr\s+\w+\s+(k\w+)\s*\{?=?\s*(0x[0-9a-fA-F]+|\d+)", text):
            defines[m.group(1)] = int(m.group(2), 0)
        for m in re.finditer(r"#define\s+(NV_TENSORRT_\w+)\s+(\d+)", text):
            defines[m.group(1)] = int(m.group(2))
    for text in texts:
        for m in _ENUM.finditer(text):
            enums.setdefault(m.group(1), _enum_members(m.group(2), defines))
        for m in _CLASS.finditer(text):
            name = m.group(1)
            bases = tuple(re.findall(r"(?:public|protected|private)\s+(?:\w+::)*(\w+)", m.group(2) or ""))
            top = _top_level(_class_body(text, m.end() - 1))
            methods = {}
            for mm in _METHOD.finditer(top):
                ret, meth = mm.group(1), mm.group(2)
                if meth in ("if", "return", "sizeof", "static_cast", "noexcept", name, f"~{name}"):
                    continue
                methods.setdefault(meth, ret if ret and ret.startswith("I") else None)
            old = classes.get(name)
            if old is None or len(old.methods) < len(methods):  # the definition, not a forward declaration
                classes[name] = CppClass(name, bases, methods)
        for m in _FREE.finditer(text):
            functions.setdefault(m.group(2), m.group(1) if m.group(1).startswith("I") else None)
    v = ".".join(str(defines.get(f"NV_TENSORRT_{k}", "")) for k in ("MAJOR", "MINOR", "PATCH", "BUILD"))
    return TrtHeaders(d, enums, classes, functions, v)


def snake(name: str) -> str:
    """``setMemoryPoolLimit`` → ``set_memory_pool_limit`` (acronyms kept whole: getNbIOTensors →
    get_nb_io_tensors)."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


def _norm(name: str) -> str:
    return name.replace("_", "").lower()


# Python names of the bindings that are not a snake_case of their C++ method (TensorRT 10 Python API
# reference): (C++ class, Python name) → C++ method.
BINDING_RENAMES = {
    ("IBuilder", "create_network"): "createNetworkV2",
    ("ICudaEngine", "get_tensor_name"): "getIOTensorName",
    ("ICudaEngine", "get_tensor_dtype"): "getTensorDataType",
    ("ICudaEngine", "get_tensor_mode"): "getTensorIOMode",
    ("IExecutionContext", "execute_async_v3"): "enqueueV3",
}


def cpp_method_for(h: TrtHeaders, cls: str, py: str, is_call: bool) -> str | None:
    """The C++ method of ``cls`` that the binding ``py`` stands for, or None when TensorRT 10.3 has none.
    A call ``obj.foo_bar(`` is ``fooBar``; an attribute ``obj.foo_bar`` (a property) is ``setFooBar`` /
    ``getFooBar`` / ``isFooBar`` / ``fooBar``, and ``num_x`` is ``getNbX``."""
    methods = {_norm(m): m for m in h.methods_of(cls)}
    if (cls, py) in BINDING_RENAMES:
        want = BINDING_RENAMES[(cls, py)]
        return want if _norm(want) in methods else None
    if is_call:
        return methods.get(_norm(py))
    cands = [_norm(p + py) for p in ("set", "get", "is", "")]
    if py.startswith("num_"):
        cands.append(_norm("getnb" + py[4:]))
    for c in cands:
        if c in methods:
            return methods[c]
    return None
