"""Prometheus text exposition (format 0.0.4): what each caller may see, and nothing more.

A scrape shows what the caller could read through the API:
- anonymous: fleet totals only (`poolvisor_fleet_*`: hosts and workloads by state, capacity,
  allocated and free per resource), with no pool, project or host name;
- a member token: also the per-pool series (members may list pools) and its own project's
  workload counts;
- an admin token, or the scrape token the operator configured (`serve --metrics-token-file`):
  every pool's and every project's series.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from poolvisor.domain.errors import InvalidInputError
from poolvisor.services import HostRecord, PoolRecord, WorkloadRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MIN_SCRAPE_TOKEN_LEN, MAX_SCRAPE_TOKEN_LEN = 16, 256


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
    """How much a scrape may show: pools (per-pool series) and which projects (None = all)."""

    pools: bool
    projects: frozenset[str] | None


ANONYMOUS = MetricsView(pools=False, projects=frozenset())
EVERYTHING = MetricsView(pools=True, projects=None)


def member_view(project: str) -> MetricsView:
    return MetricsView(pools=True, projects=frozenset({project}))


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kv: str) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in kv.items()) + "}"


def _number(v: float) -> str:
    """Exact: integral values without an exponent, others as the shortest round-trip repr."""
    f = float(v)
    return str(int(f)) if f.is_integer() and abs(f) < 2**53 else repr(f)


def _family(out: list[str], name: str, help_: str, samples: Iterable[tuple[dict[str, str], float]]) -> None:
    out.append(f"# HELP {name} {help_}")
    out.append(f"# TYPE {name} gauge")
    out.extend(f"{name}{_labels(**labels)} {_number(value)}" for labels, value in samples)


_AMOUNTS = (("capacity", "Allocatable capacity (physical x overcommit)"),
            ("allocated", "Allocated amount"), ("free", "Free allocatable amount"))


def _fleet(out: list[str], hosts: list[HostRecord], workloads: list[WorkloadRecord]) -> None:
    by_state = Counter(h.state for h in hosts)
    _family(out, "poolvisor_fleet_hosts", "Hosts by state, all pools.",
            [({"state": s}, n) for s, n in sorted(by_state.items())])
    wl_state = Counter(w.state for w in workloads)
    _family(out, "poolvisor_fleet_workloads", "Workloads by state, all projects.",
            [({"state": s}, n) for s, n in sorted(wl_state.items())])
    totals: dict[str, defaultdict[str, float]] = {f: defaultdict(float) for f, _ in _AMOUNTS}
    for h in hosts:
        for r, c in h.capacity.items():
            totals["capacity"][r] += c * h.overcommit.get(r, 1.0)
        for field in ("allocated", "free"):
            for r, v in getattr(h, field).items():
                totals[field][r] += v
    for field, help_ in _AMOUNTS:
        _family(out, f"poolvisor_fleet_{field}", f"{help_} per resource, all hosts.",
                [({"resource": r}, v) for r, v in sorted(totals[field].items())])


def render(pools: list[PoolRecord], hosts: list[HostRecord], workloads: list[WorkloadRecord],
           view: MetricsView = ANONYMOUS) -> str:
    out: list[str] = []
    _fleet(out, hosts, workloads)
    if view.pools:
        hosts_by = Counter((h.pool or "", h.state) for h in hosts)
        _family(out, "poolvisor_hosts", "Hosts by pool and state.",
                [({"pool": p, "state": s}, n) for (p, s), n in sorted(hosts_by.items())])
        for field, help_ in _AMOUNTS:
            _family(out, f"poolvisor_pool_{field}", f"{help_} per pool and resource.",
                    [({"pool": p.name, "resource": r}, v)
                     for p in pools for r, v in sorted(getattr(p, field).items())])
    if view.projects is None or view.projects:
        seen = [w for w in workloads if view.projects is None or w.project in view.projects]
        wl_by = Counter((w.project, w.state) for w in seen)
        _family(out, "poolvisor_workloads", "Workloads by project and state.",
                [({"project": p, "state": s}, n) for (p, s), n in sorted(wl_by.items())])
    return "\n".join(out) + "\n"
