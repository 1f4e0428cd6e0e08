"""Flavors: named demand vectors that workloads refer to (reads: any token; writes: admin)."""

from __future__ import annotations

from fastapi import APIRouter

from poolvisor.api.auth import Admin, SvcDep, Who
from poolvisor.api.errors import errors
from poolvisor.api.fields import NamePath
from poolvisor.api.schemas import FlavorCreate, FlavorOut

router = APIRouter(prefix="/v1/flavors", tags=["flavors"])


@router.get("", response_model=list[FlavorOut], responses=errors(401, 503))
def list_flavors(svc: SvcDep, _: Who) -> list[FlavorOut]:
    return [FlavorOut.model_validate(f) for f in svc.catalog.list_flavors()]


@router.post("", status_code=201, response_model=FlavorOut, responses=errors(401, 403, 409, 413, 422, 503))
def create_flavor(body: FlavorCreate, svc: SvcDep, _: Admin) -> FlavorOut:
    return FlavorOut.model_validate(svc.catalog.create_flavor(body.name, dict(body.demand)))


@router.get("/{name}", response_model=FlavorOut, responses=errors(401, 404, 422, 503))
def get_flavor(name: NamePath, svc: SvcDep, _: Who) -> FlavorOut:
    return FlavorOut.model_validate(svc.catalog.get_flavor(name))


@router.delete("/{name}", status_code=204, responses=errors(401, 403, 404, 409, 422, 503))
def delete_flavor(name: NamePath, svc: SvcDep, _: Admin) -> None:
    svc.catalog.delete_flavor(name)
