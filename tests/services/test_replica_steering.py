"""Two replicas on one database: a create whose claim lost the host's generation guard to the other
replica passes that host over for a while (placement_cache.py `steer`), so the replicas stop
choosing the same host again and again; the ledger still re-checks every claim."""

from __future__ import annotations

from svc_helpers import small_cluster

from poolvisor.services import open_services
from poolvisor.services.invariants import check_invariants


def test_a_lost_claim_steers_the_retry_to_another_host(svc, db_url):
    small_cluster(svc, hosts=3, vcpu=8, memory=16384)
    other = open_services(db_url)  # the second replica: its own placement cache
    try:
        svc.workloads.create_workload("demo", "seed", flavor="unit")
        taken: list[str] = []
        ctx = svc.workloads.ctx
        claim = ctx.write_once

        def racing_claim(fn, **kw):
            if not taken:  # the other replica commits on the host this one just chose
                host = fn.keywords["decision"].host
                taken.append(other.workloads.create_workload("demo", "theirs", flavor="unit", host=host).host)
            return claim(fn, **kw)

        ctx.write_once = racing_claim  # type: ignore[method-assign]
        try:
            mine = svc.workloads.create_workload("demo", "mine", flavor="unit")
        finally:
            ctx.write_once = claim  # type: ignore[method-assign]
        assert svc.cache.lost_races == 1
        assert mine.host != taken[0]  # steered away from the host the other replica is filling
        later = svc.workloads.create_workload("demo", "later", flavor="unit")
        assert later.host != taken[0]  # still passed over within CONTENDED_S
        assert svc.ctx.read(check_invariants).ok
    finally:
        other.close()


def test_a_contended_host_is_still_used_when_nothing_else_fits(svc):
    small_cluster(svc, hosts=1, vcpu=8, memory=16384)
    first = svc.workloads.create_workload("demo", "a", flavor="unit")
    view = svc.cache.view
    assert view is not None
    svc.cache.lost_race(view.ids[view.index_of[view.ids[0]]])
    again = svc.workloads.create_workload("demo", "b", flavor="unit")
    assert again.host == first.host


def test_steering_keeps_a_pinned_hosts_request_on_its_host(svc):
    """A request pinned to a host (a list made for it, writable) is narrowed for itself, never
    given the list cached for an unrestricted request (it once was: the pin was dropped)."""
    small_cluster(svc, hosts=3, vcpu=8, memory=16384)
    pinned = svc.workloads.create_workload("demo", "seed", flavor="unit").host
    assert pinned is not None
    view = svc.cache.view
    assert view is not None
    svc.cache.lost_race(view.ids[view.state.names.index(pinned)])  # lost a claim there lately
    free = svc.workloads.create_workload("demo", "free", flavor="unit")  # packing chose it: steered,
    assert free.host != pinned  # which cached "every host but that one"
    got = svc.workloads.create_workload("demo", "pinned", flavor="unit", host=pinned)
    assert got.host == pinned  # the contended host is still the only one the pin allows
    assert svc.ctx.read(check_invariants).ok


def test_a_host_the_other_replica_places_on_is_passed_over_before_a_claim_is_lost(svc, db_url):
    """PostgreSQL: a refresh that finds a host with more workloads than this process put there
    (another replica is filling it) passes it over like a lost race: the replicas keep to different
    hosts instead of queueing on each other's host locks. A host that only lost workloads is not.
    (SQLite decides under the write lock: nothing to steer.)"""
    small_cluster(svc, hosts=3, vcpu=8, memory=16384)
    if svc.store.is_sqlite:
        seed = svc.workloads.create_workload("demo", "seed", flavor="unit").host
        with open_services(db_url) as other:
            other.workloads.create_workload("demo", "theirs", flavor="unit", host=seed)
        assert svc.workloads.create_workload("demo", "mine", flavor="unit").host == seed  # best fit
        assert svc.cache.claimed_elsewhere == 0
        return
    other = open_services(db_url)
    try:
        seed = svc.workloads.create_workload("demo", "seed", flavor="unit").host  # packing: its host next
        theirs = other.workloads.create_workload("demo", "theirs", flavor="unit", host=seed)
        assert theirs.host == seed and svc.cache.claimed_elsewhere == 0
        mine = svc.workloads.create_workload("demo", "mine", flavor="unit")  # its refresh sees `theirs`
        assert svc.cache.claimed_elsewhere == 1 and svc.cache.lost_races == 0
        assert mine.host != seed  # steered away before any claim was lost
        svc.workloads.create_workload("demo", "solo", flavor="unit", host=seed)
        other.workloads.delete_workload("demo", "theirs")  # the other replica only releases there
        svc.workloads.create_workload("demo", "after", flavor="unit")
        assert svc.cache.claimed_elsewhere == 1  # a release is no sign of the other filling it
        assert svc.ctx.read(check_invariants).ok
    finally:
        other.close()
