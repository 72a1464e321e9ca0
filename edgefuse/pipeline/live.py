"""``edgefuse run``: every sensor of a kit live through the pipeline, logged with its detections."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from edgefuse.errors import InputError
from edgefuse.frames import PipelineConfig
from edgefuse.logs.clock import CLOCK_METADATA, host_clock_metadata
from edgefuse.pipeline.loop import Pipeline
from edgefuse.pipeline.report import write_outputs
from edgefuse.pipeline.signals import StopRequest, install_signals
from edgefuse.pipeline.sinks import LogPolicy, McapSink, make_sinks
from edgefuse.pipeline.timebase import Timebase
from edgefuse.runtime.contract import SensorOffer, check_contract, model_label


def kit_offers(kit) -> dict[str, SensorOffer]:
    """What each sensor of a kit gives, from its driver's declared fields
    (:func:`edgefuse.sources.offered_fields`)."""
    from edgefuse.sources import offered_fields

    return {
        s.id: SensorOffer(s.id, s.kind, offered_fields(s.source, s.kind), s.source.partition("://")[0])
        for s in kit.sensors
    }


def run_live(
    kit_path: str | Path,
    backend,
    out_dir: str | Path,
    *,
    calib_path: str | None = None,
    duration_s: float | None = None,
    config: PipelineConfig = PipelineConfig(),
    udp: str | None = None,
    console: bool = False,
    log_inputs: bool = True,
    log_policy: LogPolicy = LogPolicy(),
    status: TextIO | None = sys.stderr,
) -> dict:
    """``edgefuse run``: every sensor of the kit live (calibration from the kit unless ``calib_path``),
    logged to ``out_dir/run.mcap`` — the detections always, the inputs with ``log_inputs``, on the log's
    own thread, split and stopped on a full disk as ``log_policy`` says (``run_000.mcap`` … when split);
    stops on SIGINT/SIGTERM or after ``duration_s``."""
    from edgefuse.rig import load_calibration, load_kit
    from edgefuse.sources import open_source

    kit = load_kit(kit_path)
    cpath = calib_path or kit.calibration
    if cpath is None:
        raise InputError(f"{kit_path}: calibration: the kit names none; pass --calib FILE")
    calib = load_calibration(cpath)
    notes = check_contract(backend.manifest, kit_offers(kit), model_label(backend))
    base = kit.path.parent if kit.path is not None else Path(kit_path).parent
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    req = StopRequest()
    restore = install_signals(req)
    try:
        log = McapSink(out / "run.mcap", calib, kit, inputs=log_inputs, policy=log_policy,
                       metadata={CLOCK_METADATA: host_clock_metadata()})  # log times are the host clock
        pipe = None
        try:
            # warm up first, then open the sensors: a live sensor queues no stale data meanwhile
            pipe = Pipeline({}, kit, calib, backend, config=config, timebase=Timebase("live"),
                            sinks=make_sinks(udp, console), log=log, status=status)  # fmt: skip
            for s in kit.sensors:
                pipe.add_source(s.id, open_source(s.source, s.id, base))
            req.attach(pipe.stop)
            report = pipe.run(duration_s)
        finally:
            log.close()
            for r in pipe.readers.values() if pipe is not None else ():
                r.source.close()  # also those opened before one failed to open
    finally:
        restore()
    files = [str(f) for f in log.rec.files]
    report.update({"kit": str(kit_path), "contract": notes, "outputs": {"log": files[0], "log_files": files}})
    write_outputs(out, report, list(pipe.records))
    return report
