"""The served path: create_workload decides through the cache's placement index (served.decide),
explains in summary unless asked, keeps the index current incrementally, and a stale decision is
caught by the ledger and decided again."""

from __future__ import annotations

import random

import numpy as np
import pytest
from svc_helpers import small_cluster

from poolvisor.bench import placement as bench_placement
from poolvisor.domain.errors import PoolvisorError
from poolvisor.policies.placement import Decision, Request, place, served
from poolvisor.services import Services
from poolvisor.services import workloads as service_workloads
from poolvisor.services.placement_cache import PlacementCache, group_key


def count_decide(monkeypatch: pytest.MonkeyPatch) -> list[Decision]:
    """Wrap the decision function the service calls; returns the decisions it made."""
    made: list[Decision] = []
    real = served.decide

    def counting(placer, req, *, full=False):  # type: ignore[no-untyped-def]
        made.append(real(placer, req, full=full))
        return made[-1]

    monkeypatch.setattr(service_workloads, "decide", counting)
    return made


def test_the_bench_measures_the_function_create_workload_calls(lite: Services,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert service_workloads.decide is served.decide is bench_placement.decide
    small_cluster(lite)
    made = count_decide(monkeypatch)
    w = lite.workloads.create_workload("demo", "vm1", flavor="unit")
    assert len(made) == 1 and made[0].host == w.host
    assert w.explanation == made[0].explanation.to_dict()
    dry = lite.workloads.create_workload("demo", "vm2", flavor="unit", dry_run=True)
    assert len(made) == 2 and dry.host == made[1].host


def test_summary_by_default_full_when_asked(lite: Services) -> None:
    small_cluster(lite)
    w = lite.workloads.create_workload("demo", "vm1", flavor="unit")
    e = w.explanation
    assert (e["detail"], e["path"]) == ("summary", "index") and e["top"][0]["host"] == w.host
    assert e["filters"][0]["filter"] == "host-state+pool+capacity+labels+max-workloads"
    assert e["candidates"] == 3 and e["rule"].startswith("highest weighted score")
    full = lite.workloads.create_workload("demo", "vm2", flavor="unit", explain=True)
    f = full.explanation
    assert f["detail"] == "full" and [r["filter"] for r in f["filters"]] == [
        "host-state", "pool", "capacity", "labels", "affinity", "domain-spread", "max-workloads"]
    dry = lite.workloads.create_workload("demo", "vm3", flavor="unit", dry_run=True, explain=True)
    assert dry.explanation["detail"] == "full" and dry.explanation["top"] == \
        lite.workloads.create_workload("demo", "vm4", flavor="unit", dry_run=True,
                                       explain=False).explanation["top"]


def test_a_stale_index_decision_is_caught_by_the_ledger_and_replanned(
        lite: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    small_cluster(lite)
    made: list[Decision] = []
    real = served.decide

    def racing(placer, req, *, full=False):  # type: ignore[no-untyped-def]
        d = real(placer, req, full=full)
        made.append(d)
        if len(made) == 1:  # between this decision and its commit, the host goes to maintenance
            lite.hosts.set_host_state(d.host, "maintenance")
        return d

    monkeypatch.setattr(service_workloads, "decide", racing)
    w = lite.workloads.create_workload("demo", "vm1", flavor="unit")
    assert len(made) == 2 and made[1].host != made[0].host == next(
        h.name for h in lite.hosts.list_hosts() if h.state == "maintenance")
    assert w.host == made[1].host and lite.hosts.get_host(made[0].host).workloads == 0
    assert lite.repair.check().ok


def fresh_choice(svc: Services, req_of: callable) -> str | None:  # type: ignore[valid-type]
    """The pipeline's choice on a fresh load of the store (no cache, no index)."""
    snap = svc.ctx.read(PlacementCache().refresh)
    d = place(snap.state, req_of(snap), svc.policy)
    return d.host


def test_the_index_follows_the_store_incrementally_and_stays_exact(lite: Services) -> None:
    small_cluster(lite, hosts=6, vcpu=6, memory=6144)
    rng = random.Random(3)
    names: list[str] = []
    compared = 0
    for step in range(60):
        op = rng.choice(["create", "create", "create", "delete", "migrate", "state"])
        try:
            if op == "create":
                group = rng.choice([None, "g1", "g2"])
                policy = {"g1": "anti-affinity", "g2": "domain-spread"}.get(group or "")
                lite.workloads.create_workload("demo", f"w{step}", demand={"vcpu": rng.choice([1, 2])},
                                               group=group,
                                               group_policy=policy, pool=rng.choice([None, "p"]))
                names.append(f"w{step}")
            elif op == "delete" and names:
                lite.workloads.delete_workload("demo", names.pop(rng.randrange(len(names))))
            elif op == "migrate" and names:
                lite.workloads.migrate_workload("demo", rng.choice(names))
            elif op == "state":
                lite.hosts.set_host_state(f"h{rng.randrange(6)}", rng.choice(["up", "up", "maintenance"]))
        except PoolvisorError:
            pass
        if step % 6 == 5:  # the served decision on the cache equals the pipeline on a fresh load
            demand = {"vcpu": float(rng.choice([1, 2, 3])), "memory_mib": 512.0}
            group = rng.choice([None, "g1"])
            dry = lite.workloads.create_workload("demo", f"probe{step}", demand=demand, group=group,
                                                 group_policy="anti-affinity" if group else None,
                                                 dry_run=True) \
                if _fits(lite, demand) else None

            def req_of(snap, demand=demand, group=group):  # type: ignore[no-untyped-def]
                return Request("probe", snap.state.resources.vector(demand),
                               group=group_key("demo", group) if group else None,
                               group_policy=service_workloads.GroupPolicy.ANTI_AFFINITY if group else None)

            if dry is not None:
                assert dry.host == fresh_choice(lite, req_of)
                compared += 1
    assert compared >= 5
    snap = lite.cache.view
    assert snap is not None and lite.cache.full_loads == 1
    placer = snap.placer(lite.policy)
    assert placer.stats["rebuilds"] == 0 and placer.stats["tree"] > 0  # point updates, never a rebuild
    assert lite.repair.check().ok


def _fits(svc: Services, demand: dict[str, float]) -> bool:
    return any(h.state == "up" and h.free.get("vcpu", 0) >= demand["vcpu"] for h in svc.hosts.list_hosts())


def test_pool_requests_reuse_one_read_only_pool_array(lite: Services) -> None:
    small_cluster(lite)
    lite.hosts.create_host("other", {"vcpu": 64, "memory_mib": 65536})  # outside the pool, emptier
    for k in range(3):
        assert lite.workloads.create_workload("demo", f"p{k}", flavor="unit", pool="p").host.startswith("h")
    snap = lite.cache.view
    assert snap is not None
    hosts = next(iter(snap._pools.values()))
    assert not hosts.flags.writeable and np.array_equal(
        hosts, np.flatnonzero(snap.pool_of[: snap.state.n] == snap.pool_of[hosts[0]]))
    assert snap.placer(lite.policy).stats["classes"] == 1  # one class: same demand, same pool


def test_batch_replay_goes_through_the_index(lite: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    small_cluster(lite, hosts=4, vcpu=8, memory=8192)
    import poolvisor.policies.placement.index as index
    import poolvisor.policies.placement.pipeline as pipeline

    def forbidden(*_a: object, **_k: object) -> None:
        raise AssertionError("batch placement must not run an O(H) pipeline pass per item")

    monkeypatch.setattr(pipeline, "place", forbidden)
    monkeypatch.setattr(index, "choose", forbidden)  # the index's exact fallback
    res = lite.batch.create_workloads_batch("demo", [{"name": f"b{i}", "flavor": "unit"} for i in range(10)],
                                            dry_run=True)
    assert len(res.workloads) == 10 and not res.unplaced


def test_small_pools_skip_the_compiled_kernels_and_growing_ones_get_them(
        lite: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    from poolvisor.policies.placement import kernels
    from poolvisor.services import placement_cache

    monkeypatch.setattr(placement_cache, "JIT_MIN_HOSTS", 5)
    monkeypatch.setattr(kernels, "loaded", lambda: False)  # a process that has not built them (a CLI)
    small_cluster(lite, hosts=4)
    lite.workloads.create_workload("demo", "a", flavor="unit")
    assert lite.cache.view is not None and not lite.cache.view.placer(lite.policy).index.jit
    lite.hosts.create_host("h4", {"vcpu": 4, "memory_mib": 4096})
    w = lite.workloads.create_workload("demo", "b", flavor="unit")
    placer = lite.cache.view.placer(lite.policy)
    assert placer.index.jit == kernels.available() and w.explanation["path"] == "index"
    assert lite.repair.check().ok


def test_a_process_with_the_kernels_loaded_uses_them_on_a_small_pool(lite: Services) -> None:
    """A server builds the kernels at start (jit.warm): its small pools decide with them, as the
    numpy path would."""
    from poolvisor.policies.placement import kernels

    small_cluster(lite, hosts=4)
    lite.workloads.create_workload("demo", "a", flavor="unit")
    assert lite.cache.view is not None
    if not kernels.available():  # (builds them; numba missing or disabled: nothing to show)
        pytest.skip("numba kernels unavailable")
    assert kernels.loaded()
    w = lite.workloads.create_workload("demo", "b", flavor="unit")
    assert lite.cache.view.placer(lite.policy).index.jit and w.explanation["path"] == "index"
    assert lite.repair.check().ok
