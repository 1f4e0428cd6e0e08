"""Frozen records of the network use cases (address pools, networks, NICs, routers, routes).

Addresses are text here (the API and CLI show them as such); sizes are exact integers (an IPv6
/64 has 2^64 addresses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class IpPoolRecord:
    name: str
    project: str | None
    family: str
    cidr: str
    first: str
    last: str
    size: int
    free: int
    used: dict[str, int]  # addresses per allocation kind (address, reserved, gateway, nic, router)
    network: str | None = None


@dataclass(frozen=True)
class IpRangeRecord:
    """An interval of a pool: `first`..`last` (equal for one address), who holds it and why."""

    first: str
    last: str
    size: int
    kind: str
    owner: str = ""


@dataclass(frozen=True)
class NetworkRecord:
    name: str
    project: str
    cidr: str
    family: str
    gateway: str | None
    size: int
    free: int
    nics: int
    routers: list[str] = field(default_factory=list)
    dhcp: str | None = None  # the hosts' DHCP server address on it (None: no DHCP)


@dataclass(frozen=True)
class NicRecord:
    workload: str
    project: str
    network: str
    index: int  # the NIC's position on its workload (eth0, eth1, ...)
    address: str
    prefixlen: int
    mac: str
    gateway: str | None


@dataclass(frozen=True)
class InterfaceRecord:
    network: str
    address: str
    prefixlen: int
    mac: str
    cost: int
    state: str


@dataclass(frozen=True)
class StaticRouteRecord:
    prefix: str
    nexthop: str
    metric: int


@dataclass(frozen=True)
class RouterRecord:
    name: str
    project: str
    protocol: str
    interfaces: list[InterfaceRecord]
    static_routes: list[StaticRouteRecord]
    asn: int | None = None  # path-vector: its AS number
    local_pref: dict[str, int] = field(default_factory=dict)  # path-vector import policy per neighbour


@dataclass(frozen=True)
class RouteRecord:
    """One entry of a router's table. source: connected, static, link-state, distance-vector,
    path-vector. nexthops: next-hop addresses (several = ECMP; empty for a connected network);
    as_path: path-vector's AS path (nearest AS first)."""

    prefix: str
    source: str
    metric: float
    nexthops: list[str]
    interfaces: list[str]  # the networks the packets leave on, one per next hop
    as_path: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class LookupRecord:
    address: str
    router: str
    route: RouteRecord | None


@dataclass(frozen=True)
class ApplyRecord:
    """What `network apply` did: namespaces and links made, routes programmed, links found down."""

    project: str
    prefix: str
    created: list[str]
    routes: int
    down_links: list[str]
    recompute_s: float
    rounds: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
