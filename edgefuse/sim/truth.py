"""What each sensor sees of each ground-truth box: LiDAR and radar point counts and camera visibility.

The simulator annotates every ``ground_truth`` :class:`~edgefuse.types.Detection` (one per labelled
scene box, keyed by ``track_id``) at a LiDAR stamp with:

- ``lidar_points``: the points of that LiDAR sweep (the cloud the ``lidar_top`` message carries) that are
  returns from the box's surface — detected rays whose first hit is the box
  (:attr:`~edgefuse.sim.lidar.Firings.box_index`); ground and fog-backscatter returns count for no box.
  The ray-cast hit *is* the box, so this is nuScenes' "LiDAR points inside the box" without the
  point-in-box test (a point just outside through range noise still counts; one of another object
  touching the box does not).
- ``radar_points``: the detections of the radar scan whose truth track id is the box's
  (:func:`~edgefuse.sim.radar.simulate_radar`; ghosts and clutter carry −1 and count for no box), from the
  last radar scan captured at or before the LiDAR stamp (20 Hz radar: at most 50 ms older); 0 before the
  first scan. The radar sees the front only, so boxes behind have 0.
- ``visibility``: the camera's view of the box, from 9 sample points — the centre and the 8 corners
  pulled 10 % towards the centre (so that no ray grazes an edge or the ground): a sample counts when it
  projects inside the image (in front of the camera) and the ray from the camera centre to it meets
  nothing but the box itself first (other boxes, buildings and the ground occlude; the box's own near
  faces do not). ``visibility`` = counted / 9, a fraction in [0, 1] (nuScenes' levels:
  :func:`~edgefuse.types.visibility_bin`). Geometry only: fog, night and motion blur do not change it.

Counting is exact and draws no random numbers, so a recording's sensor data do not change with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from edgefuse.geometry import CameraModel, Transform
from edgefuse.sim.raycast import cast_rays
from edgefuse.sim.scene import Scene
from edgefuse.types import Detection

#: Corners are sampled this fraction of the way from the centre (1 = the corner itself).
CORNER_SCALE = 0.9
#: A ray reaching this close to its sample point (m) counts as unoccluded.
OCCLUSION_TOLERANCE_M = 0.05


def count_by_track(track_ids: np.ndarray) -> dict[int, int]:
    """{track id: how many entries carry it} over ``track_ids`` (any shape, int); −1 entries left out."""
    ids, n = np.unique(np.asarray(track_ids, np.int64).reshape(-1), return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, n, strict=True) if i >= 0}


def lidar_track_ids(scene: Scene, box_index: np.ndarray) -> np.ndarray:
    """The track id of the box behind each return: ``box_index`` (any shape) indexes ``scene.boxes``
    (−1 = none) → same shape int64, −1 for none or a box without ground truth."""
    tracks = np.array([b.track_id for b in scene.boxes] + [-1], np.int64)
    bi = np.asarray(box_index, np.int64)
    return tracks[np.where(bi >= 0, bi, len(scene.boxes))]


def sample_points(det: Detection) -> np.ndarray:
    """(9, 3) the box's visibility samples in its frame (base_link): centre, then the 8 corners pulled
    to :data:`CORNER_SCALE` of the way out."""
    c = det.box.center
    return np.vstack([c, c + CORNER_SCALE * (det.box.corners() - c)])


def camera_visibility(
    scene: Scene, objects: Sequence[Detection], camera: CameraModel, T_base_camera: Transform
) -> list[float]:
    """The visible fraction of each of ``objects`` (ground truth in base_link, with the ``track_id`` of a
    box of ``scene``) to ``camera`` at ``T_base_camera`` (optical frame → base_link); see the module doc.
    All objects' samples go through one :func:`~edgefuse.sim.raycast.cast_rays` call at the scene time."""
    if not objects:
        return []
    pts_base = np.concatenate([sample_points(o) for o in objects])  # (9·N, 3)
    uv, z = camera.project(T_base_camera.inverse().apply(pts_base))
    in_view = (z > 0) & camera.in_image(uv)
    T_world_camera = scene.T_world_base @ T_base_camera
    pts_world = scene.T_world_base.apply(pts_base)
    origin = T_world_camera.translation
    delta = pts_world - origin
    dist = np.linalg.norm(delta, axis=1)
    hits = cast_rays(np.broadcast_to(origin, delta.shape), delta / dist[:, None], scene.boxes, max_range=1e6)
    hit_track = lidar_track_ids(scene, np.where(hits.box_index >= 0, hits.box_index, -1))
    own = np.repeat([o.track_id for o in objects], 9)
    clear = (hit_track == own) | (hits.range_m >= dist - OCCLUSION_TOLERANCE_M)
    seen = (in_view & clear).reshape(len(objects), 9)
    return [float(k) / 9.0 for k in seen.sum(axis=1)]


def annotate(
    objects: Sequence[Detection],
    lidar_counts: dict[int, int],
    radar_counts: dict[int, int],
    visibility: Sequence[float],
) -> list[Detection]:
    """``objects`` with ``lidar_points``/``radar_points`` from the {track id: count} maps (absent = 0)
    and ``visibility`` (one per object, in order)."""
    return [
        replace(
            o,
            lidar_points=lidar_counts.get(o.track_id, 0),
            radar_points=radar_counts.get(o.track_id, 0),
            visibility=v,
        )
        for o, v in zip(objects, visibility, strict=True)
    ]
