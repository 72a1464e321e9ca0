"""Helpers shared by the calibration tools: log access, images, quality gates, provenance, in-place
calibration updates."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

import edgefuse
from edgefuse.errors import InputError
from edgefuse.rig import Calibration, load_calibration, save_calibration
from edgefuse.types import CompressedImage, Image, Message


class CalibrationError(InputError):
    """The data cannot give a calibration: the message says what is wrong and what to capture next."""


class CalibrationGateError(CalibrationError):
    """A calibration result failed a quality gate and was not written (``--force`` writes it anyway)."""


@dataclass(frozen=True)
class Gate:
    """One quality gate of a calibration result: the measured ``value`` of ``name`` against ``limit`` (a
    floor when ``at_least``, else a ceiling), in ``unit``; ``advice``: what to do when it fails."""

    name: str
    value: float
    limit: float
    at_least: bool
    unit: str
    advice: str

    @property
    def ok(self) -> bool:
        return bool(self.value >= self.limit) if self.at_least else bool(self.value <= self.limit)

    def line(self) -> str:
        need = "≥" if self.at_least else "≤"
        got, limit = f"{self.value:.4g}{self.unit}", f"{self.limit:g}{self.unit}"
        return f"{self.name} {got} (needs {need} {limit}): {self.advice}"

    def to_dict(self) -> dict:
        return {"name": self.name, "value": round(float(self.value), 6), "limit": self.limit,
                "at_least": self.at_least, "unit": self.unit, "ok": self.ok}  # fmt: skip


def gate_verdict(what: str, gates: list[Gate], *, force: bool) -> list[str]:
    """The lines of the failed gates. Raises :class:`CalibrationGateError` (one line: the first failed
    gate, its value, its limit and what to do; nothing is written) unless ``force``."""
    failed = [g.line() for g in gates if not g.ok]
    if failed and not force:
        more = f" (and {len(failed) - 1} more gate(s))" if len(failed) > 1 else ""
        raise CalibrationGateError(f"{what}: not written: {failed[0]}{more}; --force writes it anyway")
    return failed


def require_scipy() -> None:
    """scipy (least squares, cKDTree) comes with the ``calib`` extra: a clear error where it is missing."""
    try:
        import scipy  # noqa: F401
    except ModuleNotFoundError:
        raise InputError(
            "calibration needs scipy: pip install 'edgefuse[calib]' (or pip install scipy)"
        ) from None


def image_rgb(msg_or_payload, where: str = "") -> np.ndarray:
    """An :class:`Image` or :class:`CompressedImage` (or a Message carrying one) → (H, W, 3) RGB uint8."""
    p = msg_or_payload.payload if isinstance(msg_or_payload, Message) else msg_or_payload
    if isinstance(p, Image):
        return p.data
    if isinstance(p, CompressedImage):
        bgr = cv2.imdecode(np.frombuffer(p.data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"{where}: compressed image ({p.format}) does not decode")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    raise InputError(f"{where}: expected an image message, got {type(p).__name__}")


def read_image_file(path: str | os.PathLike) -> np.ndarray:
    """An image file → (H, W, 3) RGB uint8; InputError naming the file when it does not read."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"{path}: not a readable image file (expected PNG, JPEG, …)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def sensor_messages(log_path: str | os.PathLike, sensor_id: str) -> Iterator[Message]:
    """The messages of ``sensor_id`` in a log, in receive order; InputError naming the sensors if none."""
    from edgefuse.logs import LogReader

    reader = LogReader(str(log_path))
    topics = [t.topic for t in reader.topics().values() if t.sensor_id == sensor_id and t.payload]
    if not topics:
        have = sorted({t.sensor_id for t in reader.topics().values() if t.payload})
        raise InputError(f"{log_path}: no messages of sensor {sensor_id!r}; the log has {have}")
    for _topic, msg in reader.messages(topics=topics):
        yield msg


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def provenance(tool: str, inputs: dict[str, str | os.PathLike], residuals: dict, **extra) -> dict:
    """A provenance record: tool and version, UTC date, sha256 of each input file, residuals, and the
    ``extra`` fields that are not None (e.g. ``forced``: the quality gates a ``--force`` overrode)."""
    return {
        "tool": f"edgefuse calibrate {tool}",
        "version": edgefuse.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "inputs": {k: {"path": str(v), "sha256": file_sha256(v)} for k, v in inputs.items()},
        "residuals": residuals,
        **{k: v for k, v in extra.items() if v is not None},
    }


def update_calibration_file(path: str | os.PathLike, update, record: dict, key: str) -> Path:
    """Update the calibration file ``path`` in place: ``update(calib)`` changes the loaded
    :class:`Calibration`, ``record`` is stored under ``provenance[key]``. The previous file is kept as
    ``PATH.bak`` beside it. Returns the backup path."""
    p = Path(path)
    calib: Calibration = load_calibration(p)
    update(calib)
    calib.provenance = dict(calib.provenance)
    calib.provenance[key] = record
    backup = p.with_name(p.name + ".bak")
    shutil.copy2(p, backup)
    save_calibration(calib, p)
    return backup


def json_floats(a, digits: int = 6):
    """A numpy array/scalar as (nested) Python floats rounded to ``digits`` decimals."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 0:
        return round(float(arr), digits)
    return np.round(arr, digits).tolist()
