"""The HTTP load of `poolvisor bench api`: create/delete workloads from asyncio clients.

Closed loop (`clients`): each client sends its next request when the last one answered, which
measures throughput. Open loop (`rate`): creations are sent at R per second whatever the answers,
and each latency is measured from the request's *scheduled* send time, so queueing in the server
or in the client (a saturated connection pool) shows in the figures instead of being hidden by a
client that slowed down with the server (coordinated omission).

Either way the pool holds at most `live` workloads made by the load: a create that goes past it
deletes the oldest acknowledged one, so deletes run at the rate of creates. A 429 is counted,
checked for `Retry-After`, and its client waits that long (at most RETRY_AFTER_CAP_S) before its
next request; a connection error (a server killed under the load) is counted and the client
tries again after CONNECT_PAUSE_S, with a new name (the lost request's outcome is unknown).
Each process (`run_process`) returns plain lists and counters that `merge` adds up, so the load
can come from several processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from poolvisor.bench.httpclient import Client, HttpError, Response

RETRY_AFTER_CAP_S = 2.0
CONNECT_PAUSE_S = 0.05
REQUEST_TIMEOUT_S = 60.0
WHOAMI_PATH = "/v1/whoami"
MAX_OPEN_LOOP_CONNECTIONS = 512  # per replica; a request waiting for one counts in its latency


@dataclass
class LoadSpec:
    urls: list[str]
    token: str
    seconds: float
    clients: int = 0  # closed loop when > 0
    rate: float = 0.0  # open loop when > 0
    live: int = 200
    project: str = "demo"
    flavor: str = "small"
    tag: str = "p0"  # unique per process: workload names are TAG-N


@dataclass
class LoadOutcome:
    create_ms: list[float] = field(default_factory=list)  # acknowledged creates (201)
    delete_ms: list[float] = field(default_factory=list)  # acknowledged deletes (204)
    status: Counter[str] = field(default_factory=Counter)  # "create 201", "delete 204", "create 409", ...
    retry_after_missing: int = 0
    connection_errors: int = 0
    alive: list[str] = field(default_factory=list)  # acknowledged, never sent a delete
    unknown: list[str] = field(default_factory=list)  # outcome unknown (connection lost mid-request)
    seconds: float = 0.0
    cpu_s: float = 0.0
    healthz: int = 0  # requests answered by a ceiling run (/healthz or the authenticated read)

    def merge(self, other: LoadOutcome) -> None:
        self.create_ms += other.create_ms
        self.delete_ms += other.delete_ms
        self.status.update(other.status)
        self.retry_after_missing += other.retry_after_missing
        self.connection_errors += other.connection_errors
        self.alive += other.alive
        self.unknown += other.unknown
        self.seconds = max(self.seconds, other.seconds)
        self.cpu_s += other.cpu_s
        self.healthz += other.healthz

    def to_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, Counter) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoadOutcome:
        return cls(**{**d, "status": Counter(d["status"])})


class _Load:
    """One process's clients, sharing the held workloads (oldest deleted first)."""

    def __init__(self, spec: LoadSpec, clients: list[Client]) -> None:
        self.spec, self.clients = spec, clients
        self.out = LoadOutcome()
        self.held: deque[str] = deque()
        self.seq = 0
        self.pause_until = 0.0
        self.auth = {"Authorization": f"Bearer {spec.token}"}

    def _name(self) -> str:
        self.seq += 1
        return f"{self.spec.tag}-{self.seq}"

    async def _send(self, k: int, method: str, path: str, body: Any = None) -> Response | None:
        """One request on replica k; None when the connection failed (counted)."""
        client = self.clients[k % len(self.clients)]
        try:
            return await client.request(method, path, json_body=body, headers=self.auth)
        except HttpError:
            self.out.connection_errors += 1
            await asyncio.sleep(CONNECT_PAUSE_S)
            return None

    def _note(self, op: str, r: Response) -> None:
        self.out.status[f"{op} {r.status_code}"] += 1
        if r.status_code == 429:
            after = r.headers.get("retry-after")
            if after is None:
                self.out.retry_after_missing += 1
            else:
                with contextlib.suppress(ValueError):
                    wait = min(max(float(after), 0.0), RETRY_AFTER_CAP_S)
                    self.pause_until = max(self.pause_until, time.monotonic() + wait)

    async def create(self, k: int, t0: float) -> None:
        """Create one workload; latency from `t0` (the send time, or the scheduled one)."""
        name = self._name()
        r = await self._send(k, "POST", "/v1/workloads",
                             {"name": name, "flavor": self.spec.flavor, "project": self.spec.project})
        if r is None:
            self.out.unknown.append(name)
            return
        self._note("create", r)
        if r.status_code != 201:
            return
        self.out.create_ms.append((time.monotonic() - t0) * 1000)
        self.held.append(name)
        while len(self.held) > self.spec.live:
            await self.delete(k, self.held.popleft())

    async def delete(self, k: int, name: str) -> None:
        t0 = time.monotonic()
        r = await self._send(k, "DELETE", f"/v1/workloads/{name}?project={self.spec.project}")
        if r is None:
            self.out.unknown.append(name)
            return
        self._note("delete", r)
        if r.status_code == 204:
            self.out.delete_ms.append((time.monotonic() - t0) * 1000)
        elif r.status_code >= 500 or r.status_code == 429:
            self.held.append(name)  # still there: deleted later (or listed alive at the end)
        else:
            self.out.unknown.append(name)

    async def closed(self) -> None:
        end = time.monotonic() + self.spec.seconds

        async def client(k: int) -> None:
            while (now := time.monotonic()) < end:
                if now < self.pause_until:
                    await asyncio.sleep(self.pause_until - now)
                    continue
                await self.create(k, time.monotonic())

        await asyncio.gather(*(client(k) for k in range(self.spec.clients)))

    async def open(self) -> None:
        start, rate = time.monotonic(), self.spec.rate
        n = int(rate * self.spec.seconds)
        tasks: set[asyncio.Task[None]] = set()
        for i in range(n):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            t = asyncio.create_task(self.create(i, due))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)

    async def healthz(self, path: str = "/healthz") -> None:
        end = time.monotonic() + self.spec.seconds

        async def client(k: int) -> None:
            while time.monotonic() < end:
                r = await self._send(k, "GET", path)
                if r is not None and r.status_code == 200:
                    self.out.healthz += 1

        await asyncio.gather(*(client(k) for k in range(max(1, self.spec.clients))))


async def _run(spec: LoadSpec, what: str) -> LoadOutcome:
    conns = spec.clients if spec.clients > 0 else MAX_OPEN_LOOP_CONNECTIONS
    clients = [Client(u, conns, REQUEST_TIMEOUT_S) for u in spec.urls]
    load = _Load(spec, clients)
    t0, c0 = time.monotonic(), time.process_time()
    try:
        if what == "whoami":  # the cheapest authenticated read: token check, routing, a small body
            await load.healthz(WHOAMI_PATH)
        else:
            await {"closed": load.closed, "open": load.open, "healthz": load.healthz}[what]()
    finally:
        for c in clients:
            await c.aclose()
    load.out.seconds = time.monotonic() - t0
    load.out.cpu_s = time.process_time() - c0
    load.out.alive = list(load.held)
    return load.out


def run_process(spec: LoadSpec, what: str) -> LoadOutcome:
    """Run the load in this process ("closed", "open", "healthz" or "whoami"), on uvloop when installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_run(spec, what))
    return uvloop.run(_run(spec, what))


def process_main(spec: LoadSpec, what: str, queue: Any) -> None:
    """multiprocessing target: the outcome goes back as a plain dict."""
    queue.put(run_process(spec, what).to_dict())
