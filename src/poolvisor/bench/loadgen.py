"""Concurrent create load against one database, from threads and processes (tests, `bench store`).

`run_load` creates workloads from several threads through one Services; `worker_main` does the
same in a child process (multiprocessing target). With `ack_file`, each acknowledged creation is
appended and fsync'ed *after* create_workload returned, so a crash test can check that nothing
acknowledged was lost. `python -m poolvisor.bench.loadgen URL PROJECT PREFIX N FLAVOR` runs it
from a shell.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poolvisor.domain.errors import NoValidHostError, PoolvisorError


@dataclass
class LoadResult:
    acked: list[str] = field(default_factory=list)
    no_host: int = 0
    errors: list[str] = field(default_factory=list)

    def merge(self, other: LoadResult) -> None:
        self.acked += other.acked
        self.no_host += other.no_host
        self.errors += other.errors


def run_load(svc: Any, project: str, prefix: str, n: int, flavor: str, threads: int = 1,
             ack_file: str | None = None) -> LoadResult:
    """Create `n` workloads named PREFIX-i from `threads` threads; collect what was acknowledged."""
    out = LoadResult()
    lock = threading.Lock()
    ack = open(ack_file, "a") if ack_file else None  # noqa: SIM115 - shared by the threads below

    def work(t: int) -> None:
        for i in range(t, n, threads):
            name = f"{prefix}-{i}"
            try:
                svc.workloads.create_workload(project, name, flavor=flavor)
            except NoValidHostError:
                with lock:
                    out.no_host += 1
                continue
            except PoolvisorError as e:
                with lock:
                    out.errors.append(f"{name}: {type(e).__name__}: {e.message}")
                continue
            with lock:
                out.acked.append(name)
                if ack is not None:
                    ack.write(name + "\n")
                    ack.flush()
                    os.fsync(ack.fileno())

    try:
        ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        if ack is not None:
            ack.close()
    return out


def worker_main(db_url: str, project: str, prefix: str, n: int, flavor: str, threads: int,
                queue: Any = None, ack_file: str | None = None, create_seconds: float = 0.0) -> LoadResult:
    """Process entry point: open its own Services (no repair: other processes are live) and load.
    `create_seconds` makes each sim create take that long (widens the window between commits)."""
    from poolvisor.services import open_services

    svc = open_services(db_url, repair=False, driver_options={"durations": {"create": create_seconds}})
    try:
        res = run_load(svc, project, prefix, n, flavor, threads, ack_file)
    finally:
        svc.close()
    if queue is not None:
        queue.put((res.acked, res.no_host, res.errors))
    return res


def bench_store(db_url: str | None, hosts: int, requests: int, threads: int, processes: int,
                flavor: str = "small") -> dict[str, Any]:
    """Seed a demo pool in an empty database (a temporary SQLite file by default), then create
    `requests` workloads from `threads` threads in this process and `processes` child processes
    (each with `threads` threads); report the rate and whether every invariant still holds."""
    import multiprocessing
    import tempfile

    from poolvisor.demo.cluster import seed_demo
    from poolvisor.domain.errors import ConflictError
    from poolvisor.services import open_services

    with tempfile.TemporaryDirectory(prefix="poolvisor-bench-") as tmp:
        url = db_url or f"sqlite:///{tmp}/bench.db"
        svc = open_services(url)
        try:
            if svc.hosts.list_hosts() or svc.catalog.list_projects():
                raise ConflictError("bench store needs an empty database")
            seed_demo(svc, hosts)
            workers = processes + 1
            share = [requests // workers + (1 if k < requests % workers else 0) for k in range(workers)]
            ctx = multiprocessing.get_context("spawn")
            queue = ctx.Queue()
            t0 = time.perf_counter()
            children = [ctx.Process(target=worker_main, args=(url, "demo", f"b{k}", share[k + 1], flavor,
                                                               threads, queue)) for k in range(processes)]
            for c in children:
                c.start()
            total = run_load(svc, "demo", "b-main", share[0], flavor, threads)
            for _ in children:
                acked, no_host, errors = queue.get(timeout=3600)
                total.merge(LoadResult(acked, no_host, errors))
            for c in children:
                c.join()
            seconds = time.perf_counter() - t0
            report = svc.repair.check()
        finally:
            svc.close()
    return {
        "database": url.split("://")[0], "hosts": hosts, "requests": requests, "threads": threads,
        "processes": processes, "acked": len(total.acked), "no_valid_host": total.no_host,
        "errors": len(total.errors), "seconds": round(seconds, 3),
        "creates_per_s": round(len(total.acked) / seconds, 1) if seconds > 0 else None,
        "invariants_ok": report.ok, "violations": report.violations[:10],
    }


def main(argv: list[str]) -> int:
    if len(argv) < 5:
        print("usage: python -m poolvisor.bench.loadgen URL PROJECT PREFIX N FLAVOR [THREADS] [ACK_FILE] "
              "[CREATE_SECONDS]", file=sys.stderr)
        return 2
    url, project, prefix, n, flavor = argv[:5]
    threads = int(argv[5]) if len(argv) > 5 else 1
    ack = argv[6] if len(argv) > 6 and argv[6] != "-" else None
    create_seconds = float(argv[7]) if len(argv) > 7 else 0.0
    if ack:
        Path(ack).touch()
    t0 = time.perf_counter()
    res = worker_main(url, project, prefix, int(n), flavor, threads, None, ack, create_seconds)
    dt = time.perf_counter() - t0
    print(f"acked={len(res.acked)} no_host={res.no_host} errors={len(res.errors)} seconds={dt:.2f} "
          f"creates_per_s={len(res.acked) / dt:.1f}")
    return 0 if not res.errors else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
