"""Calibration boards: parsing ``--board`` specs, target files, 3D corner layout and corner detection.

Board specs (the CLI's ``--board``):

- ``chessboard:COLSxROWS:SQUARE_M`` — COLS × ROWS **inner** corners (OpenCV's convention), squares of
  SQUARE_M metres;
- ``charuco:COLSxROWS:SQUARE_M:MARKER_M:DICT[:legacy|:new]`` — COLS × ROWS **squares** (OpenCV's
  CharucoBoard), markers of MARKER_M metres from the ArUco dictionary DICT (e.g. ``DICT_5X5_100``).
  OpenCV 4.6 changed the marker layout of boards with an even number of rows; boards printed before (the
  *legacy* pattern, still what many shops sell) are found too: without the suffix both layouts are tried,
  ``:legacy`` / ``:new`` names one;
- a target file ``calibration/targets/NAME.yaml`` (``kind: chessboard``, ``inner_corners``, ``square_m``,
  ``margin_m``, ``plate_m``), written by the simulator's :func:`edgefuse.sim.rig.target_to_dict`.

Board frame: origin at the board centre, x along the corner columns, y along the rows (down the board
as printed), z into the board (right-handed), so that a board seen face-on has +z pointing away from
the camera. Corner ``i`` of a chessboard is ``(col, row) = (i % cols, i // cols)``, OpenCV's order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgefuse.errors import InputError


class BoardSpecError(InputError):
    """A ``--board`` spec or target file that does not parse."""


@dataclass(frozen=True)
class BoardSpec:
    """A planar target. ``kind``: "chessboard" or "charuco"; ``cols``/``rows``: inner corners
    (chessboard) or squares (charuco); ``square_m``, ``marker_m`` (charuco only) in metres;
    ``dictionary``: ArUco dictionary name (charuco only); ``plate_m``: (width, height) of the physical
    plate around the pattern (for LiDAR segmentation and edge alignment), None = the pattern itself."""

    kind: str
    cols: int
    rows: int
    square_m: float
    marker_m: float = 0.0
    dictionary: str = ""
    plate_m: tuple[float, float] | None = None
    legacy: bool | None = None  # charuco: OpenCV < 4.6's marker layout (True), ≥ 4.6's (False), either (None)
    plate_offset_m: tuple[float, float] = (0.0, 0.0)  # the plate's centre in the board (pattern) frame, m

    @property
    def corner_grid(self) -> tuple[int, int]:
        """(columns, rows) of the detectable corners."""
        return (self.cols, self.rows) if self.kind == "chessboard" else (self.cols - 1, self.rows - 1)

    @property
    def n_corners(self) -> int:
        c, r = self.corner_grid
        return c * r

    @property
    def plate_size(self) -> tuple[float, float]:
        """(width along x, height along y) of the plate, m."""
        if self.plate_m is not None:
            return self.plate_m
        c, r = self.corner_grid
        return ((c + 1) * self.square_m, (r + 1) * self.square_m)

    def object_points(self) -> np.ndarray:
        """(n_corners, 3) float64 corner positions in the board frame (z = 0), centred on the pattern."""
        c, r = self.corner_grid
        i = np.arange(c * r)
        x = (i % c - (c - 1) / 2.0) * self.square_m
        y = (i // c - (r - 1) / 2.0) * self.square_m
        return np.stack([x, y, np.zeros_like(x)], axis=1)

    def describe(self) -> str:
        if self.kind == "chessboard":
            return f"chessboard:{self.cols}x{self.rows}:{self.square_m:g}"
        suffix = {True: ":legacy", False: ":new", None: ""}[self.legacy]
        sizes = f"{self.square_m:g}:{self.marker_m:g}"
        return f"charuco:{self.cols}x{self.rows}:{sizes}:{self.dictionary}{suffix}"

    def size_rule(self) -> str:
        """How this board's COLSxROWS counts, in its own vocabulary (for messages)."""
        if self.kind == "chessboard":
            return "counts the inner corners (COLSxROWS: where four squares meet), not the squares"
        return "counts the squares (COLSxROWS, ChArUco's convention), not the inner corners"


def _num(spec: str, what: str, text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise BoardSpecError(f"--board {spec!r}: {what}: expected a number in metres, got {text!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise BoardSpecError(f"--board {spec!r}: {what}: expected a positive size in metres, got {text!r}")
    return v


def parse_board(spec: str) -> BoardSpec:
    """Parse a ``--board`` spec (see the module doc) or the path of a target YAML file."""
    if spec.endswith((".yaml", ".yml")) or os.path.isfile(spec):
        return load_target(spec)
    parts = spec.split(":")
    kind = parts[0].lower()
    if kind not in ("chessboard", "charuco"):
        raise BoardSpecError(
            f"--board {spec!r}: expected 'chessboard:COLSxROWS:SQUARE_M', "
            "'charuco:COLSxROWS:SQUARE_M:MARKER_M:DICT' or a target .yaml file"
        )
    n = 3 if kind == "chessboard" else 5
    legacy = None
    if kind == "charuco" and len(parts) == 6 and parts[5].lower() in ("legacy", "new"):
        legacy = parts.pop().lower() == "legacy"
    if len(parts) != n:
        form = (
            "chessboard:COLSxROWS:SQUARE_M"
            if kind == "chessboard"
            else "charuco:COLSxROWS:SQUARE_M:MARKER_M:DICT"
        )
        raise BoardSpecError(
            f"--board {spec!r}: expected {n} ':'-separated fields ({form}), got {len(parts)}"
        )
    grid = parts[1].lower().split("x")
    if len(grid) != 2 or not all(g.isdigit() for g in grid):
        raise BoardSpecError(f"--board {spec!r}: size: expected COLSxROWS such as 7x5, got {parts[1]!r}")
    cols, rows = int(grid[0]), int(grid[1])
    least = 2 if kind == "chessboard" else 3
    if cols < least or rows < least:
        what = "inner corners" if kind == "chessboard" else "squares"
        raise BoardSpecError(
            f"--board {spec!r}: size: expected at least {least}x{least} {what}, got {cols}x{rows}"
        )
    square = _num(spec, "square size", parts[2])
    if kind == "chessboard":
        return BoardSpec("chessboard", cols, rows, square)
    marker = _num(spec, "marker size", parts[3])
    if marker >= square:
        raise BoardSpecError(
            f"--board {spec!r}: marker size: expected less than the square size {square:g} m"
        )
    dictionary = parts[4].upper()
    if not hasattr(cv2.aruco, dictionary) or not dictionary.startswith("DICT_"):
        raise BoardSpecError(
            f"--board {spec!r}: dictionary: expected an ArUco dictionary such as DICT_5X5_100"
        )
    return BoardSpec("charuco", cols, rows, square, marker, dictionary, legacy=legacy)


def load_target(path: str | os.PathLike) -> BoardSpec:
    """A target file (``calibration/targets/*.yaml``) as a :class:`BoardSpec`: ``kind: chessboard``
    (``inner_corners: [COLS, ROWS]``, ``square_m``) or ``kind: charuco`` (``squares: [COLS, ROWS]``,
    ``square_m``, ``marker_m``, ``dictionary``, optional ``legacy: true|false``); both with ``plate_m``
    [width, height] and optional ``pattern_offset_m`` [x, y]: where the pattern's centre sits from the
    plate's centre (along the pattern's columns and rows; a pattern printed off-centre on its plate)."""
    import yaml

    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BoardSpecError(f"{p}: board target file not found") from None
    except yaml.YAMLError as e:
        raise BoardSpecError(f"{p}: not valid YAML: {e}") from None
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if kind not in ("chessboard", "charuco"):
        raise BoardSpecError(f"{p}: kind: expected 'chessboard' or 'charuco', got {kind!r}")
    try:
        key = "inner_corners" if kind == "chessboard" else "squares"
        cols, rows = (int(v) for v in doc[key])
        square = float(doc["square_m"])
        plate = doc.get("plate_m")
        plate_t = (float(plate[0]), float(plate[1])) if plate else None
        off = doc.get("pattern_offset_m") or (0.0, 0.0)
        offset = (-float(off[0]), -float(off[1]))  # the plate centre seen from the pattern's
        if kind == "chessboard":
            return BoardSpec("chessboard", cols, rows, square, plate_m=plate_t, plate_offset_m=offset)
        spec = f"charuco:{cols}x{rows}:{square:g}:{float(doc['marker_m']):g}:{doc['dictionary']}"
        legacy = doc.get("legacy")
    except (KeyError, TypeError, ValueError) as e:
        need = ("inner_corners [COLS, ROWS], square_m" if kind == "chessboard" else
                "squares [COLS, ROWS], square_m, marker_m, dictionary")  # fmt: skip
        raise BoardSpecError(f"{p}: expected {need} and plate_m: {e}") from None
    try:
        b = parse_board(spec)
    except BoardSpecError as e:
        raise BoardSpecError(f"{p}: {str(e).replace('--board ', '')}") from None
    from dataclasses import replace

    return replace(b, plate_m=plate_t, plate_offset_m=offset, legacy=None if legacy is None else bool(legacy))


# ---------------------------------------------------------------- detection


@dataclass(frozen=True)
class Corners:
    """Corners found in one image: ``ids`` (K,) int indices into :meth:`BoardSpec.object_points`,
    ``uv`` (K, 2) float64 pixel positions (sub-pixel)."""

    ids: np.ndarray
    uv: np.ndarray


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) RGB uint8 → (H, W) uint8."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    raise ValueError(f"to_gray: expected an (H, W) or (H, W, 3) image, got shape {image.shape}")


def detect_corners(image: np.ndarray, board: BoardSpec) -> Corners | None:
    """Find ``board`` in ``image`` ((H, W) gray or (H, W, 3) RGB uint8). Chessboards must be found whole
    (OpenCV's classic detector, falling back to ``cv2.findChessboardCornersSB``, then ``cornerSubPix``
    with a window sized to the corner spacing: unbiased on small, far boards); ChArUco boards give whichever
    corners have markers around them (at least 6).
    Returns None when the board is not found."""
    gray = to_gray(image)
    if board.kind == "chessboard":
        size = (board.cols, board.rows)
        ok, pts = cv2.findChessboardCorners(
            gray, size, flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
        )
        if not ok:
            ok, pts = cv2.findChessboardCornersSB(
                gray, size, flags=cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_EXHAUSTIVE
            )
            if not ok:
                return None
        # refinement window: ~35 % of the nearest corner spacing (small, far boards), half-size 2..6 px
        grid = pts.reshape(board.rows, board.cols, 2)
        spacing = min(
            float(np.min(np.linalg.norm(np.diff(grid, axis=1), axis=2))),
            float(np.min(np.linalg.norm(np.diff(grid, axis=0), axis=2))),
        )
        win = int(np.clip(spacing * 0.35, 2, 6))
        pts = cv2.cornerSubPix(
            gray,
            pts.astype(np.float32),
            (win, win),
            (-1, -1),
            (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4),
        )
        uv = pts.reshape(-1, 2).astype(np.float64)
        return Corners(np.arange(len(uv)), uv)
    best = None
    for legacy in (False, True) if board.legacy is None else (board.legacy,):
        detector = cv2.aruco.CharucoDetector(charuco_board(board, legacy))
        ch_corners, ch_ids, _, _ = detector.detectBoard(gray)
        if ch_ids is not None and len(ch_ids) >= 6 and (best is None or len(ch_ids) > len(best[1])):
            best = (ch_corners, ch_ids)
    if best is None:
        return None
    return Corners(best[1].reshape(-1).astype(int), best[0].reshape(-1, 2).astype(np.float64))


def charuco_board(board: BoardSpec, legacy: bool = False):
    """The OpenCV ``cv2.aruco.CharucoBoard`` of a charuco spec, in OpenCV ≥ 4.6's marker layout or the
    legacy one (boards with an even number of rows differ)."""
    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, board.dictionary))
    b = cv2.aruco.CharucoBoard((board.cols, board.rows), board.square_m, board.marker_m, dictionary)
    b.setLegacyPattern(bool(legacy))
    return b
