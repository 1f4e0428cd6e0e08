"""The live controller: its status (the last round's summary), pause and resume (admins)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request

from poolvisor.api.auth import Admin, SvcDep, Who
from poolvisor.api.controller_schemas import ControllerLoopOut, ControllerOut
from poolvisor.api.errors import errors
from poolvisor.services.controller import ControllerStatus

router = APIRouter(tags=["controller"])


def _out(request: Request, st: ControllerStatus) -> ControllerOut:
    loop: Any = getattr(request.app.state, "controller_loop", None)
    lo = None
    if loop is not None:
        s = loop.status()
        lo = ControllerLoopOut(
            interval_s=s.interval_s,
            running=s.running,
            rounds=loop.rounds,
            skipped_not_leader=loop.skipped["not leader"],
            skipped_paused=loop.skipped["paused"],
            errors=s.errors,
            last_error=s.last_error,
        )
    return ControllerOut(
        paused=st.paused,
        changed_by=st.changed_by,
        changed_at=st.changed_at,
        policy=st.policy,
        loop=lo,
        last_round=st.last_round,
    )


@router.get("/v1/controller", response_model=ControllerOut, responses=errors(401, 503))
def controller_status(request: Request, svc: SvcDep, who: Who) -> ControllerOut:
    """Paused or not (and by whom), this server's loop, and the last round: samples recorded,
    migrations started, moves held back with their reason, hosts powered on or off, imbalance.
    A project's token sees only its own workloads' moves (hosts are shared)."""
    st = svc.controller.status()
    if who.project is not None and st.last_round is not None:
        mine = f"{who.project}/"
        last = dict(st.last_round)
        for k in ("migrations", "held"):
            last[k] = [m for m in last.get(k, []) if str(m.get("workload", "")).startswith(mine)]
        last["held_count"] = len(last["held"])
        st = replace(st, last_round=last)
    return _out(request, st)


@router.post("/v1/controller/pause", response_model=ControllerOut, responses=errors(401, 403, 503))
def controller_pause(request: Request, svc: SvcDep, who: Admin) -> ControllerOut:
    """Stop the reconcile rounds (every replica: the flag is in the store); tasks already queued run."""
    return _out(request, svc.controller.pause(f"token {who.token_id}"))


@router.post("/v1/controller/resume", response_model=ControllerOut, responses=errors(401, 403, 503))
def controller_resume(request: Request, svc: SvcDep, who: Admin) -> ControllerOut:
    """Start the reconcile rounds again."""
    return _out(request, svc.controller.resume(f"token {who.token_id}"))
