"""Utilization: workloads' CPU samples in bulk (monitoring agents), and one workload's history.

Members record and read their own project's workloads only (others are 404, as everywhere); admins
name the project per sample (default 'default'). A batch is stored all or nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from poolvisor.api.auth import SvcDep, Who, scope_project
from poolvisor.api.errors import errors
from poolvisor.api.fields import QUERY_FLOAT, QUERY_INT, IsoDateTime, NamePath
from poolvisor.api.routes.workloads import DEFAULT_PROJECT, ProjectQ, locate_workload
from poolvisor.api.schemas import UtilizationIn, UtilizationOut, UtilizationRecorded

router = APIRouter(tags=["utilization"])


@router.post("/v1/utilization", status_code=201, response_model=UtilizationRecorded,
             responses=errors(401, 404, 413, 422, 503))
def record_utilization(body: UtilizationIn, svc: SvcDep, who: Who) -> UtilizationRecorded:
    """Store CPU samples (fraction of each workload's vCPU demand in use); all or none.

    The body is limited to 4 MiB (413 above it)."""
    samples = []
    for x in body.samples:
        project = scope_project(who, x.project, default=DEFAULT_PROJECT)
        samples.append(((str(project), x.workload), x.time, x.cpu))
    return UtilizationRecorded(recorded=svc.utilization.record_utilization(samples))


@router.get("/v1/workloads/{name}/utilization", response_model=UtilizationOut,
            responses=errors(401, 404, 409, 422, 503))
def workload_utilization(
    name: NamePath, svc: SvcDep, who: Who, project: ProjectQ = None,
    interval: Annotated[float, Query(ge=1, le=604800, allow_inf_nan=False,
                                     description="bucket length in seconds"), QUERY_FLOAT] = 300.0,
    steps: Annotated[Annotated[int, Field(ge=1, le=10_000), QUERY_INT] | None,
                     Query(description="the last N buckets (not with `since`)")] = None,
    since: Annotated[IsoDateTime | None, Query(description="first instant (ISO 8601; no offset = UTC; "
                                                           "not with `steps`)")] = None,
    until: Annotated[IsoDateTime | None, Query(description="last instant (default: the latest sample; "
                                                           "not before `since`)")] = None,
) -> UtilizationOut:
    """The workload's recorded CPU use on a regular grid.

    Rules OpenAPI cannot state, answered with 422: `steps` and `since` exclude each other; `since`
    must not be after `until`; the workload needs recorded samples up to the end; the window spans
    at most 10,000 buckets."""
    where = locate_workload(svc, who, name, project)
    if steps is None and since is None:
        steps = 288
    h = svc.utilization.utilization_history([(where, name)], interval, steps=steps, since=since, until=until)
    assert h.start_s is not None
    return UtilizationOut(project=where, workload=name, interval_s=h.interval_s,
                          start=datetime.fromtimestamp(h.start_s, UTC), cpu=h.util[0].tolist())
