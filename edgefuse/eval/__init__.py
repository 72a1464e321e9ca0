"""Evaluation in numpy (no torch): nuScenes-style detection metrics (:mod:`~edgefuse.eval.metrics`), the
cached logged frames with their ground truth (:mod:`~edgefuse.eval.dataset`) and the evaluation run over a
model (:mod:`~edgefuse.eval.evaluate`). Used by ``edgefuse eval``, the demo, ``compare``, INT8 calibration
and training, none of which needs :mod:`edgefuse.model` to score detections.
"""
