"""Virtual routers of a project: interfaces on its networks, static routes, and the routing tables
poolvisor computes for them (policies/network/tables.py: connected, static, link-state,
distance-vector or path-vector), with longest-prefix-match lookups. A path-vector router is an
autonomous system (its AS number) with an import policy (local preference per neighbour router).

An interface takes an address of its network's pool (the network's reserved gateway when no
address is given and the gateway is still unclaimed, else the next free one) and a MAC; detaching
gives them back (the gateway address returns to being the network's reserved gateway).
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from poolvisor.domain.addresses import fmt, key, parse_address, parse_ip, parse_subnet, unkey
from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.domain.models import check_name
from poolvisor.policies.network.tables import (
    PROTOCOLS,
    Iface,
    Route,
    RouterSpec,
    Static,
    Tables,
    compute_tables,
)
from poolvisor.services import ipam
from poolvisor.services.base import ServiceBase
from poolvisor.services.catalog import flush_unique
from poolvisor.services.network_records import (
    InterfaceRecord,
    LookupRecord,
    RouteRecord,
    RouterRecord,
    StaticRouteRecord,
)
from poolvisor.services.networks import find_network, mac_pool
from poolvisor.store.rows import (
    IpPoolRow,
    NetworkRow,
    ProjectRow,
    RouterInterfaceRow,
    RouterRow,
    StaticRouteRow,
)

MAX_STATIC = 1000
MAX_COST = 65535
MAX_ASN = 4_294_967_294
FIRST_PRIVATE_ASN = 64512
MAX_LOCAL_PREF = 2**31 - 1


class RouterService(ServiceBase):
    """Routers of a project's networks, their interfaces, static routes and routing tables."""

    def create_router(self, project: str, name: str, protocol: str = "link-state",
                      asn: int | None = None) -> RouterRecord:
        """`asn`: a path-vector router's AS number (unique in the project; default: the first free
        private one from 64512)."""
        check_name("router", name)
        if protocol not in PROTOCOLS:
            raise InvalidInputError(f"unknown protocol {protocol!r}; allowed: {', '.join(PROTOCOLS)}")
        if asn is not None:
            if protocol != "path-vector":
                raise InvalidInputError("an AS number is for path-vector routers")
            if isinstance(asn, bool) or not isinstance(asn, int) or not 1 <= asn <= MAX_ASN:
                raise InvalidInputError(f"asn must be an integer 1..{MAX_ASN}")
        exists = f"router {name!r} already exists in project {project!r}"

        def tx(s: Session) -> RouterRecord:
            p = self._project(s, project)
            if s.scalar(select(RouterRow.id).filter_by(project_id=p.id, name=name)) is not None:
                raise ConflictError(exists)
            num = asn
            if protocol == "path-vector":
                taken = set(s.scalars(select(RouterRow.asn).where(RouterRow.project_id == p.id,
                                                                  RouterRow.asn.isnot(None))))
                if num is None:
                    num = next(a for a in range(FIRST_PRIVATE_ASN, FIRST_PRIVATE_ASN + len(taken) + 1)
                               if a not in taken)
                elif num in taken:
                    raise ConflictError(f"AS number {num} is taken by another router of project {project!r}")
            s.add(RouterRow(project_id=p.id, name=name, protocol=protocol, asn=num, local_pref={}))
            flush_unique(s, f"{exists} (or its AS number {num} was taken concurrently)")
            self._event(s, "router.created", f"router/{project}/{name}",
                        f"router {name} ({protocol}{f', AS {num}' if num is not None else ''}) created",
                        project=project)
            return self._router_records(s, p.id, project, [name])[0]

        return self._write(tx)

    def set_local_pref(self, project: str, router: str, neighbour: str, pref: int | None) -> RouterRecord:
        """Path-vector import policy: routes the router learns from `neighbour` get local
        preference `pref` (higher wins over a shorter AS path; default 100); None removes it."""
        check_name("router", neighbour)
        if pref is not None and (isinstance(pref, bool) or not isinstance(pref, int)
                                 or not 0 <= pref <= MAX_LOCAL_PREF):
            raise InvalidInputError(f"local preference must be an integer 0..{MAX_LOCAL_PREF}")

        def tx(s: Session) -> RouterRecord:
            r = self._router(s, project, router)
            nb = self._router(s, project, neighbour)
            if r.protocol != "path-vector" or nb.protocol != "path-vector":
                raise InvalidInputError("local preference applies between path-vector routers")
            if nb.id == r.id:
                raise InvalidInputError("a router is not its own neighbour")
            prefs = {k: v for k, v in dict(r.local_pref or {}).items() if k != neighbour}
            if pref is not None:
                prefs[neighbour] = pref
            r.local_pref = prefs
            self._event(s, "router.local_pref", f"router/{project}/{router}",
                        f"router {router}: routes from {neighbour} get local preference "
                        f"{pref if pref is not None else 'default'}", project=project)
            s.flush()
            return self._router_records(s, r.project_id, project, [router])[0]

        return self._write(tx)

    def list_routers(self, project: str | None = None) -> list[RouterRecord]:
        def tx(s: Session) -> list[RouterRecord]:
            if project is not None:
                return self._router_records(s, self._project(s, project).id, project, None)
            out: list[RouterRecord] = []
            for pid, pname in self._projects_with_routers(s):
                out += self._router_records(s, pid, pname, None)
            return out

        return self._read(tx)

    def get_router(self, project: str, name: str) -> RouterRecord:
        def tx(s: Session) -> RouterRecord:
            r = self._router(s, project, name)
            return self._router_records(s, r.project_id, project, [name])[0]

        return self._read(tx)

    def delete_router(self, project: str, name: str) -> None:
        """The router, its static routes and its interfaces (their addresses go back)."""

        def tx(s: Session) -> None:
            r = self._router(s, project, name)
            for i in list(s.scalars(select(RouterInterfaceRow).where(RouterInterfaceRow.router_id == r.id))):
                _release_interface(s, i)
            s.execute(delete(StaticRouteRow).where(StaticRouteRow.router_id == r.id))
            s.delete(r)
            self._event(s, "router.deleted", f"router/{project}/{name}", f"router {name} deleted",
                        project=project)

        self._write(tx)

    def attach_router(self, project: str, router: str, network: str, *, address: str | None = None,
                      cost: int = 1) -> InterfaceRecord:
        """An interface on the network: `address`, else the network's gateway if unclaimed, else
        the next free address; `cost` is the link cost the dynamic protocols use (1..65535)."""
        _check_cost(cost)

        def tx(s: Session) -> InterfaceRecord:
            r = self._router(s, project, router)
            net = self._network(s, project, network)
            q = select(RouterInterfaceRow.id).filter_by(router_id=r.id, network_id=net.id)
            if s.scalar(q) is not None:
                raise ConflictError(f"router {router!r} already has an interface on {network!r}")
            pool = ipam.info(_pool(s, net))
            owner = f"router {router}"
            gw = parse_address(pool.family, net.gateway) if net.gateway else None
            if address is not None:
                a = parse_address(pool.family, address)
                if not (a == gw and ipam.retag(s, pool, a, from_kind="gateway", kind="router", owner=owner)):
                    ipam.allocate(s, pool, a, kind="router", owner=owner)
            elif gw is not None and ipam.retag(s, pool, gw, from_kind="gateway", kind="router", owner=owner):
                a = gw
            else:
                try:
                    a = ipam.allocate_next(s, pool, 1, kind="router", owner=owner)[0].first
                except ConflictError:
                    raise ConflictError(f"network {network!r} has no free address") from None
            mac = ipam.allocate_next(s, mac_pool(s), 1, kind="router", owner=owner)[0].first
            s.add(RouterInterfaceRow(router_id=r.id, network_id=net.id, address=key(a), mac=key(mac),
                                     cost=cost, state="up"))
            try:
                s.flush()
            except IntegrityError:
                raise ConflictError(f"router {router!r} was attached to {network!r} concurrently") from None
            self._event(s, "router.attached", f"router/{project}/{router}",
                        f"router {router} attached to {network} as {fmt(pool.family, a)}", project=project)
            return self._interface(s, r.id, net.id)

        return self._write(tx)

    def detach_router(self, project: str, router: str, network: str) -> None:
        def tx(s: Session) -> None:
            r = self._router(s, project, router)
            net = self._network(s, project, network)
            i = s.scalars(select(RouterInterfaceRow).filter_by(router_id=r.id, network_id=net.id)).first()
            if i is None:
                raise NotFoundError(f"router {router!r} has no interface on {network!r}")
            _release_interface(s, i)
            self._event(s, "router.detached", f"router/{project}/{router}", f"router {router} left {network}",
                        project=project)

        self._write(tx)

    def set_interface(self, project: str, router: str, network: str, *, state: str | None = None,
                      cost: int | None = None) -> InterfaceRecord:
        """Take a link down or up (the routes re-converge around it), or change its cost."""
        if state is not None and state not in ("up", "down"):
            raise InvalidInputError("state must be up or down")
        if cost is not None:
            _check_cost(cost)

        def tx(s: Session) -> InterfaceRecord:
            r = self._router(s, project, router)
            net = self._network(s, project, network)
            i = s.scalars(select(RouterInterfaceRow).filter_by(router_id=r.id, network_id=net.id)).first()
            if i is None:
                raise NotFoundError(f"router {router!r} has no interface on {network!r}")
            if state is not None:
                i.state = state
            if cost is not None:
                i.cost = cost
            self._event(s, "router.link", f"router/{project}/{router}",
                        f"router {router} link to {network}: {i.state}, cost {i.cost}", project=project)
            s.flush()
            return self._interface(s, r.id, net.id)

        return self._write(tx)

    def add_static_route(self, project: str, router: str, prefix: str, nexthop: str,
                         metric: int = 1) -> StaticRouteRecord:
        sub = parse_subnet(prefix)
        fam, hop = parse_ip(nexthop, sub.family)
        _check_cost(metric, "metric")

        def tx(s: Session) -> StaticRouteRecord:
            r = self._router(s, project, router)
            n = s.scalar(select(func.count()).select_from(StaticRouteRow)
                         .where(StaticRouteRow.router_id == r.id))
            if (n or 0) >= MAX_STATIC:
                raise ConflictError(f"router {router!r} already has {MAX_STATIC} static routes")
            subnets = [parse_subnet(c) for c in s.scalars(
                select(NetworkRow.cidr)
                .join(RouterInterfaceRow, RouterInterfaceRow.network_id == NetworkRow.id)
                .where(RouterInterfaceRow.router_id == r.id))]
            if not any(x.family == fam and x.contains(hop) for x in subnets):
                raise InvalidInputError(f"next hop {fmt(fam, hop)} is not on a network router {router!r} is "
                                        "attached to")
            text = fmt(fam, hop)
            s.add(StaticRouteRow(router_id=r.id, prefix=str(sub), nexthop=text, metric=metric))
            flush_unique(s, f"router {router!r} already has the route {sub} via {text}")
            self._event(s, "route.added", f"router/{project}/{router}", f"route {sub} via {text} added",
                        project=project)
            return StaticRouteRecord(str(sub), text, metric)

        return self._write(tx)

    def delete_static_route(self, project: str, router: str, prefix: str, nexthop: str | None = None) -> int:
        """Remove the static route(s) to `prefix` (only the one via `nexthop` when given); returns
        how many were removed (404 when none)."""
        sub = parse_subnet(prefix)
        hop = fmt(sub.family, parse_ip(nexthop, sub.family)[1]) if nexthop is not None else None

        def tx(s: Session) -> int:
            r = self._router(s, project, router)
            q = delete(StaticRouteRow).where(StaticRouteRow.router_id == r.id,
                                             StaticRouteRow.prefix == str(sub))
            if hop is not None:
                q = q.where(StaticRouteRow.nexthop == hop)
            n = int(s.execute(q).rowcount)  # type: ignore[attr-defined]
            if not n:
                raise NotFoundError(f"router {router!r} has no static route to {sub}"
                                    + (f" via {hop}" if hop else ""))
            self._event(s, "route.deleted", f"router/{project}/{router}", f"route {sub} deleted",
                        project=project)
            return n

        return self._write(tx)

    # ---- computed tables ---------------------------------------------------------------------
    def routing_tables(self, project: str) -> Tables:
        """Every router's table in the project, computed from the store as it is now."""
        return compute_tables(self._read(lambda s: self.topology(s, self._project(s, project).id)))

    def router_routes(self, project: str, router: str) -> tuple[list[RouteRecord], Tables]:
        def tx(s: Session) -> list[RouterSpec]:
            self._router(s, project, router)
            return self.topology(s, self._project(s, project).id)

        tables = compute_tables(self._read(tx))
        return [route_record(r) for r in tables.routes.get(router, [])], tables

    def lookup_route(self, project: str, router: str, address: str) -> LookupRecord:
        fam, a = parse_ip(address)
        _routes, tables = self.router_routes(project, router)
        hit = tables.lookup(router, fam, a)
        return LookupRecord(fmt(fam, a), router, route_record(hit) if hit is not None else None)

    def topology(self, s: Session, project_id: int) -> list[RouterSpec]:
        """The project's routers as pure specs (interfaces, static routes, protocol)."""
        nets = {n.id: n for n in s.scalars(select(NetworkRow).where(NetworkRow.project_id == project_id))}
        routers = list(s.scalars(select(RouterRow).where(RouterRow.project_id == project_id)
                                 .order_by(RouterRow.name)))
        ids = [r.id for r in routers]
        ifaces: dict[int, list[Iface]] = defaultdict(list)
        for i in s.scalars(select(RouterInterfaceRow).where(RouterInterfaceRow.router_id.in_(ids))
                           .order_by(RouterInterfaceRow.id)):
            n = nets[i.network_id]
            ifaces[i.router_id].append(Iface(n.name, parse_subnet(n.cidr), unkey(i.address), i.cost,
                                             i.state == "up"))
        statics: dict[int, list[Static]] = defaultdict(list)
        for st in s.scalars(select(StaticRouteRow).where(StaticRouteRow.router_id.in_(ids))
                            .order_by(StaticRouteRow.id)):
            sub = parse_subnet(st.prefix)
            statics[st.router_id].append(Static(sub, parse_ip(st.nexthop, sub.family)[1], st.metric))
        return [RouterSpec(r.name, r.protocol, tuple(ifaces[r.id]), tuple(statics[r.id]), r.asn,
                           tuple(sorted((str(k), int(v)) for k, v in (r.local_pref or {}).items())))
                for r in routers]

    # ---- lookups and records -----------------------------------------------------------------
    def _network(self, s: Session, project: str, name: str) -> NetworkRow:
        return find_network(s, self._project(s, project).id, project, name)

    def _router(self, s: Session, project: str, name: str) -> RouterRow:
        p = self._project(s, project)
        r = s.scalars(select(RouterRow).filter_by(project_id=p.id, name=name)).first()
        if r is None:
            raise NotFoundError(f"router {name!r} not found in project {project!r}")
        return r

    @staticmethod
    def _projects_with_routers(s: Session) -> list[tuple[int, str]]:
        q = (select(ProjectRow.id, ProjectRow.name).where(ProjectRow.id.in_(select(RouterRow.project_id)))
             .order_by(ProjectRow.name))
        return [(int(i), str(n)) for i, n in s.execute(q)]

    @staticmethod
    def _interface(s: Session, router_id: int, network_id: int) -> InterfaceRecord:
        i = s.scalars(select(RouterInterfaceRow).filter_by(router_id=router_id, network_id=network_id)).one()
        net = s.get(NetworkRow, network_id)
        assert net is not None
        sub = parse_subnet(net.cidr)
        return InterfaceRecord(net.name, fmt(sub.family, unkey(i.address)), sub.prefixlen,
                               fmt("mac", unkey(i.mac)), i.cost, i.state)

    def _router_records(self, s: Session, project_id: int, project: str, names: list[str] | None
                        ) -> list[RouterRecord]:
        q = select(RouterRow).where(RouterRow.project_id == project_id).order_by(RouterRow.name)
        if names is not None:
            q = q.where(RouterRow.name.in_(names))
        out = []
        for r in s.scalars(q):
            ifs = [self._interface(s, r.id, nid) for nid in s.scalars(
                select(RouterInterfaceRow.network_id).where(RouterInterfaceRow.router_id == r.id))]
            sts = [StaticRouteRecord(x.prefix, x.nexthop, x.metric) for x in s.scalars(
                select(StaticRouteRow).where(StaticRouteRow.router_id == r.id).order_by(StaticRouteRow.id))]
            out.append(RouterRecord(r.name, project, r.protocol, sorted(ifs, key=lambda i: i.network), sts,
                                    r.asn, {str(k): int(v) for k, v in (r.local_pref or {}).items()}))
        return out


def route_record(r: Route) -> RouteRecord:
    fam = r.prefix.family
    return RouteRecord(str(r.prefix), r.source, float(r.metric),
                       [fmt(fam, h.nexthop) for h in r.hops if h.nexthop is not None],
                       [h.network for h in r.hops], list(r.as_path))


def _pool(s: Session, net: NetworkRow) -> IpPoolRow:
    p = s.get(IpPoolRow, net.pool_id)
    if p is None:
        raise NotFoundError(f"network {net.name!r} has no address pool")
    return p


def _release_interface(s: Session, i: RouterInterfaceRow) -> None:
    """Give the interface's address back (a network's gateway stays reserved as its gateway) and
    its MAC, and remove it."""
    net = s.get(NetworkRow, i.network_id)
    assert net is not None
    pool = ipam.info(_pool(s, net))
    a = unkey(i.address)
    gw = parse_address(pool.family, net.gateway) if net.gateway else None
    if a == gw:
        ipam.retag(s, pool, a, from_kind="router", kind="gateway", owner=f"network {net.name}")
    else:
        ipam.release(s, pool, a, kinds=("router",))
    ipam.release(s, mac_pool(s), unkey(i.mac), kinds=("router",))
    s.delete(i)
    s.flush()


def _check_cost(v: int, what: str = "cost") -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_COST:
        raise InvalidInputError(f"{what} must be an integer 1..{MAX_COST}")
