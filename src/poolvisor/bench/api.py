"""`poolvisor bench api`: real `poolvisor serve` replicas on loopback under a bounded create/delete load.

It seeds a demo pool in an empty database (a temporary SQLite file by default; `postgres` starts a
throwaway PostgreSQL cluster, bench/pgcluster.py), starts `replicas` server processes on free
loopback ports (all on that database, sharing an admin token), runs the load (bench/apiload.py)
for `seconds` and stops by itself. Then it waits for in-flight use cases to settle, stops the
servers (by PID), and judges the store: the invariants (`poolvisor check`), over-allocations
counted from the ledger and the hosts' capacity, and whether every acknowledged creation that was
not deleted is present and running. `kill_after` kills -9 one replica that many seconds in and
restarts it at once (the crash drill of issue 15).

The servers' CPU time is read from /proc, so `server_cpu_ms_per_create` compares two runs fairly
on a machine shared with other work; wall-clock figures depend on that load (`loadavg`). When the
bench started the PostgreSQL cluster itself, the whole cluster's CPU during the load is read too
(`db_cpu_ms_per_create`: its backends, live or reaped, and its background processes): on one
machine the servers and the database share the cores, so a create costs both. `db_statements`
(a throwaway cluster only) loads pg_stat_statements and reports what each create cost the database
statement by statement: calls and server time per create.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from poolvisor.bench.apiload import LoadOutcome, LoadSpec, process_main, run_process
from poolvisor.domain.errors import ConflictError, InvalidInputError, UnavailableError

SETTLE_S = 30.0  # in-flight use cases must be resolved by then (lease 5 s + sweep 2 s + slack)
START_TIMEOUT_S = 90.0
CEILING_S = 2.0
TOL = 1e-6

THROWAWAY_PG = ("postgres", "postgresql")  # --db values that start a throwaway cluster


@dataclass
class ApiBenchConfig:
    db: str | None = None  # None: a temporary SQLite file; "postgres": a throwaway cluster; else a URL
    replicas: int = 1
    clients: int = 0  # closed loop when > 0 (else open loop at `rate`)
    rate: float = 0.0
    seconds: float = 10.0
    hosts: int = 50
    live: int = 200
    flavor: str = "small"
    client_procs: int = 1
    kill_after: float | None = None
    ceiling: bool = True  # first measure the client + HTTP stack on /healthz and /v1/whoami
    serve_threads: int = 8  # `serve --threads`: fewer threads contend less for the GIL
    workers: int = 1  # `serve --workers` of each replica
    serve_args: tuple[str, ...] = ()
    db_statements: bool = False  # a throwaway cluster: statements per create (pg_stat_statements)

    def check(self) -> None:
        if not 1 <= self.replicas <= 16:
            raise InvalidInputError("--replicas must be 1..16")
        if (self.clients > 0) == (self.rate > 0):
            raise InvalidInputError("give exactly one of --clients N or --rate R")
        if not 0 <= self.clients <= 5000 or not 0 <= self.rate <= 50_000 or not math.isfinite(self.rate):
            raise InvalidInputError("--clients must be 1..5000 and --rate 0..50000 per second")
        if not 0.5 <= self.seconds <= 3600:
            raise InvalidInputError("--seconds must be 0.5..3600")
        if not 1 <= self.hosts <= 10_000 or not 1 <= self.live <= 100_000:
            raise InvalidInputError("--hosts must be 1..10000 and --live 1..100000")
        if not 1 <= self.serve_threads <= 1000:
            raise InvalidInputError("--serve-threads must be 1..1000")
        if not 1 <= self.workers <= 64:
            raise InvalidInputError("--workers must be 1..64")
        if not 1 <= self.client_procs <= 16 or (self.clients and self.client_procs > self.clients):
            raise InvalidInputError("--client-procs must be 1..16 and at most --clients")
        if self.kill_after is not None and not 0 < self.kill_after < self.seconds:
            raise InvalidInputError("--kill-after must be within the run (0 < S < --seconds)")
        if self.db_statements and self.db not in THROWAWAY_PG:
            raise InvalidInputError("--db-statements needs --db postgres (a throwaway cluster)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its descendants from /proc (0 when gone or not Linux): its own
    utime + stime, its reaped children's (cutime + cstime), and its live children's, so a
    `serve --workers N` supervisor counts its workers."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(c) for c in children(pid))


def children(pid: int) -> list[int]:
    """Live child processes of `pid` (Linux /proc; [] elsewhere or when gone)."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


@dataclass
class Replicas:
    """`poolvisor serve` processes on one database, each on its own loopback port."""

    url: str
    token: str
    workdir: Path
    serve_args: tuple[str, ...] = ()
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    cpu_done: float = 0.0  # CPU seconds of replicas already stopped or killed

    def env(self) -> dict[str, str]:
        home = self.workdir / "home"
        home.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("POOLVISOR_")}
        return env | {"HOME": str(home), "POOLVISOR_HOME": str(home / "data"), "POOLVISOR_TOKEN": self.token}

    def start(self, n: int) -> None:
        for _ in range(n):
            self.ports.append(free_port())
            self.procs.append(self._spawn(len(self.ports) - 1))
        for i in range(n):
            self._wait(i)

    def _spawn(self, i: int) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "poolvisor.cli.main", "serve", "--db", self.url, "--host", "127.0.0.1",
               "--port", str(self.ports[i]), "--log-level", "warning",
               "--controller-interval", "0",  # the API alone: no balancing moves under the load
               *self.serve_args]
        with (self.workdir / f"serve-{i}.log").open("ab") as log:
            return subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT)

    def _wait(self, i: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.procs[i].poll() is not None:
                raise UnavailableError(f"replica {i} exited at start: {self.log_tail(i)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.urls[i]}/healthz", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise UnavailableError(f"replica {i} did not answer within {START_TIMEOUT_S:g} s")
            time.sleep(0.05)

    def log_tail(self, i: int) -> str:
        p = self.workdir / f"serve-{i}.log"
        return p.read_text(errors="replace")[-800:] if p.exists() else ""

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def cpu(self) -> float:
        return self.cpu_done + sum(cpu_seconds(p.pid) for p in self.procs if p.poll() is None)

    def kill_and_restart(self, i: int) -> None:
        """kill -9 replica i (with its worker processes), then start it again at once on the same port."""
        self.cpu_done += cpu_seconds(self.procs[i].pid)
        workers = children(self.procs[i].pid)
        self.procs[i].send_signal(signal.SIGKILL)
        for w in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w, signal.SIGKILL)
        self.procs[i].wait(timeout=30)
        self.procs[i] = self._spawn(i)
        self._wait(i)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                self.cpu_done += cpu_seconds(p.pid)
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=30)


@contextlib.contextmanager
def _database(db: str | None, workdir: Path, statements: bool = False) -> Iterator[tuple[str, int | None]]:
    """(URL, the PostgreSQL postmaster's PID when the bench started the cluster itself, else None)."""
    if db is None or db == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}", None
    elif db in THROWAWAY_PG:
        from poolvisor.bench.pgcluster import throwaway_cluster

        opts = ("shared_preload_libraries=pg_stat_statements", "pg_stat_statements.track=all") \
            if statements else ()
        with throwaway_cluster(options=opts) as cluster:
            yield cluster.url, cluster.pid
    else:
        from poolvisor.store import normalize_url

        yield normalize_url(db), None


def _statements(url: str, reset: bool) -> list[tuple[str, int, float]]:
    """pg_stat_statements of the bench's cluster: reset it (and []), or its rows as
    (query, calls, total server ms), most time first."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        if reset:
            conn.execute("SELECT pg_stat_statements_reset()")
            return []
        rows = conn.execute("SELECT query, calls, total_exec_time FROM pg_stat_statements "
                            "WHERE query NOT LIKE '%pg_stat_statements%' "
                            "ORDER BY total_exec_time DESC").fetchall()
    return [(str(q), int(c), float(ms)) for q, c, ms in rows]


def _per_create(rows: list[tuple[str, int, float]], creates: int) -> dict[str, Any]:
    """Statements per create (the load's deletes included: about one each), the 25 costliest."""
    n = max(1, creates)
    return {"db_statements_per_create": round(sum(c for _q, c, _ms in rows) / n, 2),
            "db_exec_ms_per_create": round(sum(ms for _q, _c, ms in rows) / n, 3),
            "db_statements": [{"query": " ".join(q.split())[:160], "calls_per_create": round(c / n, 3),
                               "exec_ms_per_create": round(ms / n, 4)} for q, c, ms in rows[:25]]}


def _seed(url: str, hosts: int) -> None:
    from poolvisor.demo.cluster import seed_demo
    from poolvisor.services import open_services

    svc = open_services(url)
    try:
        if not seed_demo(svc, hosts):
            raise ConflictError("bench api needs an empty database (it seeds a demo pool)")
    finally:
        svc.close()


def _load(cfg: ApiBenchConfig, spec: LoadSpec, what: str) -> LoadOutcome:
    """Run `what` from cfg.client_procs processes (this one included), splitting clients/rate/live."""
    k = cfg.client_procs
    specs = [replace(spec, tag=f"{spec.tag}{j}", clients=spec.clients // k + (j < spec.clients % k),
                     rate=spec.rate / k, live=max(1, spec.live // k)) for j in range(k)]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    children = [ctx.Process(target=process_main, args=(s, what, queue), daemon=True) for s in specs[1:]]
    for c in children:
        c.start()
    total = run_process(specs[0], what)
    for _ in children:
        total.merge(LoadOutcome.from_dict(queue.get(timeout=spec.seconds + 600)))
    for c in children:
        c.join(timeout=30)
    return total


def _transient(url: str) -> int:
    from sqlalchemy import func, select

    from poolvisor.services.leases import TRANSIENT
    from poolvisor.store import open_store
    from poolvisor.store.rows import WorkloadRow

    store = open_store(url)
    try:
        q = select(func.count()).select_from(WorkloadRow).where(WorkloadRow.state.in_(TRANSIENT))
        return int(store.run(lambda s: s.scalar(q) or 0, write=False))
    finally:
        store.close()


def _judge(url: str, alive: list[str]) -> dict[str, Any]:
    """Invariants, over-allocations and acknowledged creations, from the rows."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from poolvisor.services.invariants import check_invariants
    from poolvisor.store import open_store
    from poolvisor.store.rows import AllocationRow, HostResourceRow, ProjectRow, WorkloadRow

    def tx(s: Session) -> dict[str, Any]:
        report = check_invariants(s)
        ledger: dict[tuple[int, str], float] = defaultdict(float)
        hosts_of: dict[int, set[int]] = defaultdict(set)
        for wid, hid, res, amount in s.execute(select(AllocationRow.workload_id, AllocationRow.host_id,
                                                      AllocationRow.resource, AllocationRow.amount)):
            ledger[(hid, res)] += amount
            hosts_of[wid].add(hid)
        over = sum(1 for hs in hosts_of.values() if len(hs) > 1)
        for hid, res, cap, oc, allocated in s.execute(select(
                HostResourceRow.host_id, HostResourceRow.resource, HostResourceRow.capacity,
                HostResourceRow.overcommit, HostResourceRow.allocated)):
            limit = cap * oc + TOL * max(1.0, cap * oc)
            over += int(allocated > limit or ledger.get((hid, res), 0.0) > limit)
        running = {n for n, in s.execute(select(WorkloadRow.name).join(ProjectRow)
                                          .where(ProjectRow.name == "demo", WorkloadRow.state == "running"))}
        missing = [n for n in alive if n not in running]
        return {"over_allocations": over, "invariants_ok": report.ok,
                "invariant_violations": report.violations[:10], "acked_missing": len(missing),
                "acked_missing_names": missing[:10], "workloads_left": report.counts["workloads"]}

    store = open_store(url)
    try:
        return store.run(tx, write=False)
    finally:
        store.close()


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100), None for no values."""
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, max(0, math.ceil(q / 100 * len(v)) - 1))], 2)


def _ceiling(cfg: ApiBenchConfig, spec: LoadSpec, reps: Replicas) -> dict[str, Any]:
    """The HTTP stack's own cost, before the load: `/healthz` (no token, no database) and
    `/v1/whoami` (token check, auth dependencies, routing, a small JSON body), each for CEILING_S
    with the same number of connections; rates and the servers' CPU per answered request."""
    out: dict[str, Any] = {}
    probe = replace(spec, seconds=CEILING_S, clients=cfg.clients or 64, rate=0.0)
    for what in ("healthz", "whoami"):
        cpu0 = reps.cpu()
        h = _load(cfg, probe, what)
        cpu = reps.cpu() - cpu0
        out |= {f"{what}_per_s": round(h.healthz / h.seconds, 1),
                f"{what}_server_cpu_ms_per_request": round(1000 * cpu / h.healthz, 3) if h.healthz else None,
                f"{what}_client_cpu_ms_per_request": round(1000 * h.cpu_s / max(1, h.healthz), 3)}
    return out


def run(cfg: ApiBenchConfig) -> dict[str, Any]:
    cfg.check()
    with tempfile.TemporaryDirectory(prefix="poolvisor-bench-api-") as tmp, \
            _database(cfg.db, Path(tmp), cfg.db_statements) as (url, db_pid):
        _seed(url, cfg.hosts)
        reps = Replicas(url, "pv_" + secrets.token_urlsafe(32), Path(tmp),
                        ("--threads", str(cfg.serve_threads), "--workers", str(cfg.workers), *cfg.serve_args))
        try:
            reps.start(cfg.replicas)
            spec = LoadSpec(reps.urls, reps.token, cfg.seconds, clients=cfg.clients, rate=cfg.rate,
                            live=cfg.live, flavor=cfg.flavor, tag="b")
            ceiling = _ceiling(cfg, spec, reps) if cfg.ceiling else None
            if cfg.db_statements:
                _statements(url, reset=True)
            load_before = os.getloadavg()
            cpu0 = reps.cpu()
            db_cpu0 = cpu_seconds(db_pid) if db_pid else 0.0
            killer = None
            if cfg.kill_after is not None:
                killer = threading.Timer(cfg.kill_after, reps.kill_and_restart, args=(0,))
                killer.start()
            out = _load(cfg, spec, "closed" if cfg.clients else "open")
            if killer is not None:
                killer.join()
            server_cpu = reps.cpu() - cpu0
            db_cpu = cpu_seconds(db_pid) - db_cpu0 if db_pid else None
            load_after = os.getloadavg()
            stmts = _statements(url, reset=False) if cfg.db_statements else None
            deadline = time.monotonic() + SETTLE_S
            while (left := _transient(url)) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            reps.stop()
        verdict = _judge(url, out.alive)
    creates, deletes = len(out.create_ms), len(out.delete_ms)
    errors_5xx = sum(n for k, n in out.status.items() if k.split()[1].startswith("5"))
    requests = sum(out.status.values())
    res: dict[str, Any] = {
        "database": url.split("+")[0].split(":")[0], "replicas": cfg.replicas,
        "mode": "closed" if cfg.clients else "open", "clients": cfg.clients or None,
        "offered_per_s": cfg.rate or None, "seconds": round(out.seconds, 2), "hosts": cfg.hosts,
        "live": cfg.live, "client_procs": cfg.client_procs, "serve_threads": cfg.serve_threads,
        "workers": cfg.workers,
        "creates": creates, "deletes": deletes,
        "creates_per_s": round(creates / out.seconds, 1) if out.seconds else None,
        "deletes_per_s": round(deletes / out.seconds, 1) if out.seconds else None,
        "p50_ms": percentile(out.create_ms, 50), "p99_ms": percentile(out.create_ms, 99),
        "max_ms": round(max(out.create_ms), 2) if out.create_ms else None,
        "delete_p50_ms": percentile(out.delete_ms, 50), "delete_p99_ms": percentile(out.delete_ms, 99),
        "over_allocations": verdict["over_allocations"], "errors_5xx": errors_5xx,
        "429s": sum(n for k, n in out.status.items() if k.endswith(" 429")),
        "429s_without_retry_after": out.retry_after_missing,
        "conflicts_409": sum(n for k, n in out.status.items() if k.endswith(" 409")),
        "other_errors": requests - errors_5xx - creates - deletes
        - sum(n for k, n in out.status.items() if k.endswith((" 429", " 409"))),
        "connection_errors": out.connection_errors, "unknown_outcome": len(out.unknown),
        "transient_left": left, "invariants_ok": verdict["invariants_ok"],
        "invariant_violations": verdict["invariant_violations"], "acked_missing": verdict["acked_missing"],
        "status": dict(sorted(out.status.items())),
        "server_cpu_ms_per_create": round(1000 * server_cpu / creates, 3) if creates else None,
        "db_cpu_ms_per_create": round(1000 * db_cpu / creates, 3) if creates and db_cpu is not None else None,
        "client_cpu_ms_per_request": round(1000 * out.cpu_s / requests, 3) if requests else None,
        "loadavg_1m": [round(load_before[0], 2), round(load_after[0], 2)], "cpus": os.cpu_count(),
        "killed_and_restarted": cfg.kill_after is not None,
    }
    if ceiling is not None:
        res |= ceiling
    if stmts is not None:
        res |= _per_create(stmts, creates)
    return res


GOOD_KEYS = ("over_allocations", "errors_5xx", "429s_without_retry_after", "acked_missing", "transient_left")


def passed(res: dict[str, Any]) -> bool:
    """The correctness verdict (never a speed): nothing over-allocated, no 5xx, every 429 with
    Retry-After, every acknowledged creation present, nothing left transient, invariants hold."""
    return all(res[k] == 0 for k in GOOD_KEYS) and bool(res["invariants_ok"])
