"""Hosts: declaration (capacity per resource, overcommit, labels, failure domain), states, failure.

A host is bound to a driver (name and URI; sim by default) and has a fence method (fencing/).
Setting a host fenced (through its fence agent) or down means its workloads are gone: they become
'lost' and their allocations are released in the same transaction, with events.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError, InvalidInputError, PoolvisorError
from poolvisor.domain.models import HostState, check_name
from poolvisor.domain.resources import DEFAULT_RESOURCES, ResourceSet
from poolvisor.drivers.protocols import HostBinding
from poolvisor.drivers.registry import known_drivers
from poolvisor.fencing import check_method
from poolvisor.services import ledger
from poolvisor.services.base import ServiceBase
from poolvisor.services.catalog import check_labels, flush_unique
from poolvisor.services.records import HOLDING_STATES, LOST, HostRecord
from poolvisor.store.rows import HostResourceRow, HostRow, ProjectRow, WorkloadRow

MAX_WORKLOADS_LIMIT = 1_000_000
MAX_URI = 1024


class HostServices(ServiceBase):
    def create_host(self, name: str, capacity: dict[str, float] | None = None, pool: str | None = None,
                    overcommit: dict[str, float] | None = None, labels: dict[str, str] | None = None,
                    domain: str = "default", max_workloads: int = 0, *, driver: str = "sim", uri: str = "",
                    fence: str = "driver") -> HostRecord:
        """Declare a host run by `driver` at `uri`; without `capacity`, the node's own (host_info)."""
        check_name("host", name)
        check_name("failure domain", domain)
        labels = check_labels("host labels", labels)
        if isinstance(max_workloads, bool) or not isinstance(max_workloads, int) \
                or not 0 <= max_workloads <= MAX_WORKLOADS_LIMIT:
            raise InvalidInputError(f"max_workloads must be an integer in 0..{MAX_WORKLOADS_LIMIT}")
        if driver not in known_drivers():
            raise InvalidInputError(f"unknown driver {driver!r}; known: {', '.join(known_drivers())}")
        if not isinstance(uri, str) or len(uri) > MAX_URI or not all("!" <= c <= "~" for c in uri):
            raise InvalidInputError(f"driver URI must be at most {MAX_URI} printable ASCII characters "
                                    "without spaces (percent-encode the rest)")
        check_method(fence)
        if capacity is None:
            capacity = self._node_capacity(name, driver, uri)
        if not isinstance(capacity, dict) or not capacity:
            raise InvalidInputError("host capacity must be a non-empty mapping of resource -> amount")
        if overcommit is not None and not isinstance(overcommit, dict):
            raise InvalidInputError("overcommit must be a mapping of resource -> ratio")
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
            self._event(s, "host.created", f"host/{name}", f"host {name} created ({driver})",
                        data={"pool": pool, "capacity": res.mapping(cap), "driver": driver, "uri": uri,
                              "fence": fence})
            s.flush()
            return self._host_records(s, [h])[0]

        rec = self._write(tx)
        self.drivers.bind(HostBinding(name, driver, uri, rec.capacity))
        return rec

    def _node_capacity(self, name: str, driver: str, uri: str) -> dict[str, float]:
        """Ask the node (host_info) before the host exists: 409 for a taken name first, so an
        existing host's binding is never touched."""
        if self._read(lambda s: s.scalars(select(HostRow.id).filter_by(name=name)).first()) is not None:
            raise ConflictError(f"host {name!r} already exists")
        d = self.drivers.instance(driver, uri)
        try:
            d.connect(HostBinding(name, driver, uri))
            cap = d.host_info(name).capacity
        except PoolvisorError:
            d.disconnect(name)
            raise
        if not cap:
            raise InvalidInputError(f"driver {driver!r} reports no capacity for {name}; give one")
        return {str(k): float(v) for k, v in cap.items()}

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
            s.delete(h)
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
        old = self.get_host(name).state  # NotFoundError before touching the driver
        how = f"set to {new.label}"
        if new is HostState.FENCED:
            r = self.fencing.fence(name)
            how += f" ({r.agent}: {r.reason})"
        elif new is HostState.UP and old == HostState.FENCED.label:
            self.fencing.unfence(name)
        return self._write(lambda s: self._set_state(s, name, new, "host.state", how))

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
                w.state = LOST
                pname = projects[w.project_id]
                lost.append(f"{pname}/{w.name}")
                self._event(s, "workload.lost", f"workload/{pname}/{w.name}",
                            f"workload {w.name} lost with host {name}", project=pname, data={"host": name})
        self._event(s, kind, f"host/{name}", f"host {name} {how} (was {old})",
                    data={"from": old, "to": new.label, "lost": lost})
        s.flush()
        s.expire(h)
        return self._host_records(s, [self._host(s, name)])[0]
