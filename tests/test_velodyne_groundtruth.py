"""The real VLP-32C capture decoded by us against the Autoware nebula driver's own decoded cloud, in both
directions, side by side with velodyne-decoder (a maintained C++ decoder) on the same capture.

Nothing here is taken from our decoder's output as an expectation: which scan the ground truth covers
and the crop it applies are found from the ground truth itself (its points are matched against each
decoded sweep and each data block); velodyne-decoder's numbers are computed live."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgefuse.adapters.velodyne import decode_packets, load_velodyne_calibration, open_velodyne
from edgefuse.adapters.velodyne.pcap import read_udp_payloads

cKDTree = pytest.importorskip("scipy.spatial").cKDTree
pypcd4 = pytest.importorskip("pypcd4")
vd = pytest.importorskip("velodyne_decoder")

DATA = Path(__file__).parent / "data" / "velodyne_vlp32c"
PCAP = DATA / "DERIVED_vlp32c_from_rosbag2.pcap"
YAML = DATA / "VLP32.calibration.yaml"
PCD = DATA / "1713492677464078412.pcd"


def within(a: np.ndarray, b: np.ndarray, tol: float) -> float:
    """Fraction of points of ``a`` that have a point of ``b`` within ``tol`` metres."""
    d, _ = cKDTree(b).query(a, distance_upper_bound=tol)
    return float(np.mean(d <= tol))


@pytest.fixture(scope="module")
def gt() -> np.ndarray:
    pc = pypcd4.PointCloud.from_path(PCD)
    assert pc.fields[:3] == ("x", "y", "z")
    return pc.numpy()[:, :3].astype(np.float32)


def test_ground_truth_scan_and_crop_are_found_and_matched(gt):
    cal = load_velodyne_calibration(YAML, model="VLP32C")
    payloads = [p for _, p in read_udp_payloads(PCAP, 2368)]
    d = decode_packets(payloads, cal)
    bounds = d.packet_bounds()

    # The sensor only outputs 270°..90°: cut sweeps in the gap (after the largest block-azimuth jump).
    az = d.block_azimuth.astype(np.int64).ravel()
    jump = int(np.argmax(np.diff(az) % 36000))
    cut_deg = az[jump + 1] / 100.0
    assert 265 < cut_deg < 275
    sweeps = list(open_velodyne(f"pcap://{PCAP}?model=VLP32C&calib={YAML}&cut={cut_deg}"))
    # each sweep is a run of whole packets of the decoded stream
    ends = np.searchsorted(bounds, np.cumsum([len(m.payload) for m in sweeps]))
    starts = np.concatenate([[0], ends[:-1]])
    for m, s, e in zip(sweeps, starts, ends, strict=True):
        np.testing.assert_array_equal(m.payload.xyz, d.xyz[bounds[s] : bounds[e]])

    # Which scan: the sweep that explains the most ground-truth points, clearly ahead of the others.
    cover = [within(gt, m.payload.xyz, 0.02) for m in sweeps]
    best = int(np.argmax(cover))
    assert best == 0 and cover[best] > max(cover[1:]) + 0.03
    p0, p1 = starts[best], ends[best]
    assert (p0, p1) == (0, 76)  # = the bag's first VelodyneScan message (76 packets)

    # The crop: which data blocks of that scan are in the ground truth at all. A block is in it when
    # points of it coincide (≤ 2 mm) with ground-truth points; 5 cm would also pick up the neighbouring
    # blocks of this static scene.
    pts = slice(bounds[p0], bounds[p1])
    xyz = d.xyz[pts]
    blk = d.flat[pts] >> 5  # (packet, block) of each point
    near = cKDTree(gt).query(xyz, distance_upper_bound=0.002)[0] <= 0.002
    blocks, inv = np.unique(blk, return_inverse=True)
    kept = np.bincount(inv, near) / np.bincount(inv) > 0.1
    block_az = d.block_azimuth.ravel()[blocks]
    front = (block_az >= 27000) | (block_az <= 9000)
    assert kept.sum() > 0.95 * len(blocks)
    # kept blocks are exactly the ones with a block azimuth in [270°, 90°] through 0°: a field-of-view
    # crop on the block (encoder) azimuth — not on the beam azimuth, which the rot corrections spread
    np.testing.assert_array_equal(kept, front)
    # ranges: the crop's range limits do not bind (both span the same closest/farthest returns)
    r_gt, r_ours = np.linalg.norm(gt, axis=1), np.linalg.norm(xyz, axis=1)
    assert abs(r_gt.min() - r_ours.min()) < 0.005 and abs(r_gt.max() - r_ours.max()) < 0.005

    ours = xyz[front[inv]]
    assert abs(len(ours) - len(gt)) <= 0.005 * len(gt)
    ours_1, ours_2, ours_5 = (within(gt, ours, t) for t in (0.01, 0.02, 0.05))
    extra = 1.0 - within(ours, gt, 0.02)  # decoded points with no ground-truth point within 2 cm

    # velodyne-decoder on the same capture and calibration: its best-matching scan, no crop needed in
    # this direction (ground truth → decoded)
    cfg = vd.Config(model=vd.Model.VLP32C, calibration=vd.Calibration.read(str(YAML)))
    theirs = [s.points[:, :3] for s in vd.read_pcap(str(PCAP), cfg)]
    their_best = max(theirs, key=lambda p: within(gt, p, 0.02))
    vd_1, vd_2 = within(gt, their_best, 0.01), within(gt, their_best, 0.02)
    print(
        f"\nGT→ours ≤1cm {ours_1:.4f} ≤2cm {ours_2:.4f} ≤5cm {ours_5:.4f}; ours→GT >2cm {extra:.4f}; "
        f"GT→velodyne-decoder ≤1cm {vd_1:.4f} ≤2cm {vd_2:.4f}"
    )
    assert ours_1 >= vd_1 and ours_2 >= vd_2
    assert ours_5 >= 0.999
    assert extra <= 0.01
