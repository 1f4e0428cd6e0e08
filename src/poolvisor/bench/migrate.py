"""`poolvisor bench migrate`: live migration between two real libvirt hosts, measured from inside.

Starts two lab hosts (libvirtd per mount namespace, poolvisor/lab), boots one lab guest through
the libvirt driver, and migrates it back and forth: rounds of two migrations through poolvisor's
path (`LibvirtDriver.start_migration`, the handle a migrate task waits on) alternate with two
through plain `virsh migrate --live --p2p --persistent --undefinesource --copy-storage-all`, on
the same pair and guest, so both see the same machine load.

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
        root: Path | None = None, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    ok, why = lab_available()
    if not ok:
        raise BenchUnavailable(why)
    from poolvisor.drivers.base import DriverWorkload
    from poolvisor.drivers.libvirt import LibvirtDriver
    from poolvisor.drivers.libvirt_xml import LibvirtConfig, domain_name
    from poolvisor.drivers.protocols import HostBinding, MigrationState

    image = build_guest_image()
    with tempfile.TemporaryDirectory(prefix="pv-bench-migrate-", dir=root) as tmp, \
            Lab(Path(tmp), 2, prefix="bench") as lab:
        cfg = LibvirtConfig.from_env({}, domain_type="qemu", kernel=str(image.kernel),
                                     initrd=str(image.initrd), cmdline=image.cmdline("{name}", tick_ms),
                                     console_dir=str(lab.consoles), stop_timeout_s=0.0)
        drv = LibvirtDriver(config=cfg)
        hosts = [HostBinding(h.name, "libvirt", h.uri) for h in lab]
        for b in hosts:
            drv.connect(b)
        w = DriverWorkload(KEY, "vm", {"vcpu": 1, "memory_mib": memory_mib, "disk_gib": 0.0625})
        name = domain_name(KEY)
        console = lab.consoles / f"{name}.log"
        t_boot = time.monotonic()
        drv.create(hosts[0].name, w)
        wait_marker(console, name, timeout_s=90)
        boot_s = time.monotonic() - t_boot
        wait_ticks(console, after=10)
        ours, plain = Series(), Series()
        at = 0  # index of the host the guest is on
        total = migrations * (2 if virsh else 1)
        done = 0
        with ConsoleWatch(console) as watch:
            time.sleep(SETTLE_S)
            for i in range(total):
                use_virsh = virsh and (i // 2) % 2 == 1
                src, dst = hosts[at], hosts[1 - at]
                t0 = time.monotonic()
                libvirt_dt: float | None = None
                if use_virsh:
                    r = subprocess.run(
                        ["virsh", "-q", "-c", src.uri, "migrate", "--live", "--p2p", "--persistent",
                         "--undefinesource", "--copy-storage-all", name, dst.uri],
                        capture_output=True, text=True, timeout=300, check=False)
                    t1 = time.monotonic()
                    good = r.returncode == 0
                    if good:  # virsh leaves the copied source volume behind: remove it, off the clock
                        drv._delete_volumes(drv._conn(src.name), [], KEY)
                else:
                    p = drv.start_migration(w, src, dst, live=True).wait(300)
                    t1 = time.monotonic()
                    good = p.state is MigrationState.COMPLETED
                    libvirt_dt = p.downtime_ms
                series = plain if use_virsh else ours
                if not good:
                    series.failed += 1
                    continue
                at = 1 - at
                if use_virsh:
                    libvirt_dt = _libvirt_downtime(drv, hosts[at].name, name)
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
                    series.libvirt_downtimes_ms.append(libvirt_dt)
                done += 1
                if progress:
                    progress(done, total)
            lost_ticks = watch.lost_ticks()
        drv.delete(hosts[at].name, w)
    out: dict[str, Any] = ours.summary("")
    out["lost_guests"] = ours.lost + plain.lost + (1 if lost_ticks else 0)
    if virsh:
        out.update(plain.summary("virsh_"))
    out.update({"guest_memory_mib": memory_mib, "tick_ms": tick_ms, "boot_s": round(boot_s, 2),
                "counter_skips": len(lost_ticks)})
    return out


def _libvirt_downtime(drv: Any, host: str, name: str) -> float | None:
    import libvirt

    try:
        js = drv._conn(host).lookupByName(name).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        return float(js["downtime"]) if "downtime" in js else None
    except libvirt.libvirtError:
        return None
