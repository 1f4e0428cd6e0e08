"""Fencing use cases: build a host's fence agent from its row and run it (fencing/).

A failed or refused fence is an error the caller sees (FenceFailed, 503; a host with method
'none' is a 409): nothing may treat the host's workloads as gone unless fencing succeeded.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError, NotFoundError, UnavailableError
from poolvisor.drivers.protocols import HostBinding
from poolvisor.fencing import FenceAgent, FenceResult, make_agent
from poolvisor.store.rows import HostResourceRow, HostRow


class FenceFailed(UnavailableError):
    code = "fence_failed"


class FencingService:
    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def agent(self, name: str) -> tuple[HostBinding, FenceAgent]:
        """The host's binding and fence agent (404 for an unknown host)."""
        def tx(s: Session) -> tuple[HostBinding, str]:
            h = s.scalars(select(HostRow).filter_by(name=name)).first()
            if h is None:
                raise NotFoundError(f"host {name!r} not found")
            cap = dict(s.execute(select(HostResourceRow.resource, HostResourceRow.capacity)
                                 .where(HostResourceRow.host_id == h.id)).all())
            return HostBinding(h.name, h.driver, h.uri, cap), h.fence

        binding, spec = self.ctx.store.run(tx, write=False)
        return binding, make_agent(spec, self.ctx.drivers)

    def fence(self, name: str) -> FenceResult:
        """Fence the host or raise: 409 when its method cannot fence, 503 when the agent failed."""
        binding, agent = self.agent(name)
        r = agent.fence(binding)
        if not r.ok:
            err = ConflictError if not agent.ha_capable else FenceFailed
            raise err(f"fencing host {name} ({agent.method}) failed: {r.reason}",
                      detail={"host": name, "agent": r.agent, "reason": r.reason})
        return r

    def unfence(self, name: str) -> None:
        binding, agent = self.agent(name)
        agent.unfence(binding)
