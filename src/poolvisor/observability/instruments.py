"""What this process measures as it works, for Prometheus: one set of metric objects per process.

The objects are created without a registry (none is registered in prometheus-client's global
default one): each app's own CollectorRegistry exposes them through `ProcessInstruments`, so
several apps in one process (tests) never collide on registration. Counters count this
process's work since it started, as Prometheus expects of every scraped replica.

Hooks other code feeds:
- ``QUEUE_DEPTH.labels(priority_class=C).set(n)``: the request queue reports how many requests
  wait in class C (system, high, normal, low, spot; all five series exist from the start, at 0);
- ``observe_placement()``: a context manager around one placement decision;
- committed events: ``note_event(session, kind)`` (ServiceBase._event calls it) counts an event
  when, and only if, its transaction commits (a rolled-back or retried attempt counts nothing).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import Gauge, Histogram, disable_created_metrics
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from sqlalchemy import event
from sqlalchemy.orm import Session

disable_created_metrics()  # no `_created` series: Prometheus does not need them, they double the output
PRIORITY_CLASSES = ("system", "high", "normal", "low", "spot")

# seconds: a decision through the placement index is sub-millisecond to tens of milliseconds
PLACEMENT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

PLACEMENT_SECONDS = Histogram(
    "poolvisor_placement_seconds", "Time to decide one placement (refresh the view, search the index), "
    "by outcome (placed, no_valid_host, error).", ["outcome"], buckets=PLACEMENT_BUCKETS, registry=None)
PLACEMENT_OUTCOMES = ("placed", "no_valid_host", "error")
for _o in PLACEMENT_OUTCOMES:
    PLACEMENT_SECONDS.labels(outcome=_o)  # every series exists from the start
QUEUE_DEPTH = Gauge(
    "poolvisor_queue_depth", "Creation requests waiting in the request queue, by priority class.",
    ["priority_class"], registry=None)
for _c in PRIORITY_CLASSES:
    QUEUE_DEPTH.labels(priority_class=_c).set(0)

# event kinds that record a failure (poolvisor_failures_total) and a migration's outcome
FAILURE_KINDS = frozenset({
    "workload.create_failed", "workload.migrate_failed", "workload.batch_failed", "workload.lost",
    "host.failed", "task.failed", "task.rolled_back",
})
MIGRATION_KINDS = {"workload.migrated": "succeeded", "workload.migrate_failed": "failed"}
NO_VALID_HOST = "placement.no_valid_host"  # a failure with no event: the request is refused (409)

_lock = threading.Lock()
_events: Counter[str] = Counter()
_failures: Counter[str] = Counter()
_PENDING = "poolvisor.events"


def note_event(session: Session, kind: str) -> None:
    """Count `kind` once `session`'s transaction commits."""
    session.info.setdefault(_PENDING, []).append(kind)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    kinds = session.info.pop(_PENDING, None)
    if kinds:
        with _lock:
            _events.update(kinds)
            _failures.update(k for k in kinds if k in FAILURE_KINDS)


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)


def count_failure(kind: str) -> None:
    """A failure that writes no event (e.g. no valid host: the request is refused)."""
    with _lock:
        _failures[kind] += 1


@contextmanager
def observe_placement() -> Iterator[list[str]]:
    """Time one placement decision; the body sets `outcome[0]` (default placed; an exception
    counts as error unless the body said otherwise)."""
    outcome = ["placed"]
    t0 = time.perf_counter()
    try:
        yield outcome
    except BaseException:
        if outcome[0] == "placed":
            outcome[0] = "error"
        raise
    finally:
        PLACEMENT_SECONDS.labels(outcome=outcome[0]).observe(time.perf_counter() - t0)
        if outcome[0] == "no_valid_host":
            count_failure(NO_VALID_HOST)


def counts() -> tuple[dict[str, int], dict[str, int]]:
    """(committed events by kind, failures by kind) so far in this process."""
    with _lock:
        return dict(_events), dict(_failures)


class ProcessInstruments:
    """A collector for an app's registry: the process-wide instruments above, with the event
    counters as counter families (migrations and failures are derived from event kinds)."""

    def collect(self) -> Iterable[Metric]:
        yield from PLACEMENT_SECONDS.collect()
        yield from QUEUE_DEPTH.collect()
        evs, fails = counts()
        fam = CounterMetricFamily("poolvisor_events", "Events this process committed, by kind.",
                                  labels=["kind"])
        for k, n in sorted(evs.items()):
            fam.add_metric([k], n)
        yield fam
        fam = CounterMetricFamily("poolvisor_failures", "Failures this process recorded, by kind "
                                  "(failed creations, migrations, tasks, lost workloads, failed hosts, "
                                  "placements refused for want of a valid host).", labels=["kind"])
        for k in sorted(FAILURE_KINDS | {NO_VALID_HOST}):
            fam.add_metric([k], fails.get(k, 0))
        yield fam
        fam = CounterMetricFamily("poolvisor_migrations", "Workload migrations this process finished, "
                                  "by outcome.", labels=["outcome"])
        for kind, outcome in sorted(MIGRATION_KINDS.items(), key=lambda kv: kv[1]):
            fam.add_metric([outcome], evs.get(kind, 0))
        yield fam
