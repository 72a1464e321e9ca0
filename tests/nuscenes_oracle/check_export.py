"""Load an exported nuScenes set with the official devkit and print its LiDAR keyframes' boxes as JSON.

Run in the devkit's environment (``make nuscenes-export-oracle`` does it; README.md):

    .venv-nuscenes/bin/python tests/nuscenes_oracle/check_export.py DATAROOT VERSION [NAME=JSON ...]

``NAME=JSON`` pairs (e.g. ``seed=7 duration_s=1.0``: how the set was exported) are copied into the output.

For each scene (table order), each sample along its ``next`` chain: the sample's LIDAR_TOP sample_data token
and timestamp, and ``nusc.get_boxes(token)`` (global frame): name, annotation token, centre, size w l h,
orientation w x y z, and ``nusc.box_velocity(annotation token)`` (NaN → null). Only the devkit's code reads
the set; this script only formats what it returns.
"""

import json
import math
import sys

from nuscenes.nuscenes import NuScenes


def _num(v: float):
    return None if math.isnan(v) else float(v)


def main(dataroot: str, version: str, meta: list[str]) -> None:
    nusc = NuScenes(version=version, dataroot=dataroot, verbose=False)
    out = {"devkit": "nuscenes-devkit", "version": version}
    for pair in meta:
        name, _, value = pair.partition("=")
        out[name] = json.loads(value)
    out["samples"] = []
    for scene in nusc.scene:
        token = scene["first_sample_token"]
        while token:
            sample = nusc.get("sample", token)
            sd_token = sample["data"]["LIDAR_TOP"]
            sd = nusc.get("sample_data", sd_token)
            boxes = []
            for b in nusc.get_boxes(sd_token):
                boxes.append(
                    {
                        "name": b.name,
                        "token": b.token,
                        "center": [float(v) for v in b.center],
                        "wlh": [float(v) for v in b.wlh],
                        "orientation": [float(v) for v in b.orientation.elements],
                        "velocity": [_num(v) for v in nusc.box_velocity(b.token)],
                    }
                )
            out["samples"].append(
                {
                    "sample_token": token,
                    "lidar_sample_data_token": sd_token,
                    "timestamp": sd["timestamp"],
                    "boxes": boxes,
                }
            )
            token = sample["next"]
    json.dump(out, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: check_export.py DATAROOT VERSION [NAME=JSON ...]")
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
