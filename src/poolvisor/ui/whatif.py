"""The what-if page: replay a pool's recorded utilization under consolidation policies and chart it.

The same computation as `poolvisor whatif` (sim/whatif.py: the pool as it runs is the baseline,
then each policy from the current placement), on the store's recorded history. It reads every
project's workloads, so it is for admins (the API's `admin` check). Runs are bounded (steps,
policies, VMs) because they run inside the request.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from poolvisor.api.auth import SvcDep, admin
from poolvisor.api.routes import pools as pools_api
from poolvisor.domain.errors import InvalidInputError
from poolvisor.sim.result import SimResult
from poolvisor.ui.history import chart
from poolvisor.ui.render import HtmlErrorRoute, page
from poolvisor.ui.session import Form, PostWho, UiWho

router = APIRouter(prefix="/ui", route_class=HtmlErrorRoute, include_in_schema=False)
MAX_STEPS = 2016  # a week of 5-minute steps
MAX_POLICIES = 4
MAX_VMS = 5000
# a field left blank takes its default
DEFAULTS = {"pool": "", "policies": "lr-mmt,thr-mmt", "steps": "288", "interval": "300", "fresh": ""}
SHOWN = ("energy_kwh", "migrations", "slatah", "pdm", "slav", "host_shutdowns")


def _int(fields: dict[str, str], key: str, lo: int, hi: int) -> int:
    try:
        v = int(fields.get(key, "").strip() or DEFAULTS[key])
    except ValueError:
        raise InvalidInputError(f"{key}: give a whole number in {lo}..{hi}") from None
    if not lo <= v <= hi:
        raise InvalidInputError(f"{key}: give a whole number in {lo}..{hi}")
    return v


def run_whatif(svc: Any, fields: dict[str, str]) -> tuple[list[SimResult], list[str], dict[str, Any]]:
    """(runs baseline first, VMs without history, run facts) for the form's choices."""
    from poolvisor.sim.whatif import history_from_store, pool_from_services, simulate_whatif
    from poolvisor.sweep.grid import parse_csv_list

    pool = fields.get("pool", "").strip() or None
    policies = parse_csv_list(fields.get("policies", "").strip() or DEFAULTS["policies"], "policies")
    if len(policies) > MAX_POLICIES:
        raise InvalidInputError(f"policies: at most {MAX_POLICIES} per run")
    steps = _int(fields, "steps", 2, MAX_STEPS)
    interval = _int(fields, "interval", 1, 86400)
    keep = not fields.get("fresh")
    snap = pool_from_services(svc, pool)
    if not snap.vms:
        where = f"pool {pool!r}" if pool else "any host"
        raise InvalidInputError(f"no running VM on {where}: nothing to replay")
    if len(snap.vms) > MAX_VMS:
        raise InvalidInputError(f"{len(snap.vms)} VMs: the dashboard replays at most {MAX_VMS}; use the CLI")
    hist, missing = history_from_store(svc, snap.vms, float(interval), steps=steps)
    runs = [simulate_whatif(snap, hist, "dvfs", keep_placement=keep)]
    runs[0].policy = "as-is" if keep else "first-fit"
    runs += [simulate_whatif(snap, hist, p, keep_placement=keep) for p in policies]
    facts = {"pool": pool or "(all hosts)", "vms": len(snap.vms), "hosts": len(snap.hosts),
             "steps": int(hist.util.shape[1]), "interval": hist.interval_s, "start_s": hist.start_s}
    return runs, missing, facts


def result_charts(runs: list[SimResult], start_s: float | None) -> list[dict[str, Any]]:
    """Active hosts and power over time, one series per run (x: the history's own instants)."""
    x = [(start_s or 0.0) + float(t) for t in runs[0].time_s]
    return [
        chart("active hosts", x, {r.label: r.active_hosts.tolist() for r in runs}),
        chart("power (W)", x, {r.label: r.power_w.tolist() for r in runs}, unit="W"),
        chart("migrations started", x, {r.label: r.migrations.tolist() for r in runs[1:]}),
    ]


@router.get("/whatif", response_class=HTMLResponse)
def whatif_form(request: Request, svc: SvcDep, who: UiWho) -> HTMLResponse:
    admin(who)
    return page(request, "whatif.html", who, nav="whatif", form=DEFAULTS, runs=None, error=None,
                pool_names=[p.name for p in pools_api.list_pools(svc, who)])


@router.post("/whatif", response_class=HTMLResponse)
def whatif_run(request: Request, svc: SvcDep, who: PostWho, fields: Form) -> HTMLResponse:
    admin(who)
    form = {k: fields.get(k, v if k != "fresh" else "") for k, v in DEFAULTS.items()}
    pools = [p.name for p in pools_api.list_pools(svc, who)]
    try:
        runs, missing, facts = run_whatif(svc, fields)
    except InvalidInputError as e:
        return page(request, "whatif.html", who, status=422, nav="whatif", form=form, runs=None,
                    error=e.message, pool_names=pools)
    return page(request, "whatif.html", who, nav="whatif", form=form, runs=runs, missing=missing, facts=facts,
                shown=SHOWN, charts=result_charts(runs, facts["start_s"]), error=None, pool_names=pools)

