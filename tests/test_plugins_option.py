"""``edgefuse run`` / ``replay`` ``--plugins LIB``: the TensorRT plugin library an engine with plugin nodes
loads, with the meaning of ``$EDGEFUSE_TRT_PLUGINS_LIB`` (the option wins over the variable, the variable over
the default build). Refused, in one line, for a model that is not a TensorRT engine. No TensorRT needed: the
backend class is replaced by a recorder at the boundary (``edgefuse.runtime.tensorrt.TensorRTBackend``)."""

from __future__ import annotations

from pathlib import Path

import pytest

import edgefuse.runtime.tensorrt as rt
from edgefuse.cli import main
from edgefuse.errors import InputError
from edgefuse.models import open_backend
from edgefuse.runtime import kernels as K

KIT = Path(__file__).resolve().parents[1] / "sensors" / "sim-default.yaml"


class _Opened(InputError):
    """Raised by the recording backend so that the command stops (exit 2) right after opening it."""


@pytest.fixture
def recorded(monkeypatch) -> list:
    seen: list = []

    class RecordingBackend:
        def __init__(self, path, plugins=None, allow_host_code=False):
            seen.append((Path(path), plugins))
            raise _Opened(f"{path}: opened with plugins={plugins}")

    monkeypatch.setattr(rt, "TensorRTBackend", RecordingBackend)
    return seen


@pytest.mark.parametrize("command", ["run", "replay"])
def test_plugins_option_reaches_the_tensorrt_backend(command, recorded, tmp_path, capsys):
    engine, lib = tmp_path / "m.engine", tmp_path / "libedgefuse_trt_plugins.so"
    engine.write_bytes(b"engine")
    log = tmp_path / "x.mcap"
    log.write_bytes(b"")
    head = ["run", "--kit", str(KIT)] if command == "run" else ["replay", str(log)]
    rc = main([*head, "--model", str(engine), "--plugins", str(lib), "--out", str(tmp_path / "out")])
    assert rc == 2 and recorded == [(engine, str(lib))]
    assert f"plugins={lib}" in capsys.readouterr().err
    # without the option the backend gets None and resolves the variable / default build itself
    rc = main([*head, "--model", str(engine), "--out", str(tmp_path / "out")])
    assert rc == 2 and recorded[-1] == (engine, None)


@pytest.mark.parametrize("command", ["run", "replay"])
def test_plugins_option_with_a_model_that_is_not_an_engine_is_one_line(command, recorded, tmp_path, capsys):
    log = tmp_path / "x.mcap"
    log.write_bytes(b"")
    head = ["run", "--kit", str(KIT)] if command == "run" else ["replay", str(log)]
    rc = main([*head, "--plugins", "lib.so", "--out", str(tmp_path / "out")])  # the bundled INT8 ONNX model
    assert rc == 2 and recorded == []
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--plugins lib.so" in err and "onnxruntime" in err and "edge.int8.onnx" in err


def test_open_backend_refuses_plugins_for_onnx(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    with pytest.raises(InputError, match=r"--plugins p\.so: only TensorRT engines"):
        open_backend(model, plugins="p.so")


@pytest.mark.parametrize("command", ["run", "replay"])
def test_trust_engine_with_a_model_that_is_not_an_engine_is_one_line(command, recorded, tmp_path, capsys):
    """--trust-engine means nothing to onnxruntime: refused like --plugins, not silently ignored."""
    log = tmp_path / "x.mcap"
    log.write_bytes(b"")
    head = ["run", "--kit", str(KIT)] if command == "run" else ["replay", str(log)]
    rc = main([*head, "--trust-engine", "--out", str(tmp_path / "out")])  # the bundled INT8 ONNX model
    assert rc == 2 and recorded == []
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--trust-engine" in err and "onnxruntime" in err


def test_option_beats_the_variable_beats_the_default_build(monkeypatch, tmp_path):
    monkeypatch.delenv(K.ENV_TRT_PLUGINS, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    default = K.trt_plugins_path()
    assert default == K.default_build_dir() / K.TRT_PLUGINS_NAME
    assert default.is_relative_to(tmp_path / "cache" / "edgefuse")  # a user cache dir, not the package
    monkeypatch.setenv(K.ENV_TRT_PLUGINS, "/env/lib.so")
    assert K.trt_plugins_path() == Path("/env/lib.so")
    assert K.trt_plugins_path("/opt/lib.so") == Path("/opt/lib.so")
