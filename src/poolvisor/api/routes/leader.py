"""GET /v1/leader: which `poolvisor serve` process runs the leader-only loops (services/leader.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from poolvisor.api.auth import SvcDep, Who
from poolvisor.api.errors import errors
from poolvisor.api.leader_schemas import LeaderOut
from poolvisor.services.leader import DEFAULT_LEADER_LEASE_S, read_status

router = APIRouter(prefix="/v1/leader", tags=["system"])


@router.get("", response_model=LeaderOut, responses=errors(401, 503))
def get_leader(request: Request, svc: SvcDep, _: Who) -> LeaderOut:
    """The lease holder, and whether the server that answered leads. Without an election (an app
    built without one) this server runs every loop itself."""
    election = getattr(request.app.state, "leader", None)
    if election is not None:
        st = election.status()
    else:
        st = read_status(svc.store, svc.leases.owner, True, DEFAULT_LEADER_LEASE_S)
    return LeaderOut(election=election is not None, leader=st.leader, term=st.term, since=st.since,
                     renewed=st.renewed, me=st.me, is_leader=st.is_leader, lease_s=st.lease_s)
