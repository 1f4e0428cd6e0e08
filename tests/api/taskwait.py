"""Polling a task that a 202 answer returned (the API tests' helper)."""

from __future__ import annotations

import time
from typing import Any


def wait_task(client: Any, headers: dict[str, str], answer: object, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the task a 202 answer (an httpx response) returned until it is final; its last body."""
    r = answer
    assert getattr(r, "status_code", None) == 202, getattr(r, "text", r)
    task = r.json()  # type: ignore[attr-defined]
    assert r.headers["Location"] == f"/v1/tasks/{task['id']}"  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while task["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, task
        time.sleep(0.02)
        got = client.get(f"/v1/tasks/{task['id']}", headers=headers)
        assert got.status_code == 200, got.text
        task = got.json()
    return dict(task)
