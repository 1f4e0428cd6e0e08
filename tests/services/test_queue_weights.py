"""Weighted dominant-resource fairness with real weights: projects weighted 2:1 contending for one
pool get dominant shares 2:1 (drf discipline); equal weights split evenly."""

from __future__ import annotations

import pytest

from poolvisor.domain.errors import InvalidInputError, NotFoundError
from poolvisor.services import Services

UNIT = {"vcpu": 1, "memory_mib": 1024}
SLOTS = 12


def contend(s: Services, wa: float, wb: float) -> dict[str, float]:
    """Fill the pool, queue 12 requests per project, free the pool: the dominant share each gets."""
    s.catalog.create_pool("p")
    s.hosts.create_host("h0", {"vcpu": SLOTS, "memory_mib": SLOTS * 1024}, pool="p")
    s.catalog.create_project("a", weight=wa)
    s.catalog.create_project("b")
    s.catalog.set_project_weight("b", wb)
    s.catalog.create_project("c")
    s.workloads.create_workload("c", "filler", demand={"vcpu": SLOTS, "memory_mib": SLOTS * 1024}, pool="p",
                                priority_class="system")
    for i in range(SLOTS):  # b arrives first: only the weights can put a ahead
        s.queue.enqueue("b", f"b{i}", demand=UNIT, pool="p")
        s.queue.enqueue("a", f"a{i}", demand=UNIT, pool="p")
    s.queue.set_discipline("p", "drf")
    s.workloads.delete_workload("c", "filler")
    placed = s.queue.drain().placed
    assert len(placed) == SLOTS
    return {p: sum(1 for k in placed if k.startswith(f"{p}/")) / SLOTS for p in ("a", "b")}


def test_weights_two_to_one_get_dominant_shares_two_to_one(lite: Services) -> None:
    share = contend(lite, 2.0, 1.0)
    assert share["a"] / share["b"] == pytest.approx(2.0)
    assert [p.weight for p in lite.catalog.list_projects()] == [2.0, 1.0, 1.0]


def test_equal_weights_split_evenly(lite: Services) -> None:
    share = contend(lite, 1.0, 1.0)
    assert share["a"] == pytest.approx(share["b"])


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), 1e7, True])
def test_a_weight_must_be_a_positive_finite_number(lite: Services, bad: float) -> None:
    lite.catalog.create_project("a")
    with pytest.raises(InvalidInputError):
        lite.catalog.set_project_weight("a", bad)
    with pytest.raises(InvalidInputError):
        lite.catalog.create_project("z", weight=bad)
    with pytest.raises(NotFoundError):
        lite.catalog.set_project_weight("ghost", 2)
