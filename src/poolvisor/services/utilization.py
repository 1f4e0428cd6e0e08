"""Recorded utilization: bulk CPU samples per workload, read back on a regular grid for what-if.

Samples are telemetry, not use cases of their own: a call writes its samples in ONE transaction
(all or nothing) and records no event (the audit log would drown in them). Reading resamples onto
buckets aligned to multiples of `interval_s` since the epoch, bucket k covering
[k*interval_s, (k+1)*interval_s): the mean of the samples in a bucket, the last value carried
forward over empty buckets (from before the window when there is one, else the first value in it
carried back), all with numpy (no Python loop per sample).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from numbers import Integral, Real

import numpy as np
from sqlalchemy import func, insert, select, tuple_
from sqlalchemy.orm import Session

from poolvisor.domain.errors import InvalidInputError, NotFoundError
from poolvisor.domain.models import check_name
from poolvisor.services.base import ServiceBase, as_utc
from poolvisor.store.rows import ProjectRow, UtilizationSampleRow, WorkloadRow

#: a workload: "project/name" (as in PoolSnapshot.vms) or (project, name)
WorkloadRef = str | tuple[str, str]
Sample = tuple[WorkloadRef, datetime | float, float]

MAX_SAMPLES = 100_000  # per record_utilization call
MAX_STEPS = 100_000  # per history read
MAX_CELLS = 5_000_000  # VMs x steps per history read (resampling holds ~6 arrays of this size)
MAX_EPOCH = 4_102_444_800.0  # 2100-01-01: a bound that catches milliseconds passed as seconds
MIN_INTERVAL, MAX_INTERVAL = 1.0, 7 * 86400.0


def parse_ref(ref: object) -> tuple[str, str]:
    """(project, name) of a workload reference, names validated."""
    if isinstance(ref, str) and ref.count("/") == 1:
        project, name = ref.split("/")
    elif isinstance(ref, tuple) and len(ref) == 2 and all(isinstance(x, str) for x in ref):
        project, name = ref
    else:
        raise InvalidInputError(f"workload reference must be 'project/name', got {ref!r}")
    check_name("project", project)
    check_name("workload", name)
    return project, name


def epoch_seconds(t: object, what: str = "time") -> float:
    """Epoch seconds of a datetime (naive = UTC) or a number of seconds, within 1970..2100."""
    if isinstance(t, datetime):
        v = as_utc(t).timestamp()
    elif isinstance(t, Real) and not isinstance(t, bool):
        v = float(t)
    else:
        raise InvalidInputError(f"{what} must be a datetime or epoch seconds, got {type(t).__name__}")
    if not math.isfinite(v) or not 0 <= v <= MAX_EPOCH:
        raise InvalidInputError(f"{what} must be between 1970 and 2100 (epoch seconds), got {v!r}")
    return v


def _fraction(x: object, i: int) -> float:
    if isinstance(x, bool) or not isinstance(x, Real):
        raise InvalidInputError(f"sample {i}: cpu must be a number in 0..1")
    v = float(x)
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise InvalidInputError(f"sample {i}: cpu must be a fraction in 0..1, got {v!r}")
    return v


def _workload_ids(s: Session, refs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """id of each (project, name); NotFoundError naming the first one missing."""
    wanted = set(refs)
    q = (select(ProjectRow.name, WorkloadRow.name, WorkloadRow.id)
         .join(ProjectRow, ProjectRow.id == WorkloadRow.project_id)
         .where(ProjectRow.name.in_({p for p, _ in wanted})))
    if len(wanted) <= 500:  # otherwise filter in Python: big IN lists of pairs are slow to build
        q = q.where(tuple_(ProjectRow.name, WorkloadRow.name).in_(list(wanted)))
    found = {(p, n): i for p, n, i in s.execute(q)}
    for r in refs:
        if r not in found:
            raise NotFoundError(f"workload {r[1]!r} not found in project {r[0]!r}")
    return found


def resample(wl: np.ndarray, t: np.ndarray, cpu: np.ndarray, n_vms: int, start_s: float,
             interval_s: float, steps: int, prior: np.ndarray, *, clip: bool = False) -> np.ndarray:
    """(n_vms, steps) bucket means of samples (row `wl`, time `t`, value `cpu`), gaps filled.

    `prior[i]` is VM i's last value before `start_s` (NaN when none); a row with neither samples
    in the window nor a prior value stays NaN (the caller reports it). Samples outside the window
    are ignored, or with `clip` (the caller already selected the window) put in the nearest edge
    bucket, so float rounding at a boundary never drops one. Zero steps or VMs give an empty grid.
    """
    if isinstance(steps, bool) or not isinstance(steps, Integral) or steps < 0:
        raise InvalidInputError(f"resample: steps must be an integer >= 0, got {steps!r}")
    if not math.isfinite(interval_s) or interval_s <= 0:
        raise InvalidInputError(f"resample: interval must be > 0 s, got {interval_s!r}")
    steps = int(steps)
    wl, t, cpu, prior = (np.asarray(x) for x in (wl, t, cpu, prior))
    if not wl.shape == t.shape == cpu.shape or wl.ndim != 1 or prior.shape != (n_vms,) or \
            (wl.size and (wl.min() < 0 or wl.max() >= n_vms)):
        raise InvalidInputError("resample: wl, t, cpu must be equal-length rows of VMs 0..n_vms-1, "
                                "prior one value per VM")
    if n_vms == 0 or steps == 0:
        return np.empty((n_vms, steps))
    b = np.floor((t - start_s) / interval_s)
    if clip:
        b = np.clip(b, 0, steps - 1)
    keep = (b >= 0) & (b < steps)  # also drops NaN times
    flat = wl[keep] * steps + b[keep].astype(np.int64)
    sums = np.bincount(flat, weights=cpu[keep], minlength=n_vms * steps).reshape(n_vms, steps)
    counts = np.bincount(flat, minlength=n_vms * steps).reshape(n_vms, steps)
    grid = np.full((n_vms, steps + 1), np.nan)
    grid[:, 0] = prior
    np.divide(sums, counts, out=grid[:, 1:], where=counts > 0)
    have = ~np.isnan(grid)
    # forward fill: each cell takes the value of the last column (<= its own) that has one
    last = np.maximum.accumulate(np.where(have, np.arange(steps + 1), 0), axis=1)
    rows = np.arange(n_vms)[:, None]
    filled = grid[rows, last]
    # leading gaps with no prior value: carry the first value in the window back
    first = np.argmax(have[:, 1:], axis=1) + 1
    lead = np.isnan(filled)
    filled[lead] = np.broadcast_to(grid[np.arange(n_vms), first][:, None], filled.shape)[lead]
    return filled[:, 1:]


def _iso(t: float | None) -> str:
    return "?" if t is None else datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _which(refs: Sequence[tuple[str, str]]) -> str:
    first = f"VM {refs[0][0]}/{refs[0][1]}"
    return first if len(refs) == 1 else f"these {len(refs)} VMs"


@dataclass(frozen=True)
class UtilizationHistory:
    """Recorded CPU use per VM over time: `util[i, t]` = fraction (0..1) of VM i's demand in use."""

    util: np.ndarray  # (V, T)
    interval_s: float = 300.0
    start_s: float | None = None  # epoch seconds of step 0 when known (read from the store)

    def __post_init__(self) -> None:
        a = np.asarray(self.util)
        if a.ndim != 2 or a.shape[1] == 0:
            raise InvalidInputError(f"utilization history must be (VMs, steps), got shape {a.shape}")
        if not np.all(np.isfinite(a)) or a.min(initial=0) < 0 or a.max(initial=0) > 1:
            raise InvalidInputError("utilization history must hold fractions in 0..1")
        if not self.interval_s > 0:
            raise InvalidInputError("utilization history interval must be > 0 s")


class UtilizationService(ServiceBase):
    """Recorded utilization samples: bulk writes, resampled reads."""

    def record_utilization(self, samples: Sequence[Sample]) -> int:
        """Store `(workload, time, cpu fraction)` samples; all or none. Returns how many were stored."""
        if isinstance(samples, (str, bytes)) or not isinstance(samples, Sequence):
            raise InvalidInputError("samples must be a list of (workload, time, cpu) triples")
        if not 1 <= len(samples) <= MAX_SAMPLES:
            raise InvalidInputError(f"record 1..{MAX_SAMPLES} samples per call, got {len(samples)}")
        refs: list[tuple[str, str]] = []
        times = np.empty(len(samples))
        cpus = np.empty(len(samples))
        for i, sample in enumerate(samples):
            if not isinstance(sample, Sequence) or isinstance(sample, str) or len(sample) != 3:
                raise InvalidInputError(f"sample {i}: expected (workload, time, cpu)")
            ref, t, c = sample
            refs.append(parse_ref(ref))
            times[i] = epoch_seconds(t, f"sample {i}: time")
            cpus[i] = _fraction(c, i)

        def tx(s: Session) -> int:
            ids = _workload_ids(s, refs)
            wid = [ids[r] for r in refs]
            s.execute(insert(UtilizationSampleRow), [
                {"workload_id": w, "time": t, "cpu": c}
                for w, t, c in zip(wid, times.tolist(), cpus.tolist(), strict=True)])
            return len(wid)

        return self._write(tx)

    def utilization_history(self, vms: Sequence[WorkloadRef], interval_s: float = 300.0, *,
                            steps: int | None = None, since: datetime | float | None = None,
                            until: datetime | float | None = None) -> UtilizationHistory:
        """The recorded CPU use of `vms` (in that order) on a grid of `interval_s` buckets.

        The grid ends with the bucket holding `until` (default: the latest sample of these VMs)
        and starts `steps` buckets earlier, or at the bucket holding `since`, or (neither) at the
        bucket of their earliest sample. A VM with no sample up to the end is an error.
        """
        if isinstance(vms, str) or not isinstance(vms, Sequence) or not vms:
            raise InvalidInputError("utilization history: give at least one workload")
        refs = [parse_ref(v) for v in vms]
        if len(set(refs)) != len(refs):
            raise InvalidInputError("utilization history: duplicate workloads")
        if isinstance(interval_s, bool) or not isinstance(interval_s, Real) \
                or not MIN_INTERVAL <= float(interval_s) <= MAX_INTERVAL:
            raise InvalidInputError(f"interval must be {MIN_INTERVAL:g}..{MAX_INTERVAL:g} s")
        interval = float(interval_s)
        if steps is not None and since is not None:
            raise InvalidInputError("give steps or since, not both")
        if steps is not None:
            if isinstance(steps, bool) or not isinstance(steps, Integral) or not 1 <= steps <= MAX_STEPS:
                raise InvalidInputError(f"steps must be an integer in 1..{MAX_STEPS}")
            steps = int(steps)
        since_s = None if since is None else epoch_seconds(since, "since")
        until_s = None if until is None else epoch_seconds(until, "until")
        if since_s is not None and until_s is not None and since_s > until_s:
            raise InvalidInputError("since is after until")
        return self._read(partial(self._history, refs=refs, interval=interval, steps=steps,
                                  since_s=since_s, until_s=until_s))

    def recorded(self, vms: Sequence[WorkloadRef], until: datetime | float | None = None) -> list[bool]:
        """For each of `vms` (in order): whether it has a sample (up to `until`), i.e. whether
        `utilization_history` can give it a row."""
        if isinstance(vms, str) or not isinstance(vms, Sequence):
            raise InvalidInputError("give a list of workloads")
        refs = [parse_ref(v) for v in vms]
        until_s = None if until is None else epoch_seconds(until, "until")

        def tx(s: Session) -> list[bool]:
            if not refs:
                return []
            ids = _workload_ids(s, refs)
            S = UtilizationSampleRow
            q = select(S.workload_id).where(S.workload_id.in_(set(ids.values())))
            if until_s is not None:
                q = q.where(S.time <= until_s)
            have = set(s.scalars(q.distinct()))
            return [ids[r] in have for r in refs]

        return self._read(tx)

    def _history(self, s: Session, *, refs: list[tuple[str, str]], interval: float, steps: int | None,
                 since_s: float | None, until_s: float | None) -> UtilizationHistory:

        ids = _workload_ids(s, refs)
        wids = [ids[r] for r in refs]
        S = UtilizationSampleRow
        mine = S.workload_id.in_(wids)
        upto = mine if until_s is None else mine & (S.time <= until_s)
        lo, hi = s.execute(select(func.min(S.time), func.max(S.time)).where(upto)).one()
        if hi is None:
            raise InvalidInputError(self._none_message(refs[0], until_s))
        end_b = math.floor((until_s if until_s is not None else hi) / interval)
        if steps is not None:
            start_b = end_b - steps + 1
        else:
            start_b = math.floor((since_s if since_s is not None else lo) / interval)
        n = end_b - start_b + 1
        if n < 1:  # only `since` after the grid's end (the latest sample) gets here
            raise InvalidInputError(f"nothing recorded since {_iso(since_s)}: the latest sample of "
                                    f"{_which(refs)} is at {_iso(hi)}")
        if n > MAX_STEPS:
            raise InvalidInputError(f"the history spans {n} steps of {interval:g} s (at most {MAX_STEPS});"
                                    " give steps or since, or a longer interval")
        if n * len(wids) > MAX_CELLS:
            raise InvalidInputError(f"the history would hold {len(wids)} VMs x {n} steps (at most "
                                    f"{MAX_CELLS} values); ask for fewer steps or a longer interval")
        start_s = start_b * interval
        window = upto & (S.time >= start_s)  # the end is `until` or the latest sample: no upper bound
        rows = s.execute(select(S.workload_id, S.time, S.cpu).where(window)).all()
        data = np.array(rows, dtype=np.float64).reshape(-1, 3)
        row_of = np.full(max(wids) + 1, -1, dtype=np.int64)
        row_of[np.array(wids)] = np.arange(len(wids))
        before = (select(S.workload_id, func.max(S.time).label("t")).where(mine & (S.time < start_s))
                  .group_by(S.workload_id).subquery())
        prior_rows = s.execute(select(S.workload_id, S.cpu).join(
            before, (S.workload_id == before.c.workload_id) & (S.time == before.c.t))).all()
        prior = np.full(len(wids), np.nan)
        if prior_rows:  # several samples at that same last instant: any one of them
            p = np.array(prior_rows, dtype=np.float64)
            prior[row_of[p[:, 0].astype(np.int64)]] = p[:, 1]
        util = resample(row_of[data[:, 0].astype(np.int64)], data[:, 1], data[:, 2], len(wids),
                        start_s, interval, n, prior, clip=True)
        empty = np.flatnonzero(np.isnan(util[:, 0]))
        if empty.size:
            raise InvalidInputError(self._none_message(refs[int(empty[0])], until_s, int(empty.size)))
        return UtilizationHistory(util, interval, start_s)

    @staticmethod
    def _none_message(ref: tuple[str, str], until_s: float | None, count: int = 1) -> str:
        more = f" (and {count - 1} more)" if count > 1 else ""
        when = "" if until_s is None else " up to the requested end"
        return f"no utilization recorded for VM {ref[0]}/{ref[1]}{when}{more}"
