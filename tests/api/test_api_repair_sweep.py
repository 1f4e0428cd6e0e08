"""The repair sweep runs for the app's lifespan: a dead use case is resolved while the API serves."""

from __future__ import annotations

import contextlib
import time
import warnings
from pathlib import Path

from poolvisor.api.app import create_app
from poolvisor.demo.cluster import seed_demo
from poolvisor.services import open_services

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


class Crash(BaseException):
    pass


def test_the_sweep_starts_and_stops_with_the_app(tmp_path: Path) -> None:
    svc = open_services(f"sqlite:///{tmp_path / 'sweep.db'}", lease_s=0.3)
    try:
        seed_demo(svc, 3)

        def die(*_a: object, **_k: object) -> None:
            raise Crash()

        svc.driver.create = die  # type: ignore[method-assign]
        with contextlib.suppress(Crash):
            svc.workloads.create_workload("demo", "orphan", flavor="small")
        del svc.driver.create
        lines: list[str] = []
        app = create_app(svc, repair_interval=0.1, report=lines.append)
        with TestClient(app):
            deadline = time.monotonic() + 20
            while svc.workloads.list_workloads("demo") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert svc.workloads.list_workloads("demo") == []
            assert len(lines) == 1 and lines[0].startswith("repaired: workload orphan rolled back"), lines
        # after shutdown no sweep runs: a new stuck row stays
        svc.driver.create = die  # type: ignore[method-assign]
        with contextlib.suppress(Crash):
            svc.workloads.create_workload("demo", "later", flavor="small")
        time.sleep(0.6)
        assert [w.state for w in svc.workloads.list_workloads("demo")] == ["placing"]
        assert not svc.repair.check().ok  # stuck past its lease, and reported
    finally:
        svc.close()
