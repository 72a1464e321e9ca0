"""Network outputs → :class:`~edgefuse.types.Detections` (numpy only: on the runtime path).

The graph already decodes (see :class:`edgefuse.model.heads.TopKDecode`); this turns one frame's
``boxes`` (K, 9) x y z l w h yaw vx vy, ``scores`` (K,) and ``labels`` (K,) into detections above a
score threshold.
"""

from __future__ import annotations

import numpy as np

from edgefuse.errors import InputError
from edgefuse.types import Box3D, Detection, Detections


class OutputError(InputError):
    """Model outputs of the wrong shape or dtype (names the output and the expected shape)."""


def to_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    stamp_ns: int,
    classes: tuple[str, ...],
    score_threshold: float = 0.1,
) -> Detections:
    """One frame's decoded outputs → Detections in base_link, highest score first."""
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if boxes.ndim != 2 or boxes.shape[1] != 9:
        raise OutputError(f"model output 'boxes': expected shape (K, 9), got {boxes.shape}")
    if scores.shape != (boxes.shape[0],) or labels.shape != (boxes.shape[0],):
        raise OutputError(
            f"model outputs 'scores'/'labels': expected shape ({boxes.shape[0]},), "
            f"got {scores.shape}/{labels.shape}"
        )
    order = np.argsort(-scores, kind="stable")
    out = []
    for i in order:
        s = float(scores[i])
        if not s >= score_threshold:
            break
        b = boxes[i].astype(np.float64)
        lab = int(labels[i])
        if not (0 <= lab < len(classes)) or not np.all(np.isfinite(b)) or not np.all(b[3:6] > 0):
            continue
        box = Box3D(b[0:3], b[3:6], float(b[6]))
        out.append(Detection(classes[lab], min(max(s, 0.0), 1.0), box, b[7:9]))
    return Detections(int(stamp_ns), tuple(out), "base_link")
