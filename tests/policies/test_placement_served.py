"""served.decide (what create_workload runs) must decide and explain exactly as pipeline.place does."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_placement_index import POLICIES, add, build, make_request, scenarios

from poolvisor.domain.models import GroupPolicy, HostSpec, HostState
from poolvisor.policies.placement import Decision, PlacementPolicy, Request, place
from poolvisor.policies.placement.index import LEAF_FILTERS
from poolvisor.policies.placement.indexed import IndexedPlacer
from poolvisor.policies.placement.registry import register_scorer
from poolvisor.policies.placement.served import decide
from poolvisor.state.cluster import ClusterState


class ZonePreference:
    """A plug-in scorer the index does not key on but that is constant unless a zone is required:
    such scorers may join an indexed policy through `constant_for`."""

    name = "test-zone-preference"

    def constant_for(self, view: ClusterState, req: Request) -> bool:
        return "zone" not in req.required_labels

    def __call__(self, view: ClusterState, req: Request, candidates: np.ndarray) -> np.ndarray:
        if self.constant_for(view, req):
            return np.full(candidates.size, 2.0)
        return -view.workload_count[candidates].astype(np.float64)


register_scorer(ZonePreference.name, ZonePreference)
SERVED_POLICIES = {
    **POLICIES,
    "hooked": PlacementPolicy(scorers=(("best-fit", 1.0), ("soft-affinity", 1.0),
                                       (ZonePreference.name, 0.5))),
    "top1": PlacementPolicy(top_k=1),
    "top5-spread": PlacementPolicy(scorers=(("worst-fit", 0.7), ("soft-affinity", 2.0)), top_k=5),
}


def expected_counts(s: ClusterState, req: Request, policy: PlacementPolicy) -> list[tuple[str, int, int]]:
    """(filter, rejected, remaining) as the summary reports them, from the filters' own masks."""
    local = np.ones(s.n, dtype=bool)
    names = []
    for f in policy._filters:
        if f.name in LEAF_FILTERS:
            local &= f(s, req).mask
            names.append(f.name)
    out = [("+".join(names), int(s.n - local.sum()), int(local.sum()))] if names else []
    alive = local
    for f in policy._filters:
        if f.name not in LEAF_FILTERS:
            removed = int((alive & ~f(s, req).mask).sum())
            alive = alive & f(s, req).mask
            out.append((f.name, removed, int(alive.sum())))
    return out


def check(got: Decision, want: Decision, s: ClusterState, req: Request, policy: PlacementPolicy,
          full: bool) -> None:
    assert (got.host_index, got.host, got.request) == (want.host_index, want.host, want.request)
    e, w = got.explanation, want.explanation
    if want.host_index is None or full or e.path.startswith("exact pipeline"):
        assert e.detail == "full" and replace(e, detail="full", path="") == w
        assert e.path.startswith("exact pipeline") or e.path.startswith("index")
        return
    assert e.detail == "summary" and e.path.startswith("index")
    assert e.top == w.top  # hosts, weighted totals and per-scorer scores, bit for bit
    assert (e.hosts_considered, e.candidates, e.rule) == (w.hosts_considered, w.candidates, w.rule)
    assert [(f.filter, f.rejected, f.remaining) for f in e.filters] == expected_counts(s, req, policy)
    assert e.filters[-1].remaining == e.candidates


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.sampled_from(sorted(SERVED_POLICIES)), st.sampled_from([0, 1, 61]))
def test_served_decisions_and_explanations_equal_the_pipeline(sc: dict, name: str, top_slack: int) -> None:
    s = build(sc)
    policy = SERVED_POLICIES[name]
    placer = IndexedPlacer(s, policy, top_slack=top_slack, **sc["options"])
    placed: list[tuple[int, Request]] = []
    extra = 0
    for i, (op, seed) in enumerate(sc["ops"]):
        rng = np.random.default_rng(seed)
        if op == "place":
            req = make_request(s, sc, seed, i)
            if rng.random() < 0.2:  # a zone requirement: the plug-in scorer then varies
                req = replace(req, required_labels={"zone": "a"})
            full = rng.random() < 0.2
            want = place(s, req, policy)
            got = decide(placer, req, full=full)
            check(got, want, s, req, policy, full)
            if got.host_index is not None:
                s.allocate(got.host_index, req.demand, req.group)
                placed.append((got.host_index, req))
        elif op == "release" and placed:
            h, req = placed.pop(int(rng.integers(len(placed))))
            s.release(h, req.demand, req.group)
        elif op == "state":
            s.set_state(s.names[int(rng.integers(s.n))],
                        HostState.UP if rng.random() < 0.6 else HostState.MAINTENANCE)
        elif op == "add":
            extra += 1
            add(s, {**sc["hosts"][int(rng.integers(len(sc["hosts"])))], "name": f"x{extra}"})
        elif op == "touch":
            h = int(rng.integers(s.n))
            s.allocated[:, h] = 0.0
            s.touch([h])
    placer.close()


def grid(n: int, types: int = 2) -> ClusterState:
    s = ClusterState()
    for i in range(n):
        s.add_host(HostSpec(f"h{i}", {"vcpu": 8 * (1 + i % types), "memory_mib": 16384}, domain=f"r{i // 4}"))
    return s


@pytest.mark.parametrize("jit", [True, False])
def test_wide_exact_ties_stay_in_the_tree(jit: bool) -> None:
    """Hundreds of identical hosts: ties are broken by index inside the tree walk, no O(H) scan."""
    s = grid(600)
    placer = IndexedPlacer(s, jit=jit)
    req = Request("a", s.resources.vector({"vcpu": 1, "memory_mib": 512}))
    for k in range(40):
        want = place(s, replace(req, name=f"a{k}"))
        got = decide(placer, replace(req, name=f"a{k}"))
        assert got.explanation.top == want.explanation.top and got.host_index == want.host_index
        s.allocate(got.host_index or 0, req.demand)
    assert placer.stats["row_scan"] == 0 and placer.stats["tree"] == 40
    flat = grid(50, types=1)  # every score equal: the pipeline's normalization makes them all 0
    d, want = decide(IndexedPlacer(flat, jit=jit), req), place(flat, req)
    assert d.explanation.top == want.explanation.top
    assert [(c.host, c.score) for c in d.explanation.top] == [("h0", 0.0), ("h1", 0.0), ("h2", 0.0)]


@pytest.mark.parametrize("jit", [True, False])
def test_nan_allocations_are_treated_as_the_filters_and_scorers_treat_them(jit: bool) -> None:
    """A NaN written into the arrays passes the capacity filter (NaN < x is False) and its fraction
    is left out of the best-fit mean, in the index as in the pipeline."""
    s = grid(12)
    placer = IndexedPlacer(s, jit=jit)
    req = Request("a", s.resources.vector({"vcpu": 1, "memory_mib": 1024}))
    decide(placer, req)
    s.allocated[1, 5] = np.nan
    s.allocated[0, 3] = np.nan
    s.touch([3, 5])
    got, want = decide(placer, req), place(s, req)
    assert got.explanation.path == "index" and got.explanation.candidates == want.explanation.candidates == 12
    assert got.explanation.top == want.explanation.top and placer.place_fast(req) == want.host_index


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("slack", [0, 61])
def test_raw_scores_that_normalize_equal_are_ordered_by_host_index(jit: bool, slack: int) -> None:
    """Worst fit: h1's raw score is 1 ulp above h0's, but after min-max normalization both are 1.0,
    so the pipeline ranks h0 (lower index) first. The tree walk must see past the raw order (or,
    with no slack, hand the ranking to the exact row scan)."""
    s = ClusterState(("r0",))
    for i in range(3):
        s.add_host(HostSpec(f"h{i}", {"r0": 1.0}))
    s.allocated[0, :] = [np.nextafter(0.001, 1.0), 0.001, 0.9]
    s.touch([0, 1, 2])
    req = Request("a", np.array([1e-30]))
    two = place(s, req, PlacementPolicy(scorers=(("worst-fit", 1.0),), top_k=2))
    scores = -(s.allocated[0] + req.demand[0])
    assert scores[1] > scores[0] and two.host == "h0"  # the premise: normalization tied them
    assert two.explanation.top[0].score == two.explanation.top[1].score == 1.0
    policy = PlacementPolicy(scorers=(("worst-fit", 1.0),), top_k=1)  # slack 0: one host kept at most
    want = place(s, req, policy)
    placer = IndexedPlacer(s, policy, jit=jit, top_slack=slack)
    got = decide(placer, req)
    assert got.host == "h0" and got.explanation.top == want.explanation.top
    assert got.explanation.path == ("index" if slack else "index (exact row scan)")
    assert placer.place_fast(req) == 0


def test_anti_affinity_and_spread_counts_in_the_summary() -> None:
    s = grid(16)
    placer = IndexedPlacer(s)
    anti = Request("a", s.resources.vector({"vcpu": 1}), group="g", group_policy=GroupPolicy.ANTI_AFFINITY)
    for k in range(3):
        d = decide(placer, replace(anti, name=f"a{k}"))
        s.allocate(d.host_index or 0, anti.demand, "g")
    placer.index.sync()  # apply the last allocation's leaf update first
    f = placer.index.forest
    before = [a.copy() for a in (f.l0, f.l1, f.l1min, f.count)]
    d = decide(placer, anti)
    assert all(np.array_equal(a, b) for a, b in zip(before, (f.l0, f.l1, f.l1min, f.count), strict=True))
    aff = next(f for f in d.explanation.filters if f.filter == "affinity")
    assert aff.rejected == 3 and aff.reasons == {"anti-affinity group g already here": 3}
    assert d.explanation.candidates == 13 and d.host_index == place(s, anti).host_index
    spread = Request("b", s.resources.vector({"vcpu": 1}), group="s", group_policy=GroupPolicy.DOMAIN_SPREAD)
    s.allocate(0, spread.demand, "s")
    d = decide(placer, spread)
    dom = next(f for f in d.explanation.filters if f.filter == "domain-spread")
    assert dom.rejected == 4 and d.explanation.candidates == 12
    assert d.host_index == place(s, spread).host_index
    hard = Request("c", s.resources.vector({"vcpu": 1}), group="g", group_policy=GroupPolicy.AFFINITY)
    d = decide(placer, hard)  # hard affinity with members: the exact pipeline, and it says so
    assert d.explanation.detail == "full" and "hard affinity group with members" in d.explanation.path
    assert d == replace(place(s, hard), explanation=d.explanation)


def test_no_host_gives_the_full_explanation_and_unsupported_policies_say_why() -> None:
    s = grid(4)
    placer = IndexedPlacer(s)
    big = Request("big", s.resources.vector({"vcpu": 100}))
    d = decide(placer, big)
    assert d.host is None and d.explanation.detail == "full" and d.explanation.path == "index"
    assert replace(d.explanation, detail="full", path="") == place(s, big).explanation
    assert "capacity rejected 4" in d.explanation.summary()
    bal = IndexedPlacer(s, PlacementPolicy.named("balanced"))
    d = decide(bal, Request("x", s.resources.vector({"vcpu": 1})))
    assert d.explanation.path.startswith("exact pipeline: scorer(s) the index cannot key on: balanced")


def test_member_hosts_follow_the_change_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-group host lists equal a pass over the counts after any mix of changes, including a
    log that overflowed, a group not looked at for long, and a replaced count array."""
    from poolvisor.policies.placement import members as m

    monkeypatch.setattr(m, "LOG_LIMIT", 16)
    monkeypatch.setattr(m, "RESCAN_AFTER", 6)
    rng = np.random.default_rng(5)
    n = 40
    counts = {g: np.zeros(n, dtype=np.int32) for g in "abc"}
    mh = m.MemberHosts()
    for step in range(600):
        g = "abc"[int(rng.integers(3))]
        if rng.random() < 0.02:
            counts[g] = counts[g].copy()  # a replaced array (a group emptied and started again)
        h = int(rng.integers(n))
        counts[g][h] = max(0, counts[g][h] + int(rng.choice([-1, 1, 1])))
        mh.changed([h] if rng.random() < 0.95 else [h, *range(n)])  # now and then a bulk touch
        assert len(mh._log) <= m.LOG_LIMIT
        if rng.random() < 0.3:
            q = "abc"[int(rng.integers(3))]
            got = np.sort(mh.hosts(q, counts[q], n))
            assert got.tolist() == np.flatnonzero(counts[q] > 0).tolist(), step
    domains = rng.integers(0, 7, size=n).astype(np.int32)
    taken = np.array([1, 4])
    assert np.sort(mh.in_domains(domains, taken)).tolist() == np.flatnonzero(np.isin(domains, taken)).tolist()


def test_member_hosts_of_a_group_seen_before_its_first_member_need_no_full_pass() -> None:
    """A group marked absent (no members yet) is listed from the change log alone; when the
    state's group dict was replaced meanwhile (recount), one full pass answers instead."""
    from poolvisor.policies.placement import members as m
    n = 50
    owner: dict[str, np.ndarray] = {}
    mh = m.MemberHosts()
    mh.absent("g", owner)
    owner["g"] = counts = np.zeros(n, dtype=np.int32)
    counts[[3, 17]] = 1
    mh.changed([3, 17, 9])
    assert np.sort(mh.hosts("g", counts, n, owner)).tolist() == [3, 17]
    mh.absent("h", owner)
    fresh = {"h": np.zeros(n, dtype=np.int32)}  # recount: a new dict, members set without a log
    fresh["h"][[5, 40]] = 1
    assert np.sort(mh.hosts("h", fresh["h"], n, fresh)).tolist() == [5, 40]
    mh.absent("k", owner)  # a dict not given: never trusted
    owner["k"] = np.ones(n, dtype=np.int32)
    assert mh.hosts("k", owner["k"], n).size == n


def gpu_grid(plain: int, gpu: int) -> ClusterState:
    s = ClusterState(("vcpu", "memory_mib", "gpu"))
    for i in range(plain):
        s.add_host(HostSpec(f"p{i}", {"vcpu": 8 * (1 + i % 2), "memory_mib": 16384, "gpu": 0},
                            domain=f"r{i % 5}"))
    for i in range(gpu):
        s.add_host(HostSpec(f"g{i}", {"vcpu": 16, "memory_mib": 32768, "gpu": 4}, domain=f"r{i % 5}"))
    return s


@pytest.mark.parametrize("jit", [True, False])
def test_ordinary_requests_stay_on_the_tree_while_gpus_are_free(jit: bool) -> None:
    """Default policy (keep-scarce-free, weight 10): hosts with free GPUs sit in the class's spare
    row, not its row, yet the ranking equals the pipeline's (keep-scarce-free 1.0 on the top hosts,
    normalization over all candidates, counts including the GPU hosts) without the exact pipeline;
    once fewer than top_k other hosts fit, the exact pipeline ranks, and says so."""
    s = gpu_grid(12, 4)
    placer = IndexedPlacer(s, jit=jit)
    vm = Request("vm", s.resources.vector({"vcpu": 2, "memory_mib": 2048}))
    anti = replace(vm, group="g", group_policy=GroupPolicy.ANTI_AFFINITY)
    exact = kept = 0
    for k in range(40):
        req = replace(anti if k % 3 == 0 else vm, name=f"vm{k}")
        got, want = decide(placer, req), place(s, req)
        assert got.host_index == want.host_index is not None
        if got.explanation.path.startswith("exact pipeline"):
            exact += 1
            assert got.explanation == replace(want.explanation, detail="full", path=got.explanation.path)
            # fewer than top_k hosts without free GPUs fit: the ranking reaches the GPU hosts
            assert any(c.host.startswith("g") and c.scores["keep-scarce-free"] == 0.0
                       for c in want.explanation.top)
        else:
            assert got.explanation.path == "index" and got.explanation.top == want.explanation.top
            assert got.explanation.candidates == want.explanation.candidates
            assert [(f.filter, f.rejected, f.remaining) for f in got.explanation.filters] == \
                expected_counts(s, req, placer.policy)
            # the premise: GPU hosts with free GPUs were candidates (else the scorer is 0)
            kept += want.explanation.top[-1].scores["keep-scarce-free"] == 1.0
        s.allocate(got.host_index, req.demand, req.group)
    assert 0 < exact < 40 and placer.stats["full_scan"] == exact and kept == 40 - exact
    gpu = Request("gpu", s.resources.vector({"vcpu": 1, "memory_mib": 1024, "gpu": 1}))
    got, want = decide(placer, gpu), place(s, gpu)  # uses the GPU: no spare row, the tree answers
    assert got.explanation.path == "index" and got.explanation.top == want.explanation.top


def test_fast_explanation_constructors_build_the_same_frozen_objects() -> None:
    """explain.candidate/filter_report/explanation/decision (the served path's constructors) give
    instances equal to, and as frozen as, those the dataclasses' own __init__ gives."""
    from dataclasses import FrozenInstanceError

    from poolvisor.policies.placement import explain as ex
    c, c0 = ex.candidate("h1", 0.5, {"best-fit": 0.25}), ex.Candidate("h1", 0.5, {"best-fit": 0.25})
    f, f0 = ex.filter_report("affinity", 2, {"x": 2}, 7), ex.FilterReport("affinity", 2, {"x": 2}, 7)
    e = ex.explanation(9, [f], 7, [c], "rule", "summary", "index")
    e0 = ex.Explanation(9, [f0], 7, [c0], "rule", detail="summary", path="index")
    d, d0 = ex.decision("w", "h1", 1, e), ex.Decision("w", "h1", 1, e0)
    assert (c, f, e, d) == (c0, f0, e0, d0) and repr(d) == repr(d0) and d.to_dict() == d0.to_dict()
    for obj, field in ((c, "score"), (f, "rejected"), (e, "candidates"), (d, "host")):
        with pytest.raises(FrozenInstanceError):
            setattr(obj, field, None)
