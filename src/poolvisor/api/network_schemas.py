"""Request and response bodies of the network API (address pools, networks, NICs, routers, routes).

Addresses travel as text in bodies and query strings (never in paths: an IPv6 address or a prefix
is not a name). The patterns below only bound the text; the services parse it exactly.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, model_validator
from pydantic.config import JsonDict

from poolvisor.api.fields import INTEGRAL
from poolvisor.api.schemas import Name, _In, _Out
from poolvisor.services.networks import NOTE_PATTERN

# the largest integer every JSON parser reads exactly (I-JSON, RFC 7493): above it a client reading
# numbers as doubles cannot tell a count from its neighbours, nor compare it with the bound
MAX_COUNT = (1 << 53) - 1
# Exact grammars, so the schema accepts what the services parse: IPv4 dotted quads without leading
# zeros, IPv6 in full or compressed form (no embedded IPv4, no zone), MACs as six hex pairs.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_V4 = rf"({_OCTET}\.){{3}}{_OCTET}"
_H = r"[0-9A-Fa-f]{1,4}"
_V6 = "(" + "|".join((
    rf"({_H}:){{7}}{_H}", rf"({_H}:){{1,7}}:", rf"({_H}:){{1,6}}:{_H}", rf"({_H}:){{1,5}}(:{_H}){{1,2}}",
    rf"({_H}:){{1,4}}(:{_H}){{1,3}}", rf"({_H}:){{1,3}}(:{_H}){{1,4}}", rf"({_H}:){{1,2}}(:{_H}){{1,5}}",
    rf"{_H}:(:{_H}){{1,6}}", rf":((:{_H}){{1,7}}|:)")) + ")"
_MAC = r"([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}"
IP_PATTERN = rf"^({_V4}|{_V6})$"
ADDRESS_PATTERN = rf"^({_V4}|{_V6}|{_MAC})$"
CIDR_PATTERN = rf"^({_V4}/(3[0-2]|[12]?[0-9])|{_V6}/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))$"
IpText = Annotated[str, StringConstraints(max_length=45, pattern=IP_PATTERN)]
MacOrIpText = Annotated[str, StringConstraints(max_length=45, pattern=ADDRESS_PATTERN)]
CidrText = Annotated[str, StringConstraints(max_length=49, pattern=CIDR_PATTERN)]
# a network needs room for hosts: IPv4 up to /30, IPv6 up to /126
NETWORK_CIDR_PATTERN = rf"^({_V4}/(30|[12]?[0-9])|{_V6}/(12[0-6]|1[01][0-9]|[1-9]?[0-9]))$"
NetworkCidr = Annotated[str, StringConstraints(max_length=49, pattern=NETWORK_CIDR_PATTERN)]
Note = Annotated[str, StringConstraints(max_length=200, pattern=NOTE_PATTERN)]
ProjectField = Field(default=None, description="members: their project (implicit); admins: defaults to "
                     "'default'")
Protocol = Literal["link-state", "distance-vector", "path-vector", "static"]


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


def _not_both(field: str, other: str, neutral: JsonValue) -> JsonDict:
    """JSON Schema for "`field` (non-null) only with `other` absent or equal to `neutral`"."""
    return {"anyOf": [{"not": {"required": [field]}}, {"properties": {field: {"type": "null"}}},
                      {"not": {"required": [other]}}, {"properties": {other: {"const": neutral}}}]}


class IpAllocate(_In):
    """`address` or `count`, not both."""

    model_config = ConfigDict(json_schema_extra=_not_both("address", "count", 1))
    address: MacOrIpText | None = Field(default=None, description="exactly this address; else the next free")
    count: Annotated[int, Field(ge=1, le=MAX_COUNT), INTEGRAL] = 1
    owner: Note = ""

    @model_validator(mode="after")
    def _rules(self) -> IpAllocate:
        if self.address is not None and self.count != 1:
            raise ValueError("give either an address or a count, not both")
        return self


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
    cidr: NetworkCidr
    project: Name | None = ProjectField
    gateway: IpText | None = Field(default=None, description="default: the first usable address")
    no_gateway: bool = False

    model_config = ConfigDict(json_schema_extra=_not_both("gateway", "no_gateway", False))

    @model_validator(mode="after")
    def _rules(self) -> NetworkCreate:
        if self.gateway is not None and self.no_gateway:
            raise ValueError("give a gateway or no_gateway, not both")
        return self


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
    dhcp: str | None = Field(default=None, description="the address the hosts' DHCP servers take on "
                             "it (reserved in its pool; null: no DHCP, guests configure their address)")


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
    rounds: int | None = Field(description="distance-vector or path-vector rounds to (re-)converge, "
                               "if any (the larger of the two)")
    namespaces: dict[str, str] = Field(description="KIND/NAME -> namespace")
    ports: dict[str, str] = Field(description="ROUTER/NETWORK -> the bridge-side port, NAMESPACE/PORT")
    bridges: dict[str, list[str]] = Field(default_factory=dict, description="NETWORK -> the bridges of "
                                          "its libvirt networks on this machine joined to its segment")


class TeardownOut(BaseModel):
    deleted: list[str]


# ---- routers and routes ------------------------------------------------------------------------
class RouterCreate(_In):
    """`asn` only for a path-vector router."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"not": {"required": ["asn"]}}, {"properties": {"asn": {"type": "null"}}},
        {"required": ["protocol"], "properties": {"protocol": {"const": "path-vector"}}}]})
    name: Name
    project: Name | None = ProjectField
    protocol: Protocol = "link-state"
    asn: Annotated[int, Field(ge=1, le=4_294_967_294), INTEGRAL] | None = Field(default=None, description=(
        "path-vector: the router's AS number, unique in the project (default: the first free from 64512)"))

    @model_validator(mode="after")
    def _asn_for_path_vector(self) -> RouterCreate:
        if self.asn is not None and self.protocol != "path-vector":
            raise ValueError("an AS number is for path-vector routers")
        return self


class LocalPrefSet(_In):
    pref: Annotated[int, Field(ge=0, le=2**31 - 1), INTEGRAL] = Field(description=(
        "local preference of the routes learned from that neighbour (default 100; higher wins "
        "over a shorter AS path)"))


class InterfaceCreate(_In):
    network: Name
    address: IpText | None = Field(default=None, description="default: the network's gateway if free, "
                                   "else the next free address")
    cost: Annotated[int, Field(ge=1, le=65535), INTEGRAL] = 1


class InterfaceUpdate(_In):
    state: Literal["up", "down"] | None = Field(default=None, description="take the link down or up")
    cost: Annotated[int, Field(ge=1, le=65535), INTEGRAL] | None = None


class StaticRouteCreate(_In):
    prefix: CidrText
    nexthop: IpText
    metric: Annotated[int, Field(ge=1, le=65535), INTEGRAL] = 1


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
    asn: int | None = Field(default=None, description="path-vector: the router's AS number")
    local_pref: dict[str, int] = Field(default_factory=dict, description=(
        "path-vector import policy: local preference per neighbour router"))


class RouteOut(_Out):
    prefix: str
    source: str
    metric: float = Field(description="link-state/distance-vector: path cost; path-vector: AS-path length")
    nexthops: list[str]
    interfaces: list[str]
    as_path: list[int] = Field(default_factory=list, description="path-vector: AS numbers, nearest first")


class LookupOut(_Out):
    address: str
    router: str
    route: RouteOut | None


class RoutesOut(BaseModel):
    router: str
    protocol: str
    routes: list[RouteOut]
    rounds: int | None = Field(default=None, description="distance-vector or path-vector: rounds the "
                               "project's domain of the router's protocol needed to (re-)converge")
    compute_s: float = Field(description="seconds to compute every table of the project")
