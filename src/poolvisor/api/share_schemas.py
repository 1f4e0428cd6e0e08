"""Bodies of fair-share weights, per-resource reservation/limit/shares and pools' allocation
policies (docs/scheduling.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from poolvisor.api.fields import StrictModel

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
