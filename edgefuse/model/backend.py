"""The torch backend (workstation side): a ``.pt`` checkpoint run with torch on the CPU, behind the
backend interface of :mod:`edgefuse.runtime.backends` (``name``, ``manifest``, ``infer``, ``close``).
Opened by :func:`edgefuse.models.open_backend` for ``.pt`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgefuse.model.checkpoint import load_model
from edgefuse.runtime.backends import check_feed


class TorchBackend:
    """A ``.pt`` model with torch on the CPU (``threads`` intra-op threads)."""

    name = "torch"

    def __init__(self, path: Path, threads: int = 2):
        self.path = path
        self.net, self.manifest = load_model(path)
        torch.set_num_threads(threads)
        self._torch = torch

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feed(feed, self.manifest, str(self.path))
        torch = self._torch
        with torch.no_grad():
            out = self.net.forward_decoded(
                *[torch.from_numpy(np.ascontiguousarray(feed[k])) for k in self.manifest.inputs]
            )
        return {k: o.numpy() for k, o in zip(self.manifest.outputs, out, strict=True)}

    def heads(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The head tensors before decode: (heatmap, regression)."""
        torch = self._torch
        with torch.no_grad():
            h, r = self.net(*[torch.from_numpy(np.ascontiguousarray(feed[k])) for k in self.manifest.inputs])
        return h.numpy(), r.numpy()

    def close(self) -> None:
        self.net = None
