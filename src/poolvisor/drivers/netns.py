"""A real network dataplane on this machine: Linux network namespaces, veth pairs, bridges and
kernel routes, driven through iproute2 (`ip`) and `sysctl` as subprocesses.

A topology becomes
- one namespace per network, holding a bridge `br0` (the network's segment);
- one namespace per router, forwarding, with one veth per interface (its address and MAC);
- one namespace per workload, with one veth per NIC (`eth0`, `eth1`, ...) and a default route via
  its first NIC's gateway;
each veth's other end is a port of the network's bridge. Veths are created directly between the
two namespaces. The root namespace is touched only by **uplinks**: a libvirt network's bridge on
this machine (the guests' segment of a poolvisor network, in the root namespace) joined to the
network's segment by a veth (a port of `br0` named `up-BRIDGE`, its peer a port of the libvirt
bridge), so the guests reach the router's interface (their gateway) on one L2 segment and are
routed by it; deleting the network's namespace deletes the pair.

`apply` is idempotent: it creates what is missing, sets every router interface to its configured
admin state, and never re-enables a bridge port, so a failure injected there (a cable pulled: the
router sees its carrier go) stays until repaired. `link_states` reads which router interfaces are
really up (kernel operstate), and `program_routes` replaces the routes this module owns (proto
static) with the computed ones, removing the rest. Only namespaces whose names start with the
topology's prefix are ever created or deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from poolvisor.domain.errors import InvalidInputError, PoolvisorError, UnavailableError

TIMEOUT_S = 20.0
# Our routes' metric: above the kernel's connected routes (IPv4 0, IPv6 256), so a route around a
# failed link never replaces the (link-down) connected route, which takes over again on repair.
METRIC = 1000
SETTLE_S = 3.0  # how long link_states waits for the kernel's link watch to catch up
PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_lock = threading.Lock()  # one apply at a time per process: iproute2 steps are not atomic


class DataplaneError(PoolvisorError):
    """An iproute2 command failed (503: the machine's networking did not do what was asked)."""

    status_code = 503
    code = "unavailable"


@dataclass(frozen=True)
class Port:
    """A veth: `ifname` (address `cidr`, MAC `mac`) in namespace `ns`, its peer `peer` a port of the
    bridge in namespace `bridge_ns`."""

    ns: str
    ifname: str
    cidr: str
    mac: str
    bridge_ns: str
    peer: str
    up: bool = True


@dataclass(frozen=True)
class KernelRoute:
    """A route to install: `prefix` ('default' or a CIDR) via (next hop, device) pairs (several:
    multipath)."""

    prefix: str
    hops: tuple[tuple[str, str], ...]
    ipv6: bool = False


@dataclass(frozen=True)
class Uplink:
    """A bridge of the root namespace (`bridge`, a libvirt network's) joined to the segment in
    `bridge_ns`: veth `root_if` (root namespace, a port of `bridge`) <-> `peer` (a port of br0)."""

    bridge: str
    bridge_ns: str
    root_if: str
    peer: str


def uplink(prefix: str, bridge_ns: str, bridge: str) -> Uplink:
    """The uplink joining root-namespace bridge `bridge` to the segment of `bridge_ns`: the root
    end's name is unique on the machine (a hash of both, 15 characters at most, as the kernel wants)."""
    h = hashlib.sha256(f"{bridge_ns}/{bridge}".encode()).hexdigest()[:10]
    return Uplink(bridge, bridge_ns, f"{prefix[:3]}u{h}", f"up-{bridge}"[:15])


@dataclass(frozen=True)
class Topology:
    prefix: str
    bridges: tuple[str, ...]
    routers: tuple[str, ...]
    hosts: tuple[str, ...]
    ports: tuple[Port, ...]
    uplinks: tuple[Uplink, ...] = ()

    def namespaces(self) -> tuple[str, ...]:
        return self.bridges + self.routers + self.hosts


@dataclass
class Applied:
    created: list[str] = field(default_factory=list)  # namespaces and links made by this apply


def available() -> tuple[bool, str]:
    """Can this process build namespaces? (root, iproute2 with netns support, sysctl)"""
    if os.geteuid() != 0:
        return False, "network namespaces need root"
    for tool in ("ip", "sysctl"):
        if shutil.which(tool) is None:
            return False, f"{tool} not found (Debian packages iproute2, procps)"
    try:
        subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as e:
        return False, f"'ip netns' does not work here: {e}"
    return True, ""


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or PREFIX_RE.fullmatch(prefix) is None:
        raise InvalidInputError(f"namespace prefix {prefix!r} must be 1..8 lowercase letters/digits, "
                                "starting with a letter")
    return prefix


def _run(args: Sequence[str], *, ok_if: tuple[str, ...] = ()) -> str:
    try:
        r = subprocess.run(list(args), capture_output=True, text=True, timeout=TIMEOUT_S)
    except FileNotFoundError:
        raise UnavailableError(f"network dataplane unavailable: {args[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise DataplaneError(f"'{' '.join(args)}' did not finish within {TIMEOUT_S:g} s") from None
    if r.returncode != 0:
        err = (r.stderr or r.stdout).strip().splitlines()
        msg = err[0] if err else f"exit {r.returncode}"
        if any(s in msg for s in ok_if):
            return ""
        raise DataplaneError(f"'{' '.join(args)}' failed: {msg}")
    return r.stdout


def list_namespaces() -> list[str]:
    out = _run(["ip", "-j", "netns", "list"])
    return sorted(str(n["name"]) for n in json.loads(out or "[]"))


def _links(ns: str) -> dict[str, dict[str, object]]:
    return {str(x["ifname"]): x for x in json.loads(_run(["ip", "-j", "-n", ns, "link", "show"]) or "[]")}


def apply(topo: Topology) -> Applied:
    """Create what is missing of `topo` (namespaces, bridges, veths, addresses) and set each
    router/host interface to its configured admin state."""
    check_prefix(topo.prefix)
    for ns in topo.namespaces():
        if not ns.startswith(topo.prefix + "-"):
            raise PoolvisorError(f"namespace {ns!r} does not start with the prefix {topo.prefix!r}")
    out = Applied()
    with _lock:
        have = set(list_namespaces())
        for ns in topo.namespaces():
            if ns in have:
                continue
            _run(["ip", "netns", "add", ns])
            out.created.append(ns)
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            sysctls = ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]
            if ns in topo.bridges:
                _run(["ip", "-n", ns, "link", "add", "br0", "type", "bridge"])
                _run(["ip", "-n", ns, "link", "set", "br0", "up"])
            if ns in topo.routers:
                sysctls += ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                            "net.ipv4.conf.all.ignore_routes_with_linkdown=1",
                            "net.ipv6.conf.all.ignore_routes_with_linkdown=1"]
            _run(["ip", "netns", "exec", ns, "sysctl", "-qw", *sysctls])
        links = {ns: _links(ns) for ns in topo.routers + topo.hosts}
        for p in topo.ports:
            if p.ifname not in links[p.ns]:
                _run(["ip", "-n", p.ns, "link", "add", p.ifname, "address", p.mac, "type", "veth",
                      "peer", "name", p.peer, "netns", p.bridge_ns])
                _run(["ip", "-n", p.bridge_ns, "link", "set", p.peer, "master", "br0", "up"])
                _run(["ip", "-n", p.ns, "addr", "add", p.cidr, "dev", p.ifname])
                out.created.append(f"{p.ns}/{p.ifname}")
            _run(["ip", "-n", p.ns, "link", "set", p.ifname, "up" if p.up else "down"])
        _apply_uplinks(topo, out)
    return out


def root_bridges() -> set[str]:
    """Names of the bridges in this process's (the root) network namespace."""
    shown = _run(["ip", "-j", "link", "show", "type", "bridge"])
    return {str(x["ifname"]) for x in json.loads(shown or "[]")}


def _apply_uplinks(topo: Topology, out: Applied) -> None:
    """Join the wanted root bridges to their segments; drop uplinks of the topology's segments that
    are no longer wanted (their libvirt network went). A root bridge re-created under the same name
    gets its uplink back (the veth is re-enslaved every apply)."""
    want = {(u.bridge_ns, u.peer): u for u in topo.uplinks}
    for ns in topo.bridges:
        for name in _links(ns):
            if name.startswith("up-") and (ns, name) not in want:
                _run(["ip", "-n", ns, "link", "del", name], ok_if=("Cannot find device",))
    if not topo.uplinks:
        return
    root = {str(x["ifname"]) for x in json.loads(_run(["ip", "-j", "link", "show"]) or "[]")}
    for u in topo.uplinks:
        if u.root_if not in root:
            _run(["ip", "link", "add", u.root_if, "type", "veth", "peer", "name", u.peer,
                  "netns", u.bridge_ns])
            _run(["ip", "-n", u.bridge_ns, "link", "set", u.peer, "master", "br0", "up"])
            out.created.append(f"{u.bridge}/{u.root_if}")
        _run(["ip", "link", "set", u.root_if, "master", u.bridge, "up"])


def link_states(topo: Topology) -> dict[tuple[str, str], bool]:
    """(namespace, ifname) -> whether the kernel reports the link up (admin state and carrier)."""
    by_ns: dict[str, list[Port]] = {}
    for p in topo.ports:
        by_ns.setdefault(p.ns, []).append(p)
    deadline = time.monotonic() + SETTLE_S
    while True:
        out: dict[tuple[str, str], bool] = {}
        settled = True
        for ns, ports in by_ns.items():
            links = _links(ns)
            for p in ports:
                info = links.get(p.ifname) or {}
                flags = info.get("flags", [])
                # UP = admin state, LOWER_UP = carrier: both change at once; the operstate (and the
                # routes' linkdown marks) follow through the kernel's link watch, up to a second
                # later. Report once they agree, so the routes written next are accepted.
                up = isinstance(flags, list) and "UP" in flags and "LOWER_UP" in flags
                out[(ns, p.ifname)] = up
                settled &= up == (info.get("operstate") == "UP")
        if settled or time.monotonic() > deadline:
            return out
        time.sleep(0.05)


def program_routes(ns: str, routes: Iterable[KernelRoute]) -> int:
    """Make the namespace's `proto static` routes exactly `routes`; returns how many were written."""
    want = list(routes)
    with _lock:
        for v6 in (False, True):
            fam = "-6" if v6 else "-4"
            shown = _run(["ip", "-j", fam, "-n", ns, "route", "show", "proto", "static"])
            current = json.loads(shown or "[]")
            keep = {r.prefix for r in want if r.ipv6 == v6}
            for c in current:
                dst = str(c.get("dst", ""))
                if dst not in keep or c.get("metric") != METRIC:
                    _run(["ip", fam, "-n", ns, "route", "del", dst, "proto", "static", "metric",
                          str(c.get("metric", 0))], ok_if=("No such process",))
        for r in want:
            args = ["ip", "-6" if r.ipv6 else "-4", "-n", ns, "route", "replace", r.prefix, "proto", "static",
                    "metric", str(METRIC)]
            if len(r.hops) == 1:
                args += ["via", r.hops[0][0], "dev", r.hops[0][1]]
            else:
                for via, dev in r.hops:
                    args += ["nexthop", "via", via, "dev", dev]
            _run(args)
    return len(want)


def destroy(names: Iterable[str], prefix: str) -> list[str]:
    """Delete these namespaces (only those starting with `prefix`); returns the deleted ones."""
    check_prefix(prefix)
    gone = []
    with _lock:
        have = set(list_namespaces())
        for ns in names:
            if ns.startswith(prefix + "-") and ns in have:
                _run(["ip", "netns", "del", ns], ok_if=("No such file",))
                gone.append(ns)
    return gone


def namespaces_with_prefix(prefix: str) -> list[str]:
    """Namespaces this module would have made under `prefix` (PREFIX-PROJECT_ID-KIND+ID)."""
    check_prefix(prefix)
    pat = re.compile(rf"^{re.escape(prefix)}-\d+-[nrw]\d+$")
    return [n for n in list_namespaces() if pat.match(n)]
