"""Prometheus `/metrics` through prometheus-client: what each caller may see, and nothing more.

A scrape shows what the caller could read through the API:
- anonymous: fleet totals only (`poolvisor_fleet_*`: hosts and workloads by state, capacity,
  allocated and free per resource), with no pool, project or host name;
- a member token: also the per-pool series (members may list pools: capacity, allocation,
  utilization), its own project's workload counts and alerts, and the process's operational
  series (placement and HTTP latency, queue depth, events, failures, migrations, process);
- an admin token, or the scrape token the operator configured (`serve --metrics-token-file`):
  every pool's and every project's series.

The store-derived series are built per scrape for the caller's view; the operational ones live
in the app's own CollectorRegistry (AppMetrics), never in prometheus-client's global default.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from poolvisor.domain.errors import InvalidInputError
from poolvisor.observability.instruments import ProcessInstruments
from poolvisor.services import HostRecord, PoolRecord, WorkloadRecord

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
MIN_SCRAPE_TOKEN_LEN, MAX_SCRAPE_TOKEN_LEN = 16, 256
# seconds: most API calls answer in milliseconds; creations wait for the driver
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def load_scrape_token(path: Path) -> str:
    """The scrape token in `path` (one line, 16..256 printable ASCII characters without spaces)."""
    try:
        token = path.read_bytes().decode("ascii").strip()
    except OSError as e:
        raise InvalidInputError(f"cannot read the metrics token file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInputError(f"metrics token file {path}: not ASCII text") from None
    if not MIN_SCRAPE_TOKEN_LEN <= len(token) <= MAX_SCRAPE_TOKEN_LEN \
            or not all(33 <= ord(c) <= 126 for c in token):
        raise InvalidInputError(f"metrics token file {path}: the token must be {MIN_SCRAPE_TOKEN_LEN}.."
                                f"{MAX_SCRAPE_TOKEN_LEN} printable ASCII characters without spaces")
    return token


@dataclass(frozen=True)
class MetricsView:
    """How much a scrape may show: pools (per-pool and operational series) and which projects
    (None = all)."""

    pools: bool
    projects: frozenset[str] | None


ANONYMOUS = MetricsView(pools=False, projects=frozenset())
EVERYTHING = MetricsView(pools=True, projects=None)


def member_view(project: str) -> MetricsView:
    return MetricsView(pools=True, projects=frozenset({project}))


class AppMetrics:
    """One app's registry: process metrics (CPU, memory, file descriptors, GC; free from the
    library), the HTTP latency histogram its middleware feeds, and the process instruments."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(ProcessInstruments())
        self.http_seconds = Histogram(
            "poolvisor_http_request_duration_seconds",
            "HTTP request latency by method, route template and status.",
            ["method", "route", "status"], buckets=HTTP_BUCKETS, registry=self.registry)


def _gauge(name: str, help_: str, labels: Sequence[str],
           samples: Iterable[tuple[Sequence[str], float]]) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(name, help_, labels=list(labels))
    for values, v in samples:
        fam.add_metric(list(values), float(v))
    return fam


_AMOUNTS = (("capacity", "Allocatable capacity (physical x overcommit)"),
            ("allocated", "Allocated amount"), ("free", "Free allocatable amount"))


def _fleet(hosts: list[HostRecord], workloads: list[WorkloadRecord]) -> Iterable[Metric]:
    by_state = Counter(h.state for h in hosts)
    yield _gauge("poolvisor_fleet_hosts", "Hosts by state, all pools.", ["state"],
                 [((s,), n) for s, n in sorted(by_state.items())])
    wl_state = Counter(w.state for w in workloads)
    yield _gauge("poolvisor_fleet_workloads", "Workloads by state, all projects.", ["state"],
                 [((s,), n) for s, n in sorted(wl_state.items())])
    totals: dict[str, defaultdict[str, float]] = {f: defaultdict(float) for f, _ in _AMOUNTS}
    for h in hosts:
        for r, c in h.capacity.items():
            totals["capacity"][r] += c * h.overcommit.get(r, 1.0)
        for field in ("allocated", "free"):
            for r, v in getattr(h, field).items():
                totals[field][r] += v
    for field, help_ in _AMOUNTS:
        yield _gauge(f"poolvisor_fleet_{field}", f"{help_} per resource, all hosts.", ["resource"],
                     [((r,), v) for r, v in sorted(totals[field].items())])


def _pools(pools: list[PoolRecord], hosts: list[HostRecord]) -> Iterable[Metric]:
    hosts_by = Counter((h.pool or "", h.state) for h in hosts)
    yield _gauge("poolvisor_hosts", "Hosts by pool and state.", ["pool", "state"],
                 [((p, s), n) for (p, s), n in sorted(hosts_by.items())])
    for field, help_ in _AMOUNTS:
        yield _gauge(f"poolvisor_pool_{field}", f"{help_} per pool and resource.", ["pool", "resource"],
                     [((p.name, r), v) for p in pools for r, v in sorted(getattr(p, field).items())])
    yield _gauge("poolvisor_pool_utilization_ratio",
                 "Allocated over allocatable capacity per pool and resource (0..1; pool nearly full "
                 "alerts watch it).", ["pool", "resource"],
                 [((p.name, r), p.allocated.get(r, 0.0) / c)
                  for p in pools for r, c in sorted(p.capacity.items()) if c > 0])
    yield _gauge("poolvisor_pool_used", "Measured use per pool and resource (from utilization "
                 "samples; absent when unknown).", ["pool", "resource"],
                 [((p.name, r), v) for p in pools if p.used is not None for r, v in sorted(p.used.items())])


def _visible(project: str | None, view: MetricsView) -> bool:
    if view.projects is None:
        return True
    return project is not None and project in view.projects


def store_families(pools: list[PoolRecord], hosts: list[HostRecord], workloads: list[WorkloadRecord],
                   view: MetricsView, alerts: Iterable[tuple[str, str, str | None]] = ()) -> list[Metric]:
    """The series read from the store, cut to `view`. `alerts`: (rule, severity, project) of each
    active alert (project None: a fleet alert, admins only)."""
    out = list(_fleet(hosts, workloads))
    if view.pools:
        out.extend(_pools(pools, hosts))
    if view.projects is None or view.projects:
        wl_by = Counter((w.project, w.state) for w in workloads if _visible(w.project, view))
        out.append(_gauge("poolvisor_workloads", "Workloads by project and state.", ["project", "state"],
                          [((p, s), n) for (p, s), n in sorted(wl_by.items())]))
    if view.pools:
        by = Counter((rule, sev, proj or "") for rule, sev, proj in alerts
                     if view.projects is None or _visible(proj, view))
        out.append(_gauge("poolvisor_alerts_active", "Active alerts by rule, severity and project "
                          "('' for fleet alerts: pools, hosts).", ["rule", "severity", "project"],
                          [(k, n) for k, n in sorted(by.items())]))
    return out


class _Scrape:
    """What one scrape collects: the store families, then (unless anonymous) the app registry."""

    def __init__(self, families: list[Metric], registry: CollectorRegistry | None) -> None:
        self.families, self.registry = families, registry

    def collect(self) -> Iterable[Metric]:
        yield from self.families
        if self.registry is not None:
            yield from self.registry.collect()


def render(pools: list[PoolRecord], hosts: list[HostRecord], workloads: list[WorkloadRecord],
           view: MetricsView = ANONYMOUS, app: AppMetrics | None = None,
           alerts: Iterable[tuple[str, str, str | None]] = ()) -> str:
    """The text exposition for `view` (the operational series of `app` need a token)."""
    fams = store_families(pools, hosts, workloads, view, alerts)
    registry = app.registry if app is not None and view.pools else None
    return generate_latest(_Scrape(fams, registry)).decode()
