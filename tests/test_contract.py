"""The model ↔ kit contract: every kit the README offers for the bundled model passes; a kit whose radar
lacks a field the model needs is refused at start, naming the sensor, the field and what the driver gives;
optional radar power fields (RCS, SNR) are fed with a 0/1 flag and masked where the radar lacks them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from edgefuse.model.config import edge_spec
from edgefuse.pipeline.live import kit_offers
from edgefuse.rig import load_kit
from edgefuse.runtime.contract import ContractError, SensorOffer, check_contract
from edgefuse.runtime.feed import mask_radar_fields
from edgefuse.runtime.manifest import Manifest
from edgefuse.tensors import TensorBuilder, TensorSpec
from edgefuse.types import FrameSet, Message, RadarScan

ROOT = Path(__file__).resolve().parents[1]
TI_CAPTURE = Path(__file__).parent / "data" / "ti_mmwave" / "capture_3x.dat"


def _manifest(spec: TensorSpec) -> Manifest:
    return Manifest(spec.to_dict(), {}, {}, list(spec.classes), ["images"], ["boxes"])


def _readme_kits() -> list[Path]:
    """The sensor kits the README offers for the bundled model (its "Sensor kits" section)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Sensor kits for the bundled model", 1)[1].split("\n## ", 1)[0]
    names = sorted(set(re.findall(r"`sensors/([\w.-]+\.yaml)`", section)))
    return [ROOT / "sensors" / n for n in names]


def test_every_readme_kit_runs_the_bundled_model():
    from edgefuse.runtime.bundled import FILES
    from edgefuse.runtime.manifest import read_onnx_manifest

    kits = _readme_kits()
    assert {k.name for k in kits} >= {"sim-default.yaml", "jetson-orin-usbcam-vlp32c-iwr6843.yaml"}
    manifest = read_onnx_manifest(FILES["int8"])
    for kit_path in kits:
        notes = check_contract(manifest, kit_offers(load_kit(kit_path)), "bundled")
        if "ti-mmwave" in kit_path.read_text():  # the TI radar gives SNR, not RCS: RCS is masked, said so
            assert any("'rcs'" in n and "masked" in n for n in notes), notes


def test_readme_offers_the_kits_it_names():
    for kit in _readme_kits():
        assert kit.is_file(), f"README names {kit.name}, which is not in sensors/"


def test_a_radar_without_a_required_field_is_refused_naming_sensor_field_and_driver():
    kit = load_kit(ROOT / "sensors" / "jetson-orin-usbcam-vlp32c-iwr6843.yaml")
    # a model that (like the first bundled one) needs RCS from every radar: the TI radar gives SNR
    old = TensorSpec(**{**edge_spec().to_dict(), "radar_features": ("x", "y", "z", "doppler", "rcs"),
                        "radar_optional_features": ()})  # fmt: skip
    with pytest.raises(ContractError) as e:
        check_contract(_manifest(old), kit_offers(kit), "old.onnx")
    msg = str(e.value)
    assert "'radar_front'" in msg and "'rcs'" in msg and "ti-mmwave" in msg and "snr" in msg
    assert "\n" not in msg
    # a radar that reports velocity vectors and no doppler (nuScenes' ARS 408 files)
    nuscenes = SensorOffer("radar_front", "radar", ("x", "y", "z", "vx", "vy", "rcs"), "nuscenes-radar")
    offers = {**kit_offers(kit), "radar_front": nuscenes}
    with pytest.raises(ContractError, match=r"radar 'radar_front' must give 'doppler'.*nuscenes-radar"):
        check_contract(_manifest(edge_spec()), offers, "edge.onnx")


def test_miskinded_sensors_are_refused_and_missing_sensors_and_unknown_fields_are_noted():
    spec = edge_spec()
    offers = {
        "cam_front": SensorOffer("cam_front", "camera", None, "v4l2"),
        "lidar_top": SensorOffer("lidar_top", "lidar", None, "pcd"),
        "radar_front": SensorOffer("radar_front", "radar", ("x", "y", "z", "doppler", "rcs", "snr"), "sim"),
    }
    notes = check_contract(_manifest(spec), offers, "m.onnx")
    assert notes == ["lidar_top (pcd): fields known once data arrive; needs ['intensity']"]
    kit = {k: v for k, v in offers.items() if k != "cam_front"}
    no_camera = check_contract(_manifest(spec), kit, "m.onnx")
    assert no_camera[0] == ("cam_front: not in the kit (its cameras: none); the model's camera input "
                            "stays empty")
    bad = {**offers, "lidar_top": SensorOffer("lidar_top", "radar", None, "ti-mmwave")}
    with pytest.raises(ContractError, match=r"needs 'lidar_top' as a lidar; the kit has it as a radar"):
        check_contract(_manifest(spec), bad, "m.onnx")


def test_live_run_refuses_before_opening_any_device(tmp_path):
    """``run`` holds the model against the kit first: the kit's devices (/dev/video0, UDP 2368, ttyUSB0)
    do not exist here, so reaching them would fail differently."""
    from edgefuse.pipeline.live import run_live

    old = TensorSpec(**{**edge_spec().to_dict(), "radar_features": ("x", "y", "z", "doppler", "rcs"),
                        "radar_optional_features": ()})  # fmt: skip

    class Backend:
        name, path, manifest = "onnxruntime", "old.onnx", _manifest(old)

    with pytest.raises(ContractError, match=r"old\.onnx: radar 'radar_front' must give 'rcs'"):
        run_live(ROOT / "sensors" / "jetson-orin-usbcam-vlp32c-iwr6843.yaml", Backend(), tmp_path,
                 duration_s=1)
    assert not (tmp_path / "run.mcap").exists()


def test_optional_radar_fields_are_value_plus_flag_and_masked_where_missing():
    from edgefuse.adapters.ti_mmwave import open_ti_mmwave
    from edgefuse.sim.rig import sim_calibration

    spec = edge_spec()
    assert spec.radar_channels == ("x", "y", "z", "doppler", "rcs", "rcs_valid", "snr", "snr_valid")
    builder = TensorBuilder(spec, sim_calibration())
    # real TI frames (SNR, no RCS) as the front radar
    ti = next(m for m in open_ti_mmwave(f"ti-mmwave-file://{TI_CAPTURE}", sensor_id="radar_front")
              if len(m.payload.data))  # fmt: skip
    scan = ti.payload
    fs = FrameSet(ti.stamp_ns, {"radar_front": Message("radar_front", ti.stamp_ns, scan)})
    inputs = builder.build(fs)
    n = int(inputs.radar_counts.sum())
    assert n > 0
    pts = inputs.radar_pillars[inputs.radar_counts > 0]
    real = np.concatenate([p[: c] for p, c in zip(pts, inputs.radar_counts[inputs.radar_counts > 0],
                                                 strict=True)])  # fmt: skip
    ch = spec.radar_channels
    assert np.all(real[:, ch.index("rcs")] == 0) and np.all(real[:, ch.index("rcs_valid")] == 0)
    assert np.all(real[:, ch.index("snr_valid")] == 1)
    snr = np.sort(scan.data[:, scan.fields.index("snr")])
    assert np.allclose(np.sort(real[:, ch.index("snr")]), snr[: len(real)] if len(real) < len(snr) else snr)
    # a radar with both: both flags set; masking one zeroes its value and flag only
    both = RadarScan(np.array([[5.0, 1.0, 0.5, -2.0, 7.5, 12.0]], np.float32),
                     ("x", "y", "z", "doppler", "rcs", "snr"))  # fmt: skip
    inputs = builder.build(FrameSet(0, {"radar_front": Message("radar_front", 0, both)}))
    feed = {"radar_pillars": inputs.radar_pillars}
    p = inputs.radar_pillars[inputs.radar_counts > 0][0, 0]
    assert p[ch.index("rcs")] == 7.5 and p[ch.index("rcs_valid")] == 1
    assert p[ch.index("snr")] == 12.0 and p[ch.index("snr_valid")] == 1
    masked = mask_radar_fields(feed, spec, ["rcs"])["radar_pillars"][inputs.radar_counts > 0][0, 0]
    assert masked[ch.index("rcs")] == 0 and masked[ch.index("rcs_valid")] == 0
    assert masked[ch.index("snr")] == 12.0 and masked[ch.index("doppler")] == p[ch.index("doppler")]
    with pytest.raises(Exception, match="optional radar fields"):
        mask_radar_fields(feed, spec, ["doppler"])


def test_replay_checks_the_log_it_reads(tmp_path):
    """``replay`` takes each sensor's fields from the log's first message: the simulator's radar gives
    RCS and SNR (both used), a field no radar of the log gives is refused before any frame."""
    from edgefuse.logs import LogReader
    from edgefuse.pipeline.replay import kit_for_log, log_offers, run_replay
    from edgefuse.sim.run import record

    log = tmp_path / "sim.mcap"
    record(log, "default", 0, 1.0, progress=False)
    reader = LogReader(log)
    offers = log_offers(reader, kit_for_log(reader, None))
    radar = offers["radar_front"].fields
    assert radar is not None and {"rcs", "snr"} <= set(radar)
    assert check_contract(_manifest(edge_spec()), offers, "edge.onnx") == []  # nothing masked or unknown
    power = TensorSpec(**{**edge_spec().to_dict(), "radar_features": ("x", "y", "z", "doppler", "power")})

    class Backend:
        name, path, manifest = "onnxruntime", "power.onnx", _manifest(power)

    with pytest.raises(ContractError, match=r"power\.onnx: radar 'radar_front' must give 'power'; its"):
        run_replay(log, Backend(), tmp_path / "out", deterministic=True)
    assert not (tmp_path / "out" / "detections.mcap").exists()
