"""Driver conformance: exercise a driver through every capability it declares, on real hosts.

`check_conformance(driver, host, workload, dst=...)` returns the problems it found (empty: the
driver behaves as services expect). Drivers' own tests call it (the sim driver's do; a libvirt or
LXC driver's tests run it against their hosts), so every driver is held to one contract:

- every declared capability's protocol is implemented, none is implemented but undeclared;
- connect is idempotent, the host answers heartbeats, host_info reports capacity (HOST_INFO);
- lifecycle: create -> exists, stop/start/suspend/resume reported by stats, delete twice is fine;
- snapshots (SNAPSHOTS): create, list, restore, delete (twice);
- stats (STATS): the workload is sampled with cpu_util in [0, 1];
- migration (MIGRATION, with `dst`): the handle's progress is monotonic, it completes, and the
  workload exists on `dst` only;
- the workload is deleted at the end whatever happened (nothing left behind).
"""

from __future__ import annotations

from collections.abc import Callable

from poolvisor.domain.errors import PoolvisorError
from poolvisor.drivers.base import DriverWorkload
from poolvisor.drivers.protocols import (
    PROTOCOLS,
    Capability,
    HostBinding,
    HostDriver,
    MigrationHandle,
    MigrationProgress,
    MigrationState,
    as_lifecycle,
    as_migration,
    as_snapshots,
    as_workload_stats,
    supports,
)

MIGRATION_TIMEOUT_S = 120.0


def check_conformance(driver: HostDriver, host: HostBinding, workload: DriverWorkload, *,
                      dst: HostBinding | None = None, dst_driver: HostDriver | None = None) -> list[str]:
    """`dst`: a second host to migrate to, served by `dst_driver` (default: `driver` itself)."""
    problems: list[str] = []

    def step(what: str, fn: Callable[[], object]) -> object:
        try:
            return fn()
        except PoolvisorError as e:
            problems.append(f"{what}: {type(e).__name__}: {e.message}")
        except Exception as e:  # a driver bug: report it with the rest
            problems.append(f"{what}: {type(e).__name__}: {e}")
        return None

    def expect(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    caps = getattr(driver, "capabilities", None)
    if not isinstance(caps, frozenset) or not all(isinstance(c, Capability) for c in caps):
        return [f"capabilities must be a frozenset of Capability, not {caps!r}"]
    for cap, proto in PROTOCOLS.items():
        if cap in caps and not isinstance(driver, proto):
            problems.append(f"declares {cap} but does not implement {proto.__name__}")
    if problems:
        return problems

    h = host.name
    step("connect", lambda: driver.connect(host))
    step("connect again (idempotent)", lambda: driver.connect(host))
    expect(bool(step("heartbeat", lambda: driver.heartbeat(h))), f"heartbeat({h}) is not True")
    if supports(driver, Capability.HOST_INFO):
        info = step("host_info", lambda: driver.host_info(h))
        expect(info is not None and bool(getattr(info, "capacity", None)), "host_info reports no capacity")
    if not supports(driver, Capability.LIFECYCLE):
        return problems

    lc = as_lifecycle(driver)
    on, on_lc = h, lc
    try:
        step("create", lambda: lc.create(h, workload))
        expect(step("exists", lambda: lc.exists(h, workload)) is True, "exists is not True after create")
        for action, state in (("stop", "stopped"), ("start", "running"), ("suspend", "suspended"),
                              ("resume", "running")):
            step(action, lambda a=action: getattr(lc, a)(h, workload))  # type: ignore[misc]
            st = step(f"stats after {action}", lambda: driver.stats(h))
            got = getattr(st, "states", {}).get(workload.key) if st is not None else None
            expect(got == state, f"after {action} stats report {got!r}, expected {state!r}")
        if supports(driver, Capability.STATS):
            samples = step("workload_stats", lambda: as_workload_stats(driver).workload_stats(h))
            s = samples.get(workload.key) if isinstance(samples, dict) else None
            expect(s is not None and 0.0 <= s.cpu_util <= 1.0,
                   f"workload_stats has no sample with cpu_util in [0, 1] for {workload.key}")
        if supports(driver, Capability.SNAPSHOTS):
            sn = as_snapshots(driver)
            step("snapshot_create", lambda: sn.snapshot_create(h, workload, "conformance"))
            names = step("snapshot_list", lambda: [i.name for i in sn.snapshot_list(h, workload)])
            expect(isinstance(names, list) and "conformance" in names, "snapshot_list misses the snapshot")
            step("snapshot_restore", lambda: sn.snapshot_restore(h, workload, "conformance"))
            step("snapshot_delete", lambda: sn.snapshot_delete(h, workload, "conformance"))
            step("snapshot_delete again (idempotent)", lambda: sn.snapshot_delete(h, workload, "conformance"))
        if dst is not None and supports(driver, Capability.MIGRATION):
            other = dst_driver or driver
            step("connect dst", lambda: other.connect(dst))
            if _check_migration(driver, other, host, dst, workload, step, expect):
                on, on_lc = dst.name, as_lifecycle(other)
    finally:
        step("delete", lambda: on_lc.delete(on, workload))
        step("delete again (idempotent)", lambda: on_lc.delete(on, workload))
        expect(step("exists after delete", lambda: on_lc.exists(on, workload)) is False,
               "exists is not False after delete")
    return problems


def _check_migration(driver: HostDriver, other: HostDriver, src: HostBinding, dst: HostBinding,
                     workload: DriverWorkload, step: Callable[[str, Callable[[], object]], object],
                     expect: Callable[[bool, str], None]) -> bool:
    """Migrate to `dst` (served by `other`); True when the workload ended there."""
    mig = as_migration(driver)
    handle = step("start_migration", lambda: mig.start_migration(workload, src, dst, live=True))
    if not isinstance(handle, MigrationHandle):
        return False
    seen = []
    final = None
    for _ in range(int(MIGRATION_TIMEOUT_S / 0.5)):
        p = step("migration wait", lambda: handle.wait(0.5))
        if not isinstance(p, MigrationProgress):
            return False
        seen.append(p.fraction)
        if p.done:
            final = p
            break
    expect(all(b >= a for a, b in zip(seen, seen[1:], strict=False)), f"progress went backwards: {seen}")
    if final is None or final.state is not MigrationState.COMPLETED:
        expect(False, f"migration did not complete: {final}")
        return False
    on_dst = step("exists on dst", lambda: as_lifecycle(other).exists(dst.name, workload)) is True
    expect(on_dst, "not on dst after migration")
    expect(step("exists on src", lambda: as_lifecycle(driver).exists(src.name, workload)) is False,
           "still on src after migration")
    return on_dst
