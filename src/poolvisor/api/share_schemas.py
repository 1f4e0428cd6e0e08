"""Bodies of fair-share weights, per-resource reservation/limit/shares and pools' allocation
policies (docs/scheduling.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from poolvisor.api.fields import MAX_MAP_ENTRIES, Amount, ResourceName, StrictModel, TypedMap

Weight = Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False,
                                description="fair-share weight (drf): a project with weight 2 is "
                                "served twice the dominant share of one with weight 1")]
AllocationPolicyName = Literal["min", "max", "balanced"]  # policies/shares.py


class WeightIn(StrictModel):
    weight: Weight


class AllocationPolicyIn(StrictModel):
    policy: AllocationPolicyName


class AllocationPolicyOut(BaseModel):
    pool: str
    policy: str


Amounts = Annotated[dict[ResourceName, Amount], Field(max_length=MAX_MAP_ENTRIES), TypedMap()]
Shares = Annotated[dict[ResourceName, Annotated[float, Field(ge=1, le=1e6, allow_inf_nan=False)]],
                   Field(max_length=MAX_MAP_ENTRIES), TypedMap()]
RESERVATION_DOC = ("per resource of the demand: the guaranteed minimum (default: the limit); the "
                   "pool's allocation policy decides what is set aside (docs/scheduling.md)")
LIMIT_DOC = "per resource of the demand: the most it may use (default: the demand)"
SHARES_DOC = "per resource: weight under contention, 1..1e6 (default 1000, normal)"


class ResourceSpecOut(BaseModel):
    reservation: float
    limit: float
    shares: float
