import numpy as np
import pytest

from edgefuse.types import Box3D, Detection, FrameSet, Image, Message, PointCloud, RadarScan


def test_pointcloud_named_columns():
    data = np.arange(20, dtype=np.float32).reshape(4, 5)
    pc = PointCloud(data, ("x", "y", "z", "intensity", "t_ns"))
    assert len(pc) == 4
    np.testing.assert_array_equal(pc.column("t_ns"), data[:, 4])
    np.testing.assert_array_equal(pc.xyz, data[:, :3])
    with pytest.raises(KeyError, match="ring"):
        pc.column("ring")


def test_xyz_when_columns_are_not_adjacent():
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    pc = PointCloud(data, ("intensity", "x", "z", "y"))
    np.testing.assert_array_equal(pc.xyz, data[:, [1, 3, 2]])


@pytest.mark.parametrize(
    ("data", "fields", "match"),
    [
        (np.zeros((3, 4), np.float64), ("x", "y", "z", "intensity"), "dtype float32"),
        (np.zeros((3, 3), np.float32), ("x", "y", "z", "intensity"), "4 names"),
        (np.zeros((3, 3), np.float32), ("x", "y", "z"), "missing required"),
        (np.zeros((3, 4), np.float32), ("x", "x", "z", "intensity"), "duplicate"),
        (np.zeros(12, np.float32), ("x", "y", "z", "intensity"), "2 dimensions"),
    ],
)
def test_pointcloud_rejects(data, fields, match):
    with pytest.raises((TypeError, ValueError), match=match):
        PointCloud(data, fields)


def test_radar_needs_xyz_only():
    scan = RadarScan(np.zeros((2, 5), np.float32), ("x", "y", "z", "vx", "vy"))
    assert scan.has("vx") and not scan.has("doppler")


def test_image_must_be_rgb_uint8():
    Image(np.zeros((4, 6, 3), np.uint8))
    with pytest.raises(ValueError, match="3 columns"):
        Image(np.zeros((4, 6, 4), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        Image(np.zeros((4, 6, 3), np.float32))


def test_message_stamps_are_integer_ns():
    img = Image(np.zeros((2, 2, 3), np.uint8))
    m = Message("cam", 1_000_000_123, img)
    assert m.raw_stamp_ns == m.recv_ns == 1_000_000_123 and m.frame == "cam"
    m = Message("cam", np.int64(5), img, raw_stamp_ns=7, recv_ns=9)
    assert (m.stamp_ns, m.raw_stamp_ns, m.recv_ns) == (5, 7, 9) and type(m.stamp_ns) is int
    with pytest.raises(TypeError, match="stamp_ns"):
        Message("cam", 1.5e9, img)


def test_box_corners_follow_yaw():
    box = Box3D([10.0, 5.0, 1.0], [4.0, 2.0, 1.5], np.pi / 2)
    c = box.corners()
    # yaw 90°: the box's length runs along +y; its front-left bottom corner is at (x - w/2, y + l/2)
    np.testing.assert_allclose(c[0], [10.0 - 1.0, 5.0 + 2.0, 0.25], atol=1e-12)
    np.testing.assert_allclose(c.mean(axis=0), box.center, atol=1e-12)
    with pytest.raises(ValueError, match="positive"):
        Box3D([0, 0, 0], [1, 0, 1], 0)


def test_detection_validates_label_and_score():
    box = Box3D([0, 0, 0], [1, 1, 1], 0)
    Detection("car", 0.5, box)
    with pytest.raises(ValueError, match="one of"):
        Detection("truck", 0.5, box)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Detection("car", 1.5, box)


def test_frameset_reports_missing():
    img = Image(np.zeros((2, 2, 3), np.uint8))
    fs = FrameSet(100, {"cam": Message("cam", 90, img), "radar": None}, {"cam": -10})
    assert fs.missing == ("radar",)
