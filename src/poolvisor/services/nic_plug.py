"""A new workload's NICs plugged on its host, through the host driver's NicAttach.

The NICs (address of the network's pool, MAC of the MAC pool) are allocated in the transaction
that creates the workload (services/networks.py `attach_nics`); once the driver created the guest,
`plug_nics` hands each to the host's driver when it declares NIC_ATTACH: on libvirt the
poolvisor network becomes a libvirt network (an isolated bridge) on that host, defined on demand,
and the NIC is on it with poolvisor's MAC, its address a static DHCP host entry of that
network (`NicSpec.dhcp`: the server address the network reserved); the driver removes the
libvirt network when the last NIC of the host on it goes (guest deleted, migrated away, NIC
detached). A NIC the host refuses takes the new guest with it (the create is then undone like any
driver failure).
"""

from __future__ import annotations

import contextlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.domain.addresses import fmt, parse_subnet, unkey
from poolvisor.domain.errors import PoolvisorError
from poolvisor.drivers.base import DriverWorkload
from poolvisor.drivers.protocols import Capability, NicSpec, supports
from poolvisor.services.context import ServiceContext
from poolvisor.services.networks import dhcp_address
from poolvisor.store.rows import NetworkRow, NicRow, ProjectRow, WorkloadRow


def workload_nics(s: Session, project: str, name: str) -> list[NicSpec]:
    """The workload's NICs, in order (eth0 first), as the driver takes them."""
    q = (select(NicRow, NetworkRow).join(NetworkRow, NetworkRow.id == NicRow.network_id)
         .join(WorkloadRow, WorkloadRow.id == NicRow.workload_id)
         .join(ProjectRow, ProjectRow.id == WorkloadRow.project_id)
         .where(ProjectRow.name == project, WorkloadRow.name == name).order_by(NicRow.id))
    out = []
    for nic, net in s.execute(q).all():
        sub = parse_subnet(net.cidr)
        server = dhcp_address(s, net.pool_id)
        out.append(NicSpec(mac=fmt("mac", unkey(nic.mac)), network=f"{project}/{net.name}",
                           address=f"{fmt(sub.family, unkey(nic.address))}/{sub.prefixlen}",
                           gateway=net.gateway, dhcp=fmt(sub.family, server) if server is not None else ""))
    return out


def plug_nics(ctx: ServiceContext, project: str, name: str, host: str, dw: DriverWorkload) -> None:
    """Attach the new guest's NICs on `host` (nothing when its driver has no NIC_ATTACH or the
    workload no NIC); a refusal deletes the guest again and propagates."""
    if not supports(ctx.drivers.driver_of(host), Capability.NIC_ATTACH):
        return
    nics = ctx.read(lambda s: workload_nics(s, project, name))
    if not nics:
        return
    drv = ctx.drivers.nic_attach(host)
    try:
        for nic in nics:
            drv.attach_nic(host, dw, nic)
    except PoolvisorError:
        with contextlib.suppress(PoolvisorError):
            ctx.drivers.lifecycle(host).delete(host, dw)
        raise
