"""``edgefuse replay``: a recorded log through the pipeline, paced, as fast as possible or deterministic."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from edgefuse.errors import InputError
from edgefuse.frames import PipelineConfig
from edgefuse.logs.clock import CLOCK_METADATA
from edgefuse.pipeline.deterministic import run_deterministic
from edgefuse.pipeline.loop import Pipeline
from edgefuse.pipeline.report import write_outputs
from edgefuse.pipeline.signals import StopRequest, install_signals
from edgefuse.pipeline.sinks import LogPolicy, McapSink, make_sinks
from edgefuse.pipeline.timebase import Timebase
from edgefuse.runtime.contract import SensorOffer, check_contract, model_label


def kit_for_log(reader, kit_path: str | None):
    """The kit of a log: ``kit_path`` when given, else the simulator's kit when the log's sensors are its
    sensors (refused, naming both, when they are not)."""
    from edgefuse.rig import load_kit
    from edgefuse.sim.rig import sim_kit

    if kit_path is not None:
        return load_kit(kit_path)
    kit = sim_kit()
    ids = {t.sensor_id for t in reader.topics().values() if t.sensor_id}
    kit_ids = {s.id for s in kit.sensors}
    if kit.reference not in ids or not ids & kit_ids:
        raise InputError(
            f"{reader.path if hasattr(reader, 'path') else 'log'}: sensors {sorted(ids)} are not the "
            f"simulator's {sorted(kit_ids)}; pass --kit KIT.yaml describing the logged rig"
        )
    return kit


def log_offers(reader, kit) -> dict[str, SensorOffer]:
    """What each sensor of ``kit`` gives in the log: the fields of its first LiDAR/radar message (None
    when the log has no message of it: a sensor absent from the log is missing from every frame)."""
    topics = reader.topics()
    out = {}
    for s in kit.sensors:
        mine = sorted(t.topic for t in topics.values() if t.sensor_id == s.id and t.payload)
        fields = None
        if mine and s.kind in ("lidar", "radar"):
            for _t, m in reader.messages(mine[:1]):
                fields = tuple(m.payload.fields)
                break
        out[s.id] = SensorOffer(s.id, s.kind, fields, "log" if mine else "log, no messages")
    return out


def run_replay(
    log_path: str | Path | Sequence[str | Path],
    backend,
    out_dir: str | Path,
    *,
    rate: float | None = 1.0,
    deterministic: bool = False,
    kit_path: str | None = None,
    calib_path: str | None = None,
    config: PipelineConfig = PipelineConfig(),
    udp: str | None = None,
    console: bool = False,
    log_inputs: bool = False,
    log_policy: LogPolicy = LogPolicy(),
    status: TextIO | None = None,
    handle_signals: bool = True,
) -> dict:
    """``edgefuse replay``: the log through the pipeline (``rate`` × real time, None = as fast as
    possible; ``deterministic``: every frame, one thread). ``log_path``: an MCAP file, a directory of
    split files, or a list of them, read as one log (:mod:`edgefuse.logs.logset`). Writes
    ``out_dir/detections.mcap`` (the detections, the calibration, the inputs too with ``log_inputs``;
    split and stopped on a full disk as ``log_policy`` says) and the latency outputs; returns the
    report."""
    from edgefuse.logs.logset import LogSet, log_files
    from edgefuse.logs.source import McapSource
    from edgefuse.rig import load_calibration

    paths = log_files([log_path] if isinstance(log_path, (str, Path)) else list(log_path))
    reader = LogSet(paths)
    kit = kit_for_log(reader, kit_path)
    calib = load_calibration(calib_path) if calib_path else reader.calibration()
    if calib is None:
        raise InputError(f"{reader.path}: no calibration attachment; pass --calib FILE")
    notes = check_contract(backend.manifest, log_offers(reader, kit), model_label(backend))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sinks = make_sinks(udp, console)
    req = StopRequest()
    restore = install_signals(req) if handle_signals else (lambda: None)
    try:
        clock_meta = reader.metadata().get(CLOCK_METADATA)
        # log times stay the source log's: so does its wall-clock offset
        meta = {CLOCK_METADATA: clock_meta} if clock_meta is not None else None
        log = McapSink(out / "detections.mcap", calib, kit, inputs=log_inputs, policy=log_policy,
                       block=deterministic, metadata=meta)  # fmt: skip
        try:
            if deterministic:
                stop = threading.Event()
                req.attach(lambda _n: stop.set())
                messages = (m for _t, m in reader.messages())
                report, records = run_deterministic(messages, kit, calib, backend, config=config,
                                                    sinks=sinks, log=log, stop=stop)  # fmt: skip
                if req.name:
                    report["stopped"] = req.name
            else:
                src = McapSource(f"mcap://{paths[0]}", paths, rate=rate)
                pipe = Pipeline({"log": src}, kit, calib, backend, config=config,
                                timebase=Timebase("paced", rate) if rate else Timebase("event"),
                                sinks=sinks, log=log, status=status)  # fmt: skip
                req.attach(pipe.stop)
                report = pipe.run()
                records = list(pipe.records)
        finally:
            log.close()  # idempotent: the run closed it already unless set-up failed
    finally:
        restore()
    files = [str(f) for f in log.rec.files]
    report.update({"log": str(paths[0]) if len(paths) == 1 else [str(p) for p in paths],
                   "rate": rate if not deterministic else None, "deterministic": deterministic,
                   "contract": notes, "outputs": {"log": files[0], "log_files": files}})  # fmt: skip
    write_outputs(out, report, records)
    return report
