"""Concurrent address allocation from threads and processes (a unique module name: importable by
spawned children)."""

from __future__ import annotations

import threading
from typing import Any

from poolvisor.domain.errors import ConflictError, PoolvisorError
from poolvisor.services import open_services


def allocate_many(svc: Any, project: str, pool: str, n: int, threads: int,
                  address: str | None = None) -> tuple[list[str], int, list[str]]:
    """n allocations (the next free address, or `address` each time) from `threads` threads:
    (addresses acknowledged, conflicts, unexpected errors)."""
    acked: list[str] = []
    conflicts = [0]
    errors: list[str] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for _ in range(t, n, threads):
            try:
                got = svc.networks.allocate_ip(project, pool, address=address, owner=f"t{t}")
            except ConflictError:
                with lock:
                    conflicts[0] += 1
                continue
            except PoolvisorError as e:
                with lock:
                    errors.append(f"{type(e).__name__}: {e.message}")
                continue
            with lock:
                acked.extend(r.first for r in got)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return acked, conflicts[0], errors


def worker(url: str, project: str, pool: str, n: int, threads: int, address: str | None, queue: Any) -> None:
    svc = open_services(url, repair=False)
    try:
        queue.put(allocate_many(svc, project, pool, n, threads, address))
    finally:
        svc.close()
