"""GET /v1/leader and the gate of the leader-only loops in the app's lifespan: a follower's alert
loop evaluates nothing; it starts evaluating once it leads (the other released the lease)."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from poolvisor.api.app import create_app
from poolvisor.services import Services
from poolvisor.services.leader import LeaderElection


def test_only_the_leader_runs_the_alert_loop(svc: Services, admin: dict[str, str], monkeypatch) -> None:
    other = LeaderElection(svc.store, "other-server", 300)
    assert other.tick()  # another server leads (a long lease: it does not lapse during the test)
    rounds: list[float] = []
    real = svc.alerts.evaluate
    monkeypatch.setattr(svc.alerts, "evaluate", lambda: (rounds.append(time.monotonic()), real())[1])
    me = LeaderElection(svc.store, "this-server", 300)
    with TestClient(create_app(svc, alert_interval=0.05, leader=me)) as c:
        time.sleep(0.5)  # ten alert ticks
        assert rounds == []
        st = c.get("/v1/leader", headers=admin).json()
        assert st == {"election": True, "leader": "other-server", "term": 1, "since": st["since"],
                      "renewed": st["renewed"], "me": "this-server", "is_leader": False, "lease_s": 300.0}
        other.release()  # a graceful stop: the follower takes over at its next look (<= 1 s)
        deadline = time.monotonic() + 5
        while not rounds:
            assert time.monotonic() < deadline, "the new leader never evaluated the alerts"
            time.sleep(0.05)
        st = c.get("/v1/leader", headers=admin).json()
        assert (st["leader"], st["is_leader"], st["term"]) == ("this-server", True, 2)
    assert not me.is_leader()  # the app's shutdown released it
    assert other.tick()  # so the lease is free at once


def test_without_an_election_the_server_runs_every_loop(client: TestClient, admin: dict[str, str],
                                                        svc: Services) -> None:
    st = client.get("/v1/leader", headers=admin).json()
    assert st["election"] is False and st["is_leader"] is True and st["me"] == svc.leases.owner
    assert client.get("/v1/leader").status_code == 401
