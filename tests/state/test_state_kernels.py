"""The compiled ClusterState.allocate (state/kernels.py) must refuse and add exactly as numpy does."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poolvisor.domain.errors import ConflictError
from poolvisor.domain.models import HostSpec
from poolvisor.domain.resources import ResourceSet
from poolvisor.state import kernels
from poolvisor.state.cluster import ClusterState

VALUES = [0.0, 1e-10, 0.1, 0.2, 0.3, 1.0, 2.5, 3.0, 1e300, np.inf, -np.inf, np.nan, -1.0]


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 6), st.data(), st.booleans())
def test_compiled_allocate_equals_numpy(r: int, data: st.DataObject, force: bool) -> None:
    add = kernels.add()
    if add is None:
        pytest.skip("numba is not installed or POOLVISOR_NO_JIT=1: only the numpy path exists")
    vec = st.lists(st.sampled_from(VALUES), min_size=r, max_size=r).map(np.array)
    alloc, cap, demand = data.draw(vec), data.draw(vec), data.draw(vec)
    a, c = np.stack([alloc, alloc]).T.copy(), np.stack([cap, cap]).T.copy()  # (r, 2): host 1
    count = np.array([0, 3], dtype=np.int32)
    ok = add(a, c, count, 1, demand, force)
    with np.errstate(invalid="ignore"):  # inf + -inf: numpy warns, the compiled add does not
        refuse = not force and bool((alloc + demand > cap + 1e-9).any())  # the numpy path's test
        want = alloc if refuse else alloc + demand
    assert ok is not refuse
    np.testing.assert_array_equal(a[:, 1], want)  # bit for bit (NaN where numpy has NaN)
    np.testing.assert_array_equal(a[:, 0], alloc)
    assert count.tolist() == [0, 3 if refuse else 4]


def _state() -> ClusterState:
    s = ClusterState(ResourceSet(("vcpu", "memory_mib")))
    s.add_host(HostSpec("a", {"vcpu": 4, "memory_mib": 1024}))
    s.add_host(HostSpec("b", {"vcpu": 8, "memory_mib": 2048}))
    return s


@pytest.mark.parametrize("demand", [np.array([3.0, 1000.0]), np.array([3, 1000]), [3.0, 1000.0],
                                    np.array([[3.0, 0.0], [1000.0, 0.0]])[:, 0]])
def test_allocate_takes_any_demand_form_and_refuses_past_capacity(demand: object) -> None:
    """Float vectors, strided columns (the compiled path), integer arrays and lists (numpy's)."""
    s = _state()
    s.allocate(0, demand)  # type: ignore[arg-type]
    assert s.allocated[:, 0].tolist() == [3.0, 1000.0] and s.workload_count.tolist() == [1, 0]
    gen = s.generation
    with pytest.raises(ConflictError, match="lacks capacity"):
        s.allocate(0, demand)  # type: ignore[arg-type]
    assert s.allocated[:, 0].tolist() == [3.0, 1000.0] and s.workload_count.tolist() == [1, 0]
    assert s.generation == gen  # a refusal changes nothing
    s.allocate(0, demand, force=True)  # type: ignore[arg-type]
    assert s.allocated[:, 0].tolist() == [6.0, 2000.0] and s.workload_count.tolist() == [2, 0]
    s.allocate(np.int64(1), demand, "g")  # type: ignore[arg-type]
    assert s.allocated[:, 1].tolist() == [3.0, 1000.0] and s.group_mask("g").tolist() == [False, True]


def test_a_new_groups_counts_are_zero_writable_and_host_wide() -> None:
    """zero_counts: np.zeros for small states, fresh anonymous pages for large ones; either way
    all zero, int32, writable, copyable and pickled like any array."""
    import pickle

    from poolvisor.state.cluster import zero_counts
    for n in (10, 100_000):
        c = zero_counts(n)
        assert c.dtype == np.int32 and c.shape == (n,) and c.flags.writeable and not c.any()
        c[n - 1] += 2
        assert c.sum() == 2 and pickle.loads(pickle.dumps(c))[n - 1] == 2 and c.copy()[n - 1] == 2
    s = ClusterState(ResourceSet(("vcpu",)), capacity_hint=20_000)
    for i in range(3):
        s.add_host(HostSpec(f"h{i}", {"vcpu": 4}))
    s.allocate(2, np.array([1.0]), "g")
    s.allocate(2, np.array([1.0]), "g")
    assert s.group_counts["g"].shape == (20_000,) and s.group_mask("g").tolist() == [False, False, True]
    s.release(2, np.array([1.0]), "g")
    s.release(2, np.array([1.0]), "g")
    assert "g" not in s.group_counts  # the last member gone: the group's array goes
