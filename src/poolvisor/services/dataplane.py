"""`network apply`: realize a project's networks, routers and workload NICs on this machine as
namespaces (drivers/netns.py), then route them with the tables poolvisor computes.

Each apply: (1) create whatever is missing; (2) read which router links the kernel reports up;
(3) compute every router's table with the links found down taken out (the re-convergence: link-state
recomputes, distance-vector re-runs its rounds from the converged state); (4) replace the kernel
routes. The bridges of the project's libvirt networks on this machine (hosts whose libvirt URI is
local: the guests' segments) are joined to their network's segment (netns uplinks), so guests are
routed by the project's routers like the workload namespaces are. Another project's namespaces and
bridges are never linked to these: projects cannot reach each other, even with overlapping
subnets. Namespace names are PREFIX-PROJECT_ID-{n,r,w}ID (network, router, workload). Disabled
unless the process runs with POOLVISOR_DATAPLANE=1.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.domain.addresses import fmt, parse_subnet, unkey
from poolvisor.domain.errors import ConflictError, PoolvisorError
from poolvisor.drivers import netns
from poolvisor.policies.network.tables import RouterSpec, compute_tables
from poolvisor.services.base import ServiceBase
from poolvisor.services.context import ServiceContext
from poolvisor.services.network_records import ApplyRecord
from poolvisor.services.routers import RouterService
from poolvisor.store.rows import HostRow, NetworkRow, NicRow, RouterInterfaceRow, RouterRow, WorkloadRow

ENV_ENABLE = "POOLVISOR_DATAPLANE"
LOCAL_HOSTS = ("", "localhost", "127.0.0.1", "::1")
log = logging.getLogger("poolvisor.dataplane")


@runtime_checkable
class NetworkBridges(Protocol):
    """A driver whose hosts realize poolvisor networks as bridges (libvirt networks)."""

    def networks(self, host: str) -> dict[str, str]: ...  # "project/network" -> bridge ("" = not up)


def _enabled() -> None:
    """The dataplane changes this machine's networking: only when the server was started with
    POOLVISOR_DATAPLANE=1 (and can: root, iproute2, procps)."""
    if os.environ.get(ENV_ENABLE) != "1":  # a setting of this server, not an outage: 409
        raise ConflictError(f"the namespace dataplane is disabled here: start the server with "
                            f"{ENV_ENABLE}=1 (it changes this machine's networking; needs root)")
    ok, why = netns.available()
    if not ok:
        raise netns.DataplaneError(f"network dataplane unavailable: {why}")


@dataclass(frozen=True)
class Plan:
    topology: netns.Topology
    routers: list[RouterSpec]
    router_ns: dict[str, str]  # router name -> namespace
    dev: dict[str, str]  # network name -> the interface name routers use on it
    link_of: dict[tuple[str, str], str]  # (namespace, ifname) of a router port -> "router/network"
    cables: dict[str, str]  # "router/network" -> "BRIDGE_NAMESPACE/PORT": its far end on the bridge
    host_routes: dict[str, list[netns.KernelRoute]]
    names: dict[str, str]  # "network/NAME", "router/NAME", "workload/NAME" -> namespace
    joined: dict[str, list[str]]  # network name -> libvirt bridges of this machine joined to it


class DataplaneService(ServiceBase):
    """`network apply` / `teardown`: the project's networks as namespaces on this machine."""

    def __init__(self, ctx: ServiceContext, routers: RouterService) -> None:
        super().__init__(ctx)
        self.routers = routers  # the routing tables it programs

    def apply_network(self, project: str, prefix: str = "pv") -> ApplyRecord:
        """Build/repair the project's namespaces and program the routes (see the module docstring)."""
        netns.check_prefix(prefix)
        _enabled()
        joined = self._local_bridges(project)
        plan = self._read(lambda s: self._plan(s, project, prefix, joined))
        applied = netns.apply(plan.topology)
        states = netns.link_states(plan.topology)
        down = sorted(plan.link_of[k] for k, up in states.items() if k in plan.link_of and not up)
        t0 = time.perf_counter()
        tables = compute_tables(plan.routers, down=[tuple(d.split("/", 1)) for d in down])  # type: ignore[misc]
        recompute = time.perf_counter() - t0
        written = 0
        for r in plan.routers:
            routes = [netns.KernelRoute(str(x.prefix),
                                        tuple((fmt(x.prefix.family, h.nexthop), plan.dev[h.network])
                                              for h in x.hops if h.nexthop is not None),
                                        x.prefix.family == "ipv6")
                      for x in tables.routes.get(r.name, []) if x.source != "connected"]
            written += netns.program_routes(plan.router_ns[r.name], [k for k in routes if k.hops])
        for ns, routes in plan.host_routes.items():
            written += netns.program_routes(ns, routes)
        rounds = max(tables.rounds.values()) if tables.rounds else None  # distance- or path-vector
        self._write(lambda s: self._event(
            s, "network.applied", f"project/{project}",
            f"dataplane {prefix}: {len(applied.created)} created, {written} routes, "
            f"down: {', '.join(down) or '-'}",
            project=project, data={"down": down, "recompute_s": recompute, "rounds": rounds}))
        return ApplyRecord(project, prefix, applied.created, written, down, recompute, rounds,
                           {"namespaces": plan.names, "ports": plan.cables, "bridges": plan.joined})

    def teardown_network(self, project: str, prefix: str = "pv") -> list[str]:
        """Delete the project's namespaces under `prefix` (whatever their objects are now)."""
        netns.check_prefix(prefix)
        _enabled()
        pid = self._read(lambda s: self._project(s, project).id)
        mine = [n for n in netns.namespaces_with_prefix(prefix) if n.startswith(f"{prefix}-{pid}-")]
        return netns.destroy(mine, prefix)

    def _local_bridges(self, project: str) -> dict[str, list[str]]:
        """network name -> bridges on this machine of the project's libvirt networks: those of
        hosts whose driver realizes networks as bridges and whose URI names no remote machine,
        that exist in this kernel. An unreachable host is skipped (logged): its guests are not
        joined until the next apply."""
        hosts = self._read(lambda s: [(h.name, h.uri) for h in s.scalars(
            select(HostRow).where(HostRow.uri != "").order_by(HostRow.name))])
        out: dict[str, set[str]] = defaultdict(set)
        present: set[str] | None = None
        for name, uri in hosts:
            if (urlsplit(uri).hostname or "") not in LOCAL_HOSTS:
                continue
            try:
                drv = self.ctx.drivers.driver_of(name)
                if not isinstance(drv, NetworkBridges):
                    continue
                nets = drv.networks(name)
            except PoolvisorError as e:
                log.warning("dataplane: host %s skipped: %s", name, e.message)
                continue
            for key, bridge in nets.items():
                proj, _, net = key.partition("/")
                if proj != project or not bridge:
                    continue
                if present is None:
                    present = netns.root_bridges()
                if bridge in present:
                    out[net].add(bridge)
        return {n: sorted(b) for n, b in out.items()}

    def _plan(self, s: Session, project: str, prefix: str, joined: dict[str, list[str]]) -> Plan:
        p = self._project(s, project)
        base = f"{prefix}-{p.id}"
        nets = {n.id: n for n in s.scalars(select(NetworkRow).where(NetworkRow.project_id == p.id))}
        names: dict[str, str] = {}
        bridges = []
        dev: dict[str, str] = {}
        for n in sorted(nets.values(), key=lambda n: n.id):
            ns = f"{base}-n{n.id}"
            bridges.append(ns)
            names[f"network/{n.name}"] = ns
            dev[n.name] = f"n{n.id}"
        ports: list[netns.Port] = []
        router_ns: dict[str, str] = {}
        link_of: dict[tuple[str, str], str] = {}
        cables: dict[str, str] = {}
        for r in s.scalars(select(RouterRow).where(RouterRow.project_id == p.id).order_by(RouterRow.id)):
            ns = f"{base}-r{r.id}"
            router_ns[r.name] = ns
            names[f"router/{r.name}"] = ns
            for i in s.scalars(select(RouterInterfaceRow).where(RouterInterfaceRow.router_id == r.id)):
                n = nets[i.network_id]
                sub = parse_subnet(n.cidr)
                ifname = f"n{n.id}"
                cidr = f"{fmt(sub.family, unkey(i.address))}/{sub.prefixlen}"
                ports.append(netns.Port(ns, ifname, cidr, fmt("mac", unkey(i.mac)), f"{base}-n{n.id}",
                                        f"r{i.id}", i.state == "up"))
                link_of[(ns, ifname)] = f"{r.name}/{n.name}"
                cables[f"{r.name}/{n.name}"] = f"{base}-n{n.id}/r{i.id}"
        hosts = []
        host_routes: dict[str, list[netns.KernelRoute]] = defaultdict(list)
        q = (select(NicRow, WorkloadRow.name).join(WorkloadRow, WorkloadRow.id == NicRow.workload_id)
             .where(WorkloadRow.project_id == p.id).order_by(NicRow.workload_id, NicRow.id))
        index: dict[int, int] = defaultdict(int)
        for nic, wname in s.execute(q).all():
            ns = f"{base}-w{nic.workload_id}"
            if ns not in hosts:
                hosts.append(ns)
                names[f"workload/{wname}"] = ns
            n = nets[nic.network_id]
            sub = parse_subnet(n.cidr)
            k = index[nic.workload_id]
            index[nic.workload_id] += 1
            ports.append(netns.Port(ns, f"eth{k}", f"{fmt(sub.family, unkey(nic.address))}/{sub.prefixlen}",
                                    fmt("mac", unkey(nic.mac)), f"{base}-n{n.id}", f"w{nic.id}"))
            v6 = sub.family == "ipv6"
            if n.gateway and not any(r.ipv6 == v6 for r in host_routes[ns]):
                host_routes[ns].append(netns.KernelRoute("default", ((n.gateway, f"eth{k}"),), v6))
        for ns in hosts:
            host_routes.setdefault(ns, [])
        by_name = {n.name: n for n in nets.values()}
        uplinks = tuple(netns.uplink(prefix, f"{base}-n{by_name[net].id}", br)
                        for net, brs in sorted(joined.items()) if net in by_name for br in brs)
        topo = netns.Topology(prefix, tuple(bridges), tuple(router_ns[r] for r in sorted(router_ns)),
                              tuple(hosts), tuple(ports), uplinks)
        return Plan(topo, self.routers.topology(s, p.id), router_ns, dev, link_of, cables,
                    dict(host_routes), names, {n: b for n, b in joined.items() if n in by_name})
