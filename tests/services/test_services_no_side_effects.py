"""What a creation writes besides its workload (project, group, group policy) is written by the
claim's transaction only: never by a dry run, never by a request that fails before it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from svc_helpers import small_cluster

from poolvisor.domain.errors import ConflictError, NotFoundError, NoValidHostError
from poolvisor.drivers.base import DriverError
from poolvisor.services import Services
from poolvisor.store.rows import GroupRow, ProjectRow


def _groups(s: Services) -> dict[str, str]:
    return s.store.run(lambda x: dict(x.execute(select(GroupRow.name, GroupRow.policy)).all()), write=False)


def _projects(s: Services) -> set[str]:
    return set(s.store.run(lambda x: x.scalars(select(ProjectRow.name)).all(), write=False))


def test_create_project_only_with_the_workload(lite: Services) -> None:
    small_cluster(lite)
    w = lite.workloads.create_workload("fresh", "a", flavor="unit", dry_run=True, create_project=True)
    assert w.state == "dry-run" and w.host is not None and "fresh" not in _projects(lite)
    with pytest.raises(NotFoundError, match="flavor"):
        lite.workloads.create_workload("fresh", "a", flavor="nope", create_project=True)
    with pytest.raises(NoValidHostError):
        lite.workloads.create_workload("fresh", "a", demand={"vcpu": 99}, group="g", create_project=True)
    with pytest.raises(NotFoundError, match="project 'fresh' not found"):
        lite.workloads.create_workload("fresh", "a", flavor="unit")  # without create_project: 404 as before
    assert "fresh" not in _projects(lite) and _groups(lite) == {}
    w = lite.workloads.create_workload("fresh", "a", flavor="unit", group="g", create_project=True)
    assert w.state == "running"
    assert "fresh" in _projects(lite) and _groups(lite) == {"g": "soft-anti-affinity"}
    kinds = [e.kind for e in lite.events.list_events("fresh")]
    assert kinds == ["workload.created", "workload.placed", "project.created"]
    # the batch path: the same
    r = lite.batch.create_workloads_batch("other", [{"name": "b", "flavor": "unit"}], dry_run=True,
                                          create_project=True)
    assert r.workloads[0].state == "dry-run" and "other" not in _projects(lite)
    with pytest.raises(NoValidHostError):
        lite.batch.create_workloads_batch("other", [{"name": "b", "demand": {"vcpu": 99}}],
                                          create_project=True)
    assert "other" not in _projects(lite)
    lite.batch.create_workloads_batch("other", [{"name": "b", "flavor": "unit"}], create_project=True)
    assert lite.catalog.get_project("other").workloads == 1
    assert lite.repair.check().ok


def test_a_driver_refusal_takes_back_the_workload_and_its_new_group(lite: Services) -> None:
    small_cluster(lite)
    lite.driver.inject("create")  # type: ignore[attr-defined]
    with pytest.raises(DriverError):
        lite.workloads.create_workload("fresh", "a", flavor="unit", group="g", group_policy="affinity",
                                       create_project=True)
    # the claim had committed (the driver was asked): the workload and its new group are removed
    # again; the audit events of the attempt stay, and so does the project (others may use it)
    assert _groups(lite) == {} and lite.workloads.list_workloads() == []
    assert [e.kind for e in lite.events.list_events("fresh")] == ["workload.create_failed", "workload.placed",
                                                                  "project.created"]
    assert lite.repair.check().ok


def test_an_empty_groups_policy_changes_only_with_a_member(lite: Services) -> None:
    small_cluster(lite)
    lite.workloads.create_workload("demo", "a", flavor="unit", group="g", group_policy="anti-affinity")
    lite.workloads.delete_workload("demo", "a")
    with pytest.raises(NoValidHostError):
        lite.workloads.create_workload("demo", "big", demand={"vcpu": 99}, group="g", group_policy="affinity")
    assert _groups(lite) == {"g": "anti-affinity"}
    w = lite.workloads.create_workload("demo", "b", flavor="unit", group="g", group_policy="affinity",
                                       dry_run=True)
    assert w.state == "dry-run" and _groups(lite) == {"g": "anti-affinity"}
    lite.workloads.create_workload("demo", "b", flavor="unit", group="g", group_policy="affinity")
    assert _groups(lite) == {"g": "affinity"}


def test_a_group_created_between_resolve_and_claim_is_resolved_again(lite: Services,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic interleaving: another request creates the group (with its own policy) after
    this one resolved it as new; the claim notices and the request is resolved again."""
    small_cluster(lite)
    decide = lite.workloads._decide
    rival: list[tuple[str, str]] = []  # (name, group) of the request that gets in between

    def racing(spec: Any, *args: Any, **kwargs: Any) -> Any:  # _decide's explain flag, the view
        if rival:
            name, group = rival.pop()
            lite.workloads.create_workload("demo", name, flavor="unit", group=group, group_policy="affinity")
        return decide(spec, *args, **kwargs)

    monkeypatch.setattr(lite.workloads, "_decide", racing)
    rival.append(("first", "g"))
    w = lite.workloads.create_workload("demo", "second", flavor="unit",
                                       group="g")  # no policy: joins affinity
    assert w.host == lite.workloads.get_workload("demo", "first").host and _groups(lite) == {"g": "affinity"}
    # with an explicit, different policy: the group's first member fixed it
    rival.append(("third", "h"))
    with pytest.raises(ConflictError, match="has policy affinity"):
        lite.workloads.create_workload("demo", "fourth", flavor="unit", group="h",
                                       group_policy="anti-affinity")
    assert {w.name for w in lite.workloads.list_workloads()} == {"first", "second", "third"}
    assert lite.repair.check().ok
