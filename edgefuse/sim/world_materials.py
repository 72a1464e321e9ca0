"""What the simulated world's things look like and how big they are: materials (car paint in eight colour
families weighted as on the road, clothing, facades, street furniture, the calibration board, corner
reflectors), the calibration target :data:`BOARD_A`, and class-typical box sizes (:data:`SIZE_RANGES`, m).
"""

from __future__ import annotations

import numpy as np

from edgefuse.sim.scene import Board, Material

#: The calibration target the ``calibration-board`` scenario carries (calibration/targets/board-a.yaml).
BOARD_A = Board(cols=8, rows=6, square_m=0.1, margin_m=0.05)


# ================================================================ materials and sizes

_CAR_COLOURS = {  # colour families, roughly as common on the road
    "white": ((235, 235, 232), 0.7),
    "black": ((25, 25, 28), 0.08),
    "silver": ((170, 172, 175), 0.5),
    "grey": ((95, 98, 102), 0.3),
    "red": ((165, 25, 25), 0.35),
    "blue": ((30, 55, 130), 0.25),
    "green": ((30, 80, 50), 0.2),
    "beige": ((190, 170, 130), 0.45),
}
_CAR_WEIGHTS = np.array([0.24, 0.2, 0.16, 0.14, 0.09, 0.09, 0.04, 0.04])
_PED_MATERIALS = tuple(
    Material(f"clothing_{i}", rgb, "skin", 0.25, -5.0)
    for i, rgb in enumerate(
        [(40, 45, 70), (120, 30, 40), (60, 60, 60), (200, 190, 160), (30, 90, 120), (150, 110, 60)]
    )
)
_BUILDING_MATERIALS = tuple(
    Material(f"facade_{i}", rgb, "windows", refl, 25.0)
    for i, (rgb, refl) in enumerate(
        [
            ((150, 70, 55), 0.3),
            ((200, 190, 165), 0.45),
            ((130, 130, 128), 0.35),
            ((225, 220, 210), 0.55),
            ((95, 100, 110), 0.25),
            ((175, 120, 80), 0.35),
        ]
    )
)
_POLE = Material("pole_metal", (120, 122, 125), "plain", 0.5, 5.0)
_TRUNK = Material("tree_trunk", (85, 60, 40), "plain", 0.3, 0.0)
_CANOPY = Material("tree_canopy", (55, 105, 45), "plain", 0.25, -3.0)
_BARRIER = Material("concrete", (175, 172, 165), "plain", 0.4, 15.0)
_RAIL = Material("guard_rail", (185, 188, 190), "stripes", 0.6, 12.0)
_WALL = Material("sound_wall", (125, 135, 120), "stripes", 0.3, 20.0)
_BOARD = Material("calibration_board", (245, 245, 245), "checker", 0.7, 0.0)
_REFLECTOR = Material("corner_reflector", (200, 200, 205), "plain", 2.0, 20.0)

#: Class-typical box sizes (length, width, height) in metres: uniform ranges per class.
SIZE_RANGES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "car": ((3.9, 5.0), (1.7, 2.0), (1.4, 1.8)),
    "pedestrian": ((0.3, 0.6), (0.5, 0.7), (1.55, 1.9)),
    "cyclist": ((1.6, 1.9), (0.5, 0.7), (1.6, 1.9)),
}


def _size(rng: np.random.Generator, label: str) -> np.ndarray:
    return np.array([rng.uniform(lo, hi) for lo, hi in SIZE_RANGES[label]])


def _car_material(rng: np.random.Generator) -> Material:
    name = list(_CAR_COLOURS)[int(rng.choice(len(_CAR_COLOURS), p=_CAR_WEIGHTS))]
    rgb, refl = _CAR_COLOURS[name]
    jitter = rng.integers(-12, 13, 3)
    rgb = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(rgb, jitter, strict=True))
    return Material(f"car_paint_{name}", rgb, "plain", refl, float(rng.uniform(8.0, 13.0)))


def _cyclist_material(rng: np.random.Generator) -> Material:
    rgb = [(230, 120, 20), (20, 140, 200), (200, 200, 40), (180, 30, 60), (40, 40, 40)][int(rng.integers(5))]
    return Material("cyclist", rgb, "stripes", 0.35, float(rng.uniform(-1.0, 2.0)))
