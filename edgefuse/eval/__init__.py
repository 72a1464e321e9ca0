"""Evaluation: the nuScenes detection metric — mAP, ATE, ASE, AOE, AVE, AAE, NDS — in numpy
(:mod:`~edgefuse.eval.metrics`, no torch) and the evaluation run of a model file over logs
(:mod:`~edgefuse.eval.evaluate`, frames from :mod:`edgefuse.dataset`). Used by ``edgefuse eval``, the demo,
``compare`` and the recipe; the metrics need nothing of :mod:`edgefuse.model`.
"""
