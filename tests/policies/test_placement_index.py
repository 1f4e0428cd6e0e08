"""The placement index must choose exactly what pipeline.place chooses, whatever happened before."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poolvisor.domain.errors import ConflictError, NoValidHostError
from poolvisor.domain.models import GroupPolicy, HostSpec, HostState
from poolvisor.domain.resources import ResourceSet
from poolvisor.policies.placement import PlacementPolicy, Request, place, place_batch
from poolvisor.policies.placement.forest import NEG, MaxForest
from poolvisor.policies.placement.index import PlacementIndex
from poolvisor.policies.placement.indexed import IndexedPlacer
from poolvisor.state.cluster import ClusterState

# small capacities and demands with thirds and sevenths: many exact ties and near-ties (1-ulp apart)
CAPS = [0.0, 3.0, 6.0, 7.0, 12.0, 21.0]
DEMANDS = [0.0, 0.0, 1.0, 2.0, 3.0, 0.5]
LABELS = [{}, {}, {"gpu": "yes"}, {"ssd": "yes"}, {"ssd": "yes", "zone": "a"}, {"zone": "b"}]
GROUP_POLICIES = [None, GroupPolicy.ANTI_AFFINITY, GroupPolicy.AFFINITY, GroupPolicy.DOMAIN_SPREAD,
                  GroupPolicy.SOFT_AFFINITY, GroupPolicy.SOFT_ANTI_AFFINITY]
POLICIES = {
    "default": PlacementPolicy(),
    "spread": PlacementPolicy.named("spread"),
    "best-fit-only": PlacementPolicy(scorers=(("best-fit", 2.5),)),
    "few-filters": PlacementPolicy(filters=("capacity", "affinity"), scorers=(("best-fit", 1.0),)),
    "balanced": PlacementPolicy.named("balanced"),  # not indexable: must go to the exact scan
    # keep-scarce-free on resources the scenarios have (r1, r2): a leaf test and an exact fallback
    "scarce": PlacementPolicy(scarce=("r1", "r2")),
    "scarce-spread": PlacementPolicy.named("spread", scarce=("r0",)),
    "scarce-few-filters": PlacementPolicy(filters=("capacity", "affinity"), scarce=("r1",),
                                          scorers=(("best-fit", 2.0), ("keep-scarce-free", 3.0))),
    "scarce-weak": PlacementPolicy(scarce=("r1",), scorers=(("best-fit", 1.0), ("keep-scarce-free", 0.5))),
}


@st.composite
def scenarios(draw: st.DrawFn) -> dict:
    r = draw(st.integers(1, 9))
    n = draw(st.integers(1, 30))
    hosts = []
    for i in range(n):
        hosts.append({
            "caps": draw(st.lists(st.sampled_from(CAPS), min_size=r, max_size=r)),
            "ratio": draw(st.sampled_from([1.0, 1.0, 1.5, 3.0])),
            "labels": draw(st.sampled_from(LABELS)),
            "domain": f"rack{draw(st.integers(0, 3))}",
            "state": draw(st.sampled_from([HostState.UP] * 4 + [HostState.MAINTENANCE, HostState.DOWN])),
            "max": draw(st.sampled_from([0, 0, 0, 1, 2, 3])),
            "name": f"h{i}",
        })
    flavor = st.lists(st.sampled_from(DEMANDS), min_size=r, max_size=r)
    flavors = draw(st.lists(flavor, min_size=1, max_size=4))
    ops = draw(st.lists(st.tuples(st.sampled_from(["place"] * 6 + ["release", "state", "add", "touch"]),
                                  st.integers(0, 10**6)), min_size=1, max_size=40))
    return {
        "r": r, "hosts": hosts, "flavors": flavors, "ops": ops,
        "policy": draw(st.sampled_from(sorted(POLICIES))),
        "options": {"fanout": draw(st.sampled_from([2, 3, 4, None])), "admit_after": draw(st.integers(1, 2)),
                    "max_requeries": draw(st.integers(0, 3)), "max_classes": draw(st.integers(1, 5)),
                    "point_updates": draw(st.sampled_from([0, 1, 8])), "jit": draw(st.booleans())},
    }


def build(sc: dict) -> ClusterState:
    s = ClusterState(ResourceSet(tuple(f"r{i}" for i in range(sc["r"]))), capacity_hint=4)
    for h in sc["hosts"]:
        add(s, h)
    return s


def add(s: ClusterState, h: dict) -> None:
    names = s.resources.names
    s.add_host(HostSpec(h["name"], dict(zip(names, h["caps"], strict=True)),
                        {k: h["ratio"] for k in names}, h["labels"], h["domain"], h["state"], h["max"]))


def make_request(s: ClusterState, sc: dict, seed: int, i: int) -> Request:
    rng = np.random.default_rng(seed)
    flavor = sc["flavors"][int(rng.integers(len(sc["flavors"])))]
    labels = LABELS[int(rng.integers(len(LABELS)))]
    required = labels if rng.random() < 0.4 else {}
    forbidden = {"gpu": "yes"} if rng.random() < 0.2 else {}
    gpol = GROUP_POLICIES[int(rng.integers(len(GROUP_POLICIES)))]
    group = f"g{int(rng.integers(3))}" if gpol is not None or rng.random() < 0.1 else None
    allowed = None
    if rng.random() < 0.15 and s.n:
        allowed = np.sort(rng.choice(s.n, size=int(rng.integers(1, s.n + 1)), replace=False))
    return Request(f"w{i}", np.array(flavor, dtype=np.float64), required, forbidden, group, gpol,
                   allowed_hosts=allowed)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_index_chooses_exactly_what_the_pipeline_chooses(sc: dict) -> None:
    s = build(sc)
    policy = POLICIES[sc["policy"]]
    placer = IndexedPlacer(s, policy, **sc["options"])
    placed: list[tuple[int, Request]] = []
    extra = 0
    for i, (op, seed) in enumerate(sc["ops"]):
        rng = np.random.default_rng(seed)
        if op == "place":
            req = make_request(s, sc, seed, i)
            want = place(s, req, policy).host_index
            got = placer.place_fast(req)
            assert got == (-1 if want is None else want), (i, req)
            if got >= 0:
                s.allocate(got, req.demand, req.group)
                placed.append((got, req))
        elif op == "release" and placed:
            h, req = placed.pop(int(rng.integers(len(placed))))
            s.release(h, req.demand, req.group)
        elif op == "state":
            name = s.names[int(rng.integers(s.n))]
            s.set_state(name, HostState.UP if rng.random() < 0.6 else HostState.MAINTENANCE)
        elif op == "add":
            extra += 1
            add(s, {**sc["hosts"][int(rng.integers(len(sc["hosts"])))], "name": f"x{extra}"})
        elif op == "touch":  # a direct write to the arrays, declared afterwards
            h = int(rng.integers(s.n))
            s.allocated[:, h] = 0.0
            s.touch([h])
    placer.close()


def test_explanation_is_the_pipelines_and_refuses_to_go_stale() -> None:
    s = ClusterState()
    for i in range(8):
        labels = {"ssd": "yes"} if i % 2 else {}
        s.add_host(HostSpec(f"h{i}", {"vcpu": 8, "memory_mib": 16384}, labels=labels))
    placer = IndexedPlacer(s, admit_after=1)
    req = Request("a", s.resources.vector({"vcpu": 2, "memory_mib": 2048}), required_labels={"ssd": "yes"})
    d = placer.place(req)
    assert d == place(s, req) and d.to_dict() == place(s, req).to_dict()
    d2 = placer.place(req)
    s.allocate(d2.host_index or 0, req.demand)
    with pytest.raises(ConflictError, match="after the cluster changed"):
        _ = d2.explanation
    assert placer.place(req, explain=True) == place(s, req)


def test_place_batch_matches_pipeline_including_all_or_nothing() -> None:
    def fresh() -> ClusterState:
        s = ClusterState()
        for i in range(5):
            s.add_host(HostSpec(f"h{i}", {"vcpu": 8 + 4 * (i % 2), "memory_mib": 16384}, domain=f"r{i % 2}"))
        return s

    def reqs(s: ClusterState) -> list[Request]:
        return [Request(f"v{i}", s.resources.vector({"vcpu": 3, "memory_mib": 1024}), group="g",
                        group_policy=GroupPolicy.ANTI_AFFINITY if i % 2 else None) for i in range(9)]

    a, b = fresh(), fresh()
    want = [d.host_index for d in place_batch(a, reqs(a))]
    got = [d.host_index for d in IndexedPlacer(b, admit_after=1).place_batch(reqs(b))]
    assert got == want and np.array_equal(a.allocated, b.allocated)
    c = fresh()
    before = c.allocated.copy()
    too_many = [Request(f"x{i}", c.resources.vector({"vcpu": 1}), group="g",
                        group_policy=GroupPolicy.ANTI_AFFINITY) for i in range(6)]
    with pytest.raises(NoValidHostError, match="anti-affinity group g already here"):
        IndexedPlacer(c).place_batch(too_many, all_or_nothing=True)
    assert np.array_equal(c.allocated, before)


def test_index_serves_repeated_classes_from_the_tree() -> None:
    s = ClusterState()
    for i in range(200):
        s.add_host(HostSpec(f"h{i}", {"vcpu": 16 + 16 * (i % 3), "memory_mib": 65536}))
    placer = IndexedPlacer(s, admit_after=2)
    flavors = [s.resources.vector({"vcpu": v, "memory_mib": m}) for v, m in ((2, 4096), (4, 8192), (1, 2048))]
    for i in range(300):
        req = Request(f"w{i}", flavors[i % 3], group=f"g{i % 7}", group_policy=GroupPolicy.ANTI_AFFINITY)
        h = placer.place_fast(req)
        assert h == place(s, req).host_index
        s.allocate(h, req.demand, req.group)
    assert placer.stats["tree"] >= 290 and placer.stats["requeries"] > 0
    assert placer.stats["full_scan"] == 3  # the first sighting of each flavor


def test_copy_does_not_drive_the_index_and_unsupported_policies_scan() -> None:
    s = ClusterState()
    for i in range(4):
        s.add_host(HostSpec(f"h{i}", {"vcpu": 8}))
    placer = IndexedPlacer(s, admit_after=1)
    req = Request("a", s.resources.vector({"vcpu": 4}))
    first = placer.place_fast(req)
    c = s.copy()
    c.allocate(first, req.demand)
    assert placer.place_fast(req) == first == place(s, req).host_index
    bal = IndexedPlacer(s, PlacementPolicy.named("balanced"))
    assert not bal.index.plan.supported and bal.place_fast(req) == place(s, req, bal.policy).host_index


def test_forest_first_at_least_and_exclusions_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    n = 37
    f = MaxForest(n, 2, fanout=4)
    vals = rng.integers(0, 5, size=(2, n)).astype(float)
    vals[vals == 0] = NEG
    f.set_row(0, vals[0])
    f.set_row(1, vals[1])
    for _ in range(200):
        h = int(rng.integers(n))
        new = rng.integers(0, 5, size=2).astype(float)
        f.set_host(h, new, 2)
        vals[:, h] = new
        for t in range(2):
            hi = vals[t].max()
            assert f.top(t) == hi
            assert f.first_at_least(t, hi - 1.5) == int(np.argmax(vals[t] >= hi - 1.5))
        saved = f.exclude(0, int(np.argmax(vals[0])))
        assert f.top(0) == np.sort(vals[0])[-2]
        some = np.flatnonzero(vals[1] >= 3)
        many = f.exclude_many(1, some)
        rest = np.delete(vals[1], some)
        assert f.top(1) == (rest.max() if rest.size else NEG)
        f.restore_many(many)
        f.restore(saved)
        assert f.top(0) == vals[0].max() and f.top(1) == vals[1].max()
        assert np.array_equal(np.stack([f.row(0), f.row(1)]), vals)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_compiled_row_build_equals_the_numpy_build(sc: dict) -> None:
    """A class admitted by the compiled one-pass build has exactly the leaves, block maxima and
    minima, counts and lowest score of the numpy build (down hosts, full hosts, labels, pools,
    scarce resources, allocations made before the admission)."""
    from poolvisor.policies.placement import kernels
    if not kernels.available():
        pytest.skip("numba is not installed: there is no compiled build to compare")
    s = build(sc)
    policy = POLICIES[sc["policy"]]
    rng = np.random.default_rng(len(sc["ops"]))
    for i, (_op, seed) in enumerate(sc["ops"][:10]):  # some allocations first, from the pipeline
        req = make_request(s, sc, seed, i)
        d = place(s, req, policy)
        if d.host_index is not None and rng.random() < 0.7:
            s.allocate(d.host_index, req.demand, req.group)
    opts = {**sc["options"], "admit_after": 1, "max_classes": 8}
    fast = IndexedPlacer(s, policy, **{**opts, "jit": True}).index
    slow = IndexedPlacer(s, policy, **{**opts, "jit": False}).index
    if not fast.plan.supported:
        return
    for i, (_op, seed) in enumerate(sc["ops"]):
        req = make_request(s, sc, seed, 1000 + i)
        assert fast.rank(req, 3).__class__ is slow.rank(req, 3).__class__
    assert fast._rows == slow._rows
    same_rows(fast, slow)
    # then point updates: the compiled update keeps block maxima/minima incrementally, numpy rescans
    for i, (_op, seed) in enumerate(sc["ops"]):
        req = make_request(s, sc, seed, 2000 + i)
        d = place(s, req, policy)
        if d.host_index is not None:
            s.allocate(d.host_index, req.demand, req.group)
            fast.sync()
            slow.sync()
        elif s.n:
            s.set_state(s.names[seed % s.n], HostState.MAINTENANCE if seed % 2 else HostState.UP)
            fast.sync()
            slow.sync()
    same_rows(fast, slow)


def same_rows(fast: PlacementIndex, slow: PlacementIndex) -> None:
    rows = fast._rows
    for a, b in ((fast.forest, slow.forest), (fast.spare, slow.spare)):
        np.testing.assert_array_equal(a.l0[:, :rows], b.l0[:, :rows])
        np.testing.assert_array_equal(a.l1[:rows], b.l1[:rows])
        np.testing.assert_array_equal(a.l1min[:rows], b.l1min[:rows])
        np.testing.assert_array_equal(a.count[:rows], b.count[:rows])
        np.testing.assert_array_equal(a.l2x[:, :rows], b.l2x[:, :rows])
        # level 2 (groups of blocks) is exactly level 1 reduced, after every update and query
        np.testing.assert_array_equal(a.l2[:rows], np.maximum.reduceat(a.l1[:rows], a._starts, axis=1))
        np.testing.assert_array_equal(a.l2min[:rows], np.minimum.reduceat(a.l1min[:rows], a._starts, axis=1))
    np.testing.assert_array_equal(fast._low[:rows], slow._low[:rows])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_compiled_served_ranking_equals_the_numpy_ranking(sc: dict) -> None:
    """kernels.served_rank (the changed host's leaf update deferred into the ranking call, then
    the spare bounds and the top k in one compiled call) answers every rank exactly as the numpy
    path, and leaves the same leaves, block extremes, counts and lowest scores behind."""
    from poolvisor.policies.placement import kernels
    if not kernels.available():
        pytest.skip("numba is not installed: there is no compiled ranking to compare")
    fast_state, slow_state = build(sc), build(sc)
    policy = POLICIES[sc["policy"]]
    opts = {**sc["options"], "admit_after": 1, "max_classes": 8}
    fast = IndexedPlacer(fast_state, policy, **{**opts, "jit": True}).index
    slow = IndexedPlacer(slow_state, policy, **{**opts, "jit": False}).index
    for i, (op, seed) in enumerate(sc["ops"]):
        rng = np.random.default_rng(seed)
        req = make_request(fast_state, sc, seed, i)
        got, want = fast.rank(req, 3), slow.rank(req, 3)
        assert got == want
        if op == "state" and fast_state.n:  # a host leaves or rejoins between two rankings
            h = int(rng.integers(fast_state.n))
            for s in (fast_state, slow_state):
                s.set_state(s.names[h], HostState.MAINTENANCE if seed % 2 else HostState.UP)
        elif not isinstance(got, str) and got.hosts:  # one changed host: deferred to the next rank
            for s in (fast_state, slow_state):
                s.allocate(got.hosts[0], req.demand, req.group)
    fast.sync()
    slow.sync()
    assert fast._rows == slow._rows
    same_rows(fast, slow)
