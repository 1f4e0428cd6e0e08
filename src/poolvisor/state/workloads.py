"""Columnar workload table: the workloads next to the host arrays of a ClusterState.

One row per workload: its host index (-1: not placed), demand vector (one row per resource, the
hosts' resource names), priority, group and kind codes, and a sliding window of measured
utilization (fractions of its demand in use, newest first). A key -> row dict finds a workload;
removal swaps the last row into the hole, and the columns double when full, so add, move and
remove cost O(resources + window) amortized, whatever the number of workloads.

The table belongs to one ClusterState (``state.workloads``) and keeps the hosts' totals
(allocated, workload counts, group members) equal to the sum of its placed rows: every add, move
and remove goes through the state's allocate/release. A mirror of a store whose ledger already
keeps those totals (the services' placement cache) loads rows with ``account=False``.

The window is one buffer twice as wide as the window, shared by all rows: a sample for every row
is one column write, and every ``window`` samples the newest half is copied back (amortized O(1)
per row and sample), so the window is always one contiguous (n, window) array, newest first,
which the balancing policies read without a gather. ``samples`` counts how many samples a row has
had since it was added (at most ``window``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.domain.resources import ResourceSet

if TYPE_CHECKING:
    from poolvisor.state.cluster import ClusterState

#: samples a window holds by default (CloudSim's PowerVm.HISTORY_LENGTH)
DEFAULT_WINDOW = 30
KINDS: tuple[str, ...] = ("vm", "container")
#: move_rows moves this many rows or fewer one by one (else with one scatter per direction)
MOVE_ONE_BY_ONE = 8


class WorkloadTable:
    """Workloads as columns; the attributes are views sized to the number of rows (``n``)."""

    def __init__(self, resources: ResourceSet, owner: ClusterState | None = None, *,
                 window: int = DEFAULT_WINDOW, capacity_hint: int = 64) -> None:
        if window < 1:
            raise InvalidInputError("the utilization window needs at least one sample")
        self.resources = resources
        self.owner = owner
        self.window = window
        self.n = 0
        self._cap = max(1, capacity_hint)
        self._host = np.full(self._cap, -1, dtype=np.int64)
        self._demand = np.zeros((len(resources), self._cap))
        self._priority = np.zeros(self._cap, dtype=np.int32)
        self._group = np.full(self._cap, -1, dtype=np.int32)
        self._kind = np.zeros(self._cap, dtype=np.int8)
        self._samples = np.zeros(self._cap, dtype=np.int32)
        self._win = np.zeros((self._cap, 2 * window))
        self._off = window  # the window is _win[:, _off : _off + window]
        self.keys: list[Hashable] = []
        self.rows: dict[Hashable, int] = {}
        self.group_names: list[str] = []
        self._group_index: dict[str, int] = {}

    # ---- column views ----------------------------------------------------------------------------
    @property
    def host(self) -> np.ndarray:
        return self._host[: self.n]

    @property
    def demand(self) -> np.ndarray:
        """(R, n): each workload's demand, one row per resource (as the host arrays)."""
        return self._demand[:, : self.n]

    @property
    def priority(self) -> np.ndarray:
        return self._priority[: self.n]

    @property
    def group(self) -> np.ndarray:
        """Group code per row (-1: none); ``group_names[code]`` is its name."""
        return self._group[: self.n]

    @property
    def kind(self) -> np.ndarray:
        """Kind code per row: ``KINDS[code]``."""
        return self._kind[: self.n]

    @property
    def util(self) -> np.ndarray:
        """(n, window): measured utilization, newest sample first (0 where none was recorded)."""
        return self._win[: self.n, self._off : self._off + self.window]

    @property
    def samples(self) -> np.ndarray:
        return self._samples[: self.n]

    def __len__(self) -> int:
        return self.n

    def __contains__(self, key: object) -> bool:
        return key in self.rows

    def row(self, key: Hashable) -> int:
        try:
            return self.rows[key]
        except KeyError:
            raise NotFoundError(f"workload {key!r} not found") from None

    def group_name(self, row: int) -> str | None:
        g = int(self._group[row])
        return self.group_names[g] if g >= 0 else None

    # ---- growth ----------------------------------------------------------------------------------
    def _grow(self, need: int) -> None:
        if need <= self._cap:
            return
        new = max(need, 2 * self._cap)

        def grow(a: np.ndarray, fill: float) -> np.ndarray:
            b = np.full((new, *a.shape[1:]), fill, dtype=a.dtype)
            b[: self._cap] = a
            return b

        demand = np.zeros((len(self.resources), new))
        demand[:, : self._cap] = self._demand
        self._host, self._demand = grow(self._host, -1), demand
        self._priority, self._group = grow(self._priority, 0), grow(self._group, -1)
        self._kind, self._samples, self._win = grow(self._kind, 0), grow(self._samples, 0), grow(self._win, 0)
        self._cap = new

    def _group_code(self, group: str | None) -> int:
        if group is None:
            return -1
        code = self._group_index.get(group)
        if code is None:
            code = self._group_index[group] = len(self.group_names)
            self.group_names.append(group)
        return code

    @staticmethod
    def _kind_code(kind: str) -> int:
        try:
            return KINDS.index(kind)
        except ValueError:
            raise InvalidInputError(f"unknown workload kind {kind!r}; allowed: {', '.join(KINDS)}") from None

    # ---- one workload (O(R + window) amortized) ----------------------------------------------------
    def add(self, key: Hashable, host: int, demand: np.ndarray, *, priority: int = 0,
            group: str | None = None, kind: str = "vm", account: bool = True, force: bool = False) -> int:
        """Append a workload on ``host`` (-1: not placed); returns its row. ``account``: add its
        demand to the host's totals (capacity-checked unless ``force``)."""
        if key in self.rows:
            raise ConflictError(f"workload {key!r} already exists")
        d = np.asarray(demand, dtype=np.float64)
        if d.shape != (len(self.resources),):
            raise InvalidInputError(f"demand must have one value per resource ({len(self.resources)})")
        g, k = self._group_code(group), self._kind_code(kind)
        if account and host >= 0 and self.owner is not None:
            self.owner.allocate(host, d, group, force=force)  # first: a refusal leaves no row behind
        self._grow(self.n + 1)
        r = self.n
        self._host[r], self._demand[:, r] = host, d
        self._priority[r], self._group[r], self._kind[r] = priority, g, k
        self._samples[r] = 0
        self._win[r] = 0.0
        self.keys.append(key)
        self.rows[key] = r
        self.n += 1
        return r

    def move(self, key: Hashable, dst: int, *, account: bool = True, force: bool = False) -> None:
        """Put workload ``key`` on host ``dst`` (-1: unplace it), moving its demand between hosts."""
        r = self.row(key)
        src = int(self._host[r])
        if src == dst:
            return
        if account and self.owner is not None:
            d, group = self._demand[:, r], self.group_name(r)
            if dst >= 0:
                self.owner.allocate(dst, d, group, force=force)  # first: a refusal changes nothing
            if src >= 0:
                self.owner.release(src, d, group)
        self._host[r] = dst

    def remove(self, key: Hashable, *, account: bool = True) -> None:
        """Drop workload ``key`` (its demand leaves its host); the last row takes its place."""
        r = self.row(key)
        h = int(self._host[r])
        if account and h >= 0 and self.owner is not None:
            self.owner.release(h, self._demand[:, r], self.group_name(r))
        last = self.n - 1
        if r != last:
            self._host[r], self._demand[:, r] = self._host[last], self._demand[:, last]
            self._priority[r], self._group[r] = self._priority[last], self._group[last]
            self._kind[r], self._samples[r] = self._kind[last], self._samples[last]
            self._win[r] = self._win[last]
            moved = self.keys[last]
            self.keys[r] = moved
            self.rows[moved] = r
        self.keys.pop()
        del self.rows[key]
        self._host[last] = -1
        self.n = last

    # ---- many at once (vectorized; what the simulators use) ------------------------------------
    def add_many(self, keys: Sequence[Hashable], hosts: np.ndarray, demands: np.ndarray, *,
                 priority: np.ndarray | int = 0, kind: str = "vm", account: bool = True) -> np.ndarray:
        """Append workloads ``keys`` on ``hosts`` with ``demands`` (R, k), without groups; the
        hosts' totals are updated in one pass (not capacity-checked: the caller placed them)."""
        k = len(keys)
        hs = np.asarray(hosts, dtype=np.int64).reshape(k)
        d = np.asarray(demands, dtype=np.float64).reshape(len(self.resources), k)
        if len(set(keys)) != k or any(key in self.rows for key in keys):
            raise ConflictError("workload keys must be new and unique")
        self._grow(self.n + k)
        lo, hi = self.n, self.n + k
        self._host[lo:hi], self._demand[:, lo:hi] = hs, d
        self._priority[lo:hi], self._group[lo:hi] = priority, -1
        self._kind[lo:hi], self._samples[lo:hi] = self._kind_code(kind), 0
        self._win[lo:hi] = 0.0
        self.keys.extend(keys)
        self.rows.update(zip(keys, range(lo, hi), strict=True))
        self.n = hi
        if account and self.owner is not None:
            self.owner.shift(hs, d, +1)
        return np.arange(lo, hi)

    def move_rows(self, rows: np.ndarray, dsts: np.ndarray, *, account: bool = True) -> None:
        """Put distinct ungrouped rows on hosts ``dsts`` (-1: unplace), totals updated in one pass
        (not capacity-checked). Rows already on their destination are left alone. One row may
        be given as an int. ``account=False`` only moves the rows: the caller re-totals the hosts
        later (ClusterState.recount, what the PlanetLab simulator does once per epoch)."""
        if not account or self.owner is None:
            self._host[rows] = dsts
            return
        if np.size(rows) <= MOVE_ONE_BY_ONE:  # a few (the simulators' completions): row by row
            host, demand, owner = self._host, self._demand, self.owner
            for r, dst in zip(np.atleast_1d(rows).tolist(), np.atleast_1d(dsts).tolist(), strict=True):
                src = int(host[r])
                if src != dst:
                    owner.transfer(src, dst, demand[:, r])
                host[r] = dst
            return
        src = self._host[rows]
        go = src != dsts
        d = self._demand[:, rows[go]]
        self.owner.shift(src[go], d, -1)
        self.owner.shift(np.asarray(dsts, dtype=np.int64)[go], d, +1)
        self._host[rows] = dsts

    # ---- utilization window --------------------------------------------------------------------
    def push(self, util: np.ndarray) -> None:
        """One utilization sample for every row (fractions of each workload's demand in use)."""
        if self._off == 0:  # slide: the newest window - 1 samples move to the right half
            self._win[:, self.window :] = self._win[:, : self.window]
            self._off = self.window
        self._off -= 1
        self._win[: self.n, self._off] = util
        np.minimum(self._samples[: self.n] + 1, self.window, out=self._samples[: self.n])

    def set_window(self, rows: np.ndarray, util: np.ndarray) -> None:
        """Set rows' windows at once (newest first; (k, m) with m <= window: older ones are 0)."""
        u = np.asarray(util, dtype=np.float64)
        m = min(u.shape[1], self.window)
        w = self._win[:, self._off : self._off + self.window]
        w[rows] = 0.0
        w[rows, :m] = u[:, :m]
        self._samples[rows] = m

    # ---- what-if ---------------------------------------------------------------------------------
    def copy(self, owner: ClusterState | None) -> WorkloadTable:
        c = WorkloadTable.__new__(WorkloadTable)
        c.__dict__.update(self.__dict__)
        for attr in ("_host", "_demand", "_priority", "_group", "_kind", "_samples", "_win"):
            setattr(c, attr, getattr(self, attr).copy())
        c.owner = owner
        c.keys, c.rows = list(self.keys), dict(self.rows)
        c.group_names, c._group_index = list(self.group_names), dict(self._group_index)
        return c

    def check(self) -> None:
        """AssertionError unless the owner's totals equal the sum of the placed rows (tests)."""
        st = self.owner
        if st is None:
            return
        placed = self.host >= 0
        want = np.zeros((len(self.resources), st.n))
        np.add.at(want.T, self.host[placed], self.demand[:, placed].T)
        if not np.allclose(want, st.allocated, rtol=1e-9, atol=1e-6):
            raise AssertionError("host totals differ from the workloads' demands")
        count = np.bincount(self.host[placed], minlength=st.n)
        if count.tolist() != st.workload_count.tolist():
            raise AssertionError("host workload counts differ from the workloads placed there")
        assert all(self.rows[k] == i for i, k in enumerate(self.keys)) and len(self.rows) == self.n
