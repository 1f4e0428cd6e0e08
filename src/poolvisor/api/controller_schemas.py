"""API schemas of the live controller (GET /v1/controller, pause, resume)."""

from __future__ import annotations

from typing import Any

from poolvisor.api.schemas import _Out


class ControllerLoopOut(_Out):
    """This server's loop (None when it runs none: --controller-interval 0)."""

    interval_s: float
    running: bool
    rounds: int
    skipped_not_leader: int
    skipped_paused: int
    errors: int
    last_error: str | None


class ControllerOut(_Out):
    paused: bool
    changed_by: str | None
    changed_at: str | None
    policy: str
    loop: ControllerLoopOut | None
    last_round: dict[str, Any] | None
