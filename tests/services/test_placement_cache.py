"""The incrementally refreshed placement snapshot always equals a fresh load of the store."""

from __future__ import annotations

import random

import numpy as np
from svc_helpers import small_cluster

from poolvisor.domain.errors import PoolvisorError
from poolvisor.services import open_services
from poolvisor.services.placement_cache import PlacementCache


def same_as_fresh(svc) -> None:
    with svc.cache.lock:
        inc = svc.ctx.read(svc.cache.refresh)
    fresh = svc.ctx.read(PlacementCache().refresh)
    a, b = inc.state, fresh.state
    order = [inc.index_of[i] for i in fresh.ids]  # fresh is ordered by id; the cache by arrival
    assert a.resources.names == b.resources.names
    np.testing.assert_allclose(a.allocated[:, order], b.allocated)
    np.testing.assert_allclose(a.capacity[:, order], b.capacity)
    assert a.state[order].tolist() == b.state.tolist()
    assert a.workload_count[order].tolist() == b.workload_count.tolist()
    assert {g: c[: a.n][order].tolist() for g, c in a.group_counts.items()} == \
        {g: c[: b.n].tolist() for g, c in b.group_counts.items()}
    assert inc.gens[order].tolist() == fresh.gens.tolist()
    same_workloads(inc, fresh)


def same_workloads(inc, fresh) -> None:
    """The workload tables hold the same workloads, on the same hosts, with the same columns."""
    ta, tb = inc.state.workloads, fresh.state.workloads
    assert sorted(ta.keys) == sorted(tb.keys)
    for key in tb.keys:
        ra, rb = ta.row(key), tb.row(key)
        assert inc.ids[ta.host[ra]] == fresh.ids[tb.host[rb]]
        assert ta.demand[:, ra].tolist() == tb.demand[:, rb].tolist()
        a = (ta.priority[ra], ta.kind[ra], ta.group_name(ra))
        assert a == (tb.priority[rb], tb.kind[rb], tb.group_name(rb))
    # the table agrees with the store's ledger (loaded without re-accounting, so this is a real check)
    fresh.state.workloads.check()
    inc.state.workloads.check()


def test_random_operations_keep_the_snapshot_exact(lite):
    small_cluster(lite, hosts=4, vcpu=6, memory=6144)
    rng = random.Random(7)
    names: list[str] = []
    for step in range(80):
        op = rng.choice(["create", "create", "create", "delete", "migrate", "action", "state", "host"])
        try:
            if op == "create":
                name = f"w{step}"
                group = rng.choice([None, "g1", "g2"])
                policy = {"g1": "soft-affinity", "g2": "anti-affinity"}.get(group or "")
                lite.workloads.create_workload("demo", name, demand={"vcpu": rng.choice([1, 2])}, group=group,
                                               group_policy=policy)
                names.append(name)
            elif op == "delete" and names:
                lite.workloads.delete_workload("demo", names.pop(rng.randrange(len(names))))
            elif op == "migrate" and names:
                lite.workloads.migrate_workload("demo", rng.choice(names))
            elif op == "action" and names:
                lite.workloads.workload_action("demo", rng.choice(names), rng.choice(["stop", "start"]))
            elif op == "state":
                lite.hosts.set_host_state(f"h{rng.randrange(4)}",
                                          rng.choice(["up", "up", "maintenance", "down"]))
            elif op == "host":
                lite.hosts.create_host(f"x{step}",
                                       {"vcpu": 4, "memory_mib": 4096, "fpga": rng.choice([0, 1])})
        except PoolvisorError:
            pass  # no room, wrong state...: the snapshot must stay exact either way
        if step % 5 == 4:
            same_as_fresh(lite)
    same_as_fresh(lite)
    assert lite.repair.check().ok


def test_a_view_stays_exact_while_another_process_changes_its_hosts(svc, db_url):
    """The hosts another process (a replica) changes are reloaded; the workloads the view already
    holds as the store has them are kept as they are, the others replaced: the view equals a fresh
    load, GPU devices included, through creates, deletes, migrations and group members on both
    sides and claims written through here."""
    svc.catalog.create_pool("p")
    for i in range(4):
        svc.hosts.create_host(f"h{i}", {"vcpu": 8, "memory_mib": 8192, "gpu": 2 if i % 2 else 0}, pool="p")
    svc.catalog.create_project("demo")
    rng = random.Random(11)
    names: list[str] = []
    with open_services(db_url) as other:
        for step in range(90):
            who = rng.choice([svc, other])
            op = rng.choice(["create", "create", "delete", "migrate"])
            try:
                if op == "create":
                    name = f"w{step}"
                    group = rng.choice([None, None, "g"])
                    demand = {"vcpu": rng.choice([1, 2]), "memory_mib": 512} | (
                        {"gpu": rng.choice([0.5, 1])} if rng.random() < 0.3 else {})
                    who.workloads.create_workload("demo", name, demand=demand, group=group,
                                                  group_policy="soft-affinity" if group else None)
                    names.append(name)
                elif op == "delete" and names:
                    who.workloads.delete_workload("demo", names.pop(rng.randrange(len(names))))
                elif op == "migrate" and names:
                    who.workloads.migrate_workload("demo", rng.choice(names))
            except PoolvisorError:
                pass
            if step % 3 == 2:
                same_as_fresh(svc)
                view = svc.cache.view
                fresh = svc.ctx.read(PlacementCache().refresh)
                assert view is not None and view.gpus is not None and fresh.gpus is not None
                order = [view.index_of[i] for i in fresh.ids]
                assert view.gpus.free[order].tolist() == fresh.gpus.free.tolist()
    assert svc.repair.check().ok
