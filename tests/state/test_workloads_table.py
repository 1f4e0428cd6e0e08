"""The workload table: O(1) add/move/remove with host totals kept equal to the placed rows."""

from __future__ import annotations

import random

import numpy as np
import pytest

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.domain.models import HostSpec
from poolvisor.state.cluster import ClusterState


def cluster(hosts: int = 4, cap: float = 8.0, window: int = 5) -> ClusterState:
    st = ClusterState(("vcpu", "memory_mib"), window=window, workload_hint=2)
    for i in range(hosts):
        st.add_host(HostSpec(f"h{i}", {"vcpu": cap, "memory_mib": cap * 1024}))
    return st


def vec(cpu: float) -> np.ndarray:
    return np.array([cpu, cpu * 512])


def test_random_add_move_remove_keeps_totals_and_keys_exact():
    st = cluster()
    t = st.workloads
    rng = random.Random(3)
    live: dict[str, float] = {}
    for step in range(600):
        op = rng.choice(["add", "add", "move", "remove", "push"])
        try:
            if op == "add":
                key, cpu = f"w{step}", rng.choice([0.5, 1, 2])
                t.add(key, rng.randrange(-1, st.n), vec(cpu), group=rng.choice([None, "g"]),
                      priority=rng.randrange(3), kind=rng.choice(["vm", "container"]))
                live[key] = cpu
            elif op == "move" and live:
                t.move(rng.choice(sorted(live)), rng.randrange(-1, st.n))
            elif op == "remove" and live:
                key = rng.choice(sorted(live))
                t.remove(key)
                del live[key]
            elif op == "push":
                t.push(np.full(t.n, step / 600))
        except ConflictError:
            pass  # the host is full: nothing may have changed
        t.check()
        assert set(t.keys) == set(live)
        for key, cpu in live.items():
            assert t.demand[0, t.row(key)] == cpu
    g = st.group_counts.get("g")
    grouped = (t.group == t.group_names.index("g")) & (t.host >= 0) if "g" in t.group_names else []
    want = np.bincount(t.host[grouped], minlength=st.n) if len(grouped) else np.zeros(st.n)
    assert (g[: st.n] if g is not None else np.zeros(st.n)).tolist() == want.tolist()


def test_refused_add_or_move_changes_nothing():
    st = cluster(hosts=2, cap=2.0)
    t = st.workloads
    t.add("a", 0, vec(2))
    before = st.allocated.copy()
    with pytest.raises(ConflictError):
        t.add("b", 0, vec(1))
    assert "b" not in t and np.array_equal(st.allocated, before)
    t.add("b", 1, vec(1))
    with pytest.raises(ConflictError):
        t.move("b", 0)
    assert t.host[t.row("b")] == 1
    t.check()
    with pytest.raises(ConflictError):
        t.add("a", 1, vec(1))
    with pytest.raises(NotFoundError):
        t.remove("zz")
    with pytest.raises(InvalidInputError):
        t.add("c", 1, np.ones(3))
    with pytest.raises(InvalidInputError):
        t.add("c", 1, vec(0), kind="pod")


def test_swap_remove_moves_the_last_row_with_its_columns():
    st = cluster(window=3)
    t = st.workloads
    for i in range(4):
        t.add(f"w{i}", i, vec(i + 1), priority=i, group=f"g{i}", kind="container" if i % 2 else "vm")
    t.push(np.array([0.1, 0.2, 0.3, 0.4]))
    t.remove("w1")
    r = t.row("w3")
    assert r == 1 and t.keys == ["w0", "w3", "w2"]
    assert (t.host[r], t.demand[0, r], t.priority[r], t.group_name(r), t.kind[r]) == (3, 4.0, 3, "g3", 1)
    assert t.util[r, 0] == 0.4 and t.samples[r] == 1
    t.check()


def test_window_is_newest_first_and_slides():
    st = cluster(window=3)
    t = st.workloads
    t.add("a", 0, vec(1))
    for k in range(1, 8):
        t.push(np.array([k / 10]))
        if k == 2:
            t.add("b", 1, vec(1))  # joins later: a shorter history
    assert t.util.tolist() == [[0.7, 0.6, 0.5], [0.7, 0.6, 0.5]]
    assert t.samples.tolist() == [3, 3]
    t.add("c", 2, vec(1))
    t.push(np.array([0.8, 0.8, 0.9]))
    assert t.util[2].tolist() == [0.9, 0.0, 0.0] and t.samples.tolist() == [3, 3, 1]
    t.set_window(np.array([0]), np.array([[0.5, 0.4]]))
    assert t.util[0].tolist() == [0.5, 0.4, 0.0] and t.samples[0] == 2


def test_bulk_add_and_move_equal_one_by_one():
    a, b = cluster(hosts=3, cap=100), cluster(hosts=3, cap=100)
    hosts = np.array([0, 2, 2, 1, -1, 0])
    dem = np.array([vec(c) for c in (1, 2, 3, 4, 5, 6)]).T
    a.workloads.add_many([f"w{i}" for i in range(6)], hosts, dem)
    for i in range(6):
        b.workloads.add(f"w{i}", int(hosts[i]), dem[:, i])
    a.workloads.move_rows(np.array([0, 4, 5]), np.array([1, 2, 0]))
    for key, dst in (("w0", 1), ("w4", 2), ("w5", 0)):
        b.workloads.move(key, dst)
    for st in (a, b):
        st.workloads.check()
    assert np.array_equal(a.allocated, b.allocated) and a.workloads.host.tolist() == b.workloads.host.tolist()


def test_copy_is_independent():
    st = cluster()
    st.workloads.add("a", 0, vec(1))
    c = st.copy()
    c.workloads.move("a", 1)
    c.workloads.add("b", 2, vec(1))
    assert st.workloads.host.tolist() == [0] and "b" not in st.workloads
    st.workloads.check()
    c.workloads.check()
    assert c.workloads.owner is c


def test_add_and_remove_stay_constant_time():
    """A table 20x larger does not make one add + remove 20x slower (no O(n) step hides in them;
    what remains is cache misses). The doubling is paid before timing (amortized, not per op)."""
    import time

    def per_op(n: int) -> float:
        st = cluster(hosts=8, cap=1e9)
        t = st.workloads
        t.add_many([f"w{i}" for i in range(n)], np.arange(n) % 8, np.ones((2, n)))
        t.add("warm", 0, vec(1))  # the one doubling
        t.remove("warm")
        t0 = time.perf_counter()
        for i in range(2000):
            t.add(("x", i), i % 8, vec(1))
            t.remove(f"w{i}")
        return (time.perf_counter() - t0) / 2000

    small, big = min(per_op(20_000) for _ in range(5)), min(per_op(400_000) for _ in range(5))
    assert big < 6 * small


def test_moves_without_accounting_then_recount_equal_accounted_moves():
    a, b = cluster(hosts=5, cap=1e6), cluster(hosts=5, cap=1e6)
    rng = np.random.default_rng(4)
    dem = rng.random((2, 40)) * 10
    for st in (a, b):
        st.workloads.add_many([f"w{i}" for i in range(40)], np.full(40, -1), dem)
        st.workloads.add("g0", 1, vec(1), group="g")
    for _ in range(30):
        rows = rng.choice(40, size=int(rng.integers(1, 12)), replace=False)
        dsts = rng.integers(-1, 5, rows.size)
        a.workloads.move_rows(rows, dsts)
        b.workloads.move_rows(rows, dsts, account=False)
    b.recount()
    a.workloads.check()
    b.workloads.check()
    np.testing.assert_allclose(a.allocated, b.allocated, rtol=1e-12)
    assert a.workload_count.tolist() == b.workload_count.tolist()
    assert b.group_counts["g"][: b.n].tolist() == [0, 1, 0, 0, 0]
