"""The fusion model (DESIGN.md §4): per-modality encoders → fusion → BEV backbone → CenterPoint heads →
in-graph top-K decode; training, evaluation and the model manifest. Design notes: docs/model.md.

Torch-free here and in :mod:`~edgefuse.model.config`, :mod:`~edgefuse.model.decode`,
:mod:`~edgefuse.model.targets`, :mod:`~edgefuse.model.metrics` and :mod:`~edgefuse.model.manifest`
(the runtime path imports no torch); the network, losses and training import torch.
"""
