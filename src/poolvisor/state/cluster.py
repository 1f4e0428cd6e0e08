"""Columnar cluster state: one float64 array per resource over hosts, plus masks and small indexes,
and the workloads as a table next to them (``workloads``, :mod:`poolvisor.state.workloads`).

Policies read it; services and the simulators mutate it through allocate/release (or the workload
table's add/move/remove, which call them), which cost O(resources) each.
Hosts are never removed from the arrays (their state becomes REMOVED),
so indexes stay stable for the lifetime of the object; `copy()` gives a cheap what-if snapshot.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.domain.models import HostSpec, HostState, check_name
from poolvisor.domain.resources import ResourceSet, check_quantity
from poolvisor.state import kernels as _kernels
from poolvisor.state.workloads import DEFAULT_WINDOW, WorkloadTable

#: ClusterState.shift updates this many hosts or fewer column by column (else one scatter)
SHIFT_ONE_BY_ONE = 8

_F8 = np.dtype(np.float64)
_INTS = (int, np.int64)  # host indices the compiled allocate takes (one compiled signature)


def zero_counts(n: int) -> np.ndarray:
    """A new group's member count per host, all zero. Large ones come from fresh anonymous pages,
    which the kernel zeroes on first touch: np.zeros (calloc) clears every byte once the heap has
    grown, ~0.2 ms at 100,000 hosts on each group's first member, and keeps them all resident."""
    if n < 16384:
        return np.zeros(n, dtype=np.int32)
    try:
        return np.frombuffer(mmap.mmap(-1, n * 4), dtype=np.int32)
    except (OSError, ValueError):  # out of mappings (vm.max_map_count): the heap then
        return np.zeros(n, dtype=np.int32)


@dataclass
class LabelIndex:
    """(key, value) -> bool mask over hosts; built incrementally, grown with the arrays."""

    masks: dict[tuple[str, str], np.ndarray]

    def mask(self, key: str, value: str, n: int) -> np.ndarray:
        m = self.masks.get((key, value))
        return m[:n] if m is not None else np.zeros(n, dtype=bool)

    def has_key(self, key: str, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=bool)
        for (k, _v), m in self.masks.items():
            if k == key:
                out |= m[:n]
        return out


class ClusterState:
    """Hosts as columns. Attributes are views sized to the number of hosts (`n`)."""

    def __init__(self, resources: ResourceSet | Iterable[str] | None = None, capacity_hint: int = 64, *,
                 window: int = DEFAULT_WINDOW, workload_hint: int = 64):
        self.resources = resources if isinstance(resources, ResourceSet) else ResourceSet(
            tuple(resources) if resources is not None else ResourceSet().names
        )
        self.n = 0
        self._cap = max(1, capacity_hint)
        r = len(self.resources)
        self._raw = np.zeros((r, self._cap))  # physical capacity
        self._ratio = np.ones((r, self._cap))  # overcommit ratio
        self._capacity = np.zeros((r, self._cap))  # raw * ratio: what may be allocated
        self._allocated = np.zeros((r, self._cap))
        self._used = np.zeros((r, self._cap))  # measured, when known
        self._state = np.full(self._cap, HostState.REMOVED, dtype=np.int8)
        self._domain = np.zeros(self._cap, dtype=np.int32)
        self._count = np.zeros(self._cap, dtype=np.int32)
        self._max_count = np.zeros(self._cap, dtype=np.int32)
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.domain_names: list[str] = []
        self._domain_index: dict[str, int] = {}
        self.labels = LabelIndex({})
        self.host_labels: list[dict[str, str]] = []
        # group name -> per-host member counts; only groups with members are present
        self.group_counts: dict[str, np.ndarray] = {}
        self.generation = 0  # bumped on every mutation; lets caches detect staleness
        # called with the changed host indices after each mutation (placement indexes stay in sync);
        # a tuple so that watch/unwatch during a notification is safe
        self._watchers: tuple[Callable[[Sequence[int]], None], ...] = ()
        # the workloads: host index, demand, priority, group, kind, utilization window
        self.workloads = WorkloadTable(self.resources, self, window=window, capacity_hint=workload_hint)

    # ---- array views -------------------------------------------------------------------------
    @property
    def raw_capacity(self) -> np.ndarray:
        return self._raw[:, : self.n]

    @property
    def overcommit(self) -> np.ndarray:
        return self._ratio[:, : self.n]

    @property
    def capacity(self) -> np.ndarray:
        return self._capacity[:, : self.n]

    @property
    def allocated(self) -> np.ndarray:
        return self._allocated[:, : self.n]

    @property
    def used(self) -> np.ndarray:
        return self._used[:, : self.n]

    @property
    def free(self) -> np.ndarray:
        return self._capacity[:, : self.n] - self._allocated[:, : self.n]

    @property
    def state(self) -> np.ndarray:
        return self._state[: self.n]

    @property
    def up(self) -> np.ndarray:
        return self._state[: self.n] == HostState.UP

    @property
    def domains(self) -> np.ndarray:
        return self._domain[: self.n]

    @property
    def workload_count(self) -> np.ndarray:
        return self._count[: self.n]

    @property
    def max_workloads(self) -> np.ndarray:
        return self._max_count[: self.n]

    # ---- hosts -------------------------------------------------------------------------------
    def _grow(self, need: int) -> None:
        if need <= self._cap:
            return
        new = max(need, self._cap * 2)

        def grow2(a: np.ndarray, fill: float) -> np.ndarray:
            b = np.full((a.shape[0], new), fill, dtype=a.dtype)
            b[:, : self._cap] = a
            return b

        def grow1(a: np.ndarray, fill: int) -> np.ndarray:
            b = np.full(new, fill, dtype=a.dtype)
            b[: self._cap] = a
            return b

        self._raw, self._capacity = grow2(self._raw, 0), grow2(self._capacity, 0)
        self._allocated, self._used = grow2(self._allocated, 0), grow2(self._used, 0)
        self._ratio = grow2(self._ratio, 1)
        self._state = grow1(self._state, int(HostState.REMOVED))
        self._domain, self._count = grow1(self._domain, 0), grow1(self._count, 0)
        self._max_count = grow1(self._max_count, 0)
        for key, m in list(self.labels.masks.items()):
            self.labels.masks[key] = grow1(m, 0)
        for g, c in list(self.group_counts.items()):
            self.group_counts[g] = grow1(c, 0)
        self._cap = new

    def _domain_code(self, domain: str) -> int:
        code = self._domain_index.get(domain)
        if code is None:
            code = len(self.domain_names)
            self.domain_names.append(domain)
            self._domain_index[domain] = code
        return code

    def add_host(self, spec: HostSpec) -> int:
        """Append a host; returns its index. Raises ConflictError on a duplicate name."""
        check_name("host", spec.name)
        if spec.name in self.index:
            raise ConflictError(f"host {spec.name!r} already exists")
        raw = self.resources.vector(spec.capacity)
        ratio = self.resources.vector(spec.overcommit, default=1.0)
        if np.any(ratio <= 0):
            raise InvalidInputError("overcommit ratios must be > 0")
        if spec.max_workloads < 0:
            raise InvalidInputError("max_workloads must be >= 0")
        self._grow(self.n + 1)
        h = self.n
        self._raw[:, h], self._ratio[:, h] = raw, ratio
        self._capacity[:, h] = raw * ratio
        self._allocated[:, h] = 0
        self._used[:, h] = 0
        self._state[h] = int(spec.state)
        self._domain[h] = self._domain_code(spec.domain)
        self._count[h] = 0
        self._max_count[h] = spec.max_workloads
        self.names.append(spec.name)
        self.index[spec.name] = h
        self.host_labels.append(dict(spec.labels))
        self.n += 1
        for k, v in spec.labels.items():
            m = self.labels.masks.get((k, v))
            if m is None:
                m = self.labels.masks[(k, v)] = np.zeros(self._cap, dtype=bool)
            m[h] = True
        self.generation += 1
        self._notify((h,))
        return h

    def add_hosts(self, specs: Iterable[HostSpec]) -> None:
        for s in specs:
            self.add_host(s)

    def host_index(self, name: str) -> int:
        try:
            return self.index[name]
        except KeyError:
            raise NotFoundError(f"host {name!r} not found") from None

    def set_state(self, name: str, state: HostState) -> None:
        h = self.host_index(name)
        self._state[h] = int(state)
        self.generation += 1
        self._notify((h,))

    def set_used(self, used: np.ndarray) -> None:
        """Record measured usage for all hosts at once (shape (R, n))."""
        self._used[:, : self.n] = used
        self.generation += 1
        self._notify(())  # placement does not read measured usage

    # ---- allocations (O(R) each) -------------------------------------------------------------
    def allocate(self, h: int, demand: np.ndarray, group: str | None = None, *, force: bool = False) -> None:
        """Add `demand` to host h; refuses to exceed capacity unless `force` (used to replay history)."""
        add = _kernels.add()  # compiled: the same test and sums in one call (state/kernels.py)
        if add is not None and type(h) in _INTS and 0 <= h < self._cap and type(demand) is np.ndarray \
                and demand.dtype is _F8 and demand.ndim == 1 and demand.shape[0] == self._allocated.shape[0]:
            if not add(self._allocated, self._capacity, self._count, h, demand, force):
                raise ConflictError(f"host {self.names[h]!r} lacks capacity")
        else:
            if not force and (self._allocated[:, h] + demand > self._capacity[:, h] + 1e-9).any():
                raise ConflictError(f"host {self.names[h]!r} lacks capacity")
            self._allocated[:, h] += demand
            self._count[h] += 1
        if group:
            c = self.group_counts.get(group)
            if c is None:
                c = self.group_counts[group] = zero_counts(self._cap)
            c[h] += 1
        self.generation += 1
        if self._watchers:
            self._notify((h,))

    def release(self, h: int, demand: np.ndarray, group: str | None = None) -> None:
        col = self._allocated[:, h]
        col -= demand
        np.maximum(col, 0.0, out=col)  # guard against float drift below zero
        self._count[h] = max(0, int(self._count[h]) - 1)
        if group and group in self.group_counts:
            c = self.group_counts[group]
            c[h] = max(0, int(c[h]) - 1)
            if not c.any():
                del self.group_counts[group]
        self.generation += 1
        if self._watchers:
            self._notify((h,))

    def recount(self) -> None:
        """Host totals (allocated, workload counts, group members) from the workload table alone,
        in one vectorized pass: for a state whose only allocations are its table's rows (the
        simulators), after moving rows with ``account=False``."""
        t = self.workloads
        placed = np.flatnonzero(t.host >= 0)
        hs = t.host[placed]
        n = self.n
        for r in range(len(self.resources)):
            self._allocated[r, :n] = np.bincount(hs, t.demand[r, placed], n)
        self._count[:n] = np.bincount(hs, minlength=n)
        self.group_counts = {}
        grouped = t.group[placed] >= 0
        for code in np.unique(t.group[placed][grouped]).tolist():
            c = self.group_counts[t.group_names[code]] = np.zeros(self._cap, dtype=np.int32)
            c[:n] = np.bincount(hs[t.group[placed] == code], minlength=n)
        self.generation += 1
        if self._watchers:
            self._notify(tuple(range(n)))

    def transfer(self, src: int, dst: int, demand: np.ndarray) -> None:
        """Move one ungrouped demand from host src to dst (either -1: none); not capacity-checked."""
        if src >= 0:
            col = self._allocated[:, src]
            col -= demand
            np.maximum(col, 0.0, out=col)
            self._count[src] -= 1
        if dst >= 0:
            self._allocated[:, dst] += demand
            self._count[dst] += 1
        self.generation += 1
        if self._watchers:
            self._notify([h for h in (src, dst) if h >= 0])

    def shift(self, hosts: np.ndarray, demands: np.ndarray, sign: int) -> None:
        """Add (sign +1) or remove (-1) ungrouped demands (R, k) on hosts (k,) in one pass; hosts
        < 0 are skipped. Not capacity-checked: the bulk path of the workload table (simulators)."""
        if hosts.size <= SHIFT_ONE_BY_ONE:  # a few: column updates beat the scatter's setup
            touched = []
            for j, h in enumerate(hosts.tolist()):
                if h < 0:
                    continue
                col = self._allocated[:, h]
                if sign > 0:
                    col += demands[:, j]
                else:
                    col -= demands[:, j]
                    np.maximum(col, 0.0, out=col)
                self._count[h] += sign
                touched.append(h)
        else:
            keep = hosts >= 0
            hs = hosts[keep]
            np.add.at(self._allocated.T, hs, demands[:, keep].T if sign > 0 else -demands[:, keep].T)
            np.add.at(self._count, hs, 1 if sign > 0 else -1)
            if sign < 0:
                np.maximum(self._allocated[:, : self.n], 0.0, out=self._allocated[:, : self.n])
            touched = np.unique(hs).tolist() if self._watchers else []
        self.generation += 1
        if self._watchers and touched:
            self._notify(touched)

    # ---- change notification -------------------------------------------------------------------
    def watch(self, fn: Callable[[Sequence[int]], None]) -> None:
        """Call `fn(hosts)` after every mutation made through this object's methods."""
        self._watchers = (*self._watchers, fn)

    def unwatch(self, fn: Callable[[Sequence[int]], None]) -> None:
        self._watchers = tuple(w for w in self._watchers if w is not fn)

    def touch(self, hosts: Iterable[int] = ()) -> None:
        """Declare that hosts' arrays were written directly (e.g. reloaded from the store)."""
        self.generation += 1
        self._notify(tuple(int(h) for h in hosts))

    def _notify(self, hosts: Sequence[int]) -> None:
        for w in self._watchers:
            w(hosts)

    def group_mask(self, group: str) -> np.ndarray:
        """Hosts holding at least one member of `group`."""
        c = self.group_counts.get(group)
        return c[: self.n] > 0 if c is not None else np.zeros(self.n, dtype=bool)

    # ---- what-if --------------------------------------------------------------------------------
    def copy(self) -> ClusterState:
        """A deep copy of arrays and indexes: mutate it freely for what-if planning."""
        c = ClusterState.__new__(ClusterState)
        c.__dict__.update(self.__dict__)
        for attr in ("_raw", "_ratio", "_capacity", "_allocated", "_used", "_state", "_domain", "_count",
                     "_max_count"):
            setattr(c, attr, getattr(self, attr).copy())
        c.names, c.index = list(self.names), dict(self.index)
        c.domain_names, c._domain_index = list(self.domain_names), dict(self._domain_index)
        c.labels = LabelIndex({k: m.copy() for k, m in self.labels.masks.items()})
        c.host_labels = [dict(d) for d in self.host_labels]
        c.group_counts = {g: a.copy() for g, a in self.group_counts.items()}
        c._watchers = ()  # a what-if copy does not drive the original's indexes
        c.workloads = self.workloads.copy(c)
        return c

    def subset(self, hosts: Sequence[int]) -> ClusterState:
        """A new state holding only `hosts` (in that order) with their allocations, counts and
        group members, and no workloads (e.g. one pool, for planning); nothing is shared."""
        res = self.resources
        sub = ClusterState(res, capacity_hint=max(1, len(hosts)), window=self.workloads.window)
        for h in hosts:
            sub.add_host(HostSpec(self.names[h], res.mapping(self._raw[:, h]), res.mapping(self._ratio[:, h]),
                                  self.host_labels[h], self.domain_names[self._domain[h]],
                                  HostState(int(self._state[h])), int(self._max_count[h])))
        idx = np.asarray(hosts, dtype=np.int64)
        sub._allocated[:, : sub.n] = self._allocated[:, idx]
        sub._used[:, : sub.n] = self._used[:, idx]
        sub._count[: sub.n] = self._count[idx]
        for g, c in self.group_counts.items():
            if c[idx].any():
                sub.group_counts[g] = np.zeros(sub._cap, dtype=np.int32)
                sub.group_counts[g][: sub.n] = c[idx]
        sub.touch(range(sub.n))
        return sub

    def demand_vector(self, demand: Mapping[str, float]) -> np.ndarray:
        for k, v in demand.items():
            check_quantity(k, v)
        return self.resources.vector(demand)
