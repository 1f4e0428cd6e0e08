"""Projects own workloads; members see only their own project, admins all (create: admin)."""

from __future__ import annotations

from fastapi import APIRouter

from poolvisor.api.auth import Admin, SvcDep, Who, scope_project
from poolvisor.api.errors import errors
from poolvisor.api.fields import NamePath
from poolvisor.api.schemas import ProjectCreate, ProjectOut
from poolvisor.api.share_schemas import WeightIn

router = APIRouter(prefix="/v1/projects", tags=["projects"])


@router.get("", response_model=list[ProjectOut], responses=errors(401, 503))
def list_projects(svc: SvcDep, who: Who) -> list[ProjectOut]:
    own = scope_project(who, None)
    return [ProjectOut.model_validate(p) for p in svc.catalog.list_projects() if own is None or p.name == own]


@router.post("", status_code=201, response_model=ProjectOut, responses=errors(401, 403, 409, 413, 422, 503))
def create_project(body: ProjectCreate, svc: SvcDep, _: Admin) -> ProjectOut:
    return ProjectOut.model_validate(svc.catalog.create_project(body.name, body.weight))


@router.get("/{name}", response_model=ProjectOut, responses=errors(401, 404, 422, 503))
def get_project(name: NamePath, svc: SvcDep, who: Who) -> ProjectOut:
    return ProjectOut.model_validate(svc.catalog.get_project(scope_project(who, name) or name))


@router.put("/{name}/weight", response_model=ProjectOut, responses=errors(401, 403, 404, 413, 422, 503))
def set_project_weight(name: NamePath, body: WeightIn, svc: SvcDep, _: Admin) -> ProjectOut:
    """The project's weight in the weighted dominant-resource fair share between the projects of
    one priority class (the queue's drf discipline): weight 2 is served twice weight 1's share."""
    return ProjectOut.model_validate(svc.catalog.set_project_weight(name, body.weight))
