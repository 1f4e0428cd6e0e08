"""svc.volumes attach/detach drive the workload host's VolumeAttach (services/volume_disks.py):
the sim keeps its model of the guest's devices, the volume's bytes are offered to the driver, and
a driver that refuses the disk leaves no attachment behind (and a refused detach keeps it)."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pytest
from svc_helpers import small_cluster

from poolvisor.domain.errors import ConflictError
from poolvisor.drivers.base import DriverError, DriverWorkload
from poolvisor.drivers.protocols import VolumeSpec
from poolvisor.drivers.sim import SimDriver
from poolvisor.services import Services
from poolvisor.services.leases import utcnow


def _sim(svc: Services, host: str) -> SimDriver:
    d = svc.drivers.driver_of(host)
    assert isinstance(d, SimDriver)
    return d


def test_attach_plugs_the_disk_on_the_host_with_the_volumes_bytes(lite: Services, tmp_path) -> None:
    svc = lite
    small_cluster(svc)
    svc.workloads.create_workload("demo", "vm", flavor="unit")
    host = svc.workloads.get_workload("demo", "vm").host
    assert host is not None
    svc.volumes.create_pool("sp", replicas=1, segment_mib=4)
    svc.volumes.add_device("sp", "d1", 64, path=str(tmp_path / "d1"))
    svc.volumes.create_volume("demo", "data", "sp", 12)
    svc.volumes.write_data("demo", "data", (8 << 20) + 10, b"hello")  # third segment only
    svc.volumes.attach("demo", "data", "vm")
    dw = DriverWorkload("demo/vm", "vm", {})
    sim = _sim(svc, host)
    assert sim.devices(host, dw)[0] == ["demo/data"]
    spec: VolumeSpec = sim.hosts[host].guests["demo/vm"].volumes["demo/data"]
    assert spec.size_gib == 12 / 1024 and spec.content is not None
    pieces = list(spec.content())
    assert [off for off, _ in pieces] == [8 << 20]  # only placed segments are read
    assert pieces[0][1][10:15] == b"hello" and len(pieces[0][1]) == 4 << 20
    svc.volumes.detach("demo", "data")
    assert sim.devices(host, dw)[0] == []


def test_a_refused_disk_leaves_no_attachment_and_a_refused_detach_keeps_it(lite: Services) -> None:
    svc = lite
    small_cluster(svc)
    svc.workloads.create_workload("demo", "vm", flavor="unit")
    host = svc.workloads.get_workload("demo", "vm").host
    assert host is not None
    svc.volumes.create_pool("sp", replicas=1)
    svc.volumes.add_device("sp", "d1", 10_000)  # placement only: the disk starts empty
    svc.volumes.create_volume("demo", "v", "sp", 100)
    sim = _sim(svc, host)
    sim.fail(host)
    with pytest.raises(DriverError):
        svc.volumes.attach("demo", "v", "vm")
    assert svc.volumes.get_volume("demo", "v").attached_to is None
    sim.revive(host)
    svc.volumes.attach("demo", "v", "vm")
    spec = sim.hosts[host].guests["demo/vm"].volumes["demo/v"]
    assert spec.content is None
    sim.fail(host)
    with pytest.raises(DriverError):
        svc.volumes.detach("demo", "v")
    assert svc.volumes.get_volume("demo", "v").attached_to == "vm"
    assert svc.repair.check().ok


def test_a_new_workloads_nics_are_plugged_on_its_host(lite: Services) -> None:
    """services/nic_plug.py: the NICs allocated at creation reach the host's driver (the sim's model)."""
    svc = lite
    small_cluster(svc)
    svc.networks.create_network("demo", "front", "10.9.0.0/24")
    svc.workloads.create_workload("demo", "vm", flavor="unit", networks=["front"])
    host = svc.workloads.get_workload("demo", "vm").host
    assert host is not None
    nics = svc.networks.list_nics("demo", workload="vm")
    sim = _sim(svc, host)
    assert sim.devices(host, DriverWorkload("demo/vm", "vm", {}))[1] == [n.mac for n in nics]
    spec = sim.hosts[host].guests["demo/vm"].nics[nics[0].mac]
    assert (spec.network, spec.address) == ("demo/front", f"{nics[0].address}/24")


def test_the_guests_writes_come_back_into_the_volume_on_detach_and_on_delete(lite: Services,
                                                                            tmp_path) -> None:
    """services/volume_disks.py `unplug`: what the guest wrote to its disk is written back into the
    volume when the volume is detached and when the workload is deleted; zeros over segments never
    placed take no space."""
    svc = lite
    small_cluster(svc)
    svc.workloads.create_workload("demo", "vm", flavor="unit")
    host = svc.workloads.get_workload("demo", "vm").host
    assert host is not None
    svc.volumes.create_pool("sp", replicas=1, segment_mib=4)
    svc.volumes.add_device("sp", "d1", 64, path=str(tmp_path / "d1"))
    svc.volumes.create_volume("demo", "data", "sp", 16)
    svc.volumes.write_data("demo", "data", 10, b"before")
    svc.volumes.attach("demo", "data", "vm")
    sim, dw = _sim(svc, host), DriverWorkload("demo/vm", "vm", {})
    sim.guest_write(host, dw, "demo/data", 10, b"AFTER!")  # over what the volume held
    sim.guest_write(host, dw, "demo/data", (9 << 20) + 3, b"new segment")
    sim.guest_write(host, dw, "demo/data", 13 << 20, bytes(1 << 20))  # zeros, unplaced segment
    svc.volumes.detach("demo", "data")
    assert svc.volumes.read_data("demo", "data", 10, 6) == b"AFTER!"
    assert svc.volumes.read_data("demo", "data", (9 << 20) + 3, 11) == b"new segment"
    assert svc.volumes.get_volume("demo", "data").segments == 2  # segment 3 stays unplaced

    svc.volumes.attach("demo", "data", "vm")
    sim.guest_write(host, dw, "demo/data", 0, b"last words")
    svc.workloads.delete_workload("demo", "vm")  # the disk's bytes come back before the guest goes
    assert svc.volumes.read_data("demo", "data", 0, 10) == b"last words"
    assert svc.volumes.get_volume("demo", "data").attached_to is None


def test_a_volume_that_cannot_take_its_bytes_back_keeps_the_attachment(lite: Services, tmp_path) -> None:
    svc = lite
    small_cluster(svc)
    svc.workloads.create_workload("demo", "vm", flavor="unit")
    host = svc.workloads.get_workload("demo", "vm").host
    assert host is not None
    svc.volumes.create_pool("sp", replicas=1, segment_mib=4)
    svc.volumes.add_device("sp", "d1", 64, path=str(tmp_path / "d1"))
    svc.volumes.create_volume("demo", "data", "sp", 8, thin=False)
    svc.volumes.attach("demo", "data", "vm")
    sim, dw = _sim(svc, host), DriverWorkload("demo/vm", "vm", {})
    sim.guest_write(host, dw, "demo/data", 0, b"precious")
    shutil.rmtree(tmp_path / "d1")  # the only device is gone: the bytes have nowhere to go
    with pytest.raises(ConflictError, match="no valid replica"):
        svc.volumes.detach("demo", "data")
    assert svc.volumes.get_volume("demo", "data").attached_to == "vm"
    assert sim.devices(host, dw)[0] == ["demo/data"]  # the disk (and the guest's bytes) stay
    with pytest.raises(ConflictError, match="no valid replica"):
        svc.workloads.delete_workload("demo", "vm")
    assert svc.workloads.get_workload("demo", "vm").state == "running"


class _Crash(BaseException):
    """Stands for the process dying in the middle of the delete (nothing catches it)."""


@pytest.mark.parametrize("dies_in", ["stop", "delete"])
def test_an_interrupted_delete_still_copies_the_guests_writes_back(lite: Services, tmp_path,
                                                                    dies_in: str) -> None:
    """The process dies in the middle of a delete: before the copy-back began (in the guest's
    stop), or after the driver deleted the guest (its bytes were copied back before). The repair
    sweep that finishes the delete copies back what is still on the host, and does not trip on a
    guest that is gone."""
    svc = lite
    small_cluster(svc)
    svc.workloads.create_workload("demo", "vm", flavor="unit")
    host = svc.workloads.get_workload("demo", "vm").host
    assert host is not None
    svc.volumes.create_pool("sp", replicas=1, segment_mib=4)
    svc.volumes.add_device("sp", "d1", 64, path=str(tmp_path / "d1"))
    svc.volumes.create_volume("demo", "data", "sp", 8)
    svc.volumes.attach("demo", "data", "vm")
    sim, dw = _sim(svc, host), DriverWorkload("demo/vm", "vm", {})
    sim.guest_write(host, dw, "demo/data", 0, b"last words")
    real = getattr(sim, dies_in)

    def dying(*args, **kwargs):
        if dies_in == "delete":
            real(*args, **kwargs)
        raise _Crash()

    setattr(sim, dies_in, dying)
    with pytest.raises(_Crash):
        svc.workloads.delete_workload("demo", "vm")
    delattr(sim, dies_in)  # the restarted process has a working driver again
    assert svc.workloads.get_workload("demo", "vm").state == "deleting"
    assert svc.repair.run(now=utcnow() + timedelta(hours=1)) == ["workload vm: interrupted delete finished"]
    assert svc.volumes.read_data("demo", "data", 0, 10) == b"last words"
    assert svc.volumes.get_volume("demo", "data").attached_to is None
    assert not sim.exists(host, dw) and svc.repair.check().ok
