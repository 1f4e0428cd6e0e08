"""Hosts: declaration (capacity per resource, overcommit, labels, failure domain), states, failure.

A host is bound to a driver (name and URI; sim by default) and has a fence method (fencing/).
Setting a host fenced (through its fence agent) or down means its workloads are gone: they become
'lost' and their allocations are released in the same transaction, with events.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.domain.models import HostState, check_name
from poolvisor.domain.resources import DEFAULT_RESOURCES, ResourceSet
from poolvisor.drivers.base import DriverError
from poolvisor.drivers.protocols import HostBinding, HostDriver
from poolvisor.drivers.registry import known_drivers
from poolvisor.drivers.sim import SimDriver
from poolvisor.fencing import FenceAgent, FenceFailed, FenceResult, check_method, make_agent
from poolvisor.services import ledger
from poolvisor.services.base import ServiceBase
from poolvisor.services.catalog import check_labels, flush_unique
from poolvisor.services.gpus import add_devices, check_host_gpus
from poolvisor.services.records import DELETING, HOLDING_STATES, LOST, HostRecord
from poolvisor.services.references import delete_unused
from poolvisor.store.rows import HostResourceRow, HostRow, ProjectRow, WorkloadRow

log = logging.getLogger("poolvisor.services")
MAX_WORKLOADS_LIMIT = 1_000_000
MAX_URI = 1024


class HostService(ServiceBase):
    """Hosts: declaration, listing, states, their driver binding and fence agent."""

    def create_host(self, name: str, capacity: dict[str, float] | None = None, pool: str | None = None,
                    overcommit: dict[str, float] | None = None, labels: dict[str, str] | None = None,
                    domain: str = "default", max_workloads: int = 0, *, driver: str = "sim", uri: str = "",
                    fence: str = "driver", gpus: list[dict[str, Any]] | None = None) -> HostRecord:
        """Declare a host run by `driver` at `uri`; without `capacity`, the node's own (host_info).
        `gpus`: its GPU devices in groups, e.g. [{"count": 4, "model": "A100", "memory_mib": 40960}]
        (services/gpus.py); else capacity["gpu"] anonymous devices."""
        check_name("host", name)
        check_name("failure domain", domain)
        labels = check_labels("host labels", labels)
        if isinstance(max_workloads, bool) or not isinstance(max_workloads, int) \
                or not 0 <= max_workloads <= MAX_WORKLOADS_LIMIT:
            raise InvalidInputError(f"max_workloads must be an integer in 0..{MAX_WORKLOADS_LIMIT}")
        if driver not in known_drivers():  # like an unknown pool: the name refers to nothing here
            raise NotFoundError(f"unknown driver {driver!r}; known: {', '.join(known_drivers())}")
        if not isinstance(uri, str) or len(uri) > MAX_URI or not all("!" <= c <= "~" for c in uri):
            raise InvalidInputError(f"driver URI must be at most {MAX_URI} printable ASCII characters "
                                    "without spaces (percent-encode the rest)")
        check_method(fence)
        if overcommit is not None and not isinstance(overcommit, dict):
            raise InvalidInputError("overcommit must be a mapping of resource -> ratio")
        if capacity is not None:
            _declared(capacity, overcommit, gpus)  # a bad capacity is a 422 before the node is asked
        d = self._reach_node(name, driver, uri)  # connected: 409 taken name, 422 bad URI, 503 unreachable
        try:
            return self._create_host(d, name, capacity, pool, overcommit, labels, domain, max_workloads,
                                     driver, uri, fence, gpus)
        except BaseException:
            d.disconnect(name)
            raise

    def _create_host(self, d: HostDriver, name: str, capacity: dict[str, float] | None, pool: str | None,
                     overcommit: dict[str, float] | None, labels: dict[str, str], domain: str,
                     max_workloads: int, driver: str, uri: str, fence: str,
                     gpus: list[dict[str, Any]] | None) -> HostRecord:
        if capacity is None:
            capacity = _node_capacity(d, name, driver)
        devices, res, cap, oc = _declared(capacity, overcommit, gpus)

        def tx(s: Session) -> HostRecord:
            pool_id = self._pool(s, pool).id if pool is not None else None
            if s.scalars(select(HostRow.id).filter_by(name=name)).first() is not None:
                raise ConflictError(f"host {name!r} already exists")
            h = HostRow(name=name, pool_id=pool_id, state="up", labels=labels, domain=domain,
                        max_workloads=max_workloads, workloads=0, generation=0, driver=driver, uri=uri,
                        fence=fence)
            s.add(h)
            flush_unique(s, f"host {name!r} already exists")
            for i, r in enumerate(res.names):
                s.add(HostResourceRow(host_id=h.id, resource=r, capacity=float(cap[i]),
                                      overcommit=float(oc[i]), allocated=0.0))
            add_devices(s, h.id, devices)
            self._event(s, "host.created", f"host/{name}", f"host {name} created ({driver})",
                        data={"pool": pool, "capacity": res.mapping(cap), "driver": driver, "uri": uri,
                              "fence": fence})
            s.flush()
            return self._host_records(s, [h])[0]

        rec = self._write(tx)
        self.drivers.bind(HostBinding(name, driver, uri, rec.capacity))
        return rec

    def _reach_node(self, name: str, driver: str, uri: str) -> HostDriver:
        """Connect the node before the host is recorded (a host that cannot be reached is not
        added); 409 for a taken name first, so an existing host's binding is never touched."""
        if self._read(lambda s: s.scalars(select(HostRow.id).filter_by(name=name)).first()) is not None:
            raise ConflictError(f"host {name!r} already exists")
        d = self.drivers.instance(driver, uri)
        d.connect(HostBinding(name, driver, uri))
        return d

    def list_hosts(self, pool: str | None = None) -> list[HostRecord]:
        def tx(s: Session) -> list[HostRecord]:
            q = select(HostRow).order_by(HostRow.name)
            if pool is not None:
                q = q.where(HostRow.pool_id == self._pool(s, pool).id)
            return self._host_records(s, s.scalars(q))

        return self._read(tx)

    def get_host(self, name: str) -> HostRecord:
        return self._read(lambda s: self._host_records(s, [self._host(s, name)])[0])

    def delete_host(self, name: str) -> None:
        def tx(s: Session) -> None:
            h = self._host(s, name)
            n = s.scalar(select(func.count()).select_from(WorkloadRow).where(WorkloadRow.host_id == h.id))
            if n or h.workloads:
                raise ConflictError(f"host {name!r} still holds {max(n or 0, h.workloads)} workloads")
            delete_unused(s, h, "host", name)
            self._event(s, "host.deleted", f"host/{name}", f"host {name} deleted")

        self._write(tx)
        self.drivers.unbind(name)

    def set_host_state(self, name: str, state: str) -> HostRecord:
        """up/maintenance keep workloads; fenced/down mean they are gone: they become lost and
        their allocations are released. Fenced runs the host's fence agent first (its failure is
        an error and changes nothing); up after fenced lets the host run guests again, empty."""
        new = HostState.parse(state)
        if new is HostState.REMOVED:
            raise InvalidInputError("state 'removed' cannot be set; delete the host instead")
        if new is HostState.DRAINING:
            raise InvalidInputError("state 'draining' cannot be set; drain the host instead (host drain)")
        old = self.get_host(name).state  # NotFoundError before touching the driver
        how = f"set to {new.label}"
        if new is HostState.FENCED:
            r = self.fence(name)
            how += f" ({r.agent}: {r.reason})"
        elif new is HostState.UP and old == HostState.FENCED.label:
            self.unfence(name)
        return self.mark_state(name, new, "host.state", how)

    def mark_state(self, name: str, new: HostState, kind: str, how: str) -> HostRecord:
        """Record the host's new state (its workloads lost when fenced/down) in one transaction,
        with no driver call: for callers that already did what the state means (sim_admin.py)."""
        return self._write(lambda s: self._set_state(s, name, new, kind, how))

    # ---- fencing (fencing/: the host's own agent, never a hypervisor call) ----------------------
    def fence_agent(self, name: str) -> tuple[HostBinding, FenceAgent]:
        """The host's binding and fence agent (404 for an unknown host)."""
        def tx(s: Session) -> tuple[HostBinding, str]:
            h = self._host(s, name)
            return _binding(s, h), h.fence

        binding, spec = self._read(tx)
        return binding, make_agent(spec, self.drivers)

    def fence(self, name: str) -> FenceResult:
        """Fence the host or raise: 409 when its method cannot fence, 503 (FenceFailed) when the
        agent failed; nothing may treat its workloads as gone unless fencing succeeded."""
        binding, agent = self.fence_agent(name)
        r = agent.fence(binding)
        if not r.ok:
            err = ConflictError if not agent.ha_capable else FenceFailed
            raise err(f"fencing host {name} ({agent.method}) failed: {r.reason}",
                      detail={"host": name, "agent": r.agent, "reason": r.reason})
        return r

    def unfence(self, name: str) -> None:
        binding, agent = self.fence_agent(name)
        agent.unfence(binding)

    # ---- driver binding (drivers/pool.py) -----------------------------------------------------
    def binding(self, name: str) -> HostBinding | None:
        """The host row's driver, URI and capacity (the DriverPool's resolver); None if unknown."""
        def tx(s: Session) -> HostBinding | None:
            h = s.scalars(select(HostRow).filter_by(name=name)).first()
            return None if h is None else _binding(s, h)

        return self._read(tx)

    def sync_driver(self) -> None:
        """Bind every host to its driver (the database is the authority). A node that cannot be
        reached now is bound on its first use; a sim host recorded down stays dead in the sim, one
        recorded standby stays switched off."""
        def tx(s: Session) -> list[tuple[HostBinding, str]]:
            caps: dict[int, dict[str, float]] = {}
            for hid, r, c in s.execute(select(HostResourceRow.host_id, HostResourceRow.resource,
                                              HostResourceRow.capacity)):
                caps.setdefault(hid, {})[r] = c
            rows = s.execute(select(HostRow.id, HostRow.name, HostRow.driver, HostRow.uri, HostRow.state)
                             .order_by(HostRow.name)).all()
            return [(HostBinding(n, d, u, caps.get(i, {})), st) for i, n, d, u, st in rows]

        for b, state in self._read(tx):
            try:
                d = self.drivers.bind(b)
            except DriverError as e:  # unreachable node, or a driver not installed here
                log.warning("host %s: driver %s at %r not reachable: %s", b.name, b.driver, b.uri, e.message)
                continue
            if state == "down" and isinstance(d, SimDriver):
                d.fail(b.name)
            elif state == "standby" and isinstance(d, SimDriver):  # switched off by the controller
                d.power_off(b.name)

    def _set_state(self, s: Session, name: str, new: HostState, kind: str, how: str) -> HostRecord:
        h = self._host(s, name)
        old = h.state
        s.execute(update(HostRow).where(HostRow.id == h.id).values(state=new.label))
        ledger.bump(s, h.id)
        lost: list[str] = []
        if new in (HostState.FENCED, HostState.DOWN):
            projects = dict(s.execute(select(ProjectRow.id, ProjectRow.name)).all())
            for w in s.scalars(select(WorkloadRow).where(WorkloadRow.host_id == h.id,
                                                          WorkloadRow.state.in_(HOLDING_STATES))):
                ledger.release(s, w)
                pname = projects[w.project_id]
                if w.state == DELETING:  # its delete was asked for and its guest is gone: finish it
                    s.delete(w)
                    self._event(s, "workload.deleted", f"workload/{pname}/{w.name}",
                                f"workload {w.name} deleted (its host {name} went {new.label} mid-delete)",
                                project=pname, data={"host": name})
                    continue
                w.explanation = {**(w.explanation or {}), "lost_state": w.state}  # HA restarts it so
                w.state = LOST
                lost.append(f"{pname}/{w.name}")
                self._event(s, "workload.lost", f"workload/{pname}/{w.name}",
                            f"workload {w.name} lost with host {name}", project=pname, data={"host": name})
        self._event(s, kind, f"host/{name}", f"host {name} {how} (was {old})",
                    data={"from": old, "to": new.label, "lost": lost})
        s.flush()
        s.expire(h)
        return self._host_records(s, [self._host(s, name)])[0]


def _binding(s: Session, h: HostRow) -> HostBinding:
    cap = dict(s.execute(select(HostResourceRow.resource, HostResourceRow.capacity)
                         .where(HostResourceRow.host_id == h.id)).all())
    return HostBinding(h.name, h.driver, h.uri, cap)


def _vectors(capacity: dict[str, float],
             overcommit: dict[str, float] | None) -> tuple[ResourceSet, np.ndarray, np.ndarray]:
    """(resource set, capacity vector, overcommit vector) of a host declaration; 422 if invalid."""
    if not isinstance(capacity, dict) or not capacity:
        raise InvalidInputError("host capacity must be a non-empty mapping of resource -> amount")
    # a host may declare custom resources: its own names extend the known set
    res = ResourceSet(DEFAULT_RESOURCES).with_extra(sorted(set(capacity) - set(DEFAULT_RESOURCES)))
    cap = res.vector(capacity)
    if not np.any(cap > 0):
        raise InvalidInputError("host capacity must be positive for at least one resource")
    for r in overcommit or {}:
        if r not in capacity and r not in DEFAULT_RESOURCES:
            raise InvalidInputError(f"overcommit names resource {r!r} that the host does not declare")
    oc = res.vector(overcommit, default=1.0)
    if np.any(oc <= 0) or np.any(oc > 1000):
        raise InvalidInputError("overcommit ratios must be > 0 and <= 1000")
    return res, cap, oc


def _declared(capacity: dict[str, float], overcommit: dict[str, float] | None,
              gpus: list[dict[str, Any]] | None) -> tuple[list[tuple[str, float]], ResourceSet, np.ndarray,
                                                          np.ndarray]:
    """(GPU devices, resource set, capacity, overcommit) of a host declaration; 422 if invalid.
    Declared GPU devices set capacity `gpu` (services/gpus.py)."""
    _vectors(capacity, overcommit)  # a mapping of sane amounts before the GPU rules read it
    devices = check_host_gpus(capacity, overcommit, gpus)
    if devices:
        capacity = {**capacity, "gpu": float(len(devices))}
    return (devices, *_vectors(capacity, overcommit))


def _node_capacity(d: HostDriver, name: str, driver: str) -> dict[str, float]:
    """What the node reports (host_info); 422 when it reports nothing."""
    cap = d.host_info(name).capacity
    if not cap:
        raise InvalidInputError(f"driver {driver!r} reports no capacity for {name}; give one"
                                + (" (or put it in the sim URI: sim://?vcpu=32&memory_mib=131072)"
                                   if driver == "sim" else ""))
    return {str(k): float(v) for k, v in cap.items()}
