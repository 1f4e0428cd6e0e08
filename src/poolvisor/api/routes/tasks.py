"""Tasks: long operations (migrate, consolidation apply) that answered 202; poll or cancel them here.

Project-scoped like workloads: a member sees its project's tasks only (another project's task is
not found); admins see every task, and the pool-wide ones (consolidations) are theirs alone.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from poolvisor.api.auth import SvcDep, Who, scope_project
from poolvisor.api.errors import errors
from poolvisor.api.fields import QUERY_INT, Name
from poolvisor.api.schemas import TaskOut, TaskState

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])
MAX_ID = 2**63 - 1
TaskId = Annotated[int, Path(ge=1, le=MAX_ID, description="task id"), QUERY_INT]


@router.get("", response_model=list[TaskOut], responses=errors(401, 404, 422, 503))
def list_tasks(
    svc: SvcDep, who: Who,
    state: Annotated[TaskState | None, Query(description="only tasks in this state")] = None,
    project: Annotated[Name | None, Query(description="admins: only this project's tasks")] = None,
    limit: Annotated[int, Query(ge=1, le=1000), QUERY_INT] = 100,
) -> list[TaskOut]:
    """Newest first."""
    return [TaskOut.model_validate(t)
            for t in svc.tasks.list_tasks(scope_project(who, project), state, limit)]


@router.get("/{task_id}", response_model=TaskOut, responses=errors(401, 404, 422, 503))
def get_task(task_id: TaskId, svc: SvcDep, who: Who) -> TaskOut:
    """State, progress 0..1, the result or error, and the task's log."""
    return TaskOut.model_validate(svc.tasks.get_task(task_id, scope_project(who, None)))


@router.post("/{task_id}/cancel", status_code=202, response_model=TaskOut,
             responses=errors(401, 404, 409, 413, 422, 503))
def cancel_task(task_id: TaskId, response: Response, svc: SvcDep, who: Who) -> TaskOut:
    """A queued task ends `cancelled` at once. A running migration is aborted (the workload stays
    on its source; the task ends `cancelled`), a running consolidation stops before its next move:
    poll the task (also in `Location`). 409 for a finished task or a step of another task."""
    task = svc.tasks.cancel_task(task_id, scope_project(who, None))
    response.headers["Location"] = f"/v1/tasks/{task.id}"
    return TaskOut.model_validate(task)
