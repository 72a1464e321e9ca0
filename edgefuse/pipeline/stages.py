"""The pipeline's per-frame stages, pure functions of a :class:`~edgefuse.frames.Frame`:
:func:`preprocess` (FrameSet → feed, :class:`~edgefuse.tensors.TensorBuilder`), :func:`infer`
(``backend.infer``), :func:`decode` (→ :class:`~edgefuse.types.Detections`). Each stamps its start and end
into the frame's latency record from the ``clock`` it is given. :func:`warmup` runs one empty frame
before the first timed one."""

from __future__ import annotations

from edgefuse.frames import Clock, Frame
from edgefuse.types import FrameSet


def preprocess(frame: Frame, builder, clock: Clock) -> None:
    """FrameSet (+ ego) → the batch-1 feed (``frame.feed``); stamps ``preprocess_start/end``."""
    from edgefuse.runtime.feed import feed_from_inputs

    frame.record.preprocess_start_ns = clock()
    inputs = builder.build(frame.frameset, frame.ego)
    frame.feed = {k: v[None] for k, v in feed_from_inputs(inputs).items()}
    frame.record.preprocess_end_ns = clock()


def infer(frame: Frame, backend, clock: Clock) -> None:
    """``backend.infer(feed)`` → ``frame.outputs``; stamps ``infer_start/end``; the feed is released."""
    frame.record.infer_start_ns = clock()
    frame.outputs = backend.infer(frame.feed)
    frame.feed = None
    frame.record.infer_end_ns = clock()


def decode(frame: Frame, classes: tuple[str, ...], score_threshold: float, clock: Clock) -> None:
    """Batch-1 outputs ``boxes`` (1,K,9), ``scores`` (1,K), ``labels`` (1,K) → ``frame.detections``
    (base_link, the frame's reference stamp); stamps ``decode_start/end``."""
    from edgefuse.runtime.decode import OutputError, to_detections

    frame.record.decode_start_ns = clock()
    o = frame.outputs or {}
    for name in ("boxes", "scores", "labels"):
        if name not in o:
            raise OutputError(f"backend output {name!r}: missing; got {sorted(o)}")
    frame.detections = to_detections(
        o["boxes"][0], o["scores"][0], o["labels"][0], frame.frameset.stamp_ns, classes, score_threshold
    )
    frame.outputs = None
    frame.record.decode_end_ns = clock()


def warmup(builder, backend) -> None:
    """One empty frame through preprocessing and the backend, so that kernel compilation (numba) and the
    backend's first-run allocations happen before the first real frame is timed."""
    from edgefuse.runtime.feed import feed_from_inputs

    inputs = builder.build(FrameSet(0, {}), None)
    backend.infer({k: v[None] for k, v in feed_from_inputs(inputs).items()})
