"""API shape of the leader election status (services/leader.py)."""

from __future__ import annotations

from poolvisor.api.schemas import _Out


class LeaderOut(_Out):
    election: bool  # False: this server runs no election (a single process runs every loop)
    leader: str | None  # the holder of the lease record (host:pid:id@address), None: released/none yet
    term: int
    since: str | None
    renewed: str | None
    me: str  # the server that answered
    is_leader: bool  # whether the server that answered runs the leader-only loops now
    lease_s: float
