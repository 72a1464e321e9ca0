"""`edgefuse demo` end to end on a short drive: the log it writes is complete and its pictures exist."""

import json

import cv2

from edgefuse.cli import main
from edgefuse.logs import LogReader


def test_demo_writes_log_summary_and_pictures(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--duration", "1.0", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    reader = LogReader(out / "sim.mcap")
    assert not reader.truncated and not reader.errors
    counts = {name: info.count for name, info in reader.topics().items()}
    assert {k: v["count"] for k, v in summary["topics"].items()} == counts
    assert counts["/lidar_top/points"] == 10 and counts["/radar_front/points"] == 20
    assert summary["messages"] == sum(
        c for t, c in counts.items() if t not in ("/tf_static", "/cam_front/camera_info")
    )
    for key, shape in (("camera_png", (720, 1280, 3)), ("bev_png", None)):
        img = cv2.imread(summary[key])
        assert img is not None and img.std() > 10
        if shape:
            assert img.shape == shape
    assert json.loads((out / "summary.json").read_text()) == summary
