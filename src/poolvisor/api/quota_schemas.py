"""Request and response bodies of project quotas, rate limits and usage (docs/quotas.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from poolvisor.api.fields import INTEGRAL, MAX_MAP_ENTRIES, Amount, ResourceName, StrictModel, TypedMap
from poolvisor.domain.resources import MAX_QUANTITY
from poolvisor.policies.quota import WORKLOADS
from poolvisor.services.quotas import MAX_BURST, MAX_RATE_PER_S


class CountKey:
    """State in the schema that the `workloads` limit is a whole number."""

    def __get_pydantic_json_schema__(self, cs: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        js = handler(cs)
        js["properties"] = {WORKLOADS: {"type": "integer", "minimum": 0, "maximum": MAX_QUANTITY}}
        return js


def _whole_count(limits: dict[str, float]) -> dict[str, float]:
    v = limits.get(WORKLOADS)
    if v is not None and not float(v).is_integer():
        raise ValueError("the workloads limit is a whole number")
    return limits


Limits = Annotated[dict[ResourceName, Amount], Field(max_length=MAX_MAP_ENTRIES), TypedMap(), CountKey(),
                   AfterValidator(_whole_count)]


class RateLimitIn(StrictModel):
    rate_per_s: Annotated[float, Field(gt=0, le=MAX_RATE_PER_S, allow_inf_nan=False)] = Field(
        description="creation requests per second the project's bucket refills")
    burst: Annotated[int, Field(ge=1, le=MAX_BURST), INTEGRAL] = Field(
        description="the bucket's size: requests that may arrive at once")


class RateLimitOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    rate_per_s: float
    burst: int


class QuotaIn(StrictModel):
    """The whole quota of a project (PUT replaces it)."""

    limits: Limits = Field(default_factory=dict, description=(
        "resource (vcpu, memory_mib, disk_gib, gpu, any declared resource) or `workloads` (how many "
        "workloads may hold capacity) -> limit; a missing key is unlimited, an empty map removes "
        "the quota"))
    rate_limit: RateLimitIn | None = Field(default=None, description=(
        "the project's own token bucket for creation requests; null: the server's default "
        "(`poolvisor serve --rate-limit`)"))


class QuotaOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    project: str
    limits: dict[str, float]
    rate_limit: RateLimitOut | None
    updated_at: datetime | None


class UsageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    project: str
    used: dict[str, float] = Field(description="what the project's workloads hold now, per resource, "
                                   "and `workloads`: how many hold capacity")
    limits: dict[str, float]
    available: dict[str, float] = Field(description="what is left under each limit")
    rate_limit: RateLimitOut | None
