"""The boxes of one simulated camera frame: culling (range, fog, size in pixels, outside the view, the camera
inside a box), painter's order (a face plane of the nearer box separates the camera from the farther box;
ties by distance; boxes wholly behind an opaque face are skipped), and the draw-list entries of their visible
faces with Lambert shading, their textures and chessboards, plus the face planes for the surface-id buffer and
the street lamps for night lighting.

Boxes are in the world frame; faces and patches are added in the camera optical frame (metres).
"""

from __future__ import annotations

import heapq
from functools import partial

import numpy as np

from edgefuse.sim.camera_board import BOARD_BLACK, BOARD_WHITE, _paint_board
from edgefuse.sim.camera_lighting import AMBIENT, DIFFUSE, STREET_LAMP_KINDS, SUN_DIR
from edgefuse.sim.camera_raster import _QUAD, NEAR_M, _clip_planes
from edgefuse.sim.camera_textures import (
    _F_NORMAL,
    _F_ORIGIN,
    _F_UAXIS,
    _F_USIGN,
    _F_VAXIS,
    _F_VSIGN,
    _decorations,
)

MAX_BOX_RANGE_M = 400.0
LOD_PATCH_PX = 6.0  # boxes whose bounding sphere projects smaller (radius, px) are drawn without patches


# ---------------------------------------------------------------- painter's order


def _draw_order(corners, normals, offsets, facing, cam, R_cw, t_cw, tables, opaque) -> list[int]:
    """Back-to-front order of K convex boxes: ``corners`` (K, 8, 3) world, face ``normals`` (K, 6, 3)
    and ``offsets`` (K, 6) (outside: n·p > c), ``facing`` (K, 6) faces towards the camera at ``cam`` (3,).

    For boxes whose image rectangles overlap, box a is drawn after box b when a face plane of a that
    faces the camera has all of b behind it (the plane separates the camera from b); everything else
    goes by distance, farthest first (Kahn's algorithm on a heap). Boxes wholly hidden behind an
    ``opaque`` (K,) box are left out (see :func:`_hidden`)."""
    K = len(corners)
    dist = np.linalg.norm(corners.mean(axis=1) - cam, axis=1)
    pc = corners @ R_cw.T + t_cw  # (K, 8, 3) optical frame
    Ki = tables.Ki
    z = pc[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = pc[..., 0] / z * Ki[0, 0] + Ki[0, 2]
        v = pc[..., 1] / z * Ki[1, 1] + Ki[1, 2]
    behind = np.any(z <= NEAR_M, axis=1)
    big = 1e9
    u0 = np.where(behind, -big, np.min(u, axis=1))
    u1 = np.where(behind, big, np.max(u, axis=1))
    v0 = np.where(behind, -big, np.min(v, axis=1))
    v1 = np.where(behind, big, np.max(v, axis=1))
    over = (
        (u0[:, None] <= u1[None])
        & (u0[None] <= u1[:, None])
        & (v0[:, None] <= v1[None])
        & (v0[None] <= v1[:, None])
    )
    ia, ib = np.nonzero(np.triu(over, 1))
    deps: list[list[int]] = [[] for _ in range(K)]
    waiting = [0] * K  # plain lists: the loops below run per dependency
    if len(ia):

        def separating(a, b):  # (P, 6) bool: face f of a faces the camera and has all of b behind it
            side = np.matmul(normals[a], corners[b].transpose(0, 2, 1)) - offsets[a][:, :, None]
            return np.all(side <= 1e-6, axis=2) & facing[a]

        sep_ab, sep_ba = separating(ia, ib), separating(ib, ia)
        ab, ba = sep_ab.any(axis=1), sep_ba.any(axis=1)
        uvs = np.stack([u, v], axis=2)  # (K, 8, 2)
        hidden = _hidden(
            np.concatenate([ia, ib]),
            np.concatenate([ib, ia]),
            np.concatenate([sep_ab, sep_ba]),
            uvs,
            behind,
            opaque,
        )
        for a, b in zip(ia[ab & ~ba].tolist(), ib[ab & ~ba].tolist(), strict=True):  # a in front: waits for b
            deps[b].append(a)
            waiting[a] += 1
        for a, b in zip(ib[ba & ~ab].tolist(), ia[ba & ~ab].tolist(), strict=True):
            deps[b].append(a)
            waiting[a] += 1
    else:
        hidden = np.zeros(K, dtype=bool)
    dist_l = dist.tolist()
    heap = [(-dist_l[i], i) for i in range(K) if waiting[i] == 0]
    heapq.heapify(heap)
    done = [False] * K
    order: list[int] = []
    while len(order) < K:
        if not heap:  # a cycle: break it with the farthest remaining box
            rest = np.flatnonzero(~np.array(done))
            heap = [(-dist[rest[np.argmax(dist[rest])]], int(rest[np.argmax(dist[rest])]))]
        _, i = heapq.heappop(heap)
        if done[i]:
            continue
        done[i] = True
        order.append(int(i))
        for a in deps[i]:
            waiting[a] -= 1
            if waiting[a] == 0 and not done[a]:
                heapq.heappush(heap, (-dist_l[a], a))
    return [i for i in order if not hidden[i]]


# the corners (indices into _CORNER_SIGNS) of each face, in order around it
_FACE_CORNERS = np.array([[1, 3, 7, 5], [0, 2, 6, 4], [2, 3, 7, 6], [0, 1, 5, 4], [4, 5, 7, 6], [0, 1, 3, 2]])


def _hidden(a, b, sep, uvs, behind, opaque) -> np.ndarray:
    """(K,) bool: boxes wholly hidden behind one opaque face of another box. For pairs (a[p], b[p]) and
    separating faces ``sep`` (P, 6) of a (b lies behind that face's plane, the camera in front), b is
    hidden when its 8 projected corners ``uvs`` (K, 8, 2) lie inside the face's projected quad: every
    ray to b then crosses that face first. Boxes with corners behind the camera are never judged."""
    hidden = np.zeros(len(uvs), dtype=bool)
    p, f = np.nonzero(sep & (opaque[a] & ~behind[a] & ~behind[b])[:, None])
    if len(p) == 0:
        return hidden
    q = uvs[a[p][:, None], _FACE_CORNERS[f]]  # (M, 4, 2)
    pts = uvs[b[p]]  # (M, 8, 2)
    e = np.roll(q, -1, axis=1) - q
    w = pts[:, None, :, :] - q[:, :, None, :]  # (M, 4, 8, 2)
    cross = e[:, :, None, 0] * w[..., 1] - e[:, :, None, 1] * w[..., 0]
    inside = np.all(cross >= 0, axis=(1, 2)) | np.all(cross <= 0, axis=(1, 2))
    hidden[b[p][inside]] = True
    return hidden


# ---------------------------------------------------------------- boxes


def _rotations(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(B, 3, 3) R = Rz(yaw)·Ry(pitch)·Rx(roll), vectorized :func:`edgefuse.geometry.rpy_to_matrix`."""
    cr, sr, cp, sp, cy, sy = (
        np.cos(roll),
        np.sin(roll),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(yaw),
        np.sin(yaw),
    )
    return np.stack(
        [
            np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], axis=-1),
            np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], axis=-1),
            np.stack([-sp, cp * sr, cp * cr], axis=-1),
        ],
        axis=1,
    )


_CORNER_SIGNS = np.array([[sx, sy, sz] for sz in (-1, 1) for sy in (-1, 1) for sx in (-1, 1)], dtype=float)


def _add_boxes(
    need_ids,
    dl,
    boxes,
    tables,
    R_cw,
    t_cw,
    cam_w,
    beta,
    night,
    shade,
    col,
    gain,
    s_normal,
    s_offset,
    s_emissive,
    lamps,
) -> None:
    """Cull the boxes, order them back to front and add their visible faces and patches to ``dl``
    (and their face planes to the surface tables)."""
    centers = np.array([b.center for b in boxes], dtype=np.float64).reshape(-1, 3)
    sizes = np.array([b.size for b in boxes], dtype=np.float64).reshape(-1, 3)
    angles = np.array([(b.yaw, b.pitch, b.roll) for b in boxes], dtype=np.float64)
    Rs = _rotations(angles[:, 0], angles[:, 1], angles[:, 2])
    half = sizes / 2.0
    radius = np.linalg.norm(half, axis=1)
    dist = np.linalg.norm(centers - cam_w, axis=1)
    keep = dist - radius < MAX_BOX_RANGE_M
    if beta > 0:  # beyond ln(512)/β a box is less than half a grey level from the airlight
        keep &= dist - radius < np.log(512.0) / beta
    keep &= radius / np.maximum(dist, 1e-3) * tables.Ki[0, 0] > 0.7  # projects to about a pixel
    cam_local = np.einsum("bji,bj->bi", Rs, cam_w - centers)
    keep &= ~np.all(np.abs(cam_local) < half, axis=1)  # the camera inside a box (its own vehicle)
    if night:
        for b in boxes:
            if b.kind in STREET_LAMP_KINDS:
                top = np.asarray(b.center, dtype=np.float64).copy()
                top[2] += float(b.size[2]) / 2.0 - 0.3
                lamps.append(top)
    kidx = np.flatnonzero(keep)
    if len(kidx) == 0:
        return
    corners_w = (
        np.einsum("bij,bkj->bki", Rs[kidx], _CORNER_SIGNS[None] * half[kidx, None, :]) + centers[kidx, None]
    )
    planes = _clip_planes(tables)
    sp = (corners_w @ R_cw.T + t_cw) @ planes[:, :3].T + planes[:, 3]  # (K, 8, 5)
    vis = ~np.any(np.all(sp < 0, axis=1), axis=1)
    kidx, corners_w = kidx[vis], corners_w[vis]
    if len(kidx) == 0:
        return
    normals_w = np.einsum("bij,fj->bfi", Rs[kidx], _F_NORMAL)  # (K, 6, 3)
    # face plane f: n·p = n·centre + the half-size along that face's axis
    offsets = np.einsum("bfi,bi->bf", normals_w, centers[kidx]) + half[kidx] @ np.abs(_F_NORMAL).T
    facing = normals_w @ cam_w - offsets > 1e-9  # (K, 6) faces towards the camera
    opaque = np.array([not _decorations(boxes[i], night)[0] for i in kidx])  # cut-out figures are not
    order = _draw_order(corners_w, normals_w, offsets, facing, cam_w, R_cw, t_cw, tables, opaque)
    # every face of every kept box at once, in the optical frame
    hs = half[kidx]  # (K, 3)
    R_c = R_cw @ Rs[kidx]  # (K, 3, 3)
    t_c = centers[kidx] @ R_cw.T + t_cw
    oc = np.einsum("kij,kfj->kfi", R_c, _F_ORIGIN[None] * hs[:, None, :]) + t_c[:, None, :]  # (K, 6, 3)
    Uc = np.transpose(R_c[:, :, _F_UAXIS] * _F_USIGN, (0, 2, 1))  # (K, 6, 3) unit axes
    Vc = np.transpose(R_c[:, :, _F_VAXIS] * _F_VSIGN, (0, 2, 1))
    fw = (2.0 * hs[:, _F_UAXIS])[..., None]
    fh = (2.0 * hs[:, _F_VAXIS])[..., None]
    quads = np.stack([oc, oc + fw * Uc, oc + fw * Uc + fh * Vc, oc + fh * Vc], axis=2)  # (K, 6, 4, 3)
    n_c = normals_w @ R_cw.T  # (K, 6, 3)
    c_c = np.einsum("kfi,kfi->kf", n_c, oc)
    if night:
        shades = np.ones(facing.shape)
    else:
        shades = gain * (AMBIENT + DIFFUSE * np.maximum(0.0, normals_w @ SUN_DIR))
    px = radius[kidx] / np.maximum(dist[kidx], 1e-3) * tables.Ki[0, 0]  # projected radius
    base = len(s_normal)
    face_sid = np.full(facing.shape, -1, dtype=np.int64)
    fo, ff = np.nonzero(facing[order])  # facing faces in drawing order
    fo = np.asarray(order)[fo]
    face_sid[fo, ff] = base + np.arange(len(fo))
    s_normal.extend(n_c[fo, ff])
    s_offset.extend(c_c[fo, ff])
    s_emissive.extend([False] * len(fo))
    mat_rgb = np.array([boxes[i].material.rgb for i in kidx], dtype=np.float64)
    rgb_faces = np.minimum(255.0, mat_rgb[:, None, :] * shades[:, :, None]).tolist()  # (K, 6, 3)
    facing_l, sid_l, shade_l, px_l = facing.tolist(), face_sid.tolist(), shades.tolist(), px.tolist()
    patch_pcs = iter(_patch_vertices(order, boxes, kidx, night, facing_l, px_l, oc, Uc, Vc))
    for oi in order:
        box = boxes[int(kidx[oi])]
        cutout, groups = _decorations(box, night)
        detailed = px_l[oi] > LOD_PATCH_PX
        # unshaded patches (one colour on every face) share a fill call across the box's faces: they
        # are drawn after all its faces, which never overlap each other (only without the id buffer)
        merged: dict | None = None if need_ids else {}
        sid = 0
        for f in range(6):
            if not facing_l[oi][f]:
                continue
            sid = sid_l[oi][f]
            if not cutout:
                dl.add(quads[oi, f], _QUAD, tuple(rgb_faces[oi][f]), sid)
            if f == 0 and box.board is not None:
                fwid, fhei = 2.0 * hs[oi, _F_UAXIS[0]], 2.0 * hs[oi, _F_VAXIS[0]]
                k0 = shades[oi, 0]
                dl.add_custom(
                    partial(
                        _paint_board,
                        tables=tables,
                        o=oc[oi, 0],
                        uax=Uc[oi, 0],
                        vax=Vc[oi, 0],
                        face_w=fwid,
                        face_h=fhei,
                        board=box.board,
                        white=col(BOARD_WHITE, k0),
                        black=col(BOARD_BLACK, k0),
                    )
                )
            if not (groups[f] and (detailed or cutout)):
                continue
            esid = None
            k = shade_l[oi][f]
            for _verts, counts, rgb, emissive, shaded in groups[f]:
                pc = next(patch_pcs)  # = o + verts[:, :1] * u + verts[:, 1:2] * v
                if merged is not None and not shaded:
                    entry = merged.setdefault(col(rgb, 1.0 if night else gain), ([], []))
                    entry[0].append(pc)
                    entry[1].append(counts)
                elif emissive:
                    if esid is None:
                        s_normal.append(n_c[oi, f])
                        s_offset.append(c_c[oi, f])
                        s_emissive.append(True)
                        esid = len(s_normal) - 1
                    dl.add(pc, counts, col(rgb, 1.0 if night else gain), esid)
                else:
                    dl.add(pc, counts, col(rgb, k if shaded else (1.0 if night else gain)), sid)
        if merged:
            for rgb, (pcs, cnts) in merged.items():
                dl.add(np.concatenate(pcs), np.concatenate(cnts), rgb, sid)


def _patch_vertices(order, boxes, kidx, night, facing_l, px_l, oc, Uc, Vc) -> list[np.ndarray]:
    """The optical-frame vertices ``o + u·verts_u + v·verts_v`` of every patch group that
    :func:`_add_boxes` draws, in its drawing order, computed in one vectorized pass (the same float
    operations as per group; ``oc``, ``Uc``, ``Vc`` (K, 6, 3) face origins and unit axes)."""
    verts, faces = [], []
    for oi in order:
        cutout, groups = _decorations(boxes[int(kidx[oi])], night)
        if not (cutout or px_l[oi] > LOD_PATCH_PX):
            continue
        for f in range(6):
            if facing_l[oi][f] and groups[f]:
                for g in groups[f]:
                    verts.append(g[0])
                    faces.append(6 * oi + f)
    if not verts:
        return []
    lens = [len(v) for v in verts]
    fidx = np.repeat(np.array(faces), lens)
    allv = np.concatenate(verts)
    o, u, v = oc.reshape(-1, 3)[fidx], Uc.reshape(-1, 3)[fidx], Vc.reshape(-1, 3)[fidx]
    pc = o + allv[:, :1] * u + allv[:, 1:2] * v
    ends = np.cumsum(lens).tolist()
    return [pc[e - n : e] for e, n in zip(ends, lens, strict=True)]
