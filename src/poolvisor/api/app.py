"""The FastAPI application factory: routes under /v1, error handlers, body limit, services on app.state."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from poolvisor import __version__, jit
from poolvisor.api import openapi
from poolvisor.api.errors import install_error_handlers
from poolvisor.api.limits import DEFAULT_MAX_BODY
from poolvisor.api.metrics import AppMetrics
from poolvisor.api.ratelimit import RateLimiter
from poolvisor.api.routes import (
    alerts,
    backups,
    events,
    flavors,
    ha,
    hosts,
    memory,
    networks,
    pools,
    projects,
    quotas,
    snapshots,
    storage,
    system,
    tasks,
    tokens,
    utilization,
    workloads,
)
from poolvisor.api.routes import controller as controller_routes
from poolvisor.api.routes import leader as leader_routes
from poolvisor.api.routes import queue as queue_routes
from poolvisor.api.routes import sim_admin as sim_admin_routes
from poolvisor.api.routing import PoolvisorAPI, include_flat
from poolvisor.services import Services
from poolvisor.services.alerts import AlertLoop
from poolvisor.services.backup_schedules import DEFAULT_INTERVAL_S as BACKUP_INTERVAL_S
from poolvisor.services.backup_schedules import BackupLoop
from poolvisor.services.balloon_loop import BalloonLoop
from poolvisor.services.controller_loop import ControllerLoop
from poolvisor.services.executor import DEFAULT_WORKERS, TaskExecutor
from poolvisor.services.ha import HaLoop
from poolvisor.services.leader import LeaderElection
from poolvisor.services.queue import DEFAULT_INTERVAL_S as QUEUE_INTERVAL_S
from poolvisor.services.queue import QueueLoop
from poolvisor.services.quotas import RateLimit
from poolvisor.services.sweeper import RepairSweeper
from poolvisor.ui import mount_ui

DESCRIPTION = """Pool virtualization hosts and place workloads on them.

Authenticate with `Authorization: Bearer TOKEN` (`poolvisor serve` writes an admin token to
`~/.config/poolvisor/token`). Every error has the body `{"error": code, "message": str, "detail": ...}`.

Input rules hold on every operation: names (paths, queries, bodies) are 1..63 letters, digits,
'-', '_' or '.', starting with a letter or digit (else 422); free text has no control or
bidirectional formatting characters; JSON types are strict (a boolean is `true`/`false`, a number
is a JSON number); query flags are exactly `true` or `false`.

Long operations (migrate, consolidation apply) answer 202 with a task (also in `Location`); poll
`GET /v1/tasks/{id}` for its state, progress, result or error, and log.
"""


def create_app(services: Services, *, max_body: int = DEFAULT_MAX_BODY,
               repair_interval: float | None = None,
               report: Callable[[str], None] | None = None,
               metrics_token: str | None = None, task_workers: int = DEFAULT_WORKERS,
               sim_admin: bool = False, alert_interval: float | None = None,
               rate_limit: RateLimit | None = None, threads: int | None = None,
               leader: LeaderElection | None = None, ha_interval: float | None = None,
               controller_interval: float | None = None,
               queue_interval: float | None = QUEUE_INTERVAL_S,
               backup_interval: float | None = BACKUP_INTERVAL_S,
               freeze_gc: bool = False) -> PoolvisorAPI:
    """Build the app around an open Services instance (the caller owns and closes it). With
    `repair_interval`, a repair sweep runs every that many seconds for the app's lifespan.

    `metrics_token`: an extra bearer token that may read every /metrics series and nothing else
    (for a Prometheus scraper), or None. `task_workers`: threads of the task executor that runs
    long operations (migrations, consolidations) for the app's lifespan (services/executor.py).
    `sim_admin`: mount the sim fault-injection extension under /v1/sim (never by default).
    `alert_interval`: evaluate the alert rules every that many seconds (services/alerts.py), or None.
    `rate_limit`: the default token bucket of each project's creation requests (a project's own,
    set with its quota, overrides it; api/ratelimit.py), None: unlimited by default.
    `backup_interval`: run due backup schedules every that many seconds (services/backup_schedules.py;
    only while this process leads), or None.
    `threads`: size of the thread pool the sync endpoints run in (None: anyio's default, 40).
    Fewer threads contend less for the GIL (8: about a third less CPU per create under load) but
    a request waits while all of them are busy, e.g. in slow driver calls.
    `leader`: this process's candidacy among servers sharing the database (services/leader.py);
    the pool-wide loops (balloon, alerts, HA, controller, queue, backups) then step only while it
    leads (their `is_leader`). None: they always do.
    `ha_interval`: run the HA loop (heartbeats, fencing, restart: services/ha.py) every that many
    seconds, or None.
    `controller_interval`: run the controller's reconcile round every that many seconds
    (services/controller_loop.py), or None.
    `queue_interval`: drain the pending-creation queue every that many seconds (None: never),
    while this process leads (services/queue.py QueueLoop).
    `freeze_gc`: once started, move every object alive into the garbage collector's permanent
    generation (`gc.freeze`), for a server process: its full collections then walk only what the
    requests made since, not the millions of objects of the libraries, the compiled kernels and
    the services (each full collection was ~0.2 s of CPU with the GIL held, about 0.4 ms per
    create under load). Not for an app that many tests build in one process (what a frozen
    object holds is never collected)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if threads is not None:
            anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        if services is not None:
            jit.warm()  # numba kernels built (or loaded) before the first request, not inside it
        sweeper = RepairSweeper(services.repair, repair_interval, report) if repair_interval else None
        # (no services: an app built only for its OpenAPI document runs no tasks)
        executor = TaskExecutor(services.tasks, task_workers) if services is not None else None
        if executor is not None:
            executor.start()
        if leader is not None:
            leader.start()
        is_leader = leader.is_leader if leader is not None else None  # the gate of every pool-wide loop
        balloons = BalloonLoop(services, is_leader=is_leader) if BalloonLoop.wanted(services) else None
        if balloons is not None:  # memory reclaim
            balloons.start()
        if sweeper is not None:
            sweeper.start()
        alerter = AlertLoop(services.alerts, alert_interval, is_leader=is_leader) \
            if alert_interval and services is not None else None
        if alerter is not None:
            alerter.start()
        ha_loop = HaLoop(services.ha, ha_interval, is_leader=is_leader) \
            if ha_interval and services is not None else None
        if ha_loop is not None:
            ha_loop.start()
        controller = (ControllerLoop(services, controller_interval, is_leader=is_leader)
                      if controller_interval and services is not None else None)
        if controller is not None:
            controller.start()
        _app.state.controller_loop = controller
        queue = QueueLoop(services.queue, queue_interval, is_leader=is_leader) \
            if queue_interval and services is not None else None  # waiting creations (wait: true)
        if queue is not None:
            queue.start()
        backuper = BackupLoop(services.backup_schedules, backup_interval, is_leader=is_leader) \
            if backup_interval and services is not None else None
        if backuper is not None:
            backuper.start()
        if freeze_gc:
            gc.collect()  # (garbage is not frozen)
            gc.freeze()
        try:
            yield
        finally:
            if backuper is not None:
                backuper.stop()
            if queue is not None:
                queue.stop()
            if controller is not None:
                controller.stop()
            if ha_loop is not None:
                ha_loop.stop()
            if alerter is not None:
                alerter.stop()
            if sweeper is not None:
                sweeper.stop()
            if executor is not None:
                services.maintenance.stopping.set()  # a drain waiting on busy workloads lets go
                executor.stop()
            if balloons is not None:
                balloons.stop()
            if leader is not None:
                leader.stop()  # after the loops: hands the lease over at once

    # FastAPI's native OpenTelemetry off: it asked on every request whether a provider was
    # configured; our metrics and logs are prometheus-client's and the edge's (api/observe.py)
    app = PoolvisorAPI(title="poolvisor", version=__version__, description=DESCRIPTION,
                       openapi_url="/openapi.json", redirect_slashes=False, lifespan=lifespan,
                       telemetry={"tracing": False, "metrics": False, "logs": False})
    app.max_body = max_body
    app.state.metrics = AppMetrics()  # this app's own registry (api/metrics.py), fed by the edge
    app.state.services = services
    app.state.leader = leader
    app.state.is_leader = leader.is_leader if leader is not None else (lambda: True)  # the loops' gate
    app.state.metrics_token = metrics_token or None
    app.state.rate_limiter = RateLimiter(
        rate_limit, services.quotas.rate_limits if services is not None else dict)
    install_error_handlers(app)
    for module in (pools, hosts, flavors, projects, tokens, workloads, snapshots, backups, tasks, utilization,
                   events, system, networks, storage, memory, alerts, quotas, leader_routes, ha,
                   controller_routes, queue_routes):
        include_flat(app, module.router)  # flat: the route index finds them (api/routing.py)
    if sim_admin:
        include_flat(app, sim_admin_routes.router)
    openapi.install(app)
    mount_ui(app)  # the web dashboard at /ui (not in the OpenAPI document)
    # no add_middleware: the edge (request ids, encoded slashes, body limits, latency, access
    # log, errors) is the app's whole middleware stack (PoolvisorAPI.build_middleware_stack)
    return app
