"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sim_log(tmp_path_factory) -> Path:
    """2.5 s of the simulator's default scenario, seed 0 (every sensor): recorded once per session, read
    only (the pipeline tests replay it)."""
    from edgefuse.sim.run import record

    path = tmp_path_factory.mktemp("pipeline") / "sim.mcap"
    record(path, "default", 0, 2.5, progress=False)
    return path
