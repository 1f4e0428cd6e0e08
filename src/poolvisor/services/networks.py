"""Address pools, per-project virtual networks and workload NICs (use cases over services/ipam.py).

Everything here belongs to one project: names are unique per project, and another project's pools
and networks are simply not found. A network owns an address pool of the same name (the gateway,
its first usable address, reserved in it); a NIC takes the next free address of its network and a
MAC of the global MAC pool.

Workloads get their NICs inside the transaction that creates them (`attach_nics`, called from
WorkloadServices._claim), and give them back inside the one that deletes them: a `before_flush`
hook releases the NICs of every WorkloadRow the session deletes, whichever use case deletes it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, event, func, select
from sqlalchemy.orm import Session

from poolvisor.domain.addresses import (
    Family,
    Subnet,
    fmt,
    key,
    parse_address,
    parse_subnet,
    unkey,
)
from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.domain.models import check_name
from poolvisor.domain.text import TEXT_PATTERN, forbidden_char
from poolvisor.services import ipam
from poolvisor.services.base import ServiceBase
from poolvisor.services.catalog import flush_unique
from poolvisor.services.network_records import (
    IpPoolRecord,
    IpRangeRecord,
    NetworkRecord,
    NicRecord,
)
from poolvisor.store.rows import (
    IpAllocationRow,
    IpPoolRow,
    NetworkRow,
    NicRow,
    ProjectRow,
    RouterInterfaceRow,
    RouterRow,
    WorkloadRow,
)

# Free text (owners, notes) may not hold C0/DEL/C1 controls nor bidirectional formatting characters
# (they act on terminals or reorder what is displayed); \uXXXX escapes only, so the same pattern
# works in Python, pydantic and the OpenAPI document.
NOTE_PATTERN = TEXT_PATTERN  # notes are free text: the one rule of domain/text.py
MAX_NICS = 8
MAX_LIST = 1000
MAX_OWNER = 200
MAX_COUNT = 1 << 64


class NetworkService(ServiceBase):
    """Address pools, virtual networks and NICs of one project."""

    # ---- address pools -----------------------------------------------------------------------
    def create_ip_pool(self, project: str, name: str, cidr: str) -> IpPoolRecord:
        """A standalone pool of every address of the subnet but the network/broadcast ones."""
        check_name("address pool", name)
        net = parse_subnet(cidr)
        first, last = net.usable()

        def tx(s: Session) -> IpPoolRecord:
            p = self._project(s, project)
            if _pool_row(s, p.id, name) is not None:
                raise ConflictError(f"address pool {name!r} already exists in project {project!r}")
            ipam.create_pool(s, p.id, name, net.family, str(net), first, last)
            self._event(s, "ip_pool.created", f"ip_pool/{project}/{name}",
                        f"address pool {name} ({net}) created", project=project)
            return _pool_records(s, [_need_pool(s, p.id, project, name)])[0]

        return self._write(tx)

    def list_ip_pools(self, project: str | None = None) -> list[IpPoolRecord]:
        def tx(s: Session) -> list[IpPoolRecord]:
            q = select(IpPoolRow).order_by(IpPoolRow.project_id, IpPoolRow.name)
            if project is not None:
                q = q.where(IpPoolRow.project_id == self._project(s, project).id)
            return _pool_records(s, list(s.scalars(q)))

        return self._read(tx)

    def get_ip_pool(self, project: str, name: str) -> IpPoolRecord:
        return self._read(lambda s: _pool_records(s, [self._ip_pool(s, project, name)])[0])

    def delete_ip_pool(self, project: str, name: str) -> None:
        """Only a standalone pool with nothing allocated (reserved ranges go with it)."""

        def tx(s: Session) -> None:
            pool = self._ip_pool(s, project, name)
            if s.scalar(select(NetworkRow.id).where(NetworkRow.pool_id == pool.id)) is not None:
                raise ConflictError(f"address pool {name!r} belongs to network {name!r}; delete the network")
            used = ipam.usage(s, pool.id)
            held = sum(n for k, n in used.items() if k not in ("free", "reserved"))
            if held:
                raise ConflictError(f"address pool {name!r} still has {held} allocated address(es)")
            s.delete(pool)
            self._event(s, "ip_pool.deleted", f"ip_pool/{project}/{name}", f"address pool {name} deleted",
                        project=project)

        self._write(tx)

    def allocate_ip(self, project: str, pool: str, *, address: str | None = None, count: int = 1,
                    owner: str = "") -> list[IpRangeRecord]:
        """The next `count` free addresses, or exactly `address`; `owner` is a free-text note."""
        _check_count(count)
        _check_owner(owner)
        if address is not None and count != 1:
            raise InvalidInputError("give either an address or a count, not both")

        def tx(s: Session) -> list[IpRangeRecord]:
            row = self._ip_pool(s, project, pool)
            info = ipam.info(row)
            if address is not None:
                ivs = [ipam.allocate(s, info, parse_address(info.family, address), owner=owner)]
            else:
                ivs = ipam.allocate_next(s, info, count, owner=owner)
            self._event(s, "ip.allocated", f"ip_pool/{project}/{pool}",
                        f"{_count(ivs)} address(es) allocated from {pool}", project=project,
                        data={"ranges": [_range(info.family, iv).__dict__ for iv in ivs[:10]]})
            return [_range(info.family, iv) for iv in ivs]

        return self._write(tx)

    def reserve_ip_range(self, project: str, pool: str, first: str, last: str,
                         note: str = "") -> IpRangeRecord:
        """Take [first, last] out of circulation (e.g. for static addresses); all of it must be free."""
        _check_owner(note)

        def tx(s: Session) -> IpRangeRecord:
            info = ipam.info(self._ip_pool(s, project, pool))
            lo, hi = parse_address(info.family, first), parse_address(info.family, last)
            if lo > hi:
                raise InvalidInputError(f"the first address {first} is after the last {last}")
            iv = ipam.allocate(s, info, lo, hi, kind="reserved", owner=note)
            self._event(s, "ip.reserved", f"ip_pool/{project}/{pool}", f"{first}-{last} reserved in {pool}",
                        project=project)
            return _range(info.family, iv)

        return self._write(tx)

    def release_ip(self, project: str, pool: str, first: str, last: str | None = None) -> IpRangeRecord:
        """Give back an address (or a range) allocated or reserved through the IP API. Addresses held
        by NICs, router interfaces or a gateway go back with their object."""

        def tx(s: Session) -> IpRangeRecord:
            info = ipam.info(self._ip_pool(s, project, pool))
            lo = parse_address(info.family, first)
            hi = parse_address(info.family, last) if last is not None else lo
            iv = ipam.release(s, info, lo, hi, kinds=ipam.USER_KINDS)
            self._event(s, "ip.released", f"ip_pool/{project}/{pool}",
                        f"{_range(info.family, iv).first}.. released in {pool}", project=project)
            return _range(info.family, iv)

        return self._write(tx)

    def list_ip_ranges(self, project: str, pool: str, *, free: bool = False, limit: int = 100,
                       after: str | None = None) -> list[IpRangeRecord]:
        """Allocated (or free) intervals in address order, at most `limit`, after address `after`."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
            raise InvalidInputError(f"limit must be 1..{MAX_LIST}")

        def tx(s: Session) -> list[IpRangeRecord]:
            row = self._ip_pool(s, project, pool)
            fam: Family = row.family  # type: ignore[assignment]
            start = parse_address(fam, after) if after is not None else None
            return [_range(fam, iv) for iv in ipam.intervals(s, row.id, free=free, limit=limit, after=start)]

        return self._read(tx)

    def check_ipam(self) -> list[str]:
        """Every pool's interval invariants (see ipam.check_pool); [] when all hold."""

        def tx(s: Session) -> list[str]:
            out: list[str] = []
            for p in s.scalars(select(IpPoolRow).order_by(IpPoolRow.id)):
                out += ipam.check_pool(s, ipam.info(p), p.name)
            return out

        return self._read(tx)

    # ---- networks ----------------------------------------------------------------------------
    def create_network(self, project: str, name: str, cidr: str, *, gateway: str | None = None,
                       no_gateway: bool = False) -> NetworkRecord:
        """A network with its own address pool; the gateway (the first usable address unless given)
        is reserved for the first router attached to it. Subnets may overlap across projects
        (they are isolated) but not within one."""
        check_name("network", name)
        net = parse_subnet(cidr)
        if net.prefixlen > net.bits - 2:
            raise InvalidInputError(f"network {name!r}: a /{net.prefixlen} leaves no room for hosts")
        first, last = net.usable()
        gw: int | None = None
        if not no_gateway:
            gw = parse_address(net.family, gateway) if gateway is not None else first
            if not first <= gw <= last:
                raise InvalidInputError(f"gateway {fmt(net.family, gw)} is not a host address of {net}")
        elif gateway is not None:
            raise InvalidInputError("give a gateway or no_gateway, not both")
        exists = f"network {name!r} already exists in project {project!r}"

        def tx(s: Session) -> NetworkRecord:
            p = self._lock_project(s, project)
            if s.scalar(select(NetworkRow.id).filter_by(project_id=p.id, name=name)) is not None:
                raise ConflictError(exists)
            if _pool_row(s, p.id, name) is not None:
                raise ConflictError(f"an address pool named {name!r} exists in project {project!r}")
            for other, other_cidr in s.execute(select(NetworkRow.name, NetworkRow.cidr)
                                               .where(NetworkRow.project_id == p.id)):
                if parse_subnet(other_cidr).overlaps(net):
                    raise ConflictError(
                        f"{net} overlaps network {other!r} ({other_cidr}) of project {project!r}")
            pool_id = ipam.create_pool(s, p.id, name, net.family, str(net), first, last)
            pool = ipam.PoolInfo(pool_id, net.family, first, last)
            if gw is not None:
                ipam.allocate(s, pool, gw, kind="gateway", owner=f"network {name}")
            server = dhcp_server(net, gw)
            if server is not None:
                ipam.allocate(s, pool, server, kind="dhcp", owner=f"network {name}")
            s.add(NetworkRow(project_id=p.id, name=name, pool_id=pool_id, cidr=str(net),
                             gateway=fmt(net.family, gw) if gw is not None else ""))
            flush_unique(s, exists)
            self._event(s, "network.created", f"network/{project}/{name}", f"network {name} ({net}) created",
                        project=project, data={"cidr": str(net)})
            return self._network_records(s, p.id, [name])[0]

        return self._write(tx)

    def list_networks(self, project: str | None = None) -> list[NetworkRecord]:
        def tx(s: Session) -> list[NetworkRecord]:
            pid = self._project(s, project).id if project is not None else None
            return self._network_records(s, pid, None)

        return self._read(tx)

    def get_network(self, project: str, name: str) -> NetworkRecord:
        def tx(s: Session) -> NetworkRecord:
            n = self._network(s, project, name)
            return self._network_records(s, n.project_id, [name])[0]

        return self._read(tx)

    def delete_network(self, project: str, name: str) -> None:
        """Only a network no NIC and no router interface uses; its pool goes with it."""

        def tx(s: Session) -> None:
            n = self._network(s, project, name)
            nics = s.scalar(select(func.count()).select_from(NicRow).where(NicRow.network_id == n.id))
            if nics:
                raise ConflictError(f"network {name!r} still has {nics} NIC(s); delete those workloads first")
            routers = s.scalars(select(RouterRow.name).join(RouterInterfaceRow,
                                                            RouterInterfaceRow.router_id == RouterRow.id)
                                .where(RouterInterfaceRow.network_id == n.id)).all()
            if routers:
                raise ConflictError(f"network {name!r} is attached to router(s) {', '.join(sorted(routers))}")
            pool = s.get(IpPoolRow, n.pool_id)
            s.delete(n)
            s.flush()
            if pool is not None:
                s.delete(pool)
            self._event(s, "network.deleted", f"network/{project}/{name}", f"network {name} deleted",
                        project=project)

        self._write(tx)

    def list_nics(self, project: str, *, network: str | None = None,
                  workload: str | None = None) -> list[NicRecord]:
        def tx(s: Session) -> list[NicRecord]:
            p = self._project(s, project)
            q = (select(NicRow, WorkloadRow.name, NetworkRow)
                 .join(WorkloadRow, WorkloadRow.id == NicRow.workload_id)
                 .join(NetworkRow, NetworkRow.id == NicRow.network_id)
                 .where(WorkloadRow.project_id == p.id).order_by(WorkloadRow.name, NicRow.id))
            if network is not None:
                q = q.where(NicRow.network_id == self._network(s, project, network).id)
            if workload is not None:
                q = q.where(WorkloadRow.id == self._workload(s, project, workload)[0].id)
            return _nic_records(s, project, list(s.execute(q)))

        return self._read(tx)

    # ---- lookups -----------------------------------------------------------------------------
    def _ip_pool(self, s: Session, project: str, name: str) -> IpPoolRow:
        return _need_pool(s, self._project(s, project).id, project, name)

    def _network(self, s: Session, project: str, name: str) -> NetworkRow:
        return find_network(s, self._project(s, project).id, project, name)

    def _lock_project(self, s: Session, project: str) -> ProjectRow:
        """The project row, locked (PostgreSQL) so checks across its networks are serialized."""
        p = s.scalars(select(ProjectRow).filter_by(name=project).with_for_update()).first()
        if p is None:
            raise NotFoundError(f"project {project!r} not found")
        return p

    @staticmethod
    def _network_records(s: Session, project_id: int | None, names: list[str] | None) -> list[NetworkRecord]:
        q = select(NetworkRow).order_by(NetworkRow.project_id, NetworkRow.name)
        if project_id is not None:
            q = q.where(NetworkRow.project_id == project_id)
        if names is not None:
            q = q.where(NetworkRow.name.in_(names))
        nets = list(s.scalars(q))
        if not nets:
            return []
        ids = [n.id for n in nets]
        projects = dict(s.execute(select(ProjectRow.id, ProjectRow.name)).all())
        nics = dict(s.execute(select(NicRow.network_id, func.count()).where(NicRow.network_id.in_(ids))
                              .group_by(NicRow.network_id)).all())
        routers: dict[int, list[str]] = defaultdict(list)
        for nid, rname in s.execute(select(RouterInterfaceRow.network_id, RouterRow.name)
                                    .join(RouterRow, RouterRow.id == RouterInterfaceRow.router_id)
                                    .where(RouterInterfaceRow.network_id.in_(ids)).order_by(RouterRow.name)):
            routers[nid].append(rname)
        out = []
        for n in nets:
            sub = parse_subnet(n.cidr)
            free = ipam.usage(s, n.pool_id)["free"]
            lo, hi = sub.usable()
            server = dhcp_address(s, n.pool_id)
            out.append(NetworkRecord(n.name, projects[n.project_id], n.cidr, sub.family, n.gateway or None,
                                     hi - lo + 1, free, int(nics.get(n.id, 0)), routers[n.id],
                                     fmt(sub.family, server) if server is not None else None))
        return out


def dhcp_server(net: Subnet, gateway: int | None) -> int | None:
    """The address the hosts' DHCP servers take on an IPv4 network of at least 14 host
    addresses (a /28): its last usable one (the one before when that is the gateway). Smaller
    subnets keep every address for guests; IPv6 gets no DHCP from poolvisor (libvirt keys IPv6 host entries by
    DHCPv6 DUID, which poolvisor cannot know before the guest boots, not by MAC)."""
    first, last = net.usable()
    if net.family != "ipv4" or last - first + 1 < 14:
        return None
    return last - 1 if last == gateway else last


def dhcp_address(s: Session, pool_id: int) -> int | None:
    """The DHCP server address reserved in a network's pool (None: the network has no DHCP)."""
    k = s.scalar(select(IpAllocationRow.first).where(IpAllocationRow.pool_id == pool_id,
                                                     IpAllocationRow.kind == "dhcp").limit(1))
    return unkey(k) if k is not None else None


def find_network(s: Session, project_id: int, project: str, name: str) -> NetworkRow:
    """The project's network `name`, NotFoundError otherwise (routers look networks up too)."""
    n = s.scalars(select(NetworkRow).filter_by(project_id=project_id, name=name)).first()
    if n is None:
        raise NotFoundError(f"network {name!r} not found in project {project!r}")
    return n


# ---- NICs of workloads (called from the workload use cases) ------------------------------------
def check_networks(networks: Sequence[str] | None) -> tuple[str, ...]:
    if networks is None:
        return ()
    if isinstance(networks, str) or not isinstance(networks, (list, tuple)):
        raise InvalidInputError("networks must be a list of network names")
    if len(networks) > MAX_NICS:
        raise InvalidInputError(f"a workload has at most {MAX_NICS} NICs")
    for n in networks:
        check_name("network", n)
    if len(set(networks)) != len(networks):
        raise InvalidInputError("a network is listed twice; a workload has one NIC per network")
    return tuple(networks)


def validate_networks(svc: ServiceBase, project: str, networks: Sequence[str] | None) -> tuple[str, ...]:
    """A workload's requested networks: names, at most MAX_NICS, no repeats, all existing."""
    nets = check_networks(networks)
    if nets:
        def tx(s: Session) -> None:
            pid = svc._project(s, project).id
            for n in nets:
                if s.scalar(select(NetworkRow.id).filter_by(project_id=pid, name=n)) is None:
                    raise NotFoundError(f"network {n!r} not found in project {project!r}")

        svc._read(tx)
    return nets


def mac_pool(s: Session) -> ipam.PoolInfo:
    p = s.scalars(select(IpPoolRow).where(IpPoolRow.family == "mac", IpPoolRow.project_id.is_(None))).first()
    if p is None:
        raise ConflictError("the MAC address pool is missing (database not migrated?)")
    return ipam.info(p)


def attach_nics(s: Session, project_id: int, workload_id: int, owner: str, networks: Sequence[str]) -> None:
    """Give the workload one NIC per network (in order): the network's next free address and a MAC.
    Pools are locked in id order, so concurrent creations never wait on each other in a cycle."""
    if not networks:
        return
    rows = {n.name: n for n in s.scalars(select(NetworkRow).where(NetworkRow.project_id == project_id,
                                                                  NetworkRow.name.in_(list(networks))))}
    missing = [n for n in networks if n not in rows]
    if missing:
        raise NotFoundError(f"network {missing[0]!r} not found")
    pools = {p.id: p for p in s.scalars(select(IpPoolRow).where(
        IpPoolRow.id.in_([r.pool_id for r in rows.values()])).order_by(IpPoolRow.id))}
    for pid in sorted(pools):
        ipam.lock_pool(s, pid)
    macs = mac_pool(s)
    for name in networks:
        net = rows[name]
        try:
            iv = ipam.allocate_next(s, ipam.info(pools[net.pool_id]), 1, kind="nic", owner=owner)[0]
        except ConflictError:
            raise ConflictError(f"network {name!r} has no free address") from None
        mac = ipam.allocate_next(s, macs, 1, kind="nic", owner=owner)[0]
        s.add(NicRow(workload_id=workload_id, network_id=net.id, address=key(iv.first), mac=key(mac.first)))
    s.flush()


_NIC_W = cast(Table, NicRow.__table__).c.workload_id
_ANY_NIC = (select(_NIC_W)  # built once: deletes ask it (a single id: `=`, no expanding IN to render)
            .where(_NIC_W.in_(bindparam("w", expanding=True))).limit(1))
_HAS_NIC = select(_NIC_W).where(_NIC_W == bindparam("w")).limit(1)  # noqa: SIM300


def release_nics(s: Session, workload_ids: Sequence[int]) -> None:
    """Give back the addresses and MACs of these workloads' NICs and remove the NICs."""
    ids = list(workload_ids)
    one = len(ids) == 1
    if s.connection().execute(_HAS_NIC if one else _ANY_NIC, {"w": ids[0] if one else ids}).first() is None:
        return  # most workloads have none: one prepared query instead of the join below
    nics = s.execute(select(NicRow.id, NicRow.address, NicRow.mac, IpPoolRow)
                     .join(NetworkRow, NetworkRow.id == NicRow.network_id)
                     .join(IpPoolRow, IpPoolRow.id == NetworkRow.pool_id)
                     .where(NicRow.workload_id.in_(ids)).order_by(IpPoolRow.id)).all()
    if not nics:
        return
    macs = mac_pool(s)
    for _nid, address, _mac, pool in nics:
        ipam.release(s, ipam.info(pool), unkey(address), kinds=("nic",))
    for _nid, _address, mac, _pool in nics:
        ipam.release(s, macs, unkey(mac), kinds=("nic",))
    s.execute(delete(NicRow).where(NicRow.id.in_([n[0] for n in nics])),
              execution_options={"synchronize_session": False})


@event.listens_for(Session, "before_flush")
def _release_nics_of_deleted_workloads(session: Session, _ctx: Any, _instances: Any) -> None:
    ids = [o.id for o in session.deleted if isinstance(o, WorkloadRow) and o.id is not None]
    if ids:
        release_nics(session, ids)


# ---- invariants (part of `poolvisor check`) ------------------------------------------------------
def network_violations(s: Session) -> list[str]:
    """Every pool's intervals partition it (ipam.check_pool), and the addresses held by objects match
    the objects: each NIC / router interface holds its address (in its network's pool) and its MAC
    (in the MAC pool) with the right kind, and no pool holds more such addresses than there are
    objects (a leak)."""
    v: list[str] = []
    pools = {p.id: p for p in s.scalars(select(IpPoolRow))}
    for p in pools.values():
        v += ipam.check_pool(s, ipam.info(p), p.name)
    held: dict[tuple[int, int], str] = {}
    per_kind: dict[tuple[int, str], int] = defaultdict(int)
    for pid, first, last, kind in s.execute(select(IpAllocationRow.pool_id, IpAllocationRow.first,
                                                   IpAllocationRow.last, IpAllocationRow.kind)):
        if kind in ("nic", "router", "gateway"):
            held[(pid, unkey(first))] = kind if first == last else f"{kind} range"
            per_kind[(pid, kind)] += 1
    macs = [p.id for p in pools.values() if p.family == "mac"]
    mac_id = macs[0] if macs else -1
    expect: dict[tuple[int, str], int] = defaultdict(int)
    nets = {n.id: n for n in s.scalars(select(NetworkRow))}
    objects = [("nic", f"NIC {n.id}", n.network_id, n.address, n.mac) for n in s.scalars(select(NicRow))]
    objects += [("router", f"router interface {i.id}", i.network_id, i.address, i.mac)
                for i in s.scalars(select(RouterInterfaceRow))]
    for kind, what, net_id, address, mac in objects:
        net = nets[net_id]
        for pid, value, where in ((net.pool_id, unkey(address), f"network {net.name}"),
                                  (mac_id, unkey(mac), "the MAC pool")):
            expect[(pid, kind)] += 1
            got = held.get((pid, value))
            if got != kind:
                text = fmt(pools[pid].family, value) if pid in pools else str(value)
                v.append(f"{what}: {text} is not held as {kind} in {where} (found: {got or 'nothing'})")
    for (pid, kind), n in per_kind.items():
        if kind != "gateway" and n > expect.get((pid, kind), 0):
            v.append(f"pool {pools[pid].name}: {n} {kind} address(es) held but "
                     f"{expect.get((pid, kind), 0)} {kind} object(s) use it (leaked)")
    for net in nets.values():
        if net.gateway:
            pool = pools[net.pool_id]
            got = held.get((pool.id, parse_address(pool.family, net.gateway)))  # type: ignore[arg-type]
            if got not in ("gateway", "router"):
                v.append(f"network {net.name}: gateway {net.gateway} is not reserved "
                         f"(found: {got or 'nothing'})")
    return v


# ---- helpers -----------------------------------------------------------------------------------
def _pool_row(s: Session, project_id: int, name: str) -> IpPoolRow | None:
    return s.scalars(select(IpPoolRow).filter_by(project_id=project_id, name=name)).first()


def _need_pool(s: Session, project_id: int, project: str, name: str) -> IpPoolRow:
    p = _pool_row(s, project_id, name)
    if p is None:
        raise NotFoundError(f"address pool {name!r} not found in project {project!r}")
    return p


def _pool_records(s: Session, pools: list[IpPoolRow]) -> list[IpPoolRecord]:
    if not pools:
        return []
    projects = dict(s.execute(select(ProjectRow.id, ProjectRow.name)).all())
    nets = dict(s.execute(select(NetworkRow.pool_id, NetworkRow.name)
                          .where(NetworkRow.pool_id.in_([p.id for p in pools]))).all())
    out = []
    for p in pools:
        used = ipam.usage(s, p.id)
        free = used.pop("free")
        first, last = unkey(p.first), unkey(p.last)
        out.append(IpPoolRecord(p.name, projects.get(p.project_id) if p.project_id is not None else None,
                                p.family, p.cidr, fmt(p.family, first), fmt(p.family, last), last - first + 1,
                                free, used, nets.get(p.id)))
    return out


def _nic_records(s: Session, project: str, rows: list[tuple[NicRow, str, NetworkRow]]) -> list[NicRecord]:
    index: dict[str, int] = defaultdict(int)
    order = sorted(rows, key=lambda r: (r[1], r[0].id))
    out = []
    for nic, wname, net in order:
        sub = parse_subnet(net.cidr)
        out.append(NicRecord(wname, project, net.name, index[wname], fmt(sub.family, unkey(nic.address)),
                             sub.prefixlen, fmt("mac", unkey(nic.mac)), net.gateway or None))
        index[wname] += 1
    return out


def _range(family: str, iv: ipam.Interval) -> IpRangeRecord:
    return IpRangeRecord(fmt(family, iv.first), fmt(family, iv.last), iv.size, iv.kind, iv.owner)


def _count(ivs: list[ipam.Interval]) -> int:
    return sum(iv.size for iv in ivs)


def _check_count(count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise InvalidInputError(f"count must be 1..{MAX_COUNT}")


def _check_owner(owner: str) -> None:
    if not isinstance(owner, str) or len(owner) > MAX_OWNER or forbidden_char(owner) is not None:
        raise InvalidInputError(f"owner/note must be text of at most {MAX_OWNER} characters without control "
                                "or bidirectional formatting characters")


__all__ = ["NetworkService", "Subnet", "attach_nics", "check_networks", "release_nics", "validate_networks"]
