"""Project quotas, rate limits and usage: admins set them, the project's own tokens read them."""

from __future__ import annotations

from fastapi import APIRouter

from poolvisor.api.auth import Admin, SvcDep, Who, scope_project
from poolvisor.api.errors import errors
from poolvisor.api.fields import NamePath
from poolvisor.api.quota_schemas import QuotaIn, QuotaOut, UsageOut
from poolvisor.services.quotas import RateLimit

router = APIRouter(prefix="/v1/projects", tags=["projects"])


@router.get("/{name}/quota", response_model=QuotaOut, responses=errors(401, 404, 422, 503))
def get_quota(name: NamePath, svc: SvcDep, who: Who) -> QuotaOut:
    """The project's limits (empty: no quota) and its own rate limit (null: the server's default)."""
    return QuotaOut.model_validate(svc.quotas.get_quota(scope_project(who, name) or name))


@router.put("/{name}/quota", response_model=QuotaOut, responses=errors(401, 403, 404, 413, 422, 503))
def set_quota(name: NamePath, body: QuotaIn, svc: SvcDep, _: Admin) -> QuotaOut:
    """Replace the project's quota and rate limit (admins). A limit below the current use refuses
    new creations (403 `quota_exceeded`) and takes nothing away."""
    rate = RateLimit(body.rate_limit.rate_per_s, body.rate_limit.burst) if body.rate_limit else None
    return QuotaOut.model_validate(svc.quotas.set_quota(name, body.limits, rate))


@router.get("/{name}/usage", response_model=UsageOut, responses=errors(401, 404, 422, 503))
def get_usage(name: NamePath, svc: SvcDep, who: Who) -> UsageOut:
    """What the project holds now against its limits."""
    return UsageOut.model_validate(svc.quotas.usage(scope_project(who, name) or name))
