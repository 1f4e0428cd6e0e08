"""Address pools, networks, NICs, routers and routes of a project (docs/network.md).

Members act inside their own project; another project's objects do not exist for them (404).
Admins see every project: lists without `?project=` cover them all, a named object without it is
found by its name when that name is unique across projects, and creations go to `project` (or
'default', created on first use). Addresses and prefixes travel in bodies and query strings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Annotated

from fastapi import APIRouter, Path, Query

from poolvisor.api.auth import Admin, SvcDep, Who, scope_project
from poolvisor.api.errors import errors
from poolvisor.api.fields import QUERY_INT
from poolvisor.api.network_schemas import (
    ApplyOut,
    ApplyRequest,
    CidrText,
    InterfaceCreate,
    InterfaceOut,
    InterfaceUpdate,
    IpAllocate,
    IpPoolCreate,
    IpPoolOut,
    IpRangeOut,
    IpRelease,
    IpReserve,
    IpText,
    LocalPrefSet,
    LookupOut,
    MacOrIpText,
    NetworkCreate,
    NetworkOut,
    NicOut,
    RouteOut,
    RouterCreate,
    RouterOut,
    RoutesOut,
    StaticRouteCreate,
    StaticRouteOut,
    TeardownOut,
)
from poolvisor.api.schemas import Name
from poolvisor.domain.errors import ConflictError, NotFoundError
from poolvisor.services import Principal, Services

router = APIRouter(tags=["networks"])
DEFAULT_PROJECT = "default"
ProjectQ = Annotated[Name | None, Query(description="project (admins; members always use their own)")]
PoolName = Annotated[Name, Path(description="address pool name (unique within its project)")]
NetName = Annotated[Name, Path(description="network name (unique within its project)")]
RouterName = Annotated[Name, Path(description="router name (unique within its project)")]
LinkNet = Annotated[Name, Path(description="the network of the router's interface")]
Neighbour = Annotated[Name, Path(description="a path-vector router of the same project")]


def creating_in(svc: Services, who: Principal, project: str | None) -> str:
    """The project a creation goes to; an admin's default project is created on first use."""
    scoped = scope_project(who, project, default=DEFAULT_PROJECT)
    assert scoped is not None
    if who.role == "admin" and project is None:
        try:
            svc.catalog.get_project(scoped)
        except NotFoundError:
            with contextlib.suppress(ConflictError):  # created concurrently
                svc.catalog.create_project(scoped)
    return scoped


def locate(who: Principal, project: str | None, what: str, name: str,
           owners: Callable[[], Iterable[str]]) -> str:
    """The project holding object `name` as this caller may see it (see the module docstring)."""
    scoped = scope_project(who, project)
    if scoped is not None:
        return scoped
    found = sorted(set(owners()))
    if not found:
        raise NotFoundError(f"{what} {name!r} not found")
    if len(found) > 1:
        raise ConflictError(f"{what} {name!r} exists in projects {', '.join(found)}; pass ?project=")
    return found[0]


def _listing(svc: Services, who: Principal, project: str | None) -> str | None:
    scoped = scope_project(who, project)
    if scoped is not None:
        svc.catalog.get_project(scoped)  # 404 for an unknown project rather than an empty list
    return scoped


def _pool_project(svc: Services, who: Principal, name: str, project: str | None) -> str:
    return locate(who, project, "address pool", name,
                  lambda: (p.project for p in svc.networks.list_ip_pools() if p.name == name and p.project))


def _router_project(svc: Services, who: Principal, name: str, project: str | None) -> str:
    return locate(who, project, "router", name,
                  lambda: (r.project for r in svc.routers.list_routers() if r.name == name))


def _net_project(svc: Services, who: Principal, name: str, project: str | None) -> str:
    return locate(who, project, "network", name,
                  lambda: (n.project for n in svc.networks.list_networks() if n.name == name))


# ---- address pools -----------------------------------------------------------------------------
@router.get("/v1/ip-pools", response_model=list[IpPoolOut], responses=errors(401, 404, 422, 503))
def list_ip_pools(svc: SvcDep, who: Who, project: ProjectQ = None) -> list[IpPoolOut]:
    """Address pools with their usage; admins without ?project= also see the global MAC pool."""
    return [IpPoolOut.model_validate(p) for p in svc.networks.list_ip_pools(_listing(svc, who, project))]


@router.post("/v1/ip-pools", status_code=201, response_model=IpPoolOut,
             responses=errors(401, 404, 409, 413, 422, 503))
def create_ip_pool(body: IpPoolCreate, svc: SvcDep, who: Who) -> IpPoolOut:
    """A standalone pool of the subnet's host addresses (networks have their own)."""
    where = creating_in(svc, who, body.project)
    return IpPoolOut.model_validate(svc.networks.create_ip_pool(where, body.name, body.cidr))


@router.get("/v1/ip-pools/{name}", response_model=IpPoolOut, responses=errors(401, 404, 409, 422, 503))
def get_ip_pool(name: PoolName, svc: SvcDep, who: Who, project: ProjectQ = None) -> IpPoolOut:
    return IpPoolOut.model_validate(svc.networks.get_ip_pool(_pool_project(svc, who, name, project), name))


@router.delete("/v1/ip-pools/{name}", status_code=204, responses=errors(401, 404, 409, 422, 503))
def delete_ip_pool(name: PoolName, svc: SvcDep, who: Who, project: ProjectQ = None) -> None:
    """Only a standalone pool with no allocated address (reserved ranges go with it)."""
    svc.networks.delete_ip_pool(_pool_project(svc, who, name, project), name)


@router.get("/v1/ip-pools/{name}/ranges", response_model=list[IpRangeOut],
            responses=errors(401, 404, 409, 422, 503))
def list_ip_ranges(
    name: PoolName, svc: SvcDep, who: Who, project: ProjectQ = None,
    free: Annotated[bool, Query(description="list the free intervals instead")] = False,
    limit: Annotated[int, Query(ge=1, le=1000), QUERY_INT] = 100,
    after: Annotated[MacOrIpText | None, Query(description="start after this address (paging)")] = None,
) -> list[IpRangeOut]:
    """Allocated (or free) intervals in address order."""
    where = _pool_project(svc, who, name, project)
    return [IpRangeOut.model_validate(r)
            for r in svc.networks.list_ip_ranges(where, name, free=free, limit=limit, after=after)]


@router.post("/v1/ip-pools/{name}/allocations", status_code=201, response_model=list[IpRangeOut],
             responses=errors(401, 404, 409, 413, 422, 503))
def allocate_ip(name: PoolName, body: IpAllocate, svc: SvcDep, who: Who,
                project: ProjectQ = None) -> list[IpRangeOut]:
    """The next `count` free addresses (as intervals), or exactly `address`; 409 when the pool has
    too few free addresses or the address is taken (the message names its holder)."""
    where = _pool_project(svc, who, name, project)
    return [IpRangeOut.model_validate(r)
            for r in svc.networks.allocate_ip(where, name, address=body.address, count=body.count,
                                              owner=body.owner)]


@router.post("/v1/ip-pools/{name}/reservations", status_code=201, response_model=IpRangeOut,
             responses=errors(401, 404, 409, 413, 422, 503))
def reserve_ip_range(name: PoolName, body: IpReserve, svc: SvcDep, who: Who,
                     project: ProjectQ = None) -> IpRangeOut:
    """Reserve [first, last]; all of it must be free."""
    where = _pool_project(svc, who, name, project)
    return IpRangeOut.model_validate(svc.networks.reserve_ip_range(where, name, body.first, body.last,
                                                                   body.note))


@router.post("/v1/ip-pools/{name}/release", response_model=IpRangeOut,
             responses=errors(401, 404, 409, 413, 422, 503))
def release_ip(name: PoolName, body: IpRelease, svc: SvcDep, who: Who,
               project: ProjectQ = None) -> IpRangeOut:
    """Give back an allocated or reserved address or range; addresses held by NICs, routers or a
    gateway go back with their object (409)."""
    where = _pool_project(svc, who, name, project)
    return IpRangeOut.model_validate(svc.networks.release_ip(where, name, body.first, body.last))


# ---- networks and NICs -------------------------------------------------------------------------
@router.get("/v1/networks", response_model=list[NetworkOut], responses=errors(401, 404, 422, 503))
def list_networks(svc: SvcDep, who: Who, project: ProjectQ = None) -> list[NetworkOut]:
    return [NetworkOut.model_validate(n) for n in svc.networks.list_networks(_listing(svc, who, project))]


@router.post("/v1/networks", status_code=201, response_model=NetworkOut,
             responses=errors(401, 404, 409, 413, 422, 503))
def create_network(body: NetworkCreate, svc: SvcDep, who: Who) -> NetworkOut:
    """A network (one subnet) with its own address pool; subnets may overlap between projects,
    not within one."""
    where = creating_in(svc, who, body.project)
    return NetworkOut.model_validate(svc.networks.create_network(where, body.name, body.cidr,
                                                                 gateway=body.gateway,
                                                                 no_gateway=body.no_gateway))


@router.get("/v1/networks/{name}", response_model=NetworkOut, responses=errors(401, 404, 409, 422, 503))
def get_network(name: NetName, svc: SvcDep, who: Who, project: ProjectQ = None) -> NetworkOut:
    return NetworkOut.model_validate(svc.networks.get_network(_net_project(svc, who, name, project), name))


@router.delete("/v1/networks/{name}", status_code=204, responses=errors(401, 404, 409, 422, 503))
def delete_network(name: NetName, svc: SvcDep, who: Who, project: ProjectQ = None) -> None:
    """Only a network without NICs and router interfaces."""
    svc.networks.delete_network(_net_project(svc, who, name, project), name)


@router.get("/v1/networks/{name}/nics", response_model=list[NicOut],
            responses=errors(401, 404, 409, 422, 503))
def list_network_nics(name: NetName, svc: SvcDep, who: Who, project: ProjectQ = None) -> list[NicOut]:
    where = _net_project(svc, who, name, project)
    return [NicOut.model_validate(n) for n in svc.networks.list_nics(where, network=name)]


@router.get("/v1/nics", response_model=list[NicOut], responses=errors(401, 404, 422, 503))
def list_nics(svc: SvcDep, who: Who, project: ProjectQ = None,
              workload: Annotated[Name | None, Query(description="only this workload's NICs")] = None
              ) -> list[NicOut]:
    """The NICs of a project's workloads (admins: of project 'default' without ?project=)."""
    where = scope_project(who, project, default=DEFAULT_PROJECT)
    assert where is not None
    return [NicOut.model_validate(n) for n in svc.networks.list_nics(where, workload=workload)]



# ---- routers and routes ------------------------------------------------------------------------
@router.get("/v1/routers", response_model=list[RouterOut], responses=errors(401, 404, 422, 503))
def list_routers(svc: SvcDep, who: Who, project: ProjectQ = None) -> list[RouterOut]:
    return [RouterOut.model_validate(r) for r in svc.routers.list_routers(_listing(svc, who, project))]


@router.post("/v1/routers", status_code=201, response_model=RouterOut,
             responses=errors(401, 404, 409, 413, 422, 503))
def create_router(body: RouterCreate, svc: SvcDep, who: Who) -> RouterOut:
    """A router; `protocol` (link-state, distance-vector, path-vector or static) computes its dynamic
    routes. A path-vector router is an autonomous system (`asn`)."""
    where = creating_in(svc, who, body.project)
    return RouterOut.model_validate(svc.routers.create_router(where, body.name, body.protocol, body.asn))


@router.put("/v1/routers/{name}/local-pref/{neighbour}", response_model=RouterOut,
            responses=errors(401, 404, 409, 413, 422, 503))
def set_local_pref(name: RouterName, neighbour: Neighbour, body: LocalPrefSet, svc: SvcDep, who: Who,
                   project: ProjectQ = None) -> RouterOut:
    """Path-vector import policy: the local preference of the routes learned from a neighbour router."""
    where = _router_project(svc, who, name, project)
    return RouterOut.model_validate(svc.routers.set_local_pref(where, name, neighbour, body.pref))


@router.delete("/v1/routers/{name}/local-pref/{neighbour}", response_model=RouterOut,
               responses=errors(401, 404, 409, 422, 503))
def clear_local_pref(name: RouterName, neighbour: Neighbour, svc: SvcDep, who: Who,
                     project: ProjectQ = None) -> RouterOut:
    """Back to the default local preference (100) for that neighbour's routes."""
    where = _router_project(svc, who, name, project)
    return RouterOut.model_validate(svc.routers.set_local_pref(where, name, neighbour, None))


@router.get("/v1/routers/{name}", response_model=RouterOut, responses=errors(401, 404, 409, 422, 503))
def get_router(name: RouterName, svc: SvcDep, who: Who, project: ProjectQ = None) -> RouterOut:
    return RouterOut.model_validate(svc.routers.get_router(_router_project(svc, who, name, project), name))


@router.delete("/v1/routers/{name}", status_code=204, responses=errors(401, 404, 409, 422, 503))
def delete_router(name: RouterName, svc: SvcDep, who: Who, project: ProjectQ = None) -> None:
    """The router with its interfaces (their addresses go back) and static routes."""
    svc.routers.delete_router(_router_project(svc, who, name, project), name)


@router.post("/v1/routers/{name}/interfaces", status_code=201, response_model=InterfaceOut,
             responses=errors(401, 404, 409, 413, 422, 503))
def attach_router(name: RouterName, body: InterfaceCreate, svc: SvcDep, who: Who,
                  project: ProjectQ = None) -> InterfaceOut:
    """An interface on a network of the same project (its address comes from the network's pool)."""
    where = _router_project(svc, who, name, project)
    return InterfaceOut.model_validate(svc.routers.attach_router(where, name, body.network,
                                                                 address=body.address, cost=body.cost))


@router.delete("/v1/routers/{name}/interfaces/{network}", status_code=204,
               responses=errors(401, 404, 409, 422, 503))
def detach_router(name: RouterName, network: LinkNet, svc: SvcDep, who: Who,
                  project: ProjectQ = None) -> None:
    svc.routers.detach_router(_router_project(svc, who, name, project), name, network)


@router.post("/v1/routers/{name}/interfaces/{network}/link", response_model=InterfaceOut,
             responses=errors(401, 404, 409, 413, 422, 503))
def set_link(name: RouterName, network: LinkNet, body: InterfaceUpdate, svc: SvcDep, who: Who,
             project: ProjectQ = None) -> InterfaceOut:
    """Take the link down or up (the routes re-converge around it) or change its cost."""
    where = _router_project(svc, who, name, project)
    rec = svc.routers.set_interface(where, name, network, state=body.state, cost=body.cost)
    return InterfaceOut.model_validate(rec)


@router.get("/v1/routers/{name}/routes", response_model=RoutesOut, responses=errors(401, 404, 409, 422, 503))
def router_routes(name: RouterName, svc: SvcDep, who: Who, project: ProjectQ = None) -> RoutesOut:
    """The router's table: connected, static and dynamic routes (computed now, with ECMP)."""
    where = _router_project(svc, who, name, project)
    routes, tables = svc.routers.router_routes(where, name)
    protocol = svc.routers.get_router(where, name).protocol
    return RoutesOut(router=name, protocol=protocol, routes=[RouteOut.model_validate(r) for r in routes],
                     rounds=tables.rounds.get(protocol), compute_s=tables.compute_s)


@router.post("/v1/routers/{name}/routes", status_code=201, response_model=StaticRouteOut,
             responses=errors(401, 404, 409, 413, 422, 503))
def add_static_route(name: RouterName, body: StaticRouteCreate, svc: SvcDep, who: Who,
                     project: ProjectQ = None) -> StaticRouteOut:
    """A static route; its next hop must be on a network the router is attached to."""
    where = _router_project(svc, who, name, project)
    rec = svc.routers.add_static_route(where, name, body.prefix, body.nexthop, body.metric)
    return StaticRouteOut.model_validate(rec)


@router.delete("/v1/routers/{name}/routes", status_code=204, responses=errors(401, 404, 409, 422, 503))
def delete_static_route(
    name: RouterName, svc: SvcDep, who: Who, prefix: Annotated[CidrText, Query(description="the prefix")],
    nexthop: Annotated[IpText | None, Query(description="only the route via this next hop")] = None,
    project: ProjectQ = None,
) -> None:
    svc.routers.delete_static_route(_router_project(svc, who, name, project), name, prefix, nexthop)


@router.get("/v1/routers/{name}/lookup", response_model=LookupOut, responses=errors(401, 404, 409, 422, 503))
def lookup_route(name: RouterName, svc: SvcDep, who: Who,
                 address: Annotated[IpText, Query(description="destination address")],
                 project: ProjectQ = None) -> LookupOut:
    """Longest-prefix match in the router's table (route null: no route)."""
    return LookupOut.model_validate(svc.routers.lookup_route(_router_project(svc, who, name, project), name,
                                                             address))


# ---- the namespace dataplane (admin: it changes this machine) ----------------------------------
@router.post("/v1/dataplane/apply", response_model=ApplyOut,
             responses=errors(401, 403, 404, 409, 413, 422, 503))
def apply_dataplane(svc: SvcDep, _: Admin, body: ApplyRequest | None = None) -> ApplyOut:
    """Realize the project's networks, routers and NICs as Linux namespaces on the API server's
    machine, observe which router links are up, re-converge and program the routes (idempotent).
    409 unless the server runs with POOLVISOR_DATAPLANE=1; 503 without root, iproute2 or procps."""
    req = body or ApplyRequest()
    rec = svc.dataplane.apply_network(req.project or DEFAULT_PROJECT, req.prefix)
    return ApplyOut(project=rec.project, prefix=rec.prefix, created=rec.created, routes=rec.routes,
                    down_links=rec.down_links, recompute_s=rec.recompute_s, rounds=rec.rounds,
                    namespaces=rec.detail.get("namespaces", {}), ports=rec.detail.get("ports", {}),
                    bridges=rec.detail.get("bridges", {}))


@router.post("/v1/dataplane/teardown", response_model=TeardownOut,
             responses=errors(401, 403, 404, 409, 413, 422, 503))
def teardown_dataplane(svc: SvcDep, _: Admin, body: ApplyRequest | None = None) -> TeardownOut:
    """Delete the project's namespaces."""
    req = body or ApplyRequest()
    return TeardownOut(deleted=svc.dataplane.teardown_network(req.project or DEFAULT_PROJECT, req.prefix))
