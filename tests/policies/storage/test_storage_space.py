"""Extent allocation, thin provisioning and tiering."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poolvisor.policies.storage.extents import ExtentMap, NoSpace
from poolvisor.policies.storage.provisioning import PoolSpace
from poolvisor.policies.storage.tiering import demotions


def test_contiguous_first_then_chained() -> None:
    m = ExtentMap(100)
    a = m.allocate(30)
    b = m.allocate(30)
    c = m.allocate(30)
    assert (a, b, c) == ([(0, 30)], [(30, 30)], [(60, 30)])
    m.release(a)
    m.release(c)
    assert m.free == 70 and m.fragmentation() == pytest.approx(1 - 40 / 70)
    assert m.allocate(35) == [(60, 35)]  # first fit that is long enough
    chain = m.allocate(33)  # 30 at 0 + 5 at 95: no run is long enough
    assert sorted(chain) == [(0, 30), (95, 3)] and m.free == 2
    with pytest.raises(NoSpace):
        m.allocate(3)


def test_extend_in_place_when_next_run_is_free() -> None:
    m = ExtentMap(50)
    v = m.allocate(10)
    assert m.extend(v, 5) == [(0, 15)]
    w = m.allocate(5)
    assert m.extend(w, 5) == [(15, 10)]
    assert m.extend([(0, 15)], 5) == [(0, 15), (25, 5)]  # blocked: chained


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 40)), max_size=40))
def test_allocator_never_overlaps_and_conserves(ops) -> None:
    m = ExtentMap(200)
    held: list[list[tuple[int, int]]] = []
    for alloc, n in ops:
        if alloc or not held:
            try:
                held.append(m.allocate(n))
            except NoSpace:
                assert n > m.free
        else:
            m.release(held.pop(n % len(held)))
        used = sorted(e for ex in held for e in ex)
        for (s1, l1), (s2, _) in zip(used, used[1:], strict=False):
            assert s1 + l1 <= s2
        assert m.free + sum(length for _, length in used) == 200
        assert 0.0 <= m.fragmentation() < 1.0


def test_double_free_is_refused() -> None:
    m = ExtentMap(10)
    a = m.allocate(4)
    m.release(a)
    with pytest.raises(ValueError):
        m.release(a)


def test_thin_oversubscription_and_thick_reservation() -> None:
    p = PoolSpace(capacity=100, oversubscription=2.0)
    assert p.check(150, thin=True) is None
    p = p.add(150, thin=True)
    assert p.check(60, thin=True) is not None  # 210 > 200
    assert p.check(50, thin=False) is None
    p = p.add(50, thin=False)
    assert p.used == 50 and p.free == 50
    assert p.check_write(51) is not None and p.check_write(50) is None
    assert PoolSpace(100).check(101, thin=True) is not None  # ratio 1: no over-subscription


def test_demotes_coldest_first_within_room() -> None:
    moves = demotions(sizes=[10, 10, 10, 10], idle_s=[5, 100, 300, 200], tier=[0, 0, 0, 1],
                      free=[0, 25, 1000], cold_after=60)
    assert moves == [(2, 1), (3, 2), (1, 1)]  # 3 frees room on tier 1 after 2 took 10 of 25
