"""Use cases written once, run either on the caller's thread or by the writer without a thread waiting.

A create (claim, driver call, confirm) and a delete (mark, driver call, finish) are each a few
short transactions around a driver call. Written as a generator that *yields* each step (`Tx`,
`Claim`, `Call`, `Lone`) and gets its result back (or its exception thrown in), the same code runs:

- `run_sync(ctx, batcher, flow)`: on the calling thread, each step as before (a grouped write,
  a batched claim, the driver call inline) — tests, the CLI, the dashboard, the queue;
- `FlowRunner.start(flow, done)`: by the server's writer thread (store/group.py), without any
  thread waiting: a `Tx` joins the next group commit and the flow goes on from that commit's
  continuation, on the writer thread; a `Claim` joins the next batched claim (claim_batch.py);
  a `Call` to a driver that is in-process and quick (the sim driver without injected delays) runs
  right there, and any other (libvirt, lxc, a volume's disks) on a small pool of worker threads so
  it never holds the writer; a `Lone` step (a create that needs more than a plain claim: the usual
  path with its retries, preemption, standby wake-up) runs on that pool too. `done(result,
  error)` is called once, on whatever thread ends the flow: the async routes resolve an asyncio
  future from it (api/routes/workloads.py).

Each transaction of a flow commits before the flow goes on, as before, so crash repair sees the
same transient states and leases; a failure in one flow's step is thrown into that flow alone
(group commit runs a failing function again alone, claim_batch.py sends a failing claim the
lone way).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError
from poolvisor.store.retry import Stale

if TYPE_CHECKING:
    from poolvisor.drivers.pool import DriverPool
    from poolvisor.services.claim_batch import ClaimBatcher
    from poolvisor.services.context import ServiceContext
    from poolvisor.store.group import GroupCommit

T = TypeVar("T")
TX_DEADLINE_S = 30.0  # as Store.run: a transaction that keeps meeting Stale gives up with a 409
WORKERS = 8  # slow driver calls and lone creates at once (what the sync routes' thread pool allowed)
log = logging.getLogger("poolvisor.services")
Done = Callable[[Any, BaseException | None], None]


@dataclass(frozen=True, slots=True)
class Tx:
    """A short database-only write (may share its commit: store/group.py); run again on Stale."""

    fn: Callable[[Session], Any]
    grouped: bool = True
    hosts: tuple[int, ...] = ()  # the hosts whose rows fn locks (PostgreSQL: a group takes them first)


@dataclass(frozen=True, slots=True)
class Claim:
    """Resolve, decide and claim a plain create in the next batch: (spec, id, host) or None."""

    resolve: Callable[[Session], Any]
    explain: bool = False


@dataclass(frozen=True, slots=True)
class Call:
    """A driver call (no database): inline when `host`'s driver says `op` is quick, else off the writer."""

    fn: Callable[[], Any]
    host: str | None = None
    op: str = ""


@dataclass(frozen=True, slots=True)
class Lone:
    """A blocking remainder (its own waits and retries): on a worker thread, never the writer."""

    fn: Callable[[], Any]


Step = Tx | Claim | Call | Lone
Flow = Generator[Step, Any, T]


def run_sync(ctx: ServiceContext, batcher: ClaimBatcher | None, flow: Flow[T]) -> T:
    """Run `flow` on this thread, each step as a synchronous call."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.throw(error) if error is not None else flow.send(value)
        except StopIteration as stop:
            return stop.value
        try:
            value, error = _sync(ctx, batcher, step), None
        except BaseException as e:  # noqa: BLE001 - thrown into the flow, which may handle it
            value, error = None, e


def _sync(ctx: ServiceContext, batcher: ClaimBatcher | None, step: Step) -> Any:
    if isinstance(step, Tx):
        return ctx.write(step.fn, grouped=step.grouped, hosts=step.hosts)
    if isinstance(step, Claim):
        return batcher.place(step.resolve, explain=step.explain) if batcher is not None else None
    return step.fn()


class FlowRunner:
    """Runs flows from the writer thread's continuations (see the module docstring)."""

    def __init__(self, group: GroupCommit, batcher: ClaimBatcher, drivers: DriverPool) -> None:
        self.group = group
        self.batcher = batcher
        self.drivers = drivers
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="poolvisor-flow")
        self._lock = threading.Lock()
        self.inline_calls = 0  # driver calls run on the writer (observable in tests)
        self.offloaded = 0  # steps run on the worker pool

    def start(self, flow: Flow[Any], done: Done) -> None:
        """Run `flow`; `done(result, error)` once it ends (perhaps before this returns)."""
        _Run(self, flow, done).step(None, None)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def offload(self, fn: Callable[[], Any], then: Done) -> None:
        def job() -> None:
            try:
                v, e = fn(), None
            except BaseException as err:  # noqa: BLE001 - thrown into the flow
                v, e = None, err
            then(v, e)

        with self._lock:
            self.offloaded += 1
        self._pool.submit(job)


class _Run:
    """One flow in progress: each step's answer advances it (on the thread that answers)."""

    __slots__ = ("runner", "flow", "done", "deadline")

    def __init__(self, runner: FlowRunner, flow: Flow[Any], done: Done) -> None:
        self.runner, self.flow, self.done = runner, flow, done
        self.deadline = 0.0

    def step(self, value: Any, error: BaseException | None) -> None:
        while True:  # inline steps loop here rather than recursing
            try:
                step = self.flow.throw(error) if error is not None else self.flow.send(value)
            except StopIteration as stop:
                self._end(stop.value, None)
                return
            except BaseException as e:  # noqa: BLE001 - the flow's outcome
                self._end(None, e)
                return
            try:
                inline = self._submit(step)
            except BaseException as e:  # noqa: BLE001 - e.g. the writer is stopping: thrown into the flow
                value, error = None, e
                continue
            if inline is None:
                return  # an answer will come from the writer or the pool
            value, error = inline

    def _submit(self, step: Step) -> tuple[Any, BaseException | None] | None:
        r = self.runner
        if isinstance(step, Tx):
            self.deadline = time.monotonic() + TX_DEADLINE_S
            self._tx(step)
            return None
        if isinstance(step, Claim):
            r.batcher.submit(step.resolve, self.step, explain=step.explain)
            return None
        if isinstance(step, Call) and step.host is not None and r.drivers.quick(step.host, step.op):
            r.inline_calls += 1
            try:
                return step.fn(), None
            except BaseException as e:  # noqa: BLE001 - thrown into the flow
                return None, e
        r.offload(step.fn, self.step)
        return None

    def _tx(self, step: Tx) -> None:
        def answered(value: Any, error: BaseException | None) -> None:
            if isinstance(error, Stale):  # as Store.run: again, until the deadline
                if time.monotonic() < self.deadline:
                    try:
                        self.runner.group.submit(step.fn, answered, step.hosts)
                    except BaseException as e:  # noqa: BLE001 - the writer is stopping
                        self.step(None, e)
                    return
                error = ConflictError("too many concurrent changes; the request was not applied, retry it")
            self.step(value, error)

        self.runner.group.submit(step.fn, answered, step.hosts)

    def _end(self, value: Any, error: BaseException | None) -> None:
        done, self.done = self.done, _ignore
        try:
            done(value, error)
        except Exception:  # noqa: BLE001 - the caller's continuation: logged, the writer goes on
            log.exception("a flow's completion failed")


def _ignore(_v: Any, _e: BaseException | None) -> None:
    pass
