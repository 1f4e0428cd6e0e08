"""The sim driver's BackupImage capability: a deterministic, checksummed image that another host
(even of another sim instance) imports; corrupt or truncated images are refused; libvirt and LXC
do not declare the capability."""

from __future__ import annotations

import hashlib
import io

import pytest

from poolvisor.drivers import DriverError, DriverWorkload
from poolvisor.drivers.libvirt import LibvirtDriver
from poolvisor.drivers.lxc import LxcDriver
from poolvisor.drivers.protocols import Capability, HostBinding, UnsupportedByDriver, as_backup_image
from poolvisor.drivers.sim import IMAGE_BYTES_PER_MIB, SimDriver

WL = DriverWorkload("demo/vm1", "vm", {"vcpu": 2.0, "memory_mib": 1024.0})


def _sim() -> SimDriver:
    d = SimDriver()
    for h in ("h1", "h2"):
        d.connect(HostBinding(h, capacity={"vcpu": 8}))
    return d


def test_export_is_deterministic_and_checksummed_and_imports_elsewhere() -> None:
    d = _sim()
    d.create("h1", WL)
    d.suspend("h1", WL)
    a, b = io.BytesIO(), io.BytesIO()
    info = d.export_image("h1", WL, a)
    assert d.export_image("h1", WL, b) == info and a.getvalue() == b.getvalue()  # same guest, same bytes
    assert info.state == "suspended" and info.size_bytes == len(a.getvalue()) > 1024 * IMAGE_BYTES_PER_MIB
    assert info.sha256 == hashlib.sha256(a.getvalue()).hexdigest()
    d.resume("h1", WL)
    c = io.BytesIO()
    assert d.export_image("h1", WL, c).sha256 != info.sha256  # another state, another image

    d.fail("h1")  # the original host is gone; another sim instance imports the image
    other = SimDriver()
    other.connect(HostBinding("h9", capacity={"vcpu": 8}))
    got = other.import_image("h9", WL, io.BytesIO(a.getvalue()))
    assert got == info and other.stats("h9").states == {"demo/vm1": "suspended"}


@pytest.mark.parametrize("damage", ["flip", "truncate", "extra", "magic", "header"])
def test_corrupt_images_are_refused(damage: str) -> None:
    d = _sim()
    d.create("h1", WL)
    buf = io.BytesIO()
    d.export_image("h1", WL, buf)
    raw = bytearray(buf.getvalue())
    if damage == "flip":
        raw[-10] ^= 1
    elif damage == "truncate":
        del raw[-100:]
    elif damage == "extra":
        raw += b"x"
    elif damage == "magic":
        raw[0:4] = b"JUNK"
    else:
        nl = raw.index(b"\n") + 1
        raw[nl:nl + 1] = b"["
    with pytest.raises(DriverError):
        d.import_image("h2", WL, io.BytesIO(bytes(raw)))
    assert not d.exists("h2", WL)


def test_dead_hosts_and_injected_faults_fail() -> None:
    d = _sim()
    d.create("h1", WL)
    d.inject("export", "h1")
    with pytest.raises(DriverError, match="injected"):
        d.export_image("h1", WL, io.BytesIO())
    d.fail("h1")
    with pytest.raises(DriverError, match="does not respond"):
        d.export_image("h1", WL, io.BytesIO())


def test_real_drivers_do_not_declare_backup_images() -> None:
    for cls in (LibvirtDriver, LxcDriver):
        assert Capability.BACKUP_IMAGE not in cls.capabilities
        with pytest.raises(UnsupportedByDriver, match="cannot export or import backup images"):
            as_backup_image(cls.__new__(cls), host="h")
