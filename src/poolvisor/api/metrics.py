"""Prometheus text exposition (format 0.0.4) of hosts, workloads and per-pool allocations."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from poolvisor.services import HostRecord, PoolRecord, WorkloadRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kv: str) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in kv.items()) + "}"


def _family(out: list[str], name: str, help_: str, samples: Iterable[tuple[dict[str, str], float]]) -> None:
    out.append(f"# HELP {name} {help_}")
    out.append(f"# TYPE {name} gauge")
    out.extend(f"{name}{_labels(**labels)} {value:g}" for labels, value in samples)


def render(pools: list[PoolRecord], hosts: list[HostRecord], workloads: list[WorkloadRecord]) -> str:
    out: list[str] = []
    hosts_by = Counter((h.pool or "", h.state) for h in hosts)
    _family(out, "poolvisor_hosts", "Hosts by pool and state.",
            [({"pool": p, "state": s}, n) for (p, s), n in sorted(hosts_by.items())])
    wl_by = Counter((w.project, w.state) for w in workloads)
    _family(out, "poolvisor_workloads", "Workloads by project and state.",
            [({"project": p, "state": s}, n) for (p, s), n in sorted(wl_by.items())])
    for field, help_ in (("capacity", "Allocatable capacity (physical x overcommit) per pool and resource."),
                         ("allocated", "Allocated amount per pool and resource."),
                         ("free", "Free allocatable amount per pool and resource.")):
        _family(out, f"poolvisor_pool_{field}", help_,
                [({"pool": p.name, "resource": r}, v)
                 for p in pools for r, v in sorted(getattr(p, field).items())])
    return "\n".join(out) + "\n"
