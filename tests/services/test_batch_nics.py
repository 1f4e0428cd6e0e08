"""Batch (and gang) creation gives workloads NICs like a single create: taken in the claim
transaction, plugged on the host's driver once the guest exists, all given back when the batch
rolls back (a guest the driver refused, a NIC the host refused, a network without room)."""

from __future__ import annotations

import pytest
from svc_helpers import small_cluster

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.drivers.base import DriverRefusal, DriverWorkload
from poolvisor.drivers.protocols import NicSpec
from poolvisor.drivers.sim import SimDriver
from poolvisor.services import Services


def _sim(svc: Services, host: str) -> SimDriver:
    d = svc.drivers.driver_of(host)
    assert isinstance(d, SimDriver)
    return d


def _plugged(svc: Services, name: str) -> list[tuple[str, str, str]]:
    """(network, address, mac) of the NICs the host's driver got for workload demo/name."""
    host = svc.workloads.get_workload("demo", name).host
    assert host is not None
    nics = _sim(svc, host).hosts[host].guests[f"demo/{name}"].nics.values()
    return sorted((n.network, n.address, n.mac) for n in nics)


def _free(svc: Services, net: str) -> int:
    return svc.networks.get_network("demo", net).free


@pytest.mark.parametrize("gang", [False, True], ids=["packer", "gang"])
def test_batch_workloads_get_their_nics_plugged(lite: Services, gang: bool) -> None:
    small_cluster(lite)
    lite.networks.create_network("demo", "front", "10.9.0.0/24")
    lite.networks.create_network("demo", "back", "10.8.0.0/24")
    extra = {"group": "g", "group_policy": "anti-affinity"} if gang else {}
    res = lite.batch.create_workloads_batch("demo", [
        {"name": "a", "flavor": "unit", "networks": ["front", "back"], **extra},
        {"name": "b", "flavor": "unit", "networks": ["front"], **extra},
        {"name": "c", "flavor": "unit", **extra}])
    assert [w.state for w in res.workloads] == ["running"] * 3
    for w in ("a", "b", "c"):
        nics = lite.networks.list_nics("demo", workload=w)
        want = sorted((f"demo/{n.network}", f"{n.address}/{n.prefixlen}", n.mac) for n in nics)
        assert _plugged(lite, w) == want  # exactly the allocated NICs reached the driver
    assert [n.network for n in lite.networks.list_nics("demo", workload="a")] == ["front", "back"]
    assert len(lite.networks.list_nics("demo", workload="b")) == 1
    assert lite.networks.list_nics("demo", workload="c") == []
    assert lite.repair.check().ok
    for w in ("a", "b", "c"):
        lite.workloads.delete_workload("demo", w)
    assert lite.networks.list_nics("demo") == [] and _free(lite, "front") == 252 and lite.repair.check().ok


def test_a_nic_the_host_refuses_rolls_the_batch_back(lite: Services, monkeypatch) -> None:
    small_cluster(lite)
    lite.networks.create_network("demo", "front", "10.9.0.0/24")
    mac_free = next(p for p in lite.networks.list_ip_pools() if p.family == "mac").free
    refused: list[str] = []
    real = SimDriver.attach_nic

    def attach(self: SimDriver, host: str, w: DriverWorkload, nic: NicSpec) -> None:
        if w.key == "demo/b":
            refused.append(w.key)
            raise DriverRefusal(f"host {host!r} has no room for NIC {nic.mac}")
        real(self, host, w, nic)

    monkeypatch.setattr(SimDriver, "attach_nic", attach)
    with pytest.raises(DriverRefusal, match="batch not created: host .* has no room for NIC"):
        lite.batch.create_workloads_batch("demo", [
            {"name": n, "flavor": "unit", "networks": ["front"]} for n in ("a", "b", "c")])
    assert refused == ["demo/b"]
    assert lite.workloads.list_workloads("demo") == []
    for h in ("h0", "h1", "h2"):  # no guest left on any host, the refused one included
        assert _sim(lite, h).hosts[h].guests == {}
    assert lite.networks.list_nics("demo") == [] and _free(lite, "front") == 252
    assert next(p for p in lite.networks.list_ip_pools() if p.family == "mac").free == mac_free
    assert lite.repair.check().ok


def test_batch_networks_are_checked_and_a_full_network_refuses_the_batch(lite: Services) -> None:
    small_cluster(lite)
    lite.networks.create_network("demo", "tiny", "10.0.0.0/29")  # 6 usable, 1 gateway: 5 NICs
    with pytest.raises(NotFoundError, match="batch item 1: network 'nope' not found"):
        lite.batch.create_workloads_batch("demo", [{"name": "a", "flavor": "unit", "networks": ["tiny"]},
                                                   {"name": "b", "flavor": "unit", "networks": ["nope"]}])
    with pytest.raises(InvalidInputError, match="batch item 0: a network is listed twice"):
        lite.batch.create_workloads_batch("demo", [{"name": "a", "flavor": "unit", "networks": ["tiny"] * 2}])
    with pytest.raises(InvalidInputError, match="batch item 0: networks must be a list"):
        lite.batch.create_workloads_batch("demo", [{"name": "a", "flavor": "unit", "networks": "tiny"}])
    with pytest.raises(ConflictError, match="network 'tiny' has no free address"):
        lite.batch.create_workloads_batch("demo", [
            {"name": f"w{i}", "flavor": "unit", "networks": ["tiny"]} for i in range(6)])
    assert lite.workloads.list_workloads("demo") == [] and _free(lite, "tiny") == 5
    assert lite.repair.check().ok
