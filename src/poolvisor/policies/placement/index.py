"""A placement index: the pipeline's best-fit (or worst-fit) choice without scanning all hosts.

Why it works: for a fixed demand vector, a host's best-fit score and its pass/fail on the
host-local filters (state, capacity, labels, pool, max workloads) depend only on that host's own
columns. So each *placement class* (demand vector + label constraints + pool) gets one row of a
max-forest (`forest.MaxForest`, two levels of ~sqrt(H)) whose leaf h is h's raw score, or -inf
when a host-local filter rejects h. An allocation or release on host h changes leaf h in every
row; ClusterState notifies the index, which refreshes that leaf in all rows at once (about 15
numpy calls, independent of H and of the number of classes) before the next query.

Exactness: the pipeline normalizes scores min-max over the candidates, which can fold values a
few ulps below the maximum onto it, and maps a near-constant score vector to zeros (then the
lowest candidate wins). The index therefore looks for the first leaf within `delta` of the root
maximum, with `delta` = 1e-9 * max(1, |max|, |lowest score seen in the row|), far above any such
rounding, and accepts it only if its value *is* the maximum; a near-tie goes to an exact scan of
the row. Request-level filters (anti-affinity, domain spread) are applied to the pick: a rejected
host is excluded from the row temporarily and the row re-queried (past a few, all rejected hosts
are excluded at once). Whatever the index cannot express (other scorers, plug-in filters, soft
groups with members, hard affinity with members, odd demands, classes seen once) goes to
`scan.choose`, which runs the pipeline's own filters and scorers.

Keep-scarce-free (scarce.py): with a weight above the primary scorer's, the pipeline's choice is
the best host among those that strand no scarce resource, if any passes the filters, else the
best of all. A class whose demand leaves some scarce resource unused therefore keeps only hosts
without such free resources in its row (one more leaf test, `capacity - allocated > eps` on those
resources); when that row has no acceptable host, or a near-tie, the exact scan decides.
"""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poolvisor.domain.models import GroupPolicy, HostState
from poolvisor.policies.placement import kernels
from poolvisor.policies.placement.forest import NEG, POS, MaxForest
from poolvisor.policies.placement.members import MemberHosts
from poolvisor.policies.placement.pipeline import PlacementPolicy, normalize, top_order
from poolvisor.policies.placement.request import Request
from poolvisor.policies.placement.scan import choose, first_best, weighted_total
from poolvisor.policies.placement.scarce import FREE_EPS, KeepScarceFreeScorer, scarce_rows
from poolvisor.state.cluster import ClusterState

LEAF_FILTERS = frozenset({"host-state", "capacity", "labels", "pool", "max-workloads"})
REQUEST_FILTERS = frozenset({"affinity", "domain-spread"})
PRIMARY_SCORERS = {"best-fit": 1.0, "worst-fit": -1.0}  # leaf = sign * mean post-placement fraction
NEUTRAL_SCORERS = frozenset({"soft-affinity"})  # zero unless the request names a soft group
# A scorer the index does not key on may still join a policy the index serves: give it a method
# `constant_for(view, req) -> bool`, True when its scores are the same on every host for this
# request (normalization then maps them to zeros); requests where it is False go to the exact
# pipeline, and their explanation says so.
CONSTANT_HOOK = "constant_for"
SCARCE_SCORER = KeepScarceFreeScorer.name  # served as a leaf filter when it outweighs the primary
MAX_SCARCE_RATIO = 1e4  # its weight / the primary's: more would let rounding blur near-ties
NEAR_TIE = 1e-9
TOP_SLACK = 61  # hosts ranked beyond k before a ranking goes to the exact row scan (ties)
# class rows allocated up front while their leaves fit this budget (~40 rows at 100k hosts with
# keep-scarce-free): growing the forests later copies and first-touches them inside a request
ROW_BUDGET_BYTES = 64 << 20
JIT_REQUERIES = 16  # single exclusions tried by the compiled query before the bulk exclusion
_Term = tuple[float, float | None]  # a scorer's weight and weighted constant (None: the primary)
_LISTED = (GroupPolicy.ANTI_AFFINITY, GroupPolicy.DOMAIN_SPREAD)  # policies whose member hosts rank lists
_UP = int(HostState.UP)  # comparing numpy ints with the IntEnum costs microseconds


@dataclass(frozen=True)
class IndexPlan:
    """What of a policy the index can serve; `reason` says why not when `supported` is False."""

    supported: bool
    reason: str = ""
    sign: float = 1.0
    primary: str = ""
    filters: frozenset[str] = field(default_factory=frozenset)
    scarce: tuple[str, ...] = ()  # resources the keep-scarce-free scorer protects (empty: no scorer)

    @classmethod
    def of(cls, policy: PlacementPolicy) -> IndexPlan:
        names = [f.name for f in policy._filters]
        unknown = [n for n in names if n not in LEAF_FILTERS | REQUEST_FILTERS]
        if unknown:
            return cls(False, f"filter(s) the index cannot express: {', '.join(unknown)}")
        primaries = [(s.name, w) for s, w in policy._scorers if s.name in PRIMARY_SCORERS]
        scarce = [(s, w) for s, w in policy._scorers if s.name == SCARCE_SCORER]
        known = PRIMARY_SCORERS.keys() | NEUTRAL_SCORERS | {SCARCE_SCORER}
        others = [s.name for s, _w in policy._scorers
                  if s.name not in known and not callable(getattr(s, CONSTANT_HOOK, None))]
        if others:
            return cls(False, f"scorer(s) the index cannot key on: {', '.join(others)}")
        if len(primaries) != 1 or len(scarce) > 1:
            return cls(False, "needs exactly one of best-fit/worst-fit (plus soft-affinity, "
                       "keep-scarce-free and scorers constant per request)")
        if not all(np.isfinite(w) for _s, w in policy._scorers) or primaries[0][1] <= 0:
            return cls(False, "scorer weights must be finite and the primary one positive")
        name, weight = primaries[0]
        protected: tuple[str, ...] = ()
        if scarce:
            if not weight < scarce[0][1] <= MAX_SCARCE_RATIO * weight or "capacity" not in names:
                return cls(False, "keep-scarce-free must outweigh the primary scorer (at most "
                           f"{MAX_SCARCE_RATIO:g}x) and the capacity filter must be on")
            protected = tuple(getattr(scarce[0][0], "scarce", ()))
        return cls(True, "", PRIMARY_SCORERS[name], name, frozenset(names), protected)


@dataclass(slots=True)
class Ranking:
    """The index's answer with what a summary explanation needs, equal to the pipeline's figures.

    `hosts` are the top candidates in the pipeline's order (the first is the choice; empty when no
    host passes), `totals`/`scores` their weighted and per-scorer normalized scores; `passed` is how
    many hosts pass the host-local filters and `rejected` what each request-level filter then
    removes (reason -> count)."""

    hosts: list[int]
    totals: list[float]
    scores: list[dict[str, float]]
    passed: int
    rejected: dict[str, dict[str, int]]
    candidates: int
    path: str  # "tree" or "row scan"


class PlacementIndex:
    """Per-class max-forest rows over the hosts of one ClusterState, kept in sync by notification."""

    def __init__(self, state: ClusterState, policy: PlacementPolicy, *, fanout: int | None = None,
                 max_classes: int = 64, admit_after: int = 1, max_requeries: int = 4,
                 point_updates: int = 8, jit: bool = True, top_slack: int = TOP_SLACK):
        self.state, self.policy = state, policy
        self.top_slack = max(0, top_slack)
        self.plan = IndexPlan.of(policy)
        self.fanout, self.max_classes = fanout, max(1, max_classes)
        self.admit_after, self.max_requeries = max(1, admit_after), max(0, max_requeries)
        self.point_updates = point_updates  # up to this many changed hosts: one at a time
        self.jit = jit and kernels.available()
        if self.jit:
            self._k_update, self._k_pick = kernels.update(), kernels.pick()
            self._k_build, self._k_rank = kernels.build_row(), kernels.rank()
        self._top_hosts, self._top_values = np.zeros(0, dtype=np.int64), np.zeros(0)
        self._fout, self._iout = np.zeros(4), np.zeros(3, dtype=np.int64)  # kernels.served_rank's out
        self._no_hosts = np.zeros(0, dtype=np.int64)
        self._requeries = np.zeros(1, dtype=np.int64)
        self._no_groups = np.zeros(1, dtype=np.int32)
        self._no_domains = np.zeros(1, dtype=bool)
        self._stats = {"tree": 0, "row_scan": 0, "full_scan": 0, "rebuilds": 0, "classes": 0}
        self._request_filters = [f for f in policy._filters if f.name in REQUEST_FILTERS]
        # how summary explanations name the filters: the host-local ones together, then the others
        self.local_filters = "+".join(f.name for f in policy._filters if f.name in LEAF_FILTERS)
        self.request_filters = [f.name for f in policy._filters if f.name not in LEAF_FILTERS]
        used = self.plan.filters
        self._check_state, self._check_count = "host-state" in used, "max-workloads" in used
        self._check_capacity = "capacity" in used
        self._has_soft = any(s.name == "soft-affinity" for s, _w in policy._scorers)
        self._conditional = [s for s, _w in policy._scorers if s.name not in PRIMARY_SCORERS
                             and s.name not in NEUTRAL_SCORERS and s.name != SCARCE_SCORER]
        self._pool_keys: dict[int, tuple[np.ndarray, Hashable]] = {}
        self._members = MemberHosts()  # per group, the hosts holding members (for rank)
        # the primary scorer's weight: a ranking's total is weight * normalized primary score
        self._weight = next((w for s, w in policy._scorers if s.name == self.plan.primary), 1.0)
        self._layout = [(s.name, w, s.name == self.plan.primary) for s, w in policy._scorers]
        self._constants = {scarce: self._constant_terms(scarce) for scarce in (False, True)}
        # scarce resources of this state the policy protects: a leaf test per class (see above)
        self._scarce_rows = scarce_rows(state.resources, self.plan.scarce)
        self._check_scarce = bool(self._scarce_rows.size)
        # what a ranking adds to a kept host's total when some candidate strands scarce resources
        # (the scorer's normalized 1.0 times its weight; 0.0 without the scorer)
        self._scarce_weight = next((w for s, w in policy._scorers if s.name == SCARCE_SCORER), 0.0)
        self._slot: dict[Hashable, int] = {}
        self._seen: dict[Hashable, int] = {}
        self._keys: list[Hashable] = []
        self._class_request: dict[Hashable, Request] = {}
        self._last_use: list[int] = []
        self._tick = 0
        self._dirty: list[int] = []
        self._reset(state.n)
        ref = weakref.ref(self)

        def on_change(hosts: Sequence[int], _ref: weakref.ref[PlacementIndex] = ref) -> None:
            idx = _ref()
            if idx is None:
                state.unwatch(on_change)
            else:
                idx._changed(hosts)

        self._watcher = on_change
        state.watch(on_change)

    @property
    def stats(self) -> dict[str, int]:
        """How requests were decided: tree, row_scan, full_scan; requeries, rebuilds, classes."""
        return {**self._stats, "requeries": int(self._requeries[0])}

    # ---- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        self.state.unwatch(self._watcher)

    def invalidate(self, hosts: Sequence[int] | None = None) -> None:
        """Hosts (or, with None, everything) changed behind ClusterState's back."""
        if hosts is None:
            self._gen = -1
        else:
            self._dirty.extend(int(h) for h in hosts)
            self._members.changed([int(h) for h in hosts])

    def _changed(self, hosts: Sequence[int]) -> None:
        self._dirty.extend(hosts)
        self._members.changed(hosts)
        self._gen = self.state.generation
        if len(self._dirty) > 4096:  # a bulk change: one rebuild beats many point updates
            self._gen, self._dirty = -1, []

    def _reset(self, n: int) -> None:
        st, r = self.state, len(self.state.resources)
        per_row = max(1, n) * 8 * (2 if self._check_scarce else 1)  # leaf bytes of one class row
        cap = min(self.max_classes, max(8, ROW_BUDGET_BYTES // per_row))
        self.forest = MaxForest(n, cap, self.fanout)
        # with keep-scarce-free: per class, the hosts left out of its row because they strand a
        # scarce resource (their scores bound the pipeline's normalization; see rank)
        self.spare = MaxForest(n, cap if self._check_scarce else 1, self.fanout)
        self._demand = np.zeros((cap, r))
        self._tol = np.full((cap, r), NEG)  # demand - 1e-9 where demanded (the capacity test), else -inf
        # FREE_EPS on the scarce resources a class leaves unused (a host with more free is not in
        # its row but in its spare row), else +inf
        self._ptol = np.full((cap, r), np.inf)
        self._demanded = np.zeros((cap, r), dtype=bool)
        self._count = np.ones(cap)  # demanded resources per class
        self._mask_t = np.ones((n, cap), dtype=bool)  # labels & pool, host-major: one row per host
        self._low = np.zeros(cap)  # lowest score ever computed for a row: with the root, bounds hi - lo
        self._negs = np.full(cap, NEG)
        # hosts grouped by which resources they have (capacity > 0): the scorer's valid rows
        patterns, pid = np.unique(st.capacity.T > 0, axis=0, return_inverse=True)
        self._patterns: np.ndarray = patterns.reshape(-1, r)
        self._pattern_of: np.ndarray = pid.reshape(-1)
        # host-major copies of the (static) capacities: one contiguous row per host
        self._cap_t = np.ascontiguousarray(st.capacity.T)
        self._safe_t = np.where(self._cap_t > 0, self._cap_t, 1.0)
        self._n = n
        self._gen = st.generation
        self._dirty = []
        self._members.reset()
        self._rows = 0  # slots in use are [0, _rows)
        self._views()

    def _views(self) -> None:
        """Row-sliced views used by the hot path (renewed when rows are added or arrays grow)."""
        rows = self._rows
        self._hot = (self._demand[:rows], self._tol[:rows], self._low[:rows])
        # per capacity pattern p and row t: 1.0 where a demanded resource is scored (capacity > 0),
        # and how many are (at least 1), as the scorer counts them
        valid = self._demanded[None, : self.forest.rows] & self._patterns[:, None, :]
        self._valid = valid.astype(np.float64)
        self._scored = np.maximum(valid.sum(axis=2), 1).astype(np.float64)
        self._leaf_args = self._kernel_args()

    def _kernel_args(self) -> tuple[Any, ...]:
        """The arguments kernels.leaf_update/row_build/served_rank take after (host or row, rows or
        hosts), packed once: fetching ~30 attributes per call costs more than the update itself.
        Renewed by _views (rows added, arrays grown) and by _leaf when the state's arrays moved."""
        st, f, sp = self.state, self.forest, self.spare
        return (st._allocated, st._state, st._max_count, st._count, self._check_state, self._check_count,
                self._pattern_of, self._valid, self._cap_t, self._safe_t, self._demand, self._tol,
                self._mask_t, self._low, self.plan.sign < 0, self._check_capacity, f.l0, f.l1x, f.l2x,
                f.count, self._ptol, self._check_scarce, sp.l0, sp.l1x, sp.l2x, sp.count, f.fanout,
                f.fanout2)

    def _leaf(self) -> tuple[Any, ...]:
        """_leaf_args, renewed if the state replaced an array it holds (growth)."""
        a, st = self._leaf_args, self.state
        if a[0] is not st._allocated or a[1] is not st._state or a[2] is not st._max_count \
                or a[3] is not st._count:
            a = self._leaf_args = self._kernel_args()
        return a

    def _grow_slots(self, need: int) -> None:
        cap = self.forest.rows
        if need <= cap:
            return
        new = min(self.max_classes, max(need, 2 * cap))

        def grow(a: np.ndarray, fill: float | bool) -> np.ndarray:
            out = np.full((new, *a.shape[1:]), fill, dtype=a.dtype)
            out[:cap] = a
            return out

        self.forest.grow_rows(new)
        if self._check_scarce:
            self.spare.grow_rows(new)
        self._demand, self._tol = grow(self._demand, 0.0), grow(self._tol, NEG)
        self._demanded, self._count = grow(self._demanded, False), grow(self._count, 1.0)
        self._ptol = grow(self._ptol, np.inf)
        self._low, self._negs = grow(self._low, 0.0), grow(self._negs, NEG)
        self._mask_t = grow(self._mask_t.T, True).T.copy()

    # ---- leaves ----------------------------------------------------------------------------------
    def _leaves(self, rows: slice | np.ndarray, hosts: np.ndarray | slice
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """(rows, k) leaf values for the given hosts, the same for the spare rows (hosts that pass
        the host-local filters but strand a scarce resource; None without keep-scarce-free), and
        each row's lowest score among them.

        Mirrors the best-fit scorer operation by operation (same float results) and the host-local
        filters (same comparisons), for any capacities."""
        st = self.state
        dem, tol, demanded = self._demand[rows], self._tol[rows], self._demanded[rows]
        cap = st.capacity[:, hosts]
        alloc = st.allocated[:, hosts]
        pos = cap > 0
        frac = (alloc[None] + dem[:, :, None]) / np.where(pos, cap, 1.0)[None]
        valid = pos[None] & demanded[:, :, None] & ~np.isnan(frac)  # the scorer skips NaN fractions
        total = np.cumsum(np.where(valid, frac, 0.0), axis=1)[:, -1]  # sequential, like sum(axis=0)
        score = self.plan.sign * (total / np.maximum(valid.sum(axis=1), 1))
        ok: np.ndarray = np.asarray(self._mask_t[hosts]).T[rows]
        if self._check_capacity:
            ok = ok & ~((cap - alloc)[None] < tol[:, :, None]).any(axis=1)  # as the filter: NaN passes
        if self._check_state:
            ok = ok & (st.state[hosts] == _UP)[None]
        if self._check_count:
            lim = st.max_workloads[hosts]
            ok = ok & ~((lim > 0) & (st.workload_count[hosts] >= lim))[None]
        low = np.fmin.reduce(score, axis=1) if score.shape[1] else np.zeros(score.shape[0])
        if not self._check_scarce:
            return np.where(ok, score, NEG), None, low
        # same subtraction and comparison as KeepScarceFreeScorer: such hosts go to the spare row
        strands = ((cap - alloc)[None] > self._ptol[rows][:, :, None]).any(axis=1)
        return np.where(ok & ~strands, score, NEG), np.where(ok & strands, score, NEG), low

    def _update_host(self, h: int) -> None:
        """Refresh leaf h in every row: the hot path after each allocation."""
        st, rows, f, sp = self.state, self._rows, self.forest, self.spare
        if self.jit:  # one compiled call; the state's private arrays avoid view creation
            self._k_update(h, rows, *self._leaf())
            return
        # numpy: about 13 calls on (rows, R) arrays
        if (self._check_state and st._state[h] != _UP) or (
            self._check_count and 0 < st._max_count[h] <= st._count[h]
        ):
            f.set_host(h, self._negs[:rows], rows)
            if self._check_scarce:
                sp.set_host(h, self._negs[:rows], rows)
            return
        p = int(self._pattern_of[h])
        demand, tol, low = self._hot
        a = st._allocated[:, h]
        # (a + d) / cap per resource, zero where not scored (x * 0.0 == 0.0, x * 1.0 == x exactly),
        # summed left to right like the scorer's sum(axis=0), divided by the scored count
        frac = (a + demand) / self._safe_t[h]
        nan = np.isnan(frac)
        if nan.any():  # the scorer skips NaN fractions (x * 0.0 would stay NaN)
            valid = (self._valid[p, :rows] > 0) & ~nan
            score = np.where(valid, frac, 0.0).cumsum(axis=1)[:, -1] / np.maximum(valid.sum(axis=1), 1)
        else:
            score = (frac * self._valid[p, :rows]).cumsum(axis=1)[:, -1] / self._scored[p, :rows]
        if self.plan.sign < 0:
            score = -score
        ok = self._mask_t[h, :rows]
        if self._check_capacity:
            ok = ok & ~((self._cap_t[h] - a) < tol).any(axis=1)
        np.fmin(low, score, out=low)
        if self._check_scarce:
            strands = ((self._cap_t[h] - a) > self._ptol[:rows]).any(axis=1)
            sp.set_host(h, np.where(ok & strands, score, NEG), rows)
            ok = ok & ~strands
        f.set_host(h, np.where(ok, score, NEG), rows)

    def _build_row(self, t: int) -> None:
        """Every leaf of row t (a class just admitted): one compiled pass, or numpy over (R, H)."""
        if self.jit:
            self._k_build(t, self._n, *self._leaf())
            return
        vals, spare, low = self._leaves(np.array([t]), slice(0, self._n))
        self.forest.set_row(t, vals[0])
        if spare is not None:
            self.spare.set_row(t, spare[0])
        self._low[t] = low[0]

    def sync(self, defer: bool = False) -> None:
        """Bring every row up to date with the state (point updates, or a rebuild when needed).
        `defer` (rank, with the JIT): leave a single changed host to kernels.served_rank."""
        st = self.state
        if st.n != self._n or st.generation != self._gen:
            self._stats["rebuilds"] += 1
            keys = list(self._keys)
            reqs = self._class_request
            self._reset(st.n)
            self._slot, self._keys, self._last_use, self._class_request = {}, [], [], {}
            for k in keys:  # re-admit the same classes
                self._admit(k, reqs[k])
            return
        dirty = self._dirty
        if not dirty or (defer and self.jit and len(dirty) == 1 and self._rows):
            return
        rows = self._rows
        if rows:
            if len(dirty) == 1:
                self._update_host(dirty[0])
            elif len(dirty) <= self.point_updates:  # a release and an allocation, say
                for h in set(dirty):
                    self._update_host(h)
            else:
                hs = np.unique(np.asarray(dirty, dtype=np.int64))
                vals, spare, low = self._leaves(slice(0, rows), hs)
                np.fmin(self._low[:rows], low, out=self._low[:rows])
                self.forest.set_hosts(hs, vals, rows)
                if spare is not None:
                    self.spare.set_hosts(hs, spare, rows)
        dirty.clear()

    # ---- classes -------------------------------------------------------------------------------
    def _key(self, req: Request) -> Hashable:
        used = self.plan.filters
        labels = None
        if (req.required_labels or req.forbidden_labels) and "labels" in used:
            labels = (tuple(sorted(req.required_labels.items())), tuple(sorted(req.forbidden_labels.items())))
        pool = None
        if req.allowed_hosts is not None and "pool" in used:
            pool = self._pool_key(np.asarray(req.allowed_hosts))
        d = req.demand
        return (d.dtype, d.tobytes(), labels, pool)  # the dtype itself: hashing its .str costs more

    def _pool_key(self, a: np.ndarray) -> Hashable:
        """The bytes of an allowed-hosts array; remembered for read-only arrays (a cache's pool list,
        reused by every request for that pool), which cannot change behind the key."""
        if a.flags.writeable:
            return (a.dtype.str, a.shape, a.tobytes())
        hit = self._pool_keys.get(id(a))
        if hit is not None and hit[0] is a:
            return hit[1]
        if len(self._pool_keys) >= 256:
            self._pool_keys.clear()
        key = (a.dtype.str, a.shape, a.tobytes())
        self._pool_keys[id(a)] = (a, key)  # holding `a` keeps its id from being reused
        return key

    def _indexable(self, req: Request) -> bool:
        d = req.demand
        r = len(self.state.resources)
        return (d.shape == (r,) and d.dtype.kind in "fiu" and bool(np.all(np.isfinite(d)))
                and bool(np.all(d >= 0)) and bool(np.any(d > 0)))

    def _slot_for(self, req: Request) -> int:
        """The class row for this request, admitting it on its `admit_after`-th sighting; -1 = scan."""
        key = self._key(req)
        t = self._slot.get(key)
        if t is not None:
            self._tick += 1
            self._last_use[t] = self._tick
            return t
        seen = self._seen.get(key, 0) + 1
        if seen < self.admit_after or not self._indexable(req):
            if len(self._seen) > 65536:
                self._seen.clear()
            self._seen[key] = seen
            return -1
        self._seen.pop(key, None)
        return self._admit(key, req)

    def _admit(self, key: Hashable, req: Request) -> int:
        if self._rows < self.max_classes:
            t = self._rows
            self._grow_slots(t + 1)
            self._rows += 1
            self._keys.append(key)
            self._last_use.append(0)
        else:  # evict the least recently used class
            t = int(np.argmin(self._last_use))
            old = self._keys[t]
            del self._slot[old]
            self._class_request.pop(old, None)
            self._keys[t] = key
        self._slot[key] = t
        self._class_request[key] = req
        self._tick += 1
        self._last_use[t] = self._tick
        d = np.asarray(req.demand, dtype=np.float64)
        self._demand[t] = d
        self._demanded[t] = d > 0
        self._tol[t] = np.where(d > 0, d - 1e-9, NEG)
        self._count[t] = max(1, int(np.count_nonzero(d > 0)))
        unused = self._scarce_rows[d[self._scarce_rows] <= 0] if self._check_scarce else self._scarce_rows
        self._ptol[t] = np.inf
        self._ptol[t, unused] = FREE_EPS
        self._mask_t[:, t] = self._host_mask(req)
        self._views()
        self._build_row(t)
        self._stats["classes"] += 1
        return t

    def _host_mask(self, req: Request) -> np.ndarray:
        """Labels and pool: the per-class part of the leaf filters (same masks as the filters build)."""
        st, used, n = self.state, self.plan.filters, self._n
        mask = np.ones(n, dtype=bool)
        if "labels" in used:
            for k, v in req.required_labels.items():
                mask &= st.labels.mask(k, v, n)
            for k, v in req.forbidden_labels.items():
                mask &= ~st.labels.mask(k, v, n)
        if "pool" in used and req.allowed_hosts is not None:
            allowed = np.zeros(n, dtype=bool)
            allowed[req.allowed_hosts] = True
            mask &= allowed
        return mask

    # ---- queries -------------------------------------------------------------------------------
    def _route(self, req: Request) -> str | tuple[np.ndarray | None, np.ndarray | None]:
        """The request-level filters the index applies to this request, as (anti-affinity member
        counts, domain-spread member counts), or why the exact pipeline must decide it."""
        if not self.plan.supported:
            return self.plan.reason
        for scorer in self._conditional:
            if not getattr(scorer, CONSTANT_HOOK)(self.state, req):
                return f"scorer {scorer.name} varies across hosts for this request"
        group, gpol = req.group, req.group_policy
        counts = self.state.group_counts.get(group) if group else None
        if counts is not None and gpol is not None and gpol is not GroupPolicy.ANTI_AFFINITY:
            if gpol is GroupPolicy.DOMAIN_SPREAD:
                if "domain-spread" in self.plan.filters:
                    return None, counts
            elif gpol is GroupPolicy.AFFINITY:
                if "affinity" in self.plan.filters:
                    return "hard affinity group with members (the candidates are the group's hosts)"
            elif self._has_soft:
                return "soft affinity group with members (the soft-affinity scorer varies across hosts)"
            return None, None
        anti = counts if gpol is GroupPolicy.ANTI_AFFINITY and "affinity" in self.plan.filters else None
        return anti, None

    def why_not(self, req: Request) -> str:
        """Why `rank`/`choose` would hand this request (of a class not admitted) to the exact pipeline."""
        if not self._indexable(req):
            return "demand the index cannot key on (zero, negative or not finite)"
        return f"placement class seen fewer than {self.admit_after} times (not indexed yet)"

    def choose(self, req: Request) -> int:
        """The host `pipeline.place(state, req, policy)` would choose, or -1 when none passes."""
        if self.plan.supported:
            self.sync()
        route = self._route(req)
        if isinstance(route, str):
            self._stats["full_scan"] += 1
            return choose(self.state, req, self.policy)
        return self._choose_indexed(req, *route)

    def _choose_indexed(self, req: Request, anti: np.ndarray | None, spread: np.ndarray | None) -> int:
        t = self._slot_for(req)
        if t < 0:
            self._stats["full_scan"] += 1
            return choose(self.state, req, self.policy)
        taken = None
        if spread is not None:
            taken = np.zeros(len(self.state.domain_names), dtype=bool)
            taken[self.state.domains[spread[: self.state.n] > 0]] = True
        h = self._tree_pick(t, anti, taken)
        if h < 0 and self._check_scarce and self.spare.count[t] > 0:
            # no acceptable host that strands nothing (or a near-tie), but hosts passing the
            # host-local filters were left out of the row: the pipeline decides among all hosts
            self._stats["full_scan"] += 1
            return choose(self.state, req, self.policy)
        if h == -2:
            self._stats["row_scan"] += 1
            return self._row_scan(t, req)
        self._stats["tree"] += 1
        return h

    def _tree_pick(self, t: int, anti: np.ndarray | None, taken: np.ndarray | None) -> int:
        """Host from row t, excluding hosts the request-level filters reject; -1 none, -2 undecided.

        Rejected picks are excluded one at a time (a few numpy calls each, or the compiled kernel);
        past that every host the request-level filters reject is excluded at once (O(H))."""
        forest = self.forest
        singles = self.max_requeries
        if self.jit:  # re-queries are counted in self._requeries
            h = self._k_pick(t, forest.l0, forest.l1, forest.fanout, self._low, NEAR_TIE,
                             self._no_groups if anti is None else anti, anti is not None,
                             self._no_domains if taken is None else taken, self.state._domain,
                             taken is not None, JIT_REQUERIES, self._requeries)
            if h != -3:
                return h
            singles = 0
        hi = forest.top(t)
        if hi == NEG:
            return -1
        if hi != hi:  # NaN score somewhere: let the exact scan decide
            return -2
        # the normalization can round values within ~4 ulp * (hi - lo) of hi onto hi; lo >= low
        delta = NEAR_TIE * max(1.0, abs(hi), abs(float(self._low[t])))
        h = forest.first_at_least(t, hi - delta)
        if forest.leaf(t, h) != hi:
            return -2  # a near-tie below the maximum: normalization decides
        if anti is None and taken is None:
            return h
        domains = self.state.domains
        if (anti is None or anti[h] == 0) and (taken is None or not taken[domains[h]]):
            return h
        saved: list[tuple[int, int, float, float, float]] = []
        bulk = None
        try:
            for attempt in range(singles + 1):
                if attempt < singles:
                    saved.append(forest.exclude(t, h))
                else:
                    bad = np.zeros(self._n, dtype=bool)
                    if anti is not None:
                        bad |= anti[: self._n] > 0
                    if taken is not None:
                        bad |= taken[domains]
                    bulk = forest.exclude_many(t, np.flatnonzero(bad))
                self._requeries[0] += 1
                hi = forest.top(t)
                if hi == NEG:
                    return -1
                h = forest.first_at_least(t, hi - delta)
                if forest.leaf(t, h) != hi:
                    return -2
                if (anti is None or anti[h] == 0) and (taken is None or not taken[domains[h]]):
                    return h
            raise AssertionError("a bulk exclusion leaves only acceptable hosts")  # pragma: no cover
        finally:
            if bulk is not None:
                forest.restore_many(bulk)
            for s in reversed(saved):
                forest.restore(s)

    def _row_scan(self, t: int, req: Request) -> int:
        """Exact choice from row t's leaves (the host-local filters and raw scores, already computed)."""
        row = self.forest.row(t)
        alive = row != NEG
        for flt in self._request_filters:
            alive &= flt(self.state, req).mask
        cand = np.flatnonzero(alive)
        if cand.size == 0:
            return -1
        raw = row[cand]  # sign * mean fraction == the primary scorer's raw score
        return first_best(cand, weighted_total(self.state, req, self.policy, cand, (self.plan.primary, raw)))

    # ---- ranked answers (for explanations) -------------------------------------------------------
    def rank(self, req: Request, k: int) -> Ranking | str:
        """The pipeline's top `k` for `req` with its candidate counts, or why the exact pipeline
        must decide. Hosts a request-level filter rejects are excluded from the row for the query
        (the group's member hosts come from `members.MemberHosts`)."""
        if self.plan.supported:
            self.sync(defer=True)  # with the JIT, one changed host is updated by the ranking call
        route = self._route(req)
        if isinstance(route, str):
            self._stats["full_scan"] += 1
            return route
        t = self._slot_for(req)
        if t < 0:
            self._stats["full_scan"] += 1
            return self.why_not(req)
        anti, spread = route
        forest, n = self.forest, self._n
        bad, name, reason = None, "", ""
        owner = self.state.group_counts
        if anti is not None and req.group:
            bad = self._members.hosts(req.group, anti, n, owner)
            name, reason = "affinity", f"anti-affinity group {req.group} already here"
        elif spread is not None and req.group:
            domains = self.state.domains
            taken = np.unique(domains[self._members.hosts(req.group, spread, n, owner)])
            bad = self._members.in_domains(domains, taken)
            name, reason = "domain-spread", f"failure domain already holds group {req.group}"
        elif req.group and req.group_policy in _LISTED and req.group not in owner:
            self._members.absent(req.group, owner)  # its first member: the next look is incremental
        if self.jit:
            nan, top, removed, s_passed, s_removed = self._rank_compiled(t, k, bad)
            stranding = s_passed - s_removed
            if nan:
                self._stats["full_scan"] += 1
                return "a NaN score among the hosts with free scarce resources"
        else:
            s_lo, s_hi, s_passed, s_removed = self._spare_bounds(t, bad)
            stranding = s_passed - s_removed  # candidates that strand a scarce resource (not in row t)
            if stranding and not (s_lo == s_lo and s_hi == s_hi):
                self._stats["full_scan"] += 1
                return "a NaN score among the hosts with free scarce resources"
            # with such candidates the keep-scarce-free scorer normalizes to 1 on every host of row t
            post = self._scarce_weight * 1.0 if stranding else 0.0
            top, removed = self._top_tree(t, k, bad, s_lo, s_hi, post)
        if stranding and (top is None or len(top[0]) < k):
            # the ranking reaches hosts with free scarce resources, or needs the normalization
            # over all candidates: the pipeline ranks
            self._stats["full_scan"] += 1
            return "fewer than top_k candidates keep scarce resources free, or a wide tie"
        if top is None:  # a NaN score or a wide tie: the pipeline's own normalization on the row
            self._stats["row_scan"] += 1
            excluded = forest.exclude_many(t, bad) if bad is not None and bad.size else None
            try:
                hosts, totals, scores = self._top_row(t, req, k)
            finally:
                if excluded is not None:
                    forest.restore_many(excluded)
            path = "row scan"
        else:
            self._stats["tree"] += 1
            hosts, values, lo, hi = top
            totals, scores = self._normalized(values, lo, hi, stranding > 0)
            path = "tree"
        removed += s_removed
        rejected = {name: {reason: removed}} if removed else {}
        passed = int(forest.count[t]) + s_passed
        return Ranking(hosts, totals, scores, passed, rejected, passed - removed, path)

    def _rank_compiled(self, t: int, k: int, bad: np.ndarray | None
                       ) -> tuple[bool, tuple[list[int], list[float], float, float] | None, int, int, int]:
        """_spare_bounds and _top_tree (and the deferred update of one changed host) in one
        compiled call (kernels.served_rank): (a spare host has a NaN score, _top_tree's top, row
        candidates in `bad`, spare-row hosts, spare-row hosts in `bad`)."""
        dirty = self._dirty
        h = dirty[0] if dirty else -1
        if len(dirty) > 1:  # sync(defer=True) leaves at most one
            self.sync()
            h = -1
        limit = k + self.top_slack
        if self._top_hosts.size < limit:
            self._top_hosts, self._top_values = np.zeros(limit, dtype=np.int64), np.zeros(limit)
        fout, iout = self._fout, self._iout
        m = self._k_rank(h, self._rows, *self._leaf(), t, k, self._weight, limit,
                         self._no_hosts if bad is None else bad, self._top_hosts, self._top_values, fout,
                         iout, self._scarce_weight)
        if h >= 0:
            dirty.clear()
        removed, s_passed, s_removed = iout.tolist()  # one call for the three (Python ints)
        if m < 0:
            return m == -4, None, removed, s_passed, s_removed
        if m == 0:
            return False, ([], [], NEG, NEG), removed, s_passed, s_removed
        lo, hi, _s_lo, _s_hi = fout.tolist()
        return (False, (self._top_hosts[:m].tolist(), self._top_values[:m].tolist(), lo, hi), removed,
                s_passed, s_removed)

    def _spare_bounds(self, t: int, bad: np.ndarray | None) -> tuple[float, float, int, int]:
        """Lowest and highest score of class t's spare row (hosts passing the host-local filters
        that strand a scarce resource) without the hosts `bad`, how many hosts it holds and how
        many of them are in `bad`; (+inf, -inf, 0, 0) when it is empty."""
        if not self._check_scarce or self.spare.count[t] == 0:
            return POS, NEG, 0, 0
        sp = self.spare
        gone, removed = None, 0
        if bad is not None and bad.size:
            blk, off = np.divmod(bad, sp.fanout)
            hit = bad[sp.l0[blk, t, off] != NEG]
            removed = int(hit.size)
            if removed:
                gone = sp.exclude_many(t, hit)
        try:
            return sp.bottom(t), sp.top(t), int(sp.count[t]), removed
        finally:
            if gone is not None:
                sp.restore_many(gone)

    def _top_tree(self, t: int, k: int, excl: np.ndarray | None, lo_ext: float = POS, hi_ext: float = NEG,
                  post: float = 0.0) -> tuple[tuple[list[int], list[float], float, float] | None, int]:
        """Row t's k best candidates in the pipeline's order, their raw scores, and the lowest and
        highest candidate score, leaving out the hosts `excl`; None when the exact row scan must
        answer (see kernels.tree_top). Also returns how many of `excl` were candidates. `lo_ext`/
        `hi_ext` widen the normalization range (candidates outside the row), `post` is added to
        every total (a scorer constant over the row but not over all candidates)."""
        f = self.forest
        removed = 0
        excluded = None
        if excl is not None and excl.size:
            blk, off = np.divmod(excl, f.fanout)
            excl = excl[f.l0[blk, t, off] != NEG]  # only candidates count as rejected
            removed = int(excl.size)
            if removed:
                excluded = f.exclude_many(t, excl)
        try:
            return self._top_numpy(t, k, lo_ext, hi_ext, post), removed
        finally:
            if excluded is not None:
                f.restore_many(excluded)

    def _top_numpy(self, t: int, k: int, lo_ext: float, hi_ext: float, post: float
                   ) -> tuple[list[int], list[float], float, float] | None:
        """kernels.top with the forest's numpy operations (same walk, same stopping rule)."""
        f, w = self.forest, self._weight
        hi, lo = f.top(t), f.bottom(t)
        if hi != hi or lo != lo:
            return None
        if hi == NEG:
            return [], [], NEG, NEG
        lo, hi = min(lo, lo_ext), max(hi, hi_ext)
        span = hi - lo
        flat = span <= 1e-12
        kept: list[tuple[float, int, float]] = []  # (-total, host, raw), sorted
        saved = []
        try:
            while True:
                best = f.top(t)
                if best == NEG or (flat and len(kept) == k):
                    break
                h = f.first_at_least(t, lo if flat else best)
                v = f.leaf(t, h)
                tot = post if flat else w * ((v - lo) / span) + post
                if len(kept) >= k and not flat:
                    tk, hk = -kept[k - 1][0], kept[k - 1][1]
                    if (tot < tk or (tot == tk and h > hk)) and \
                            w * ((float(np.nextafter(v, NEG)) - lo) / span) + post < tk:
                        break
                if len(kept) == k + self.top_slack:
                    return None
                bisect.insort(kept, (-tot, h, v))
                saved.append(f.exclude(t, h))
        finally:
            for sv in reversed(saved):
                f.restore(sv)
        return [h for _t, h, _v in kept[:k]], [v for _t, _h, v in kept[:k]], lo, hi

    def _constant_terms(self, scarce: bool) -> tuple[float, list[_Term], dict[str, float]]:
        """For _normalized, the policy's scorers folded once: the sum of the weighted constant
        scores before the first primary term, then every later term in order as (weight, its
        weighted constant, or None for a primary term: weight * normalized score), and the
        per-scorer score dict whose primary entries _normalized fills in. Constants are 0, or 1 for
        keep-scarce-free when `scarce`."""
        before, rest, template = 0.0, list[_Term](), {}
        for name, w, primary in self._layout:
            y = 1.0 if scarce and name == SCARCE_SCORER else 0.0
            template[name] = y
            if primary or rest:
                rest.append((w, None if primary else w * y))
            else:
                before += w * y
        return before, rest, template

    def _normalized(self, values: list[float], lo: float, hi: float, scarce: bool = False
                    ) -> tuple[list[float], list[dict[str, float]]]:
        """Weighted totals and per-scorer scores exactly as `pipeline.place` computes them: min-max
        over the candidates (lo..hi) for the primary scorer; keep-scarce-free is 1 on these hosts
        when some candidate strands a scarce resource (`scarce`), else 0; every other scorer is
        constant here (0). The terms are added in the pipeline's order (the constants before the
        primary summed once), so each total is bit-equal to the pipeline's left-to-right sum."""
        before, rest, template = self._constants[scarce]
        flat = hi - lo <= 1e-12
        span = hi - lo
        primary = self.plan.primary
        totals, scores = [], []
        for v in values:
            x = 0.0 if flat else (v - lo) / span
            total = before
            for w, c in rest:
                total += w * x if c is None else c
            totals.append(total)
            sc = template.copy()
            if primary in sc:
                sc[primary] = x
            scores.append(sc)
        return totals, scores

    def _top_row(self, t: int, req: Request, k: int) -> tuple[list[int], list[float], list[dict[str, float]]]:
        """Exact top-k from row t's leaves (request-level rejections already excluded)."""
        row = self.forest.row(t)
        cand = np.flatnonzero(row != NEG)
        if cand.size == 0:
            return [], [], []
        total = np.zeros(cand.size)
        per: list[tuple[str, np.ndarray]] = []
        for scorer, w in self.policy._scorers:
            if scorer.name == self.plan.primary:
                raw = row[cand]
            else:
                raw = np.asarray(scorer(self.state, req, cand), dtype=np.float64)
            sc = normalize(raw)
            per.append((scorer.name, sc))
            total += w * sc
        order = top_order(cand, total, k)
        return ([int(cand[i]) for i in order], [float(total[i]) for i in order],
                [{name: float(sc[i]) for name, sc in per} for i in order])
