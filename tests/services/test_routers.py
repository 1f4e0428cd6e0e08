"""Virtual routers: interfaces from the networks' pools, static and dynamic routes, LPM lookups,
re-convergence when a link goes down."""

from __future__ import annotations

import pytest

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError


def two_router_topology(s, project="demo", protocol="link-state", cost_b=10):
    """lan1 - r1 = (ta, cost 1 | tb, cost `cost_b`) = r2 - lan2."""
    s.catalog.create_project(project)
    for name, cidr in (("lan1", "10.1.0.0/24"), ("lan2", "10.2.0.0/24"), ("ta", "10.9.1.0/24"),
                       ("tb", "10.9.2.0/24")):
        s.networks.create_network(project, name, cidr)
    for r, lan in (("r1", "lan1"), ("r2", "lan2")):
        s.routers.create_router(project, r, protocol)
        s.routers.attach_router(project, r, lan)
        s.routers.attach_router(project, r, "ta")
        s.routers.attach_router(project, r, "tb", cost=cost_b)


def route_to(s, router, prefix, project="demo"):
    routes, _ = s.routers.router_routes(project, router)
    return next(r for r in routes if r.prefix == prefix)


@pytest.mark.parametrize("protocol", ["link-state", "distance-vector"])
def test_routes_and_reconvergence(svc, protocol):
    two_router_topology(svc, protocol=protocol)
    r1 = svc.routers.get_router("demo", "r1")
    assert [(i.network, i.address, i.cost) for i in r1.interfaces] == [
        ("lan1", "10.1.0.1", 1), ("ta", "10.9.1.1", 1), ("tb", "10.9.2.1", 10)]  # gateways claimed
    r2 = svc.routers.get_router("demo", "r2")
    assert [i.address for i in r2.interfaces] == ["10.2.0.1", "10.9.1.2", "10.9.2.2"]
    routes, tables = svc.routers.router_routes("demo", "r1")
    assert [(r.prefix, r.source) for r in routes] == [
        ("10.1.0.0/24", "connected"), ("10.2.0.0/24", protocol), ("10.9.1.0/24", "connected"),
        ("10.9.2.0/24", "connected")]
    lan2 = route_to(svc, "r1", "10.2.0.0/24")
    assert (lan2.nexthops, lan2.interfaces, lan2.metric) == (["10.9.1.2"], ["ta"], 2.0)
    hit = svc.routers.lookup_route("demo", "r1", "10.2.0.77")
    assert hit.route is not None and hit.route.prefix == "10.2.0.0/24"
    assert svc.routers.lookup_route("demo", "r1", "192.168.0.1").route is None
    # the cheap link fails: both routers go around it
    svc.routers.set_interface("demo", "r1", "ta", state="down")
    lan2 = route_to(svc, "r1", "10.2.0.0/24")
    assert (lan2.nexthops, lan2.interfaces, lan2.metric) == (["10.9.2.2"], ["tb"], 11.0)
    back = route_to(svc, "r2", "10.1.0.0/24")
    assert back.nexthops == ["10.9.2.1"]
    _routes, tables = svc.routers.router_routes("demo", "r1")
    if protocol == "distance-vector":
        assert 1 <= tables.rounds["distance-vector"] <= 5
    assert tables.compute_s < 5
    svc.routers.set_interface("demo", "r1", "ta", state="up")
    assert route_to(svc, "r1", "10.2.0.0/24").nexthops == ["10.9.1.2"]


def test_ecmp_static_routes_and_lookup(lite):
    two_router_topology(lite, cost_b=1)
    lan2 = route_to(lite, "r1", "10.2.0.0/24")
    assert sorted(lan2.nexthops) == ["10.9.1.2", "10.9.2.2"] and sorted(lan2.interfaces) == ["ta", "tb"]
    lite.routers.add_static_route("demo", "r1", "0.0.0.0/0", "10.9.1.2")
    lite.routers.add_static_route("demo", "r1", "10.2.0.128/25", "10.9.2.2", metric=5)
    assert lite.routers.lookup_route("demo", "r1", "8.8.8.8").route.prefix == "0.0.0.0/0"
    hit = lite.routers.lookup_route("demo", "r1", "10.2.0.200").route
    assert (hit.prefix, hit.source, hit.nexthops) == ("10.2.0.128/25", "static", ["10.9.2.2"])
    assert lite.routers.lookup_route("demo", "r1", "10.2.0.100").route.prefix == "10.2.0.0/24"
    with pytest.raises(InvalidInputError, match="not on a network"):
        lite.routers.add_static_route("demo", "r1", "10.50.0.0/16", "10.77.0.1")
    with pytest.raises(InvalidInputError):
        lite.routers.add_static_route("demo", "r1", "10.50.0.1/16", "10.9.1.2")  # host bits
    with pytest.raises(InvalidInputError):
        lite.routers.add_static_route("demo", "r1", "10.50.0.0/16", "fd00::1")  # family
    with pytest.raises(ConflictError, match="already has the route"):
        lite.routers.add_static_route("demo", "r1", "0.0.0.0/0", "10.9.1.2")
    assert [(x.prefix, x.nexthop) for x in lite.routers.get_router("demo", "r1").static_routes] == [
        ("0.0.0.0/0", "10.9.1.2"), ("10.2.0.128/25", "10.9.2.2")]
    assert lite.routers.delete_static_route("demo", "r1", "0.0.0.0/0") == 1
    with pytest.raises(NotFoundError):
        lite.routers.delete_static_route("demo", "r1", "0.0.0.0/0")
    assert lite.routers.lookup_route("demo", "r1", "8.8.8.8").route is None
    # a static route whose next hop's network is down is not installed
    lite.routers.set_interface("demo", "r1", "tb", state="down")
    assert lite.routers.lookup_route("demo", "r1", "10.2.0.200").route.prefix == "10.2.0.0/24"


def test_interfaces_take_and_give_back_addresses(lite):
    two_router_topology(lite)
    free = {n.name: n.free for n in lite.networks.list_networks("demo")}
    with pytest.raises(ConflictError, match="already has an interface"):
        lite.routers.attach_router("demo", "r1", "ta")
    lite.routers.create_router("demo", "r3", "static")
    with pytest.raises(ConflictError, match="not free"):
        lite.routers.attach_router("demo", "r3", "ta", address="10.9.1.2")
    i = lite.routers.attach_router("demo", "r3", "ta", address="10.9.1.50", cost=7)
    assert (i.address, i.cost, i.state) == ("10.9.1.50", 7, "up") and i.mac.startswith("02:")
    assert lite.networks.get_network("demo", "ta").routers == ["r1", "r2", "r3"]
    with pytest.raises(ConflictError, match="attached to router"):
        lite.networks.delete_network("demo", "ta")
    lite.routers.detach_router("demo", "r1", "ta")  # the gateway goes back to being the reserved gateway
    assert lite.routers.attach_router("demo", "r3", "lan1").address == "10.1.0.2"  # lan1's gateway is r1's
    lite.routers.detach_router("demo", "r3", "lan1")
    i = lite.routers.attach_router("demo", "r1", "ta")
    assert i.address == "10.9.1.1"
    lite.routers.delete_router("demo", "r1")
    lite.routers.delete_router("demo", "r3")
    after = {n.name: n.free for n in lite.networks.list_networks("demo")}
    assert after == {**free, "lan1": free["lan1"]} and after["ta"] == free["ta"]
    assert lite.networks.check_ipam() == []
    lite.routers.create_router("demo", "r1")
    assert lite.routers.attach_router("demo", "r1", "lan1").address == "10.1.0.1"


def test_router_errors_and_isolation(lite):
    two_router_topology(lite)
    lite.catalog.create_project("other")
    lite.networks.create_network("other", "priv", "10.1.0.0/24")
    with pytest.raises(NotFoundError):
        lite.routers.attach_router("demo", "r1", "priv")  # another project's network
    with pytest.raises(NotFoundError):
        lite.routers.get_router("other", "r1")
    with pytest.raises(InvalidInputError, match="unknown protocol"):
        lite.routers.create_router("demo", "x", "ospf")
    with pytest.raises(ConflictError, match="already exists"):
        lite.routers.create_router("demo", "r1")
    with pytest.raises(InvalidInputError, match="cost"):
        lite.routers.attach_router("demo", "r1", "lan2", cost=0)
    with pytest.raises(InvalidInputError):
        lite.routers.set_interface("demo", "r1", "ta", state="sideways")
    assert {r.name for r in lite.routers.list_routers()} == {"r1", "r2"}
    assert lite.routers.list_routers("other") == []


def test_dataplane_disabled_or_unavailable_is_a_clear_503(lite, monkeypatch):
    from poolvisor.drivers import netns

    lite.catalog.create_project("demo")
    monkeypatch.delenv("POOLVISOR_DATAPLANE", raising=False)
    with pytest.raises(ConflictError, match="disabled here: start the server with POOLVISOR_DATAPLANE"):
        lite.dataplane.apply_network("demo", "pv")
    monkeypatch.setenv("POOLVISOR_DATAPLANE", "1")
    monkeypatch.setattr(netns, "available", lambda: (False, "network namespaces need root"))
    with pytest.raises(netns.DataplaneError, match="unavailable: network namespaces need root") as e:
        lite.dataplane.apply_network("demo", "pv")
    assert e.value.status_code == 503
    with pytest.raises(netns.DataplaneError):
        lite.dataplane.teardown_network("demo", "pv")
    from poolvisor.domain.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="prefix"):
        lite.dataplane.apply_network("demo", "Bad-Prefix")
