"""Hosts: declaration (capacity per resource, overcommit, labels, failure domain), states, failure.

Setting a host fenced or down, or failing a sim host, means its workloads are gone: they become
'lost' and their allocations are released in the same transaction, with events.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError, InvalidInputError
from poolvisor.domain.models import HostState, check_name
from poolvisor.domain.resources import DEFAULT_RESOURCES, ResourceSet
from poolvisor.services import ledger
from poolvisor.services.base import ServiceBase
from poolvisor.services.catalog import check_labels, flush_unique
from poolvisor.services.gpus import add_devices, check_host_gpus
from poolvisor.services.records import HOLDING_STATES, LOST, HostRecord
from poolvisor.store.rows import HostResourceRow, HostRow, ProjectRow, WorkloadRow

MAX_WORKLOADS_LIMIT = 1_000_000


class HostService(ServiceBase):
    """Hosts: declaration, listing, states, sim fault injection."""

    def create_host(self, name: str, capacity: dict[str, float], pool: str | None = None,
                    overcommit: dict[str, float] | None = None, labels: dict[str, str] | None = None,
                    domain: str = "default", max_workloads: int = 0,
                    gpus: list[dict[str, Any]] | None = None) -> HostRecord:
        """`gpus`: the host's GPU devices in groups, e.g. [{"count": 4, "model": "A100",
        "memory_mib": 40960}] (services/gpus.py); else capacity["gpu"] anonymous devices."""
        check_name("host", name)
        check_name("failure domain", domain)
        labels = check_labels("host labels", labels)
        if isinstance(max_workloads, bool) or not isinstance(max_workloads, int) \
                or not 0 <= max_workloads <= MAX_WORKLOADS_LIMIT:
            raise InvalidInputError(f"max_workloads must be an integer in 0..{MAX_WORKLOADS_LIMIT}")
        if not isinstance(capacity, dict) or not capacity:
            raise InvalidInputError("host capacity must be a non-empty mapping of resource -> amount")
        if overcommit is not None and not isinstance(overcommit, dict):
            raise InvalidInputError("overcommit must be a mapping of resource -> ratio")
        devices = check_host_gpus(capacity, overcommit, gpus)
        if devices:
            capacity = {**capacity, "gpu": float(len(devices))}
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
                        max_workloads=max_workloads, workloads=0, generation=0)
            s.add(h)
            flush_unique(s, f"host {name!r} already exists")
            for i, r in enumerate(res.names):
                s.add(HostResourceRow(host_id=h.id, resource=r, capacity=float(cap[i]),
                                      overcommit=float(oc[i]), allocated=0.0))
            add_devices(s, h.id, devices)
            self._event(s, "host.created", f"host/{name}", f"host {name} created",
                        data={"pool": pool, "capacity": res.mapping(cap)})
            s.flush()
            return self._host_records(s, [h])[0]

        rec = self._write(tx)
        self.driver.add_host(name, rec.capacity)
        return rec

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
        self.driver.remove_host(name)

    def set_host_state(self, name: str, state: str) -> HostRecord:
        """up/maintenance keep workloads; fenced/down mean they are gone: they become lost and
        their allocations are released (a fenced host is powered off through the driver first)."""
        new = HostState.parse(state)
        if new is HostState.REMOVED:
            raise InvalidInputError("state 'removed' cannot be set; delete the host instead")
        self.get_host(name)  # NotFoundError before touching the driver
        if new is HostState.FENCED:
            self.driver.fence(name)
        elif new is HostState.UP and hasattr(self.driver, "revive"):
            self.driver.revive(name)
        return self._write(lambda s: self._set_state(s, name, new, "host.state", f"set to {new.label}"))

    def fail_host(self, name: str) -> HostRecord:
        """Sim fault injection: the host dies (no heartbeat, its workloads gone); they become lost."""
        fail = getattr(self.driver, "fail", None)
        if fail is None:
            raise InvalidInputError(f"driver {self.driver.name!r} does not support fault injection")
        self.get_host(name)
        fail(name)
        return self._write(lambda s: self._set_state(s, name, HostState.DOWN, "host.failed",
                                                     "failed (fault injection)"))

    def sync_driver(self) -> None:
        """Tell the driver which hosts exist and which are dead (the database is the authority)."""
        rows = self._read(lambda s: s.execute(select(HostRow.name, HostRow.state)).all())
        fail = getattr(self.driver, "fail", None)
        for name, state in rows:
            self.driver.add_host(name, {})
            if state == "down" and fail is not None:
                fail(name)

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
