"""Google cluster-data 2011 (clusterdata-2011-2, schema 2.1): machine events, task events, task usage.

The real trace ships headerless CSV parts (often ``.gz``); the shared samples carry a ``#`` header
row, which is skipped. Times are microseconds (converted to seconds here; 2^63-1 means "after the
end of the trace" and becomes ``inf``). CPU and memory are normalized to the largest machine (0..1).

Online replay view: a task instance runs from a SCHEDULE event to the next EVICT, FAIL, FINISH,
KILL or LOST event of the same (job, task); its demand is the request carried by the SCHEDULE row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from poolvisor.domain.errors import InvalidInputError
from poolvisor.traces.csvcols import Columns, read_columns
from poolvisor.traces.workload import Workload

MACHINE_COLS = ("time", "machine_id", "event_type", "platform_id", "cpu", "memory")
TASK_EVENT_COLS = ("time", "missing_info", "job_id", "task_index", "machine_id", "event_type", "user",
                   "scheduling_class", "priority", "cpu_request", "memory_request", "disk_request",
                   "different_machine")
TASK_USAGE_COLS = ("start", "end", "job_id", "task_index", "machine_id", "cpu_rate", "canonical_memory",
                   "assigned_memory", "unmapped_page_cache", "total_page_cache", "max_memory", "disk_io_time",
                   "local_disk_space", "max_cpu_rate", "max_disk_io_time", "cpi", "mai", "sample_portion",
                   "aggregation_type", "sampled_cpu_usage")
RESOURCES = ("cpu", "memory")
MACHINE_ADD, MACHINE_REMOVE, MACHINE_UPDATE = 0, 1, 2
SUBMIT, SCHEDULE, EVICT, FAIL, FINISH, KILL, LOST, UPDATE_PENDING, UPDATE_RUNNING = range(9)
TERMINAL = (EVICT, FAIL, FINISH, KILL, LOST)
_NEVER_US = 2**63 - 1


def _files(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(paths, str | Path):
        paths = [paths]
    out = [Path(p) for p in paths]
    if not out:
        raise InvalidInputError("no trace files given")
    return out


def _read(paths: str | Path | Sequence[str | Path], names: Sequence[str], min_fields: int) -> list[Columns]:
    return [read_columns(p, names=names, comment="#", min_fields=min_fields) for p in _files(paths)]


def _seconds(c: Columns, name: str) -> np.ndarray:
    us = c.number(name, minimum=0)
    return np.where(us >= float(_NEVER_US), np.inf, us / 1e6)


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)


@dataclass(frozen=True)
class MachineEvents:
    time: np.ndarray  # (e,) s
    machine_id: np.ndarray  # (e,) int64
    event_type: np.ndarray  # (e,) int64: 0 add, 1 remove, 2 update
    cpu: np.ndarray  # (e,) normalized capacity, nan when blank
    memory: np.ndarray  # (e,)

    def __len__(self) -> int:
        return int(self.time.size)


def read_machine_events(paths: str | Path | Sequence[str | Path]) -> MachineEvents:
    t, mid, ev, cpu, mem = [], [], [], [], []
    for c in _read(paths, MACHINE_COLS, min_fields=3):
        t.append(_seconds(c, "time"))
        mid.append(c.number("machine_id", np.int64, minimum=0))
        e = c.number("event_type", np.int64, minimum=0, maximum=2)
        ev.append(e)
        cpu.append(c.number("cpu", empty=np.nan, minimum=0))
        mem.append(c.number("memory", empty=np.nan, minimum=0))
    out = MachineEvents(_cat(t), _cat(mid).astype(np.int64), _cat(ev).astype(np.int64), _cat(cpu), _cat(mem))
    if len(out) == 0:
        raise InvalidInputError("machine events: no rows")
    return out


@dataclass(frozen=True)
class GoogleFleet:
    """Machines in order of first appearance, their capacity, and availability changes over time.

    Capacity is the largest one a machine reports (ADD and UPDATE events); ``changes`` lists
    (time, machine index, up) for every ADD (up=True) and REMOVE (up=False).
    """

    machine_id: np.ndarray  # (M,)
    cpu: np.ndarray  # (M,)
    memory: np.ndarray  # (M,)
    change_time: np.ndarray  # (c,)
    change_machine: np.ndarray  # (c,) index into machine_id
    change_up: np.ndarray  # (c,) bool

    def __len__(self) -> int:
        return int(self.machine_id.size)


def fleet_from_events(ev: MachineEvents) -> GoogleFleet:
    ids, first, inv = np.unique(ev.machine_id, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # machines by first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    m = rank[inv]
    cpu = np.zeros(ids.size)
    mem = np.zeros(ids.size)
    np.fmax.at(cpu, m, np.nan_to_num(ev.cpu, nan=0.0))
    np.fmax.at(mem, m, np.nan_to_num(ev.memory, nan=0.0))
    ch = ev.event_type != MACHINE_UPDATE
    seq = np.argsort(ev.time[ch], kind="stable")
    return GoogleFleet(
        machine_id=ids[order],
        cpu=cpu,
        memory=mem,
        change_time=ev.time[ch][seq],
        change_machine=m[ch][seq],
        change_up=(ev.event_type[ch] == MACHINE_ADD)[seq],
    )


@dataclass(frozen=True)
class TaskEvents:
    time: np.ndarray  # (e,) s
    job_id: np.ndarray  # (e,) int64
    task_index: np.ndarray  # (e,) int64
    event_type: np.ndarray  # (e,) int64
    priority: np.ndarray  # (e,) int64 (-1 when blank)
    cpu_request: np.ndarray  # (e,) normalized, 0 when blank
    memory_request: np.ndarray  # (e,)
    user: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))  # (e,) or empty

    def __len__(self) -> int:
        return int(self.time.size)

    def to_workload(self, name: str = "google-2011") -> Workload:
        """Task instances (SCHEDULE -> next terminal event of the same task) sorted by start time."""
        n = len(self)
        if n == 0:
            return Workload(name, RESOURCES, np.zeros(0), np.zeros(0), np.zeros((0, 2)))
        order = np.lexsort((np.arange(n), self.time, self.task_index, self.job_id))
        job, task, typ = self.job_id[order], self.task_index[order], self.event_type[order]
        same_next = np.zeros(n, dtype=bool)
        same_next[:-1] = (job[1:] == job[:-1]) & (task[1:] == task[:-1])
        # group id per position: increments where a new (job, task) starts
        group = np.concatenate([[0], np.cumsum(~same_next[:-1])])
        term = np.isin(typ, TERMINAL)
        big = n
        pos = np.where(term, np.arange(n), big)
        next_term = np.minimum.accumulate(pos[::-1])[::-1]  # first terminal at or after i
        sched = np.flatnonzero(typ == SCHEDULE)
        nxt = np.full(sched.size, big)
        inside = sched + 1 < n
        nxt[inside] = next_term[sched[inside] + 1]
        found = nxt < big
        found[found] = group[nxt[found]] == group[sched[found]]
        start = self.time[order][sched]
        end = np.full(sched.size, np.inf)
        end[found] = self.time[order][nxt[found]]
        end = np.maximum(end, start)
        rows = order[sched]
        demand = np.stack([self.cpu_request[rows], self.memory_request[rows]], 1)
        by_time = np.argsort(start, kind="stable")
        users = self.user[rows] if self.user.size == n else np.full(rows.size, "", dtype=object)
        names, code = np.unique(users.astype(str), return_inverse=True)
        return Workload(name, RESOURCES, start[by_time], end[by_time], demand[by_time],
                        project=code.astype(np.int64)[by_time], project_names=tuple(names.tolist()),
                        rank=priority_rank(self.priority[rows])[by_time])


def priority_rank(priority: np.ndarray) -> np.ndarray:
    """The trace's priority (0..11; -1 blank) as a priority class rank (policies/preemption.py):
    the free band 0-1 is spot, 2-8 normal, production 9-10 high, monitoring 11 system."""
    p = np.asarray(priority, dtype=np.int64)
    return np.select([(p >= 0) & (p <= 1), p >= 11, p >= 9], [0, 4, 3], default=2).astype(np.int64)


def read_task_events(paths: str | Path | Sequence[str | Path]) -> TaskEvents:
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("t", "job", "task", "ev", "prio", "cpu", "mem",
                                                         "user")}
    for c in _read(paths, TASK_EVENT_COLS, min_fields=11):
        cols["t"].append(_seconds(c, "time"))
        cols["job"].append(c.number("job_id", np.int64, minimum=0))
        cols["task"].append(c.number("task_index", np.int64, minimum=0))
        cols["ev"].append(c.number("event_type", np.int64, minimum=0, maximum=8))
        cols["prio"].append(c.number("priority", np.int64, empty=-1))
        cols["cpu"].append(c.number("cpu_request", empty=0.0, minimum=0))
        cols["mem"].append(c.number("memory_request", empty=0.0, minimum=0))
        cols["user"].append(c.text("user"))
    return TaskEvents(
        _cat(cols["t"]),
        _cat(cols["job"]).astype(np.int64),
        _cat(cols["task"]).astype(np.int64),
        _cat(cols["ev"]).astype(np.int64),
        _cat(cols["prio"]).astype(np.int64),
        _cat(cols["cpu"]),
        _cat(cols["mem"]),
        np.concatenate(cols["user"]) if cols["user"] else np.zeros(0, dtype=object),
    )


@dataclass(frozen=True)
class TaskUsage:
    start: np.ndarray  # (u,) s
    end: np.ndarray  # (u,) s
    job_id: np.ndarray
    task_index: np.ndarray
    cpu_rate: np.ndarray  # mean CPU usage (normalized cores)
    canonical_memory: np.ndarray
    max_memory: np.ndarray
    max_cpu_rate: np.ndarray

    def __len__(self) -> int:
        return int(self.start.size)


def read_task_usage(paths: str | Path | Sequence[str | Path]) -> TaskUsage:
    parts: dict[str, list[np.ndarray]] = {k: [] for k in TaskUsage.__dataclass_fields__}
    for c in _read(paths, TASK_USAGE_COLS, min_fields=13):
        start, end = _seconds(c, "start"), _seconds(c, "end")
        bad = np.flatnonzero(end < start)
        if bad.size:
            raise InvalidInputError(f"{c.where(int(bad[0]))}: measurement ends before it starts")
        parts["start"].append(start)
        parts["end"].append(end)
        parts["job_id"].append(c.number("job_id", np.int64, minimum=0))
        parts["task_index"].append(c.number("task_index", np.int64, minimum=0))
        for k in ("cpu_rate", "canonical_memory", "max_memory", "max_cpu_rate"):
            parts[k].append(c.number(k, empty=np.nan, minimum=0))
    return TaskUsage(**{k: _cat(v) for k, v in parts.items()})


@dataclass(frozen=True)
class GoogleTrace:
    fleet: GoogleFleet
    tasks: TaskEvents
    usage: TaskUsage | None


def _pick(d: Path, words: tuple[str, ...]) -> list[Path]:
    """Files under d whose path mentions all words (with '-' or '_'), e.g. task_events/part-*.csv.gz."""
    out = []
    for p in sorted(d.rglob("*")):
        if not p.is_file() or not (p.name.endswith(".csv") or p.name.endswith(".csv.gz")):
            continue
        norm = str(p.relative_to(d)).lower().replace("_", "-")
        if all(w in norm for w in words):
            out.append(p)
    return out


def load_google(directory: str | Path) -> GoogleTrace:
    """Machine events, task events and (if present) task usage found under ``directory``."""
    d = Path(directory)
    if not d.is_dir():
        raise InvalidInputError(f"Google trace directory not found: {d}")
    machines = _pick(d, ("machine-events",))
    tasks = _pick(d, ("task-events",))
    usage = _pick(d, ("task-usage",))
    if not machines or not tasks:
        raise InvalidInputError(f"{d}: need machine-events and task-events CSV files")
    return GoogleTrace(
        fleet_from_events(read_machine_events(machines)),
        read_task_events(tasks),
        read_task_usage(usage) if usage else None,
    )
