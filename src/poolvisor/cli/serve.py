"""`poolvisor serve`: open the services, seed a demo pool, make sure an admin token exists, run the API.

Token policy: with POOLVISOR_TOKEN set, that token is (made) an admin token and no file is
written (a revoked or expired POOLVISOR_TOKEN is refused). Otherwise the token in
~/.config/poolvisor/token is kept when this database knows it as a valid admin token; if not (first
start, a different database, or the token was revoked or expired), a new admin token is minted and
written there with mode 0600, so the CLI finds it without flags. `poolvisor token rotate-admin`
replaces it while the server runs.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from poolvisor.cli.client import ENV_TOKEN, token_file
from poolvisor.cli.errors import fail
from poolvisor.cli.parse import number

# the services' defaults (services/sweeper.py, services/leases.py), repeated so that importing the
# command tree does not load the store stack (a test keeps them equal)
DEFAULT_REPAIR_INTERVAL_S = 2.0
DEFAULT_LEASE_S = 5.0
MAX_SIM_DURATION_S = 600.0
DEMO_BOOT_S = 30.0  # a demo sim host switched on by the controller boots this long
DEMO_MIGRATION_MIBPS = 1250.0  # 10 Gbit/s: a demo VM's migration takes seconds, so its progress shows
MAX_MIGRATION_MIBPS = 1e9
DEFAULT_ALERT_INTERVAL_S = 30.0
DEFAULT_LEADER_LEASE_S = 5.0  # services/leader.py
GRACEFUL_SHUTDOWN_S = 10  # open event streams end on their own within a poll; this bounds the rest

if TYPE_CHECKING:
    from poolvisor.services import Services


def write_token(path: Path, token: str) -> None:
    """Write the token file with mode 0600, atomically: a new file renamed over the old one, so a
    reader (or a crash) never sees it empty or half written."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_admin_token(svc: Services) -> str:
    """Returns a one-line note on where the admin token is."""
    first = svc.auth.bootstrap_admin_token()
    env = os.environ.get(ENV_TOKEN, "").strip()
    if env:
        svc.auth.adopt_admin_token(env)
        return f"admin token: ${ENV_TOKEN}"
    path = token_file()
    if first is None:
        try:
            saved = path.read_text().strip()
        except OSError:
            saved = ""
        who = svc.auth.authenticate(saved) if saved else None
        if who is not None and who.role == "admin":
            return f"admin token: {path}"
        first = svc.auth.create_token("admin", label="serve")
    write_token(path, first)
    return f"admin token: {path} (new)"


def _sim_durations(text: str) -> dict[str, float]:
    from poolvisor.cli.parse import parse_map
    from poolvisor.drivers.sim import OPERATIONS

    out = parse_map(text, "--sim-durations", float)
    for op, d in out.items():
        if op not in OPERATIONS:
            raise fail(f"--sim-durations: unknown operation {op!r}; known: {', '.join(OPERATIONS)}")
        if not 0 <= d <= MAX_SIM_DURATION_S:  # also rejects nan
            raise fail(f"--sim-durations: {op} must be 0..{MAX_SIM_DURATION_S:g} seconds")
    return out


def _listen(host: str, port: int) -> socket.socket:
    """Bind first, so a busy port is one clear error line rather than a server log."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise fail(f"cannot resolve --host {host!r}: {e.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise fail(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock


def serve(
    db: Annotated[str | None, typer.Option(
        "--db", help="Database URL or SQLite file [default: $POOLVISOR_DATABASE_URL or "
        "~/.local/share/poolvisor/poolvisor.db]", show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8080,
    demo: Annotated[int | None, typer.Option(
        help="Seed a demo pool of N sim hosts, flavors and project 'demo' when the database is empty.")]
    = None,
    demo_vms: Annotated[int, typer.Option(
        help="With --demo: also create M VMs in project 'demo' with a day of recorded CPU use "
        "(for `poolvisor whatif`), when that project has none.")] = 0,
    scarce: Annotated[str, typer.Option(
        "--scarce-resources", envvar="POOLVISOR_SCARCE_RESOURCES",
        help="Resources placement keeps for the workloads that ask for them (comma-separated; "
        "'none' for none).")] = "gpu",
    placement: Annotated[str | None, typer.Option(
        "--placement", envvar="POOLVISOR_PLACEMENT",
        help="Placement policy: best-fit (default), spread, balanced, dot-product, or fgd-ri for pools "
        "with shared GPUs (fractions of one GPU placed on specific devices).", show_default=False)] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    log_format: Annotated[str, typer.Option(
        "--log-format", envvar="POOLVISOR_LOG_FORMAT",
        help="Server log lines: 'text' or 'json' (one object per line); each line of a request "
        "carries its request id (X-Request-ID).")] = "text",
    repair_interval: Annotated[float, typer.Option(parser=number,
        help="Seconds between repair sweeps, which resolve workloads left placing/deleting/migrating by "
        "a process that died (its lease expired); 0 turns the sweep off.")] = DEFAULT_REPAIR_INTERVAL_S,
    lease: Annotated[float, typer.Option(parser=number,
        help="Lease of this server's in-flight operations in seconds (renewed while they run); after a "
        "crash its stuck workloads are repaired within lease + repair interval.")] = DEFAULT_LEASE_S,
    sim_durations: Annotated[str | None, typer.Option(
        help="Make the sim driver's operations take this long, e.g. create=2,delete=1,migrate=3 "
        "(seconds; demos and crash drills).", show_default=False)] = None,
    sim_migration_bandwidth: Annotated[float | None, typer.Option(
        "--sim-migration-bandwidth", parser=number,
        help=f"MiB/s at which the sim driver migrates memory (0: instantly) [default: "
        f"{DEMO_MIGRATION_MIBPS:g} with --demo, else 0]", show_default=False)] = None,
    sim_admin: Annotated[bool | None, typer.Option(
        "--sim-admin/--no-sim-admin",
        help="Mount the sim fault-injection API under /v1/sim [default: on with --demo, else off].",
        show_default=False)] = None,
    alert_interval: Annotated[float, typer.Option(parser=number,
        help="Seconds between evaluations of the alert rules (pool nearly full, host down, quota nearly "
        "exhausted, SLA violation, stuck task); 0 turns them off.")] = DEFAULT_ALERT_INTERVAL_S,
    ha_interval: Annotated[float, typer.Option(parser=number,
        help="Seconds between HA heartbeat rounds (a host missing 3 in a row is fenced and its "
        "workloads restarted elsewhere); 0 turns HA off.")] = 1.0,
    controller_interval: Annotated[float, typer.Option(
        "--controller-interval", parser=number,
        help="Seconds between the controller's reconcile rounds (measure, balance, consolidate, power "
        "hosts off and on; `poolvisor controller pause` stops it); 0 turns it off.")] = 20.0,
    alert_pool_full: Annotated[float, typer.Option(parser=number,
        help="Alert when a pool's resource is allocated at this fraction or more (0..1).")] = 0.9,
    alert_quota: Annotated[float, typer.Option(parser=number,
        help="Alert when a project has used this fraction of a quota or more (0..1).")] = 0.9,
    alert_task_deadline: Annotated[float, typer.Option(parser=number,
        help="Seconds after which an unfinished task counts as stuck.")] = 3600.0,
    threads: Annotated[int, typer.Option(min=1, max=1000,
        help="Threads the API's request handlers run in. Fewer contend less for the GIL (8 is faster "
        "on 2 cores with the sim driver); more keep requests flowing while drivers are slow.")] = 40,
    metrics_token_file: Annotated[Path | None, typer.Option(
        "--metrics-token-file", envvar="POOLVISOR_METRICS_TOKEN_FILE",
        help="File holding a bearer token that may read every /metrics series and nothing else "
        "(for a Prometheus scraper). Without a token /metrics shows fleet totals only.")] = None,
    rate_limit: Annotated[str | None, typer.Option(
        "--rate-limit", help="Default per-project limit on workload creation requests: R, R/s, R/m or "
        "R/h (a token bucket per project and per server process; a project's own limit, set with its "
        "quota, overrides it). Over it: 429 with Retry-After. [default: none]", show_default=False)]
    = None,
    rate_burst: Annotated[int | None, typer.Option(
        "--rate-burst", min=1, max=1_000_000, help="With --rate-limit: the bucket size, requests "
        "that may arrive at once [default: one second's worth]", show_default=False)] = None,
    workers: Annotated[int, typer.Option(min=1, max=64,
        help="Server processes answering on this port, each with its own database writer (one process "
        "uses about one core). They share the database as replicas do: one leader runs the pool-wide "
        "loops; rate limits and /metrics' process series are per worker. A worker that dies is "
        "started again.")] = 1,
    leader_lease: Annotated[float, typer.Option(parser=number,
        help="Servers sharing one database elect a leader, which alone runs the pool-wide loops "
        "(alerts, memory reclaim, controller); another takes over within this many seconds after it "
        "dies (a stopping leader hands over at once).")] = DEFAULT_LEADER_LEASE_S,
) -> None:
    """Run the REST API (and create the admin token on first start)."""
    import uvicorn

    from poolvisor.api.app import create_app
    from poolvisor.api.metrics import load_scrape_token
    from poolvisor.cli.parse import default_burst, parse_rate
    from poolvisor.policies.placement import PlacementPolicy
    from poolvisor.services import open_services
    from poolvisor.services.leader import MAX_LEADER_LEASE_S, MIN_LEADER_LEASE_S, LeaderElection
    from poolvisor.services.leases import MAX_LEASE_S, MIN_LEASE_S
    from poolvisor.services.sweeper import MAX_INTERVAL_S, MIN_INTERVAL_S

    if log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
        raise fail(f"--log-level must be one of critical, error, warning, info, debug, trace; "
                   f"got {log_level!r}")
    if log_format not in ("text", "json"):
        raise fail(f"--log-format must be text or json; got {log_format!r}")
    if repair_interval != 0 and not MIN_INTERVAL_S <= repair_interval <= MAX_INTERVAL_S:
        raise fail(f"--repair-interval must be 0 (off) or {MIN_INTERVAL_S:g}..{MAX_INTERVAL_S:g} seconds")
    if not MIN_LEASE_S <= lease <= MAX_LEASE_S:
        raise fail(f"--lease must be {MIN_LEASE_S:g}..{MAX_LEASE_S:g} seconds")
    if not MIN_LEADER_LEASE_S <= leader_lease <= MAX_LEADER_LEASE_S:
        raise fail(f"--leader-lease must be {MIN_LEADER_LEASE_S:g}..{MAX_LEADER_LEASE_S:g} seconds")
    from poolvisor.observability.rules import Thresholds
    from poolvisor.services.alerts import MAX_INTERVAL_S as MAX_ALERT_S
    from poolvisor.services.alerts import MIN_INTERVAL_S as MIN_ALERT_S
    from poolvisor.services.ha import MAX_INTERVAL_S as MAX_HA_S
    from poolvisor.services.ha import MIN_INTERVAL_S as MIN_HA_S

    if ha_interval != 0 and not MIN_HA_S <= ha_interval <= MAX_HA_S:
        raise fail(f"--ha-interval must be 0 (off) or {MIN_HA_S:g}..{MAX_HA_S:g} seconds")
    if alert_interval != 0 and not MIN_ALERT_S <= alert_interval <= MAX_ALERT_S:
        raise fail(f"--alert-interval must be 0 (off) or {MIN_ALERT_S:g}..{MAX_ALERT_S:g} seconds")
    try:
        thresholds = Thresholds(pool_full=alert_pool_full, quota=alert_quota,
                                critical=max(0.98, alert_pool_full, alert_quota),
                                task_deadline_s=alert_task_deadline)
    except ValueError as e:
        raise fail(f"alert thresholds: {e} (--alert-pool-full and --alert-quota are fractions in (0, 1], "
                   "--alert-task-deadline seconds > 0)") from None
    from poolvisor.services.controller_loop import MAX_INTERVAL_S as MAX_CTL_S
    from poolvisor.services.controller_loop import MIN_INTERVAL_S as MIN_CTL_S

    if controller_interval != 0 and not MIN_CTL_S <= controller_interval <= MAX_CTL_S:
        raise fail(f"--controller-interval must be 0 (off) or {MIN_CTL_S:g}..{MAX_CTL_S:g} seconds")
    durations = _sim_durations(sim_durations) if sim_durations is not None else {}
    bandwidth = sim_migration_bandwidth if sim_migration_bandwidth is not None else (
        DEMO_MIGRATION_MIBPS if demo is not None else 0.0)
    if not 0 <= bandwidth <= MAX_MIGRATION_MIBPS:  # also rejects nan
        raise fail(f"--sim-migration-bandwidth must be 0..{MAX_MIGRATION_MIBPS:g} MiB/s")
    limit = None
    if rate_limit is not None:
        from poolvisor.services.quotas import RateLimit, check_rate_limit

        per_s = parse_rate(rate_limit)
        burst = rate_burst if rate_burst is not None else default_burst(per_s)
        limit = check_rate_limit(RateLimit(per_s, burst))
    elif rate_burst is not None:
        raise fail("--rate-burst needs --rate-limit")
    names = [] if scarce.strip().lower() == "none" else [n.strip() for n in scarce.split(",") if n.strip()]
    # an invalid name: one error line, before binding
    policy = PlacementPolicy(scarce=names) if placement is None else PlacementPolicy.named(placement, names)
    scrape_token = load_scrape_token(metrics_token_file) if metrics_token_file is not None else None
    sock = _listen(host, port)

    def open_svc() -> Services:
        return open_services(db, lease_s=lease, repair=False, policy=policy, driver_options={
            "durations": durations, "migration_bandwidth_mibps": bandwidth or None,
            "boot_s": DEMO_BOOT_S if demo is not None else 0.0})

    try:
        svc = open_svc()
    except BaseException:
        sock.close()
        raise
    shown = f"[{host}]" if ":" in host else host
    with_sim_admin = sim_admin if sim_admin is not None else demo is not None

    def say(line: str) -> None:
        typer.echo(f"poolvisor: {line}", err=True)

    def run_server(svc: Services, supervisor: int | None = None) -> None:
        """Serve on `sock` until told to stop (in this process, or in a worker of `supervisor`)."""
        svc.store.start_checkpointer()  # SQLite: WAL checkpoints off the writers' path (store/engine.py)
        svc.store.start_group_commit()  # concurrent creates/deletes share commits (store/group.py)
        svc.workloads.start_batching()  # and concurrent creates are decided and claimed together
        svc.alerts.thresholds = thresholds
        election = LeaderElection(svc.store, f"{svc.leases.owner}@{shown}:{port}", leader_lease)
        app = create_app(svc, repair_interval=repair_interval or None,
                         report=say,
                         metrics_token=scrape_token, sim_admin=with_sim_admin,
                         alert_interval=alert_interval or None, rate_limit=limit, threads=threads,
                         leader=election, ha_interval=ha_interval or None,
                         controller_interval=controller_interval or None, freeze_gc=True)
        from poolvisor.observability.logs import configure

        configure(log_format, log_level)  # uvicorn's loggers too: it gets no logging config of its own
        server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on", log_config=None,
                                               access_log=False,  # ours carries the request id
                                               timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S))
        app.state.stopping = lambda: server.should_exit  # event streams end when the server stops
        if supervisor is not None:
            from poolvisor.cli.workers import exit_with_supervisor

            exit_with_supervisor(supervisor, lambda: setattr(server, "should_exit", True))
        server.run(sockets=[sock])

    try:
        for line in svc.repair.run():  # what died with an earlier process; the sweep does the rest
            typer.echo(f"poolvisor: repaired: {line}", err=True)
        if demo is not None:
            from poolvisor.demo.cluster import seed_demo

            seed_demo(svc, demo)
            if demo_vms:
                from poolvisor.demo.usage import seed_demo_usage

                made = seed_demo_usage(svc, demo_vms)
                if made:
                    typer.echo(f"poolvisor: demo: {made} VMs with a day of utilization in project 'demo'",
                               err=True)
        elif demo_vms:
            raise fail("--demo-vms needs --demo N")
        note = ensure_admin_token(svc)
        workers_note = f", {workers} worker processes" if workers > 1 else ""
        typer.echo(f"poolvisor: serving http://{shown}:{port}  (API /v1, OpenAPI /openapi.json, "
                   f"dashboard /ui{workers_note}); {note}", err=True)
        if workers == 1:
            run_server(svc)
            return
        svc.close()  # before forking: each worker opens its own (threads and connections do not fork)
        from poolvisor.cli.workers import run_workers

        supervisor = os.getpid()

        def work(_i: int) -> int:
            mine = open_svc()
            try:
                run_server(mine, supervisor)
            finally:
                mine.close()
            return 0

        status = run_workers(workers, work, report=say)
        if status:
            raise typer.Exit(status)
    finally:
        sock.close()
        svc.close()
