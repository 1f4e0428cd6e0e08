"""The placement cache: a ClusterState mirrored from the store (a PlacementView), refreshed
incrementally before each placement. (Not a VM snapshot: that name is kept for those.)

Each host row carries a generation bumped by every change to its allocations or state. A refresh
reads (id, generation) for all hosts first, then reloads only the hosts whose generation moved
(keeping the workload rows the view already holds as the store has them); new hosts are appended,
and a deleted host or a new resource name triggers a full rebuild. A PostgreSQL claim batch may
put off reloading a host another replica is filling (`refresh(defer=True)`): it locks and
re-checks the hosts it chooses anyway (claim_batch.py).
Reading generations before the data makes any race conservative: the data can only be newer
than the generation the commit will compare against, so a stale decision fails its commit.

The state's workload table (`state.workloads`) mirrors the holding workloads of the reloaded
hosts (key "project/name", demand, priority, group, kind); it is loaded without re-accounting,
since the store's ledger already keeps host totals equal to the workloads' claims.

Placement decides through a placement index kept on the view's state (`PlacementView.placer`):
`refresh` declares the hosts it reloads (`ClusterState.touch`) and the index refreshes exactly
those leaves before its next query; a new host or a full load rebuilds it. The index is only a
cache of the cache: the ledger's guarded UPDATEs stay the authority (services/ledger.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sqlalchemy import Text, bindparam, cast, select
from sqlalchemy.orm import Session

from poolvisor.domain.models import HostSpec, HostState
from poolvisor.domain.resources import DEFAULT_RESOURCES, ResourceSet
from poolvisor.policies.placement import IndexedPlacer, PlacementPolicy, kernels
from poolvisor.policies.placement.gpushare import GpuDevices
from poolvisor.policies.placement.request import Request
from poolvisor.services.gpu_cache import reload_devices
from poolvisor.services.records import HOLDING_STATES
from poolvisor.state.cluster import ClusterState
from poolvisor.store.prepared import Prepared, PreparedIn
from poolvisor.store.rows import GroupRow, HostResourceRow, HostRow, ProjectRow, WorkloadRow

CONTENDED_S = 1.0  # how long a host this process lost a claim on is passed over (see `steer`)
# a contended host's reload may wait this long (`refresh(defer=True)`): under CONTENDED_S, so a host
# the other replica keeps filling is seen gaining workloads, and passed over again, before it expires
DEFER_S = CONTENDED_S / 2
FULL_REBUILD_ABOVE = 2000  # changed hosts beyond which one full load is cheaper than IN (...) lists
# Below this many hosts a process that has not loaded the compiled kernels (a CLI command) decides
# on the index's numpy path, in well under a millisecond, rather than import numba and load them
# (~1 s). One that has them (a server warms them at start, jit.warm) uses them at any size: at 50
# hosts a served decision took ~400 µs on the numpy path and ~150 µs compiled, same answers.
JIT_MIN_HOSTS = 10_000


def group_key(project: str, group: str) -> str:
    """How an affinity group is named in the ClusterState (and so in explanations)."""
    return f"{project}/{group}"


def host_generations(s: Session) -> tuple[np.ndarray, np.ndarray]:
    """(ids, generations) of every host, read through the DBAPI cursor of the session's connection
    (same transaction): a plain tuple per host instead of a Row object, ~5x faster at thousands of
    hosts, and this runs before every placement."""
    cur = s.connection().connection.cursor()
    try:
        cur.execute(f"SELECT id, generation FROM {HostRow.__tablename__}")
        rows = cur.fetchall()
    finally:
        cur.close()
    a = np.array(rows, dtype=np.int64).reshape(-1, 2)
    return a[:, 0], a[:, 1]


def resource_names(s: Session) -> ResourceSet:
    """Default resources plus every custom resource declared on some host."""
    extra = s.scalars(select(HostResourceRow.resource).distinct()).all()
    return ResourceSet(DEFAULT_RESOURCES).with_extra(sorted(r for r in extra if r not in DEFAULT_RESOURCES))


@dataclass
class PlacementView:
    """The store's hosts as placement sees them: state arrays plus db ids, generations, pools."""

    state: ClusterState
    ids: list[int] = field(default_factory=list)  # host db id per state index
    index_of: dict[int, int] = field(default_factory=dict)
    gens: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pool_of: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # -1 = no pool
    gpus: GpuDevices | None = None  # free milli per host and GPU device (gpu_cache.py), when any
    gpu_seen: int = 0  # newest workload id fed to the GPU scorer's learned workload
    _placers: dict[int, IndexedPlacer] = field(default_factory=dict, repr=False)
    _pools: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _sorted_ids: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    # keys ("project/name") of the workloads loaded on each host index (what a reload replaces)
    on_host: dict[int, set[str]] = field(default_factory=dict, repr=False)
    # each of those workloads as the view holds it, (demand's JSON text or None, demand, priority,
    # group key, kind): a reload keeps a row the store still has so (`_reload_workloads`, `_same`)
    loaded: dict[str, tuple[Any, ...]] = field(default_factory=dict, repr=False)

    def positions(self, host_ids: np.ndarray) -> np.ndarray:
        """State index of each host id, -1 for ids the view does not hold (index_of, vectorized)."""
        if self._sorted_ids is None or self._sorted_ids[0].size != len(self.ids):
            arr = np.asarray(self.ids, dtype=np.int64)
            order = np.argsort(arr, kind="stable")
            self._sorted_ids = (arr[order], order)
        keys, order = self._sorted_ids
        if keys.size == 0:
            return np.full(host_ids.size, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(keys, host_ids), keys.size - 1)
        return np.where(keys[pos] == host_ids, order[pos], -1)

    def placer(self, policy: PlacementPolicy) -> IndexedPlacer:
        """The placement index for `policy` on this view's state, built on first use and kept
        current by the state's change notifications (refresh touches what it reloads). Compiled
        kernels from JIT_MIN_HOSTS hosts on (a pool growing past it gets a compiled index), or at
        any size once this process has them loaded."""
        jit = self.state.n >= JIT_MIN_HOSTS or kernels.loaded()
        p = self._placers.get(id(policy))
        if p is None or p.policy is not policy or (jit and not p.index.jit):
            if p is not None:
                p.close()
            p = self._placers[id(policy)] = IndexedPlacer(self.state, policy, jit=jit)
        return p

    def pool_hosts(self, pool_id: int) -> np.ndarray:
        """Host indices of a pool, read-only and reused while the host set is unchanged (the index
        then keys the pool by identity instead of hashing the array for every request)."""
        hosts = self._pools.get(pool_id)
        if hosts is None:
            hosts = np.flatnonzero(self.pool_of[: self.state.n] == pool_id)
            hosts.flags.writeable = False
            self._pools[pool_id] = hosts
        return hosts


class PlacementCache:
    """Holds the view; callers hold `lock` across refresh + place (both are fast). Reentrant:
    a create holds it from its decision through its claim (workloads.py)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.view: PlacementView | None = None
        self.full_loads = 0  # observable in tests: incremental refresh must not rebuild every time
        self._contended: dict[int, float] = {}  # host id -> monotonic time until it is passed over
        self._steered: tuple[Any, np.ndarray, Any] | None = None  # (key, read-only allowed hosts, base)
        self.lost_races = 0  # claims this process lost (observable in tests and benchmarks)
        self.claimed_elsewhere = 0  # hosts seen gaining workloads through another process
        self._reloaded: dict[int, float] = {}  # host id -> monotonic time of its last reload by refresh
        self.deferred = 0  # reloads a refresh put off (`refresh(defer=True)`; observable in tests)

    def invalidate(self) -> None:
        with self.lock:
            self.view = None

    # ---- replicas: steering away from hosts another process is filling ---------------------------
    def lost_race(self, host_id: int) -> None:
        """A claim on the host lost its generation guard: someone else (another replica, mostly)
        changed the host since this process read it. Replicas deciding on the same state choose
        the same host (a packing policy fills the fullest first), so without steering they kept
        colliding: ~60 % of two replicas' claims were Stale. Passed over for CONTENDED_S, the
        hosts split between the replicas by themselves: the loser moves to the next-best host."""
        with self.lock:
            self.lost_races += 1
            self._contended[host_id] = time.monotonic() + CONTENDED_S

    def _claimed_elsewhere(self, host_ids: list[int]) -> None:
        """Hosts that gained workloads since this process last saw them, not through it: another
        replica is placing there. Passed over for CONTENDED_S like a lost race, before a claim is
        lost on them: two replicas deciding on one state choose the same (fullest) hosts, and each
        batch then waited for the other's row locks and reloaded and decided again what it had
        planned there (PostgreSQL). So each replica keeps to the hosts it fills itself; a preference
        only (`steer`). Not on SQLite: a batch there decides under the write lock, on a view no
        one changes before its commit, so there is nothing to gain, and a steered decision
        departs from best fit (with `serve --workers 2` no difference was measured either way)."""
        if not host_ids:
            return
        until = time.monotonic() + CONTENDED_S
        with self.lock:
            self.claimed_elsewhere += len(host_ids)
            for h in host_ids:
                self._contended[h] = until

    def contended(self, host_id: int) -> bool:
        until = self._contended.get(host_id)
        return until is not None and until > time.monotonic()

    def steer(self, snap: PlacementView, req: Request) -> Request | None:
        """`req` without the hosts this process lost a claim on lately, or None when none is. A
        preference only: the caller keeps the first decision when this one finds no host, and
        the ledger's guarded UPDATE re-checks generation and capacity either way. The narrowed
        host list is read-only and reused while the set is unchanged (the placement index keys
        it by identity)."""
        with self.lock:
            now = time.monotonic()
            for h in [h for h, until in self._contended.items() if until <= now]:
                del self._contended[h]
            avoid = sorted(i for i in (snap.index_of.get(h) for h in self._contended) if i is not None)
            if not avoid:
                return None
            base = req.allowed_hosts
            if base is not None and base.flags.writeable:  # a list made for this request (a pin,
                # a pool and labels intersected): nothing identifies it for reuse, so narrow it now
                allowed = np.setdiff1d(base, np.asarray(avoid, dtype=base.dtype))
                allowed.flags.writeable = False
                return replace(req, allowed_hosts=allowed)
            # no list, or a read-only one the view keeps (a pool's hosts): keyed by identity, the
            # entry holding `base` so that its id cannot be reused by another array meanwhile
            key = (id(snap), snap.state.n, tuple(avoid), None if base is None else id(base))
            if self._steered is None or self._steered[0] != key:
                hosts = np.arange(snap.state.n) if base is None else np.asarray(base)
                allowed = np.setdiff1d(hosts, np.asarray(avoid, dtype=hosts.dtype))
                allowed.flags.writeable = False
                self._steered = (key, allowed, base)
            return replace(req, allowed_hosts=self._steered[1])

    def written(self, host_id: int, gen_after: int, demand: Mapping[str, float], group: str | None,
                *, key: str, priority: int = 0, kind: str = "vm", release: bool = False) -> bool:
        """Apply a committed claim (or release) of workload `key`'s `demand` on a host, which moved
        the host to generation `gen_after`, to the view (host totals and the workload table), so
        the next refresh need not reload the host. Only when the view holds the host at
        `gen_after - 1`: every change bumps the generation, so the view's data then plus this
        change is exactly the host at `gen_after`. Otherwise (someone else changed it too)
        nothing is applied and the next refresh reloads it."""
        with self.lock:
            snap = self.view
            h = snap.index_of.get(host_id) if snap is not None else None
            if snap is None or h is None or int(snap.gens[h]) != gen_after - 1:
                return False
            st = snap.state
            if any(r not in st.resources for r in demand):
                return False
            if demand.get("gpu", 0.0) > 0 and snap.gpus is not None:
                return False  # which GPU devices moved is the ledger's: the refresh reloads them
            vec = st.resources.vector(demand)
            table = st.workloads
            if release:
                if key not in table or int(table.host[table.row(key)]) != h \
                        or not np.allclose(table.demand[:, table.row(key)], vec):
                    return False  # the view does not hold it as the ledger did: reload
                table.remove(key)  # its demand leaves the host's totals
                snap.on_host.get(h, set()).discard(key)
                snap.loaded.pop(key, None)
            else:
                if key in table:
                    return False
                table.add(key, h, vec, priority=priority, group=group, kind=kind, force=True)
                snap.on_host.setdefault(h, set()).add(key)
                snap.loaded[key] = (None, dict(demand), priority, group, kind)
            snap.gens[h] = gen_after
            return True

    def unwritten(self, host_id: int, key: str) -> None:
        """Take back a claim of `key` written through (`written`) whose savepoint was rolled back:
        its demand leaves the host and the host's generation in the view goes one back. Claims
        written through on the same host before or after it stay (a batch's other claims on a host
        nobody else changes meanwhile: claim_batch.py), so the view is again the host as the store
        will have it once they commit. When the view no longer holds the claim (the host was
        reloaded), the next refresh reloads it."""
        with self.lock:
            snap = self.view
            h = snap.index_of.get(host_id) if snap is not None else None
            if snap is None or h is None:
                return
            table = snap.state.workloads
            if int(snap.gens[h]) > 0 and key in table and int(table.host[table.row(key)]) == h:
                table.remove(key)  # its demand leaves the host's totals
                snap.on_host.get(h, set()).discard(key)
                snap.loaded.pop(key, None)
                snap.gens[h] -= 1
            else:
                snap.gens[h] = -1  # no generation matches: reloaded

    def reload(self, s: Session, gens: Mapping[int, int]) -> None:
        """Reload these hosts at these generations, {host id: generation}: the caller holds their
        rows' locks (claim_batch.py), so what it reads is exactly the host at that generation.
        What was written through to them is replaced by what the store holds."""
        with self.lock:
            snap = self.view
            ids = [h for h in gens if snap is not None and h in snap.index_of]
            if snap is None or not ids:
                return
            self._reload(s, snap, ids)
            now = time.monotonic()
            for h in ids:
                snap.gens[snap.index_of[h]] = gens[h]
                self._reloaded[h] = now

    def refresh(self, s: Session, *, defer: bool = False) -> PlacementView:
        """The view, its hosts whose generation moved reloaded. `defer` (a PostgreSQL claim batch,
        which locks the hosts it chose and reloads and decides again on one that moved:
        claim_batch.py): a host passed over (`contended`: another replica is filling it) is reloaded
        at most every DEFER_S, not at every refresh; until then the view keeps its older data and
        generation. On two replicas most hosts a refresh found changed were the other replica's:
        ~93 % of the reloads at 250 creates/s, for hosts a decision then steers away from."""
        ids, gens = host_generations(s)
        snap = self.view
        if snap is None:
            return self._full(s, ids, gens)
        at = snap.positions(ids)  # state index per host id, -1 = new
        known = at >= 0
        if int(np.count_nonzero(known)) != len(snap.ids):  # a host was deleted
            return self._full(s, ids, gens)
        moved = np.zeros(ids.size, dtype=bool)
        moved[known] = snap.gens[at[known]] != gens[known]
        if defer and self._contended and moved.any():
            self._defer(ids, moved)
        new, changed = ids[~known].tolist(), ids[moved].tolist()
        if len(new) + len(changed) > FULL_REBUILD_ABOVE:
            return self._full(s, ids, gens)
        if new:
            rows = self._host_rows(s, new)
            names = set(s.scalars(select(HostResourceRow.resource).where(HostResourceRow.host_id.in_(new))))
            if any(n not in snap.state.resources for n in names):
                return self._full(s, ids, gens)
            self._append(snap, rows, self._resources(s, new, snap.state.resources))
        if new or changed:
            idx = snap.positions(np.asarray(changed, dtype=ids.dtype)) if changed else None
            before = snap.state.workload_count[idx].copy() if idx is not None else None
            self._reload(s, snap, new + changed)
            if idx is not None and before is not None and s.get_bind().dialect.name != "sqlite":
                self._claimed_elsewhere([changed[k] for k in
                                         np.flatnonzero(snap.state.workload_count[idx] > before).tolist()])
            seen = ~known | moved
            snap.gens[snap.positions(ids[seen])] = gens[seen]
            now = time.monotonic()
            for h in changed:
                self._reloaded[h] = now
        return snap

    def _defer(self, ids: np.ndarray, moved: np.ndarray) -> None:
        """Clear `moved` for the contended hosts reloaded less than DEFER_S ago (`refresh`)."""
        now = time.monotonic()
        for k in np.flatnonzero(moved).tolist():
            h = int(ids[k])
            if self.contended(h) and now - self._reloaded.get(h, 0.0) < DEFER_S:
                moved[k] = False
                self.deferred += 1

    # ---- loading -----------------------------------------------------------------------------
    def _full(self, s: Session, host_ids: np.ndarray, gens: np.ndarray) -> PlacementView:
        self.full_loads += 1
        res = resource_names(s)
        ids = sorted(host_ids.tolist())
        snap = PlacementView(ClusterState(res, capacity_hint=max(64, len(ids))))
        rows = self._host_rows(s, ids)
        self._append(snap, rows, self._resources(s, ids, res))
        self._reload(s, snap, ids, all_hosts=True)
        snap.gens[snap.positions(host_ids)] = gens
        self.view = snap
        return snap

    @staticmethod
    def _host_rows(s: Session, ids: list[int]) -> list[HostRow]:
        return list(s.scalars(select(HostRow).where(HostRow.id.in_(ids)).order_by(HostRow.id)))

    @staticmethod
    def _resources(s: Session, ids: Iterable[int], res: ResourceSet
                   ) -> dict[int, tuple[dict[str, float], dict[str, float]]]:
        out: dict[int, tuple[dict[str, float], dict[str, float]]] = {}
        q = select(HostResourceRow).where(HostResourceRow.host_id.in_(list(ids)))
        for r in s.scalars(q):
            cap, oc = out.setdefault(r.host_id, ({}, {}))
            cap[r.resource], oc[r.resource] = r.capacity, r.overcommit
        return out

    @staticmethod
    def _append(snap: PlacementView, rows: list[HostRow],
                res: dict[int, tuple[dict[str, float], dict[str, float]]]) -> None:
        st = snap.state
        for row in rows:
            cap, oc = res.get(row.id, ({}, {}))
            spec = HostSpec(row.name, cap, oc, dict(row.labels), row.domain, HostState.parse(row.state),
                            row.max_workloads)
            h = st.add_host(spec)
            snap.ids.append(row.id)
            snap.index_of[row.id] = h
        snap._pools.clear()
        n = st.n
        gens = np.zeros(n, dtype=np.int64)
        gens[: snap.gens.size] = snap.gens
        pools = np.full(n, -1, dtype=np.int64)
        pools[: snap.pool_of.size] = snap.pool_of
        for row in rows:
            pools[snap.index_of[row.id]] = row.pool_id if row.pool_id is not None else -1
        snap.gens, snap.pool_of = gens, pools

    @staticmethod
    def _reload(s: Session, snap: PlacementView, ids: list[int], *, all_hosts: bool = False) -> None:
        """Reload state, allocated amounts, workload counts, group members and workloads of hosts `ids`."""
        st = snap.state
        idx = np.array([snap.index_of[i] for i in ids], dtype=np.int64)
        st.allocated[:, idx] = 0.0
        # the hosts' rows and their resources' allocated amounts in one query (a round trip fewer
        # for every refresh that finds hosts changed: on two replicas, nearly every claim batch)
        for hid, state, count, resource, amount in _on_hosts(s, _HOSTS_OF, ids, all_hosts):
            h = snap.index_of[hid]
            st.state[h] = int(HostState.parse(state))
            st.workload_count[h] = count
            if resource is not None:
                st.allocated[st.resources.index(resource), h] = amount
        _reload_workloads(s, snap, idx.tolist(), ids, all_hosts)
        reload_devices(s, snap, ids, all_hosts=all_hosts)  # per-GPU state of the same hosts
        st.touch(idx.tolist())  # the placement index refreshes these hosts' leaves (only these)


def _on_hosts(s: Session, stmts: tuple[PreparedIn, Prepared], ids: list[int], all_hosts: bool) -> list[Any]:
    """The rows of `stmts` (restricted to the hosts `ids`, for every host) on the DBAPI cursor."""
    return stmts[1].all(s, {}) if all_hosts else stmts[0].all(s, ids)


def _reload_workloads(s: Session, snap: PlacementView, hosts: list[int], ids: list[int],
                      all_hosts: bool) -> None:
    """Make the workload rows (and group member counts) of host indices `hosts` (db ids `ids`) the
    store's holding workloads on them (one query). A workload the view already holds on that host
    exactly as read (`PlacementView.loaded`: demand, priority, group, kind) is kept as it is: a
    host another process changed has lost or gained one or two of its ~tens of workloads, and
    removing and adding back every row was most of a refresh's work."""
    st = snap.state
    table = st.workloads
    loaded = snap.loaded
    gone = {h: snap.on_host.pop(h, set()) for h in hosts}  # loaded there before; what stays is removed
    for counts in st.group_counts.values():
        counts[hosts] = 0
    res = st.resources
    for host_id, project, name, group, text, priority, kind in _on_hosts(s, _WORKLOADS_ON, ids, all_hosts):
        h = snap.index_of.get(host_id) if host_id is not None else None
        if h is None:
            continue
        key = f"{project}/{name}"
        gkey = group_key(project, group) if group is not None else None
        row = table.rows.get(key)
        held = loaded.get(key)
        if row is not None and int(table.host[row]) == h and _same(held, text, priority, gkey, kind):
            gone[h].discard(key)  # as the view holds it: kept
            if held is not None and held[0] is None:  # (compared by value once: by its text from now on)
                loaded[key] = (text, *held[1:])
        else:
            if row is not None:  # changed, or it moved here from a host this refresh did not reload
                was = int(table.host[row])  # (a race): follow it
                snap.on_host.get(was, set()).discard(key)
                gone.get(was, set()).discard(key)
                table.remove(key, account=False)
            demand = json.loads(text)
            vec = np.zeros(len(res))
            for r, v in demand.items():
                if r in res:
                    vec[res.index(r)] = float(v)
            table.add(key, h, vec, priority=int(priority), group=gkey, kind=str(kind), account=False)
            loaded[key] = (text, demand, priority, gkey, kind)
        snap.on_host.setdefault(h, set()).add(key)
        if gkey is not None:
            arr = st.group_counts.get(gkey)
            if arr is None:
                arr = st.group_counts[gkey] = np.zeros(st._cap, dtype=np.int32)
            arr[h] += 1
    for h, keys in gone.items():  # no longer holding there
        for key in keys:
            row = table.rows.get(key)
            if row is not None and int(table.host[row]) == h:
                table.remove(key, account=False)
                loaded.pop(key, None)
    for key in [k for k, a in st.group_counts.items() if not a.any()]:
        del st.group_counts[key]


def _same(was: tuple[Any, ...] | None, text: str, priority: int, gkey: str | None, kind: str) -> bool:
    """Does the view hold a workload as the store has it? `was` is what the view loaded or wrote
    through, (demand's JSON text or None when written through, demand, priority, group key, kind):
    the same JSON text needs no decoding; a claim written through is compared once by value."""
    if was is None or was[2] != priority or was[3] != gkey or was[4] != kind:
        return False
    if was[0] == text:
        return True
    return was[0] is None and json.loads(text) == was[1]


# The reload's statements, built once: (restricted to the hosts in :ids, every host).
_HOSTS_Q = (select(HostRow.id, HostRow.state, HostRow.workloads, HostResourceRow.resource,
                   HostResourceRow.allocated)
            .outerjoin(HostResourceRow, HostResourceRow.host_id == HostRow.id))
_HOSTS_OF = (PreparedIn(_HOSTS_Q.where(HostRow.id.in_(bindparam("ids", expanding=True)))), Prepared(_HOSTS_Q))
_WORKLOADS_Q = (select(WorkloadRow.host_id, ProjectRow.name, WorkloadRow.name, GroupRow.name,
                       cast(WorkloadRow.demand, Text),  # decoded only when the view does not hold it so
                       WorkloadRow.priority, WorkloadRow.kind)
                .join(ProjectRow, ProjectRow.id == WorkloadRow.project_id)
                .outerjoin(GroupRow, GroupRow.id == WorkloadRow.group_id)
                .where(WorkloadRow.state.in_(HOLDING_STATES))
                .order_by(WorkloadRow.id))
_WORKLOADS_ON = (PreparedIn(_WORKLOADS_Q.where(WorkloadRow.host_id.in_(bindparam("ids", expanding=True)))),
                 Prepared(_WORKLOADS_Q.where(WorkloadRow.host_id.isnot(None))))
