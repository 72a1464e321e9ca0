"""Rig calibration: camera intrinsics, LiDAR→camera and radar→LiDAR extrinsics, time offsets, checks and
importers (docs/calibration.md). Command line: ``edgefuse calibrate …`` (:mod:`edgefuse.calib.commands`)."""
