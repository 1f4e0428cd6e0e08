"""Bodies of the pending-creation queue (docs/scheduling.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from poolvisor.api.fields import StrictModel

DisciplineName = Literal["fifo", "priority", "sjf", "round-robin", "drf", "ps-n"]  # policies/queueing.py


class PendingOut(BaseModel):
    """A creation request waiting for capacity (202 from POST /v1/workloads with `wait: true`)."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    project: str
    name: str
    pool: str | None
    priority_class: str
    duration_s: float | None
    demand: dict[str, float]
    attempts: int
    last_error: str | None
    created_at: datetime


class DisciplineIn(StrictModel):
    discipline: DisciplineName


class DisciplineOut(BaseModel):
    pool: str
    discipline: str
