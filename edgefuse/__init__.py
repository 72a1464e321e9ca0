"""edgefuse: camera + LiDAR + radar fusion on the edge."""

__version__ = "0.1.0"
