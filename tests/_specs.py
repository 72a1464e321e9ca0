"""Small shared test fixtures that are plain values (imported by the test modules; pytest puts tests/ on
sys.path)."""

from edgefuse.tensors import TensorSpec

#: A tiny tensor spec (±12.8 m grid, 64×112 images) so model tests train and run in seconds.
TINY_SPEC = TensorSpec(
    image_size=(64, 112),
    x_range=(-12.8, 12.8),
    y_range=(-12.8, 12.8),
    pillar_size=(0.4, 0.4),
    max_pillars=1500,
    max_points_per_pillar=8,
    radar_max_pillars=64,
    radar_max_points_per_pillar=4,
)
