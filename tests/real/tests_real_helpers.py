"""Helpers of the real suite (a module of its own: sub-directory conftests cannot be imported)."""

from __future__ import annotations

from pathlib import Path

from poolvisor.drivers.libvirt_xml import LibvirtConfig
from poolvisor.lab import GuestImage, Lab
from poolvisor.lab.console import ticks_after, wait_for

TICK_MS = 25


def lab_config(lab: Lab, image: GuestImage, **overrides: object) -> LibvirtConfig:
    """The libvirt driver's configuration for lab guests: TCG, direct kernel boot of the lab
    image, consoles in the lab's directory, hard stop (the busybox guest ignores ACPI)."""
    cmdline = image.cmdline("{name}", TICK_MS)
    return LibvirtConfig.from_env({}, domain_type="qemu", kernel=str(image.kernel), initrd=str(image.initrd),
                                  cmdline=cmdline, console_dir=str(lab.consoles), stop_timeout_s=0.0,
                                  **overrides)


def assert_host_empty(uri: str) -> None:
    """No domain and no volume left on the host (what every real test promises at its end)."""
    import libvirt

    conn = libvirt.open(uri)
    try:
        doms = [d.name() for d in conn.listAllDomains()]
        vols = [v for p in conn.listAllStoragePools() for v in p.listVolumes()]
    finally:
        conn.close()
    assert doms == [], f"domains left on {uri}: {doms}"
    assert vols == [], f"volumes left on {uri}: {vols}"


def wait_rollback(console: Path, offset: int, at_most: int, timeout_s: float = 30.0) -> list[int]:
    """After a restore: wait until the counter, written after byte `offset`, has gone back to at
    most `at_most` and counted on from there by one (the old guest may print a few more lines
    before the revert stops it). The ticks from the rollback on."""
    def since() -> list[int]:
        t = ticks_after(console, offset)
        back = next((i for i, v in enumerate(t) if v <= at_most), None)
        return [] if back is None else t[back:]

    wait_for(lambda: len(since()) >= 3, timeout_s, f"the counter back at <= {at_most} after a restore")
    ticks = since()
    assert ticks[1] == ticks[0] + 1 and ticks[2] == ticks[0] + 2, ticks
    return ticks
