"""Sensor-kit and calibration files: the shipped examples load; malformed files give one clear error."""

from pathlib import Path

import numpy as np
import pytest

from edgefuse.geometry import Transform
from edgefuse.rig import RigFileError, load_calibration, load_kit, save_calibration

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "sensors" / "jetson-orin-usbcam-vlp32c-iwr6843.yaml"


def test_example_kit_and_its_calibration_load():
    kit = load_kit(KIT)
    assert [s.kind for s in kit.sensors] == ["camera", "lidar", "radar", "gnss"]
    assert kit.reference == "lidar_top"
    assert kit.sensor("radar_front").nominal_latency_ns == 12_000_000
    calib = load_calibration(kit.calibration)
    cam = calib.camera("cam_front")
    assert (cam.width, cam.height, cam.model) == (1280, 720, "pinhole")
    # the camera's optical axis (z) points along base_link +x
    np.testing.assert_allclose(calib.T_base("cam_front").rotation @ [0, 0, 1], [1, 0, 0], atol=1e-9)
    # image x (right) is base_link -y
    np.testing.assert_allclose(calib.T_base("cam_front").rotation @ [1, 0, 0], [0, -1, 0], atol=1e-9)


def test_every_shipped_kit_and_calibration_loads():
    kits = sorted((ROOT / "sensors").glob("*.yaml"))
    assert kits
    for path in kits:
        kit = load_kit(path)
        if kit.calibration is not None:
            calib = load_calibration(kit.calibration)
            for s in kit.sensors:
                if s.kind == "camera":
                    calib.camera(s.id)


def test_calibration_round_trip(tmp_path):
    calib = load_calibration(KIT.parent.parent / "calibration" / "jetson-orin-usbcam-vlp32c-iwr6843.yaml")
    calib.extrinsics["lidar_top"] = Transform.from_rpy([1.0, 0.1, 2.0], 0.01, -0.02, 0.03)
    calib.time_offsets_ns["lidar_top"] = -1234567
    out = tmp_path / "c.yaml"
    save_calibration(calib, out)
    back = load_calibration(out)
    np.testing.assert_allclose(
        back.T_base("lidar_top").matrix(), calib.T_base("lidar_top").matrix(), atol=1e-12
    )
    np.testing.assert_array_equal(back.camera("cam_front").K, calib.camera("cam_front").K)
    np.testing.assert_array_equal(back.camera("cam_front").distortion, calib.camera("cam_front").distortion)
    assert back.time_offsets_ns == calib.time_offsets_ns


GOOD_KIT = """version: 1
name: k
sensors:
  - {id: lidar, kind: lidar, source: "velodyne://0.0.0.0:2368?model=VLP32C", rate_hz: 10}
"""


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("version: 2\nname: k\nsensors: []\n", "version", "expected 1"),
        ("name: k\n", "version", "missing"),
        ("version: 1\nsensors: [{}]\n", "name", "missing"),
        (GOOD_KIT.replace("kind: lidar", "kind: sonar"), "sensors[0].kind", "expected one of"),
        (GOOD_KIT.replace("rate_hz: 10", "rate_hz: -1"), "sensors[0].rate_hz", "positive"),
        (GOOD_KIT.replace("rate_hz: 10", "rate_hz: fast"), "sensors[0].rate_hz", "expected a number"),
        (GOOD_KIT.replace('"velodyne://0.0.0.0:2368?model=VLP32C"', "eth0"), "sensors[0].source", "URI"),
        (GOOD_KIT.replace("rate_hz: 10}", "rate_hz: 10, port: 3}"), "sensors[0].port", "unknown key"),
        (GOOD_KIT + "reference: cam\n", "reference", "expected one of the kit's sensor ids"),
        (GOOD_KIT + "name: k2\n", "", "duplicate key 'name'"),
        (
            "version: 1\nname: k\nsensors:\n  - {id: a, kind: lidar, source: x://y, rate_hz: 1}\n"
            "  - {id: a, kind: radar, source: x://y, rate_hz: 1}\n",
            "sensors[1].id",
            "duplicate",
        ),
        ("- just\n- a list\n", "", "expected a mapping"),
        ("version: 1\nname: k\nsensors: [\n", "", "not valid YAML at line"),
    ],
)
def test_malformed_kit_names_file_key_and_expectation(tmp_path, text, key, expected):
    path = tmp_path / "kit.yaml"
    path.write_text(text)
    with pytest.raises(RigFileError) as info:
        load_kit(path)
    assert str(path) in str(info.value)
    assert info.value.key == key
    assert expected in str(info.value)


GOOD_CALIB = """version: 1
cameras:
  cam:
    image_width: 640
    image_height: 480
    distortion_model: plumb_bob
    camera_matrix: {rows: 3, cols: 3, data: [500, 0, 320, 0, 500, 240, 0, 0, 1]}
    distortion_coefficients: {rows: 1, cols: 5, data: [0, 0, 0, 0, 0]}
extrinsics:
  cam: {parent: base_link, translation: [1, 0, 1], rotation: [-0.5, 0.5, -0.5, 0.5]}
"""


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        (
            GOOD_CALIB.replace("[0, 0, 0, 0, 0]", "[0, 0, 0, 0]"),
            "cameras.cam.distortion_coefficients.data",
            "list of 5 numbers",
        ),
        (GOOD_CALIB.replace("plumb_bob", "kannala"), "cameras.cam.distortion_model", "plumb_bob"),
        (
            GOOD_CALIB.replace("[-0.5, 0.5, -0.5, 0.5]", "[0, 0, 0, 2]"),
            "extrinsics.cam.rotation",
            "unit quaternion",
        ),
        (GOOD_CALIB.replace("[1, 0, 1]", "[1, .nan, 1]"), "extrinsics.cam.translation[1]", "finite number"),
        (GOOD_CALIB.replace("0, 500, 240", "0, -500, 240"), "cameras.cam.camera_matrix.data", "fy > 0"),
        (
            GOOD_CALIB.replace("image_width: 640", "image_width: '640'"),
            "cameras.cam.image_width",
            "an integer",
        ),
        (GOOD_CALIB.split("extrinsics:")[0], "extrinsics.cam", "needs its T_base_sensor"),
        (GOOD_CALIB + "time_offsets_ns: {cam: 1.5}\n", "time_offsets_ns.cam", "an integer"),
    ],
)
def test_malformed_calibration_names_file_key_and_expectation(tmp_path, text, key, expected):
    path = tmp_path / "calib.yaml"
    path.write_text(text)
    with pytest.raises(RigFileError) as info:
        load_calibration(path)
    assert str(path) in str(info.value) and info.value.key == key and expected in str(info.value)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(RigFileError, match="file not found"):
        load_calibration(tmp_path / "nope.yaml")
    p = tmp_path / "bin.yaml"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RigFileError, match="UTF-8"):
        load_kit(p)


# ---------------------------------------------------------------- TF chains (`parent:`)

_CHAIN = """version: 1
base_frame: base_link
extrinsics:
  lidar_top: {parent: base_link, translation: [1.2, 0.0, 1.9], rpy_deg: [0.5, -1.0, 90.0]}
  cam_front: {parent: lidar_top, translation: [0.1, -0.3, -0.2], rpy_deg: [-90.0, 0.0, -85.0]}
  cam_left: {parent: cam_front, translation: [0.0, 0.0, -0.05], rpy_deg: [0.0, 30.0, 0.0]}
"""


def _rpy(t, deg) -> Transform:
    return Transform.from_rpy(np.array(t, float), *np.radians(deg))


def test_a_camera_given_relative_to_its_lidar_loads_composed_and_saves_unchanged(tmp_path):
    """A TF chain base → lidar → camera → camera: each sensor's base-frame transform is the product along
    its chain (built here from the file's numbers, not by the loader), and a save keeps the parents and
    the file's relative transforms."""
    p = tmp_path / "chain.yaml"
    p.write_text(_CHAIN)
    c = load_calibration(p)
    T_bl = _rpy([1.2, 0.0, 1.9], [0.5, -1.0, 90.0])
    T_lc = _rpy([0.1, -0.3, -0.2], [-90.0, 0.0, -85.0])
    T_cc = _rpy([0.0, 0.0, -0.05], [0.0, 30.0, 0.0])
    np.testing.assert_allclose(c.T_base("cam_front").matrix(), (T_bl @ T_lc).matrix(), atol=1e-12)
    np.testing.assert_allclose(c.T_base("cam_left").matrix(), (T_bl @ T_lc @ T_cc).matrix(), atol=1e-12)
    assert c.parents == {"cam_front": "lidar_top", "cam_left": "cam_front"}
    save_calibration(c, tmp_path / "saved.yaml")
    import yaml

    saved = yaml.safe_load((tmp_path / "saved.yaml").read_text())["extrinsics"]
    assert {k: v["parent"] for k, v in saved.items()} == {"lidar_top": "base_link", "cam_front": "lidar_top",
                                                          "cam_left": "cam_front"}  # fmt: skip
    np.testing.assert_allclose(saved["cam_front"]["translation"], [0.1, -0.3, -0.2], atol=1e-12)
    again = load_calibration(tmp_path / "saved.yaml")
    for s in ("lidar_top", "cam_front", "cam_left"):
        np.testing.assert_allclose(again.T_base(s).matrix(), c.T_base(s).matrix(), atol=1e-12)


def test_moving_a_parent_moves_its_children_and_a_child_keeps_its_parent(tmp_path):
    """The LiDAR re-calibrated: the cameras given relative to it keep their transform to it; a camera
    re-calibrated (a base-frame result) is written back relative to its LiDAR."""
    p = tmp_path / "chain.yaml"
    p.write_text(_CHAIN)
    c = load_calibration(p)
    rel = c.T_base("lidar_top").inverse() @ c.T_base("cam_left")
    c.set_T_base("lidar_top", _rpy([1.0, 0.1, 2.0], [0.0, 0.0, 89.0]))
    moved = c.T_base("lidar_top").inverse() @ c.T_base("cam_left")
    np.testing.assert_allclose(moved.matrix(), rel.matrix(), atol=1e-12)
    new_cam = _rpy([1.5, 0.0, 1.5], [-90.0, 0.0, -90.0])
    c.set_T_base("cam_front", new_cam)
    save_calibration(c, tmp_path / "s.yaml")
    back = load_calibration(tmp_path / "s.yaml")
    assert back.parents["cam_front"] == "lidar_top"
    np.testing.assert_allclose(back.T_base("cam_front").matrix(), new_cam.matrix(), atol=1e-12)


@pytest.mark.parametrize(
    "old, new, why",
    [
        ("cam_front: {parent: lidar_top", "cam_front: {parent: lidar_rear", "lidar_rear"),  # unknown
        ("lidar_top: {parent: base_link", "lidar_top: {parent: cam_left", "cycle"),  # lidar→cam→cam→lidar
    ],
)
def test_an_unknown_parent_or_a_cycle_is_an_error_naming_the_key(tmp_path, old, new, why):
    p = tmp_path / "bad.yaml"
    p.write_text(_CHAIN.replace(old, new))
    with pytest.raises(RigFileError, match=rf"extrinsics\.\w+\.parent.*{why}"):
        load_calibration(p)


def test_numbers_in_every_yaml_notation(tmp_path):
    """``3e-4`` is a float in YAML 1.2 (and in every tool that writes it) but a string to PyYAML's 1.1
    resolver: a distortion coefficient written that way was refused as 'not a number'."""
    text = _CHAIN.replace("translation: [0.1, -0.3, -0.2]", "translation: [1e-1, -3E-1, -2e-1]")
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    c = load_calibration(p)
    np.testing.assert_allclose(c.T_parent("cam_front").translation, [0.1, -0.3, -0.2], atol=1e-12)
