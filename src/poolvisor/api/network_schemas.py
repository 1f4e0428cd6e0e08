"""Request and response bodies of the network API (address pools, networks, NICs, routers, routes).

Addresses travel as text in bodies and query strings (never in paths: an IPv6 address or a prefix
is not a name). The patterns below only bound the text; the services parse it exactly.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from poolvisor.api.schemas import Name, _In, _Out

MAX_COUNT = 1 << 64
IpText = Annotated[str, StringConstraints(min_length=2, max_length=45, pattern=r"^[0-9A-Fa-f.:]+$")]
MacOrIpText = Annotated[str, StringConstraints(min_length=2, max_length=45, pattern=r"^[0-9A-Fa-f.:-]+$")]
CidrText = Annotated[str, StringConstraints(min_length=4, max_length=49,
                                            pattern=r"^[0-9A-Fa-f.:]+/[0-9]{1,3}$")]
Note = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
ProjectField = Field(default=None, description="members: their project (implicit); admins: defaults to "
                     "'default'")
Protocol = Literal["link-state", "distance-vector", "static"]


# ---- address pools -----------------------------------------------------------------------------
class IpPoolCreate(_In):
    name: Name
    cidr: CidrText = Field(description="e.g. 10.0.0.0/16 or 2001:db8::/64 (host bits zero)")
    project: Name | None = ProjectField


class IpPoolOut(_Out):
    name: str
    project: str | None
    family: str
    cidr: str
    first: str
    last: str
    size: int
    free: int
    used: dict[str, int] = Field(description="addresses per kind: address, reserved, gateway, nic, router")
    network: str | None = Field(description="the network owning this pool, if any")


class IpAllocate(_In):
    address: MacOrIpText | None = Field(default=None, description="exactly this address; else the next free")
    count: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 1
    owner: Note = ""


class IpReserve(_In):
    first: MacOrIpText
    last: MacOrIpText
    note: Note = ""


class IpRelease(_In):
    first: MacOrIpText
    last: MacOrIpText | None = Field(default=None, description="the end of a range (default: first)")


class IpRangeOut(_Out):
    first: str
    last: str
    size: int
    kind: str
    owner: str


# ---- networks and NICs -------------------------------------------------------------------------
class NetworkCreate(_In):
    name: Name
    cidr: CidrText
    project: Name | None = ProjectField
    gateway: IpText | None = Field(default=None, description="default: the first usable address")
    no_gateway: bool = False


class NetworkOut(_Out):
    name: str
    project: str
    cidr: str
    family: str
    gateway: str | None
    size: int
    free: int
    nics: int
    routers: list[str]


class NicOut(_Out):
    workload: str
    project: str
    network: str
    index: int
    address: str
    prefixlen: int
    mac: str
    gateway: str | None


class ApplyRequest(_In):
    project: Name | None = ProjectField
    prefix: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]{0,7}$")] = Field(
        default="pv", description="namespace name prefix (namespaces are PREFIX-PROJECT-...)")


class ApplyOut(_Out):
    project: str
    prefix: str
    created: list[str] = Field(description="namespaces and links this apply made")
    routes: int = Field(description="kernel routes written")
    down_links: list[str] = Field(description="router links (ROUTER/NETWORK) the kernel reports down")
    recompute_s: float = Field(description="seconds to recompute every routing table")
    rounds: int | None = Field(description="distance-vector rounds to (re-)converge, if any")
    namespaces: dict[str, str] = Field(description="KIND/NAME -> namespace")
    ports: dict[str, str] = Field(description="ROUTER/NETWORK -> the bridge-side port, NAMESPACE/PORT")


class TeardownOut(BaseModel):
    deleted: list[str]


# ---- routers and routes ------------------------------------------------------------------------
class RouterCreate(_In):
    name: Name
    project: Name | None = ProjectField
    protocol: Protocol = "link-state"


class InterfaceCreate(_In):
    network: Name
    address: IpText | None = Field(default=None, description="default: the network's gateway if free, "
                                   "else the next free address")
    cost: Annotated[int, Field(ge=1, le=65535)] = 1


class InterfaceUpdate(_In):
    state: Literal["up", "down"] | None = Field(default=None, description="take the link down or up")
    cost: Annotated[int, Field(ge=1, le=65535)] | None = None


class StaticRouteCreate(_In):
    prefix: CidrText
    nexthop: IpText
    metric: Annotated[int, Field(ge=1, le=65535)] = 1


class InterfaceOut(_Out):
    network: str
    address: str
    prefixlen: int
    mac: str
    cost: int
    state: str


class StaticRouteOut(_Out):
    prefix: str
    nexthop: str
    metric: int


class RouterOut(_Out):
    name: str
    project: str
    protocol: str
    interfaces: list[InterfaceOut]
    static_routes: list[StaticRouteOut]


class RouteOut(_Out):
    prefix: str
    source: str
    metric: float
    nexthops: list[str]
    interfaces: list[str]


class LookupOut(_Out):
    address: str
    router: str
    route: RouteOut | None


class RoutesOut(BaseModel):
    router: str
    protocol: str
    routes: list[RouteOut]
    rounds: int | None = Field(default=None, description="distance-vector: rounds the project's domain "
                               "needed to (re-)converge")
    compute_s: float = Field(description="seconds to compute every table of the project")
