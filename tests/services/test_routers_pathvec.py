"""Path-vector routers (services/routers.py over policies/network/tables.py + pathvec.py): every
router an AS, routes with AS paths, shortest AS path first, local preference as the import policy,
no AS path with a loop, re-convergence (with its rounds) when a link fails, LPM lookups, and the
validation of AS numbers and preferences."""

from __future__ import annotations

import pytest

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.services import Services

# four sites in a square: a - b - d - c - a, each with its own LAN
LINKS = {"ab": ("a", "b", "10.12.0.0/29"), "bd": ("b", "d", "10.24.0.0/29"),
         "dc": ("d", "c", "10.34.0.0/29"), "ca": ("c", "a", "10.13.0.0/29")}
LANS = {"a": "10.1.0.0/24", "b": "10.2.0.0/24", "c": "10.3.0.0/24", "d": "10.4.0.0/24"}


def square(s: Services, project: str = "pv") -> dict[str, int]:
    s.catalog.create_project(project)
    asn = {}
    for site, cidr in LANS.items():
        s.networks.create_network(project, f"lan-{site}", cidr)
        asn[site] = s.routers.create_router(project, site, "path-vector").asn
        s.routers.attach_router(project, site, f"lan-{site}")
    for link, (x, y, cidr) in LINKS.items():
        s.networks.create_network(project, link, cidr)
        s.routers.attach_router(project, x, link)
        s.routers.attach_router(project, y, link)
    return asn


def route(s: Services, router: str, prefix: str, project: str = "pv"):
    routes, _ = s.routers.router_routes(project, router)
    return next((r for r in routes if r.prefix == prefix), None)


def test_as_paths_local_preference_and_reconvergence(svc: Services) -> None:
    asn = square(svc)
    assert sorted(asn.values()) == [64512, 64513, 64514, 64515]  # the first free private ASNs
    to_d = route(svc, "a", LANS["d"])
    # two AS paths of length 2 (via b or c): the lower neighbour AS wins the tie
    assert (to_d.source, to_d.metric, to_d.as_path) == ("path-vector", 2.0, [asn["b"], asn["d"]])
    assert to_d.interfaces == ["ab"] and to_d.nexthops == ["10.12.0.2"]
    to_b = route(svc, "a", LANS["b"])
    assert (to_b.metric, to_b.as_path) == (1.0, [asn["b"]])
    # every AS path is loop-free and never contains the router's own AS
    for site in LANS:
        for r in svc.routers.router_routes("pv", site)[0]:
            if r.source == "path-vector":
                assert len(set(r.as_path)) == len(r.as_path) and asn[site] not in r.as_path
    # import policy: a prefers what it learns from c, even over a shorter path through b
    rec = svc.routers.set_local_pref("pv", "a", "c", 200)
    assert rec.local_pref == {"c": 200}
    assert route(svc, "a", LANS["d"]).as_path == [asn["c"], asn["d"]]
    # c's own best path to b's LAN is through a (a < d breaks its tie): a drops it (its AS is on
    # the path) and keeps the one from b
    assert route(svc, "c", LANS["b"]).as_path == [asn["a"], asn["b"]]
    assert route(svc, "a", LANS["b"]).as_path == [asn["b"]]
    svc.routers.set_local_pref("pv", "c", "d", 150)  # now c prefers d's path, which a may take
    assert route(svc, "c", LANS["b"]).as_path == [asn["d"], asn["b"]]
    assert route(svc, "a", LANS["b"]).as_path == [asn["c"], asn["d"], asn["b"]]
    svc.routers.set_local_pref("pv", "c", "d", None)
    svc.routers.set_local_pref("pv", "a", "c", None)
    assert route(svc, "a", LANS["b"]).as_path == [asn["b"]]
    # the a-b link fails: a reaches b's LAN around the square, and the rounds are reported
    svc.routers.set_interface("pv", "a", "ab", state="down")
    to_b = route(svc, "a", LANS["b"])
    assert (to_b.metric, to_b.as_path, to_b.interfaces) == (3.0, [asn["c"], asn["d"], asn["b"]], ["ca"])
    _routes, tables = svc.routers.router_routes("pv", "a")
    assert 1 <= tables.rounds["path-vector"] <= 6
    assert route(svc, "b", LANS["a"]).as_path == [asn["d"], asn["c"], asn["a"]]
    hit = svc.routers.lookup_route("pv", "a", "10.2.0.9")
    assert hit.route is not None and hit.route.prefix == LANS["b"] and hit.route.as_path[-1] == asn["b"]
    svc.routers.set_interface("pv", "a", "ab", state="up")
    assert route(svc, "a", LANS["b"]).as_path == [asn["b"]]


def test_path_vector_is_its_own_domain(lite: Services) -> None:
    """A link-state router on the same networks exchanges no routes with path-vector ones."""
    square(lite)
    lite.networks.create_network("pv", "lan-e", "10.5.0.0/24")
    lite.routers.create_router("pv", "e", "link-state")
    lite.routers.attach_router("pv", "e", "lan-e")
    lite.routers.attach_router("pv", "e", "ab")
    assert route(lite, "a", "10.5.0.0/24") is None and route(lite, "e", LANS["d"]) is None


def test_asn_and_preference_validation(lite: Services) -> None:
    square(lite)
    assert lite.routers.create_router("pv", "x", "path-vector", asn=65001).asn == 65001
    with pytest.raises(ConflictError, match="AS number 65001 is taken"):
        lite.routers.create_router("pv", "y", "path-vector", asn=65001)
    with pytest.raises(InvalidInputError, match="path-vector routers"):
        lite.routers.create_router("pv", "y", "link-state", asn=65002)
    with pytest.raises(InvalidInputError, match="asn must be"):
        lite.routers.create_router("pv", "y", "path-vector", asn=0)
    assert lite.routers.create_router("pv", "ls", "link-state").asn is None
    with pytest.raises(InvalidInputError, match="between path-vector routers"):
        lite.routers.set_local_pref("pv", "a", "ls", 150)
    with pytest.raises(InvalidInputError, match="not its own neighbour"):
        lite.routers.set_local_pref("pv", "a", "a", 150)
    with pytest.raises(InvalidInputError, match="local preference must be"):
        lite.routers.set_local_pref("pv", "a", "b", -1)
    with pytest.raises(NotFoundError):
        lite.routers.set_local_pref("pv", "a", "nope", 150)
    lite.catalog.create_project("other")
    assert lite.routers.create_router("other", "a", "path-vector").asn == 64512  # ASNs are per project
