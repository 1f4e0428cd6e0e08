"""Batched placement: the creates waiting in a process decided and claimed together.

Alone, each create resolves its request and refreshes the placement view in a read transaction
of its own, then decides and claims in a write transaction of its own, holding the placement
cache's lock from the decision through the claim's commit (so this process's creates never race
each other). Under load they queue on that lock, one commit each, and a delete committed between
a create's refresh and its claim fails the claim's generation guard (decide again). Here the
writer thread (store/group.py: one thread for group commit and this lane) takes every create
waiting (up to MAX_BATCH) and, under the cache's lock, in **one** write transaction:

1. resolves them all and refreshes the view;
2. decides them one after the other on the index, each claim written through to the view at
   once (`PlacementCache.written`), so the next decision sees the capacity it took;
3. PostgreSQL: locks the rows of every host the batch chose, in host-id order (store/group.py
   `lock_hosts`, the global order of every transaction holding several hosts), so two replicas'
   batches (and groups) queue on each other instead of deadlocking. A host another replica
   changed since the refresh (its generation moved) is reloaded under its lock and each claim
   planned on it decided again on it alone (kept if it still fits, else that create goes the
   lone way); this process then passes it over for a while (`PlacementCache.lost_race`). Every
   claim is now exact: nobody else changes a locked host before the commit. Then the enforced
   quotas of its projects, in project-id order (quotas.py `lock_in_order`). (SQLite: the write
   lock is held from the transaction's start, nothing changes under it.)
4. claims them in decision order through the ledger (its guarded UPDATEs re-check generation and
   capacity inside each UPDATE), each at the generation the claims before it on that host left;
5. sends the claims' event rows in one statement and commits once, then answers each create
   (its driver call and confirmation follow as usual).

Each claim runs in a savepoint: one that fails (a quota, a name taken meanwhile) is rolled back
alone and taken back out of the view (`PlacementCache.unwritten`), and that create goes the lone
way (`WorkloadService` runs its usual decide + claim, with its retries and its 409s). A batch's
only claim takes no savepoint (a round trip fewer; at moderate rates most batches hold one
create): should it fail, the transaction rolls back as below. If the
transaction itself fails (PostgreSQL: a deadlock or serialization failure that still happens, e.g.
with a lone claim holding a quota's row), every host the batch wrote through is reloaded and every
create of the batch goes the lone way: nothing is claimed twice, nothing lost. Requests that need
more than a plain claim go the lone way without being tried here: a group, networks, GPUs, a
pinned host, a project to create, a declared reservation/limit/shares (sized by the chosen host's
pool, shares.py), or no host fitting (preemption, waking a standby host).

Runs where group commit runs (`serve`, on either database: `Store.groups_writes`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from poolvisor.observability.instruments import observe_placement
from poolvisor.services import quotas
from poolvisor.store.group import lock_host, lock_hosts
from poolvisor.store.prepared import defer, flush_deferred, savepoint
from poolvisor.store.worker import QueueWorker

if TYPE_CHECKING:
    from poolvisor.services.workloads import WorkloadService, _Spec, _Target

MAX_BATCH = 32
LANE = "claim"
log = logging.getLogger("poolvisor.services")
Placed = tuple["_Spec", int, str] | None
Done = Callable[[Placed, BaseException | None], None]


class _Job:
    __slots__ = ("resolve", "explain", "done")

    def __init__(self, resolve: Callable[[Session], _Spec], explain: bool, done: Done) -> None:
        self.resolve = resolve
        self.explain = explain
        self.done: Done | None = done  # None once answered

    def finish(self, result: Placed = None, error: BaseException | None = None) -> None:
        """Answer once: (spec, workload id, host) after the commit, None (the lone way) or an error."""
        done, self.done = self.done, None
        if done is None:
            return
        try:
            done(result, error)
        except Exception:  # noqa: BLE001 - the continuation's own bug: logged, the batch goes on
            log.exception("a batched placement continuation failed")


class ClaimBatcher:
    """The lane of the writer thread (store/group.py's QueueWorker) that decides and claims the
    waiting creates together."""

    def __init__(self, workloads: WorkloadService, worker: QueueWorker, max_batch: int = MAX_BATCH) -> None:
        self.workloads = workloads
        self.worker = worker
        worker.add_lane(LANE, self._handle, self._failed)
        self.max_batch = max_batch
        self._stopping = False
        self.batches = 0  # claim transactions committed for more than one create (observable in tests)
        self.claimed = 0
        self.fallbacks = 0  # creates whose batched claim failed: they went the lone way
        self.rolled_back = 0  # batch transactions that failed as a whole (e.g. a PostgreSQL deadlock;
        # not those whose only claim failed: `_claim`)

    @property
    def taken(self) -> int:
        """Creates the writer took from the queue so far."""
        return self.worker.taken[LANE]

    @property
    def queued(self) -> int:
        return self.worker.queued(LANE)

    def submit(self, resolve: Callable[[Session], _Spec], done: Done, *, explain: bool = False) -> None:
        """Queue a create; `done(placed, error)` on the writer thread: (spec, workload id, host)
        once the claim committed, None to go the lone way, or what resolving or deciding raised."""
        if self._stopping or self.worker.stopping:
            done(None, None)
            return
        self.worker.put(LANE, _Job(resolve, explain, done))

    def place(self, resolve: Callable[[Session], _Spec], *, explain: bool = False) -> Placed:
        """(spec, workload id, host) once the claim committed; None: go the lone way (not for a
        batch, or the batch's claim failed). Raises what resolving or deciding raised."""
        if self.worker.on_thread:
            return None  # (a create run by the writer itself: it cannot wait on its own queue)
        event = threading.Event()
        out: list[Any] = [None, None]

        def done(result: Placed, error: BaseException | None) -> None:
            out[0], out[1] = result, error
            event.set()

        self.submit(resolve, done, explain=explain)
        event.wait()
        if out[1] is not None:
            raise out[1]
        return out[0]

    def stop(self) -> None:
        """Later creates go the lone way (the writer finishes what is queued: store/group.py)."""
        self._stopping = True

    def _handle(self, jobs: list[_Job]) -> None:
        for i in range(0, len(jobs), self.max_batch):
            part = jobs[i:i + self.max_batch]
            try:
                self._run(part)
            except Exception:  # noqa: BLE001 - never leave a caller waiting: they go the lone way
                log.exception("batched placement failed")
            for j in part:
                j.finish()

    @staticmethod
    def _failed(jobs: list[_Job], _e: BaseException) -> None:
        for j in jobs:
            j.finish()

    def _run(self, jobs: list[_Job]) -> None:
        svc = self.workloads
        cache = svc.cache
        pg = not svc.ctx.store.is_sqlite
        wrote: list[int] = []  # hosts written through to the view before the commit
        with cache.lock:
            def tx(s: Session) -> list[tuple[_Job, Any, BaseException | None]]:
                wrote.clear()  # (run again from the start should the store retry it)
                defer(s)  # the claims' event rows, sent together before the commit
                specs: list[Any] = []
                for j in jobs:
                    try:
                        specs.append(j.resolve(s))
                    except Exception as e:  # noqa: BLE001 - this request's own 404/409/422
                        specs.append(e)
                snap = cache.refresh(s, defer=pg)  # (a deferred host that is chosen moved: decided again)
                out: list[tuple[_Job, Any, BaseException | None]] = []
                plans: list[tuple[int, _Spec, Any, _Target]] = []  # (index in out, spec, decision, target)
                for j, spec in zip(jobs, specs, strict=True):
                    if isinstance(spec, Exception):
                        out.append((j, None, spec))
                        continue
                    out.append((j, None, None))  # None: the lone way, unless claimed below
                    if _plain(spec) and (got := self._decide(snap, j, spec, wrote)) is not None:
                        plans.append((len(out) - 1, spec, *got))
                at: dict[int, int] = {}  # host id -> the generation its next claim must find
                for _i, _spec, _d, (host_id, gen, _g) in plans:
                    at.setdefault(host_id, gen)  # (the first decision on a host saw it as refreshed)
                if pg and plans:  # lock them in id order; a host moved since the refresh: decided again
                    locked = lock_hosts(s, at)
                    moved = {h for h, g in at.items() if locked.get(h) != g}
                    if moved:
                        plans = self._moved(s, snap, jobs, plans, moved, locked, wrote)
                        at = {t[0]: locked[t[0]] for _i, _sp, _d, t in plans}
                    # then the enforced quotas its claims will check, in project-id order
                    quotas.lock_in_order(s, (sp.project_id for _i, sp, _d, _t in plans
                                             if sp.project_id is not None and not sp.quota_free))
                alone = len(plans) == 1  # no savepoint: should its claim fail, the transaction rolls back
                for i, spec, decision, target in plans:
                    host_id, _gen, gpus = target
                    if host_id not in at:  # (deleted meanwhile): the lone way
                        continue
                    placed = self._claim(s, spec, decision, (host_id, at[host_id], gpus), alone=alone)
                    if placed is not None:
                        at[host_id] += 1
                        out[i] = (jobs[i], placed, None)
                flush_deferred(s)
                return out

            try:
                outcomes = svc.ctx.write_once(tx)
            except Exception as e:  # noqa: BLE001 - rolled back: each create alone, with its own outcome
                _forget(cache.view, wrote)
                self.rolled_back += not isinstance(e, _AloneFailed)
                self.fallbacks += len(jobs)
                return
        claimed = 0
        for j, result, error in outcomes:
            claimed += result is not None
            j.finish(result, error)
        self.claimed += claimed
        self.batches += claimed > 1

    def _choose(self, snap: Any, spec: _Spec, explain: bool) -> tuple[Any, _Target] | None:
        """Decide on the view: (decision, target), or None (the lone way: no room, or the
        decision raised)."""
        try:
            with observe_placement() as outcome:  # poolvisor_placement_seconds
                decision, target = self.workloads._decide(spec, explain, snap=snap)
                if target is None:
                    outcome[0] = "no_valid_host"
        except Exception:  # noqa: BLE001 - HA admission's 409, an unknown resource: alone, as it would
            return None
        if target is None:
            return None  # no room: the lone way preempts or wakes a host, or answers 409
        return decision, target

    def _decide(self, snap: Any, job: _Job, spec: _Spec, wrote: list[int]) -> tuple[Any, _Target] | None:
        """Decide on the view and write the claim through to it: (decision, target), or None (the
        lone way: no room, or the view cannot follow the claim)."""
        svc = self.workloads
        got = self._choose(snap, spec, job.explain)
        if got is None:
            return None
        decision, target = got
        host_id, gen, _gpus = target
        if not svc.cache.written(host_id, gen + 1, spec.demand, None, key=f"{spec.project}/{spec.name}",
                                 priority=spec.priority, kind=spec.kind):
            return None  # the view cannot follow this claim exactly
        wrote.append(host_id)
        return decision, target

    def _moved(self, s: Session, snap: Any, jobs: list[_Job], plans: list[tuple[int, _Spec, Any, _Target]],
               moved: set[int], locked: dict[int, int], wrote: list[int]
               ) -> list[tuple[int, _Spec, Any, _Target]]:
        """PostgreSQL: the hosts `moved` changed (another replica) between the refresh and their
        locks. Locked now, they are reloaded into the view exactly, and each claim planned on one
        is decided again (`_again`), in decision order; one that finds no host goes the lone way.
        The hosts are then passed over for a while (`PlacementCache.lost_race`: replicas deciding
        on one state choose the same host). `locked` gains the hosts locked meanwhile."""
        svc = self.workloads
        cache = svc.cache
        _forget(cache.view, [h for h in moved if h not in locked])  # deleted: the next refresh rebuilds
        cache.reload(s, {h: locked[h] for h in moved if h in locked})  # (drops the batch's claims there)
        kept: list[tuple[int, _Spec, Any, _Target]] = []
        for i, spec, decision, target in plans:
            if target[0] not in moved:
                kept.append((i, spec, decision, target))
            elif (again := self._again(s, snap, spec, jobs[i].explain, locked, wrote)) is not None:
                kept.append((i, spec, *again))
            else:
                self.fallbacks += 1
        for h in moved:
            cache.lost_race(h)
        return kept

    def _again(self, s: Session, snap: Any, spec: _Spec, explain: bool, locked: dict[int, int],
               wrote: list[int]) -> tuple[Any, _Target] | None:
        """Decide a claim again on the view, whose locked hosts are exact: on a locked host it is
        kept as decided; another host is locked first (waiting only above every id held, else
        NOWAIT: store/group.py `lock_host`), and when it moved too, reloaded and decided once more.
        (decision, target) written through to the view, or None: the lone way."""
        cache = self.workloads.cache
        for _ in range(2):
            got = self._choose(snap, spec, explain)
            if got is None:
                return None
            decision, target = got
            h = target[0]
            if h not in locked:
                g = lock_host(s, h, wait=h > max(locked, default=0))
                if g is None:  # another transaction holds it (or it is gone)
                    cache.lost_race(h)
                    return None
                locked[h] = g
                if g != target[1]:
                    cache.reload(s, {h: g})  # exact now (locked): decide again
                    continue
            if not cache.written(h, target[1] + 1, spec.demand, None, key=f"{spec.project}/{spec.name}",
                                 priority=spec.priority, kind=spec.kind):
                return None
            wrote.append(h)
            return decision, target
        return None

    def _claim(self, s: Session, spec: _Spec, decision: Any, target: _Target, *, alone: bool = False
               ) -> tuple[_Spec, int, str] | None:
        """Claim in a savepoint at the target's generation: (spec, workload id, host), or None (the
        claim failed: taken back out of the view, the create goes the lone way). `alone`: the
        batch's only claim, without a savepoint (a round trip fewer, and most batches at moderate
        rates hold one create): should it fail, it raises and the whole transaction rolls back,
        every create of the batch then going the lone way (`_run`)."""
        svc = self.workloads
        host_id = target[0]
        try:
            if alone:
                wid, _group = svc._claim(s, spec=spec, target=target, decision=decision)
            else:
                with savepoint(s):  # a failed claim leaves the batch's others
                    wid, _group = svc._claim(s, spec=spec, target=target, decision=decision)
        except Exception:  # noqa: BLE001 - a quota, a name taken: alone, with its own outcome
            svc.cache.unwritten(host_id, f"{spec.project}/{spec.name}")
            if alone:
                raise _AloneFailed from None
            self.fallbacks += 1
            return None
        assert decision.host is not None
        return spec, wid, decision.host


class _AloneFailed(Exception):
    """The batch's only claim failed (no savepoint): its transaction rolls back."""


def _plain(spec: _Spec) -> bool:
    """A create whose claim is the ledger's alone (what a batch may hold)."""
    return (spec.project_id is not None and spec.group is None and not spec.networks and spec.host is None
            and spec.demand.get("gpu", 0.0) <= 0 and spec.sizing is None)  # sized by the chosen pool: alone


def _forget(snap: Any, host_ids: list[int]) -> None:
    """Claims written through to these hosts did not commit: the next refresh reloads them."""
    if snap is None:
        return
    for hid in host_ids:
        h = snap.index_of.get(hid)
        if h is not None:
            snap.gens[h] = -1
