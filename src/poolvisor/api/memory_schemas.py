"""Request and response bodies of the memory pool API (overcommit, reservations, reclaim, report)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from poolvisor.api.schemas import _In, _Out
from poolvisor.services.memory import MAX_RATIO

Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]


class MemoryOvercommit(_In):
    ratio: Annotated[float, Field(gt=0, le=MAX_RATIO, allow_inf_nan=False)] = Field(
        description="allocatable memory = physical x ratio, on every host of the pool"
    )


class MemoryOvercommitOut(_Out):
    pool: str
    ratio: float
    changed: list[str] = Field(description="hosts whose ratio changed")


class MemoryReservation(_In):
    mib: Annotated[float, Field(ge=0, le=1e15, allow_inf_nan=False)] = Field(
        description="memory never reclaimed by the balloon (0 clears); at most the workload's demand"
    )


class MemoryReservationOut(_Out):
    project: str
    workload: str
    reserved_mib: float


class MemoryReclaimRequest(_In):
    threshold: Fraction = Field(
        default=0.9,
        description="reclaim when a host's ballooned memory exceeds this fraction of its physical memory",
    )
    target_ratio: Fraction = Field(
        default=0.8 / 0.9, description="reclaim down to threshold x this; below it memory is given back"
    )


class GuestChangeOut(_Out):
    workload: str
    before_mib: float
    after_mib: float
    floor_mib: float = Field(description="its reservation or working set: never reclaimed")


class HostReclaimOut(_Out):
    host: str
    capacity_mib: float
    pressure_before: float
    pressure_after: float
    reclaimed_mib: float
    returned_mib: float
    overflow_mib: float = Field(description="floors above physical memory: the host cannot back them")
    changes: list[GuestChangeOut]


class FlavorFitOut(_Out):
    flavor: str
    fits: int = Field(description="instances that can still be placed")


class MemoryReportOut(_Out):
    pool: str
    hosts: int
    memory_overcommit: dict[str, float] = Field(description="ratio -> number of hosts with it")
    memory: dict[str, float] = Field(
        description="physical, allocatable, allocated, reserved, ballooned_away (MiB)"
    )
    free: dict[str, float] = Field(description="free capacity by resource (up hosts)")
    stranded: dict[str, float] = Field(description="free capacity on hosts where no flavor fits")
    stranded_hosts: int
    flavors: list[FlavorFitOut]
    largest_flavor: str | None = Field(description="the largest flavor that can still be placed")
