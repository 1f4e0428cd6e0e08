"""Helpers of the real suite (a module of its own: sub-directory conftests cannot be imported)."""

from __future__ import annotations

from poolvisor.drivers.libvirt_xml import LibvirtConfig
from poolvisor.lab import GuestImage, Lab

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
