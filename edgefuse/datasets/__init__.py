"""Public dataset formats read as sources of the frame cache and written by ``edgefuse sim export``
(docs/datasets.md): :mod:`edgefuse.datasets.kitti` (KITTI 3D object), :mod:`edgefuse.datasets.sim_export`
(a simulated drive written in those formats)."""
