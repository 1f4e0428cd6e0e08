"""The shape of the services (issue 8, item 7): one object per domain over one shared context, no
use case inherited from another domain, one retry mechanism, and nothing but use cases inside
services/ (what-if, load generation and demo seeding live outside and use the public services)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import poolvisor.services
from poolvisor.services import Services
from poolvisor.services.base import ServiceBase

SERVICES = Path(poolvisor.services.__file__).parent
STORE = SERVICES.parent / "store"
DOMAINS = ("auth", "catalog", "hosts", "tasks", "workloads", "batch", "utilization", "networks",
           "routers", "dataplane", "events", "repair", "snapshots", "sim", "volumes", "memory", "backups",
           "backup_schedules", "volume_migration", "volume_gc")


def _modules() -> list[str]:
    return [f"poolvisor.services.{m.name}" for m in pkgutil.iter_modules([str(SERVICES)])]


def test_every_domain_is_one_object_on_the_shared_context(svc: Services) -> None:
    for name in DOMAINS:
        domain = getattr(svc, name)
        assert isinstance(domain, ServiceBase), name
        assert domain.ctx is svc.ctx, name
    assert svc.workloads.lifecycle.ctx is svc.ctx and svc.batch.workloads is svc.workloads
    assert svc.workloads.tasks is svc.tasks is svc.batch.tasks is svc.volumes.tasks
    assert svc.dataplane.routers is svc.routers
    assert svc.batch.utilization is svc.utilization  # utilization policies plan on recorded samples
    assert svc.snapshots.tasks is svc.tasks and svc.sim.hosts is svc.hosts
    # every task kind's handler is a domain service's method, registered on the one TaskService
    assert set(svc.tasks.handlers) == {"migrate", "consolidate", "snapshot", "restore", "storage-rebalance",
                                       "backup", "backup_restore", "drain", "volume-migrate"}
    assert svc.volume_migration.volumes is svc.volumes and svc.ha.volumes is svc.volumes
    assert set(svc.tasks.on_cancel) == {"snapshot", "restore", "backup", "backup_restore", "drain"}
    assert svc.ctx.drivers is svc.drivers and svc.hosts.drivers is svc.ctx.drivers


def test_no_domain_service_inherits_another() -> None:
    """Each service class extends ServiceBase (plumbing) alone: cross-domain calls go through the
    explicit references a service is given, never through a mixin."""
    found = []
    for mod in _modules():
        for _n, cls in inspect.getmembers(importlib.import_module(mod), inspect.isclass):
            if issubclass(cls, ServiceBase) and cls is not ServiceBase and cls.__module__ == mod:
                found.append(cls)
                assert cls.__bases__ == (ServiceBase,), f"{cls.__name__} extends {cls.__bases__}"
    assert len(found) >= len(DOMAINS)
    assert not any(issubclass(c, ServiceBase) for c in Services.__mro__)


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_services_import_no_simulator_demo_bench_or_front_end() -> None:
    bad = {f"{p.name}: {m}" for p in SERVICES.glob("*.py") for m in _imports(p)
           if m.startswith(("poolvisor.sim", "poolvisor.demo", "poolvisor.bench", "poolvisor.api",
                            "poolvisor.cli", "poolvisor.sweep"))}
    assert bad == set()
    moved_out = {"whatif.py", "loadgen.py", "demo.py", "demo_usage.py"}
    assert not moved_out & {p.name for p in SERVICES.glob("*.py")}


def test_one_retry_mechanism_no_ad_hoc_retry_loops() -> None:
    """Stale is retried by store/retry.py's with_retry only: no module of services/ or store/ catches
    it (or its subclasses) inside a loop, or sleeps between attempts of its own."""
    offenders = []
    for path in [*SERVICES.glob("*.py"), *STORE.glob("*.py")]:
        if path.name == "retry.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for loop in ast.walk(tree):
            if not isinstance(loop, ast.For | ast.While):
                continue
            for node in ast.walk(loop):
                if isinstance(node, ast.ExceptHandler) and node.type is not None and \
                        ("Stale" in ast.unparse(node.type) or "GroupChanged" in ast.unparse(node.type)):
                    offenders.append(f"{path.name}:{node.lineno}")
        offenders += [f"{path.name}:{n.lineno} sleeps" for n in ast.walk(tree) if isinstance(n, ast.Call)
                      and ast.unparse(n.func) == "time.sleep"]
    assert offenders == []
