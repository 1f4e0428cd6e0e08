"""`poolvisor bench migrate`: live migration between two real libvirt hosts, measured from inside.

Starts two lab hosts (libvirtd per mount namespace, poolvisor/lab), adds them to a throwaway
poolvisor store as libvirt hosts, creates one lab guest through the create use case, and migrates
it back and forth: rounds of two migrations through poolvisor's own path (the migrate use case: a
journaled task, the ledger moved, the libvirt driver's handle followed to the end) alternate with
two through plain `virsh migrate --live --p2p --persistent --undefinesource --copy-storage-all`,
on the same pair and guest, so both see the same machine load. Total time is the whole use case
for poolvisor, the whole command for virsh.

Downtime is the guest's: the host stamps each line of the guest's serial counter (every
`tick_ms`) as it arrives, and a migration's downtime is the largest gap between two ticks around
it, less the usual interval. libvirt's own estimate is reported beside it. A guest is lost when
it does not count on within 15 s after a migration, or boots again (its marker reappears).
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poolvisor.domain.errors import PoolvisorError
from poolvisor.lab import ConsoleWatch, Lab, build_guest_image, lab_available, markers, wait_marker
from poolvisor.lab.console import last_tick, wait_ticks

KEY = "bench/migrate-guest"
SETTLE_S = 0.5  # let the guest count a little between migrations


class BenchUnavailable(RuntimeError):
    """This machine cannot run the benchmark (not root, no libvirt/QEMU)."""


@dataclass
class Series:
    totals: list[float] = field(default_factory=list)
    downtimes_ms: list[float] = field(default_factory=list)
    libvirt_downtimes_ms: list[float] = field(default_factory=list)
    lost: int = 0
    failed: int = 0

    def summary(self, prefix: str) -> dict[str, Any]:
        def med(xs: list[float]) -> float | None:
            return round(statistics.median(xs), 4) if xs else None

        return {
            f"{prefix}migrations": len(self.totals),
            f"{prefix}median_total_s": med(self.totals),
            f"{prefix}max_total_s": round(max(self.totals), 4) if self.totals else None,
            f"{prefix}median_downtime_ms": med(self.downtimes_ms),
            f"{prefix}max_downtime_ms": round(max(self.downtimes_ms), 1) if self.downtimes_ms else None,
            f"{prefix}median_libvirt_downtime_ms": med(self.libvirt_downtimes_ms),
            f"{prefix}lost_guests": self.lost,
            f"{prefix}failed": self.failed,
        }


def run(migrations: int = 10, memory_mib: int = 96, tick_ms: int = 25, virsh: bool = True,
        root: Path | None = None, progress: Callable[[int, int], None] | None = None,
        shared_storage: bool = False) -> dict[str, Any]:
    """`shared_storage`: the hosts share one storage directory (as on NFS) and no disk is copied."""
    ok, why = lab_available()
    if not ok:
        raise BenchUnavailable(why)
    image = build_guest_image()
    with tempfile.TemporaryDirectory(prefix="pv-bench-migrate-", dir=root) as tmp, \
            Lab(Path(tmp), 2, prefix="bench", shared_storage=shared_storage) as lab:
        out = _run(lab, Path(tmp), image, migrations, memory_mib, tick_ms, virsh, progress, shared_storage)
    out["shared_storage"] = shared_storage
    return out


def _run(lab: Lab, tmp: Path, image: Any, migrations: int, memory_mib: int, tick_ms: int, virsh: bool,
         progress: Callable[[int, int], None] | None, shared: bool) -> dict[str, Any]:
    from poolvisor.drivers.libvirt_xml import domain_name
    from poolvisor.services import open_services

    options = {"domain_type": "qemu", "kernel": str(image.kernel), "initrd": str(image.initrd),
               "cmdline": image.cmdline("{name}", tick_ms), "console_dir": str(lab.consoles),
               "stop_timeout_s": 0.0, "shared_storage": shared}
    svc = open_services(f"sqlite:///{tmp / 'bench.db'}", driver="libvirt", driver_options=options)
    try:
        hosts = [h.name for h in lab]
        for h in lab:
            svc.hosts.create_host(h.name, driver="libvirt", uri=h.uri)  # capacity: the node's own
        project, wname = KEY.split("/")
        name = domain_name(KEY)
        console = lab.consoles / f"{name}.log"
        t_boot = time.monotonic()
        rec = svc.workloads.create_workload(project, wname, demand={"vcpu": 1, "memory_mib": memory_mib,
                                                          "disk_gib": 0.0625}, create_project=True)
        at = hosts.index(str(rec.host))
        wait_marker(console, name, timeout_s=90)
        boot_s = time.monotonic() - t_boot
        wait_ticks(console, after=10)
        ours, plain = Series(), Series()
        total = migrations * (2 if virsh else 1)
        done = 0
        uris = {h.name: h.uri for h in lab}
        with ConsoleWatch(console) as watch:
            time.sleep(SETTLE_S)
            for i in range(total):
                # rounds of two (there and back), so the store's view is right whenever it is used
                use_virsh = virsh and (i // 2) % 2 == 1
                src, dst = hosts[at], hosts[1 - at]
                series = plain if use_virsh else ours
                t0 = time.monotonic()
                libvirt_dt: float | None = None
                if use_virsh:
                    storage = ["--unsafe"] if shared else ["--copy-storage-all"]
                    r = subprocess.run(
                        ["virsh", "-q", "-c", uris[src], "migrate", "--live", "--p2p", "--persistent",
                         "--undefinesource", *storage, name, uris[dst]],
                        capture_output=True, text=True, timeout=300, check=False)
                    t1 = time.monotonic()
                    good = r.returncode == 0
                    if good and not shared:  # virsh leaves the copied source volume: remove it, off the clock
                        drv: Any = svc.drivers.driver_of(src)
                        drv._delete_volumes(drv._conn(src), [], KEY)
                    if good:
                        libvirt_dt = _libvirt_downtime(svc.drivers.driver_of(dst), dst, name)
                else:
                    try:  # the migrate use case: a journaled task following the driver's handle
                        svc.workloads.migrate_workload(project, wname, dst)
                        good = True
                    except PoolvisorError:
                        good = False
                    t1 = time.monotonic()
                    task = svc.tasks.list_tasks(project, limit=1)[0]
                    if good and task.result:
                        libvirt_dt = task.result.get("downtime_ms")
                if not good:
                    series.failed += 1
                    break
                at = 1 - at
                try:
                    wait_ticks(console, after=(last_tick(console) or 0) + 3, timeout_s=15)
                except TimeoutError:
                    series.lost += 1
                    break
                if markers(console).count(name) > 1:
                    series.lost += 1
                    break
                time.sleep(SETTLE_S)
                gap = watch.largest_gap(t0, t1 + SETTLE_S)
                series.totals.append(t1 - t0)
                if gap is not None:
                    series.downtimes_ms.append(max(0.0, (gap.seconds - watch.interval()) * 1000))
                if libvirt_dt is not None:
                    series.libvirt_downtimes_ms.append(float(libvirt_dt))
                done += 1
                if progress:
                    progress(done, total)
            skips = watch.lost_ticks()
        if svc.workloads.get_workload(project, wname).host != hosts[at]:  # a virsh round left it elsewhere
            raise RuntimeError("the guest is not where the store says it is")
        svc.workloads.delete_workload(project, wname)
    finally:
        svc.close()
    out: dict[str, Any] = ours.summary("")
    out["lost_guests"] = ours.lost + plain.lost + (1 if skips else 0)
    if virsh:
        out.update(plain.summary("virsh_"))
    out.update({"guest_memory_mib": memory_mib, "tick_ms": tick_ms, "boot_s": round(boot_s, 2),
                "counter_skips": len(skips)})
    return out


def _libvirt_downtime(drv: Any, host: str, name: str) -> float | None:
    import libvirt

    try:
        js = drv._conn(host).lookupByName(name).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        return float(js["downtime"]) if "downtime" in js else None
    except libvirt.libvirtError:
        return None
