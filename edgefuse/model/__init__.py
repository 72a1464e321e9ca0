"""The fusion model, workstation side (DESIGN.md §4): per-modality encoders → fusion → BEV backbone →
CenterPoint heads → in-graph top-K decode; losses, training, the training recipe, checkpoints and the torch
backend. Design notes: docs/model.md.

The network, losses, training and checkpoints import torch; nothing on the robot side imports this package
(the model's runtime contract — manifest, feed, decode, the bundled model — is :mod:`edgefuse.runtime`;
evaluation is :mod:`edgefuse.eval`). Torch-free here: :mod:`~edgefuse.model.config` (hyper-parameters) and
:mod:`~edgefuse.model.targets` (training targets).
"""
