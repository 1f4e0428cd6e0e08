import numpy as np
import pytest

from poolvisor.domain.errors import NoValidHostError
from poolvisor.domain.models import GroupPolicy, HostSpec, HostState
from poolvisor.policies.placement import PlacementPolicy, Request, place, place_batch
from poolvisor.policies.placement.pipeline import require_host
from poolvisor.state.cluster import ClusterState


def make_state(n: int = 6) -> ClusterState:
    s = ClusterState()
    for i in range(n):
        s.add_host(HostSpec(f"h{i}", {"vcpu": 8, "memory_mib": 16384}, labels={"ssd": "yes"} if i % 2 else {},
                            domain=f"rack{i % 3}"))
    return s


def req(s: ClusterState, name: str, **kw):  # type: ignore[no-untyped-def]
    demand = kw.pop("demand", {"vcpu": 2, "memory_mib": 2048})
    return Request(name, s.resources.vector(demand), **kw)


def test_filters_report_rejections_and_reasons() -> None:
    s = make_state()
    s.set_state("h5", HostState.MAINTENANCE)
    d = place(s, req(s, "a", required_labels={"ssd": "yes"}))
    assert d.host == "h1"
    reports = {f.filter: f for f in d.explanation.filters}
    assert reports["host-state"].rejected == 1
    assert reports["host-state"].reasons == {"host maintenance": 1}
    assert reports["labels"].rejected == 3
    assert reports["labels"].dominant_reason == "missing label ssd=yes"


def test_no_valid_host_names_the_filters() -> None:
    s = make_state(3)
    d = place(s, req(s, "big", demand={"memory_mib": 10**6}))
    with pytest.raises(NoValidHostError, match=r"capacity rejected 3 \(insufficient memory_mib 3\)"):
        require_host(d)


def test_best_fit_prefers_fuller_host_and_worst_fit_the_emptier() -> None:
    s = make_state(3)
    s.allocate(2, s.resources.vector({"vcpu": 4, "memory_mib": 8192}))
    assert place(s, req(s, "a")).host == "h2"
    assert place(s, req(s, "a"), PlacementPolicy.named("spread")).host == "h0"


def test_anti_affinity_and_domain_spread() -> None:
    s = make_state(6)
    reqs = [req(s, f"db{i}", group="db", group_policy=GroupPolicy.DOMAIN_SPREAD) for i in range(3)]
    ds = place_batch(s, reqs)
    domains = {s.domains[d.host_index] for d in ds if d.host_index is not None}
    assert len(domains) == 3
    d4 = place(s, req(s, "db3", group="db", group_policy=GroupPolicy.DOMAIN_SPREAD))
    assert d4.host is None


def test_all_or_nothing_rolls_back() -> None:
    s = make_state(2)
    before = s.allocated.copy()
    reqs = [req(s, f"v{i}", demand={"vcpu": 8}) for i in range(3)]
    with pytest.raises(NoValidHostError):
        place_batch(s, reqs, all_or_nothing=True)
    assert np.array_equal(s.allocated, before)
