"""The calibration chessboard of a box with a ``board`` (:class:`~edgefuse.sim.scene.Board`): where its inner
corners are in the world (:func:`board_inner_corners`, the truth for calibration) and how the camera paints
it (:func:`_paint_board`: per pixel, ray ∩ board plane, the pattern box-filtered over the pixel's footprint,
so its corners are sub-pixel exact). Both follow one layout: centred on the box's +x face, columns along the
box's +y axis, rows along −z, the top-left square black.
"""

from __future__ import annotations

import numpy as np

from edgefuse.sim.camera_lens import _CameraTables
from edgefuse.sim.camera_raster import NEAR_M
from edgefuse.sim.scene import WorldBox

BOARD_WHITE = (245.0, 245.0, 245.0)
BOARD_BLACK = (12.0, 12.0, 12.0)


def board_inner_corners(box: WorldBox) -> np.ndarray:
    """The chessboard's inner corners of a box with a ``board``, in the world frame.

    Returns ((rows-1)·(cols-1), 3): row-major from the top-left inner corner as seen facing the board
    (standing on the box's +x side): columns run along the box's +y axis (left to right as seen),
    rows along -z (top to bottom). The top-left square is black. The board is centred on the +x face."""
    if box.board is None:
        raise ValueError(f"board_inner_corners: box of kind {box.kind!r} has no board")
    b = box.board
    l, w, h = np.asarray(box.size, dtype=np.float64) / 2.0
    ys = (np.arange(1, b.cols) - b.cols / 2.0) * b.square_m
    zs = (b.rows / 2.0 - np.arange(1, b.rows)) * b.square_m
    Y, Z = np.meshgrid(ys, zs)
    local = np.stack([np.full(Y.size, l), Y.ravel(), Z.ravel()], axis=1)
    return box.pose().apply(local)


def _box_cover(a: np.ndarray, w: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fraction of [a − w, a + w] inside [lo, hi]."""
    return np.clip((np.minimum(a + w, hi) - np.maximum(a - w, lo)) / (2.0 * w), 0.0, 1.0)


def _box_square_wave(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mean over [a − w, a + w] of the square wave +1 on [2k, 2k+1), −1 on [2k+1, 2k+2): the difference
    of its antiderivative, the triangle wave F(a) = 1 − |(a mod 2) − 1|, over the window."""

    def tri(x):
        return 1.0 - np.abs(np.mod(x, 2.0) - 1.0)

    return (tri(a + w) - tri(a - w)) / (2.0 * w)


def _paint_board(
    img: np.ndarray,
    tables: _CameraTables,
    o: np.ndarray,
    uax: np.ndarray,
    vax: np.ndarray,
    face_w: float,
    face_h: float,
    board,
    white,
    black,
) -> None:
    """Paint a chessboard exactly: the ray of every pixel of the intermediate image near the board meets
    the face plane (origin ``o``, unit axes ``uax`` right and ``vax`` up, optical frame); the pixel's
    colour is the chessboard box-filtered over the pixel's footprint there (analytically: the pattern is
    a product of two square waves). Polygon filling would put horizontal edges on whole pixel rows;
    calibration needs sub-pixel exact corners."""
    sq = board.square_m
    bw, bh = board.cols * sq, board.rows * sq
    u0, v0 = (face_w - bw) / 2.0, (face_h - bh) / 2.0
    m = board.margin_m
    rect = np.array(
        [[u0 - m, v0 - m], [u0 + bw + m, v0 - m], [u0 + bw + m, v0 + bh + m], [u0 - m, v0 + bh + m]]
    )
    pc = o + rect[:, :1] * uax + rect[:, 1:2] * vax
    Ki, (Wi, Hi) = tables.Ki, tables.size_i
    if np.all(pc[:, 2] > NEAR_M):
        uv = pc[:, :2] / pc[:, 2:3] * np.array([Ki[0, 0], Ki[1, 1]]) + Ki[:2, 2]
        x0, y0 = np.floor(uv.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(uv.max(axis=0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, Wi), min(y1, Hi)
    else:
        x0, y0, x1, y1 = 0, 0, Wi, Hi
    if x1 <= x0 or y1 <= y0:
        return
    xs = (np.arange(x0, x1) - Ki[0, 2]) / Ki[0, 0]
    ys = (np.arange(y0, y1) - Ki[1, 2]) / Ki[1, 1]
    X, Y = np.meshgrid(xs, ys)
    normal = np.cross(uax, vax)
    denom = X * normal[0] + Y * normal[1] + normal[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = float(normal @ o) / denom
    valid = t > 0
    rel_x, rel_y, rel_z = X * t - o[0], Y * t - o[1], t - o[2]
    # board coordinates in squares: a along the columns, b down the rows, (0, 0) the top-left corner
    a = ((rel_x * uax[0] + rel_y * uax[1] + rel_z * uax[2]) - u0) / sq
    b = (v0 + bh - (rel_x * vax[0] + rel_y * vax[1] + rel_z * vax[2])) / sq
    a[~valid] = -1e6
    b[~valid] = -1e6
    # each pixel is a box filter over its footprint (half-widths in squares, from the local derivatives)
    wa = np.maximum(0.5 * (np.abs(np.gradient(a, axis=1)) + np.abs(np.gradient(a, axis=0))), 1e-4)
    wb = np.maximum(0.5 * (np.abs(np.gradient(b, axis=1)) + np.abs(np.gradient(b, axis=0))), 1e-4)
    wa[~valid] = 1.0
    wb[~valid] = 1.0
    ms = m / sq
    cov_in = (_box_cover(a, wa, -ms, board.cols + ms) * _box_cover(b, wb, -ms, board.rows + ms))[..., None]
    in_grid = _box_cover(a, wa, 0.0, board.cols) * _box_cover(b, wb, 0.0, board.rows)
    dark = 0.5 * (1.0 + _box_square_wave(a, wa) * _box_square_wave(b, wb))  # (i + j) even → black
    cov_black = (in_grid * dark)[..., None]
    region = img[y0:y1, x0:x1].astype(np.float32)
    white_a, black_a = np.asarray(white, np.float32), np.asarray(black, np.float32)
    out = region * (1 - cov_in) + cov_in * white_a + cov_black * (black_a - white_a)
    img[y0:y1, x0:x1] = np.clip(out + 0.5, 0, 255).astype(np.uint8)


def board_face_squares(box: WorldBox, points_world: np.ndarray, dt_s: np.ndarray | None = None) -> np.ndarray:
    """Where on a board box each point lies: 1 on a black square, 0 on the white of the printed face
    (white squares, margin and the rest of the face), -1 off the printed (+x) face.

    ``points_world`` (K, 3) m: points on the box's surface, each at its own time ``dt_s`` (K,) s from the
    scene's (the box moved there with its ``velocity`` and ``yaw_rate``; None = all 0). Same layout as
    :func:`board_inner_corners`: columns along the box's +y axis, rows along −z, the top-left square black."""
    if box.board is None:
        raise ValueError(f"board_face_squares: box of kind {box.kind!r} has no board")
    p = np.asarray(points_world, np.float64).reshape(-1, 3)
    dt = np.zeros(len(p)) if dt_s is None else np.asarray(dt_s, np.float64).reshape(len(p))
    rel = p - box.center - dt[:, None] * np.asarray(box.velocity, np.float64)
    c, s = np.cos(-box.yaw_rate * dt), np.sin(-box.yaw_rate * dt)  # undo the turn since the scene time
    rel = np.stack([c * rel[:, 0] - s * rel[:, 1], s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], axis=1)
    local = rel @ box.pose().rotation  # R_world_box^T applied to each row
    b = box.board
    on_face = local[:, 0] > box.size[0] / 2.0 - 1e-3
    a = (local[:, 1] + b.cols * b.square_m / 2.0) / b.square_m  # columns from the left edge, in squares
    r = (b.rows * b.square_m / 2.0 - local[:, 2]) / b.square_m  # rows from the top edge
    inside = (a >= 0) & (a < b.cols) & (r >= 0) & (r < b.rows)
    black = inside & ((np.floor(a).astype(np.int64) + np.floor(r).astype(np.int64)) % 2 == 0)
    return np.where(on_face, black.astype(np.int64), -1)
