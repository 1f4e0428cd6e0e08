"""Leader election on a lease record (services/leader.py), driven step by step with fake clocks:
one leader at a time, takeover only after a whole lease of silence on the follower's own clock,
a graceful stop hands over at once, a leader that cannot renew stops acting before anyone else
can take over."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from poolvisor.domain.errors import InvalidInputError, UnavailableError
from poolvisor.services import Services
from poolvisor.services.leader import SAFETY, LeaderElection, read_status

LEASE = 5.0


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def pair(svc: Services) -> Iterator[tuple[LeaderElection, LeaderElection, FakeClock, FakeClock]]:
    ca, cb = FakeClock(), FakeClock(7_000.0)  # unrelated monotonic origins: no shared time is assumed
    yield (LeaderElection(svc.store, "a", LEASE, clock=ca), LeaderElection(svc.store, "b", LEASE, clock=cb),
           ca, cb)


def test_exactly_one_leads_and_a_follower_waits_a_whole_lease(pair, svc: Services) -> None:
    a, b, ca, cb = pair
    assert a.tick() is True and a.is_leader()
    assert b.tick() is False and not b.is_leader()
    # the leader renews: the follower never takes over, however long it watches
    for _ in range(20):
        ca.t += LEASE / 3
        cb.t += LEASE / 3
        assert a.tick() and not b.tick()
    st = read_status(svc.store, "x", False, LEASE)
    assert (st.leader, st.term) == ("a", 1)
    # a dies (stops renewing): b takes over only once the record stood still for a lease on b's clock
    cb.t += LEASE - 0.1
    ca.t += LEASE - 0.1
    assert not b.tick()
    cb.t += 0.2
    ca.t += 0.2
    assert b.tick() and b.is_leader()
    assert read_status(svc.store, "x", False, LEASE).term == 2
    # a was paused, not dead: its own deadline passed before b could take over, and its next
    # renewal fails (the record changed): it follows
    assert not a.is_leader()
    assert a.tick() is False and not a.is_leader()
    assert read_status(svc.store, "x", False, LEASE).leader == "b"


def test_a_leader_stops_acting_before_anyone_can_take_over(pair) -> None:
    """A leader whose renewals stopped (paused, cut off) counts itself leader only for SAFETY of
    the lease after its last successful renewal began: before a follower's whole lease."""
    a, b, ca, cb = pair
    assert a.tick() and not b.tick()
    ca.t += SAFETY * LEASE - 0.01
    assert a.is_leader()
    ca.t += 0.02
    assert not a.is_leader()  # no tick needed: the gate itself expires


def test_graceful_release_hands_over_at_once(pair) -> None:
    a, b, _ca, _cb = pair
    changes: list[bool] = []
    a.on_change = changes.append
    assert a.tick() and not b.tick()
    a.release()
    assert not a.is_leader() and changes == [True, False]
    assert b.tick() and b.is_leader()  # released: no lease to wait out


def test_database_errors_do_not_extend_leadership(pair, monkeypatch) -> None:
    a, _b, ca, _cb = pair
    assert a.tick()

    def down(*_a: object, **_k: object) -> None:
        raise UnavailableError("database unavailable (test)")

    monkeypatch.setattr(a.store, "run", down)
    ca.t += LEASE / 3
    assert a.tick() is True  # still within its term
    ca.t += LEASE
    assert a.tick() is False and not a.is_leader()


def test_an_unreadable_record_is_taken_over(pair, svc: Services) -> None:
    from poolvisor.store.rows import MetaRow

    a, _b, ca, _cb = pair
    svc.store.run(lambda s: s.add(MetaRow(key="leader-lease", value="garbage")))
    assert not a.tick()
    ca.t += LEASE
    assert a.tick()


@pytest.mark.parametrize("bad", [0.5, 301, float("nan"), True, "5"])
def test_lease_bounds(svc: Services, bad: object) -> None:
    with pytest.raises(InvalidInputError, match="leader lease"):
        LeaderElection(svc.store, "a", bad)  # type: ignore[arg-type]
