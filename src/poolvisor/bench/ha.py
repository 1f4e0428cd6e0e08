"""`poolvisor bench ha`: time from a sim host's death to its workloads running elsewhere.

A throwaway store with a sim pool, workloads spread over it, and the HA loop as `poolvisor serve`
runs it (HaLoop on a WallClock, its own thread, default settings unless given). Each round kills
one host holding workloads in the sim (no heartbeat, guests gone: nothing tells poolvisor), then
watches from outside, every `POLL_S`, the time until (a) the database says the host is fenced
(declared failed) and (b) every workload it held runs on another host, in the database and in the
sim (exactly one copy). The host is then revived and must rejoin empty before the next round.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from poolvisor.drivers.sim import SimDriver
from poolvisor.services import Services, open_services
from poolvisor.services.ha import DEFAULT_INTERVAL_S, HaLoop, HaSettings

POLL_S = 0.01
ROUND_TIMEOUT_S = 60.0


def _wait(cond: Any, timeout_s: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if cond():
            return time.monotonic() - t0
        time.sleep(POLL_S)
    return None


def _running_elsewhere(svc: Services, d: SimDriver, names: list[str], dead: str) -> bool:
    for n in names:
        w = svc.workloads.get_workload("bench", n)
        if w.state != "running" or w.host in (None, dead):
            return False
        if sum(1 for h in d.hosts.values() if f"bench/{n}" in h.guests) != 1:
            return False
    return True


def run(*, hosts: int = 8, workloads: int = 40, kills: int = 3, interval_s: float = DEFAULT_INTERVAL_S,
        fail_after: int = 3, seed: int = 0) -> dict[str, Any]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="poolvisor-bench-ha-") as tmp:
        svc = open_services(f"sqlite:///{Path(tmp) / 'ha.db'}")
        try:
            d = svc.driver
            assert isinstance(d, SimDriver)
            svc.catalog.create_pool("bench")
            for i in range(hosts):
                svc.hosts.create_host(f"h{i:02d}", {"vcpu": 32, "memory_mib": 65536}, pool="bench")
            svc.catalog.create_project("bench")
            for i in range(workloads):
                svc.workloads.create_workload("bench", f"w{i:03d}", demand={"vcpu": 2, "memory_mib": 2048},
                                              priority=i % 3)
            svc.ha.settings = HaSettings(interval_s=interval_s, fail_after=fail_after)
            loop = HaLoop(svc.ha)
            loop.start()
            rounds: list[dict[str, Any]] = []
            try:
                for _ in range(kills):
                    by_host: dict[str, list[str]] = {}
                    for w in svc.workloads.list_workloads("bench"):
                        if w.host is not None:
                            by_host.setdefault(w.host, []).append(w.name)
                    victim = rng.choice(sorted(by_host))
                    names = by_host[victim]
                    d.fail(victim)
                    t0 = time.monotonic()
                    declared = _wait(lambda v=victim: svc.hosts.get_host(v).state == "fenced",
                                     ROUND_TIMEOUT_S)
                    left = ROUND_TIMEOUT_S - (time.monotonic() - t0)
                    restored = _wait(lambda v=victim, n=names: _running_elsewhere(svc, d, n, v), left)
                    restored = None if restored is None else time.monotonic() - t0
                    rounds.append({"host": victim, "workloads": len(names), "declared_failed_s": declared,
                                   "running_elsewhere_s": restored})
                    d.revive(victim)
                    rounds[-1]["rejoined_s"] = _wait(lambda v=victim: svc.hosts.get_host(v).state == "up",
                                                     ROUND_TIMEOUT_S)
            finally:
                loop.stop()
            check = svc.repair.check()
        finally:
            svc.close()
    det: list[float] = [r["declared_failed_s"] for r in rounds if r["declared_failed_s"] is not None]
    res: list[float] = [r["running_elsewhere_s"] for r in rounds if r["running_elsewhere_s"] is not None]
    return {
        "hosts": hosts, "workloads": workloads, "kills": kills, "interval_s": interval_s,
        "fail_after": fail_after,
        "restarted": sum(r["workloads"] for r in rounds if r["running_elsewhere_s"] is not None),
        "declared_failed_s_max": max(det) if len(det) == len(rounds) else None,
        "declared_failed_s_median": statistics.median(det) if det else None,
        "running_elsewhere_s_max": max(res) if len(res) == len(rounds) else None,
        "running_elsewhere_s_median": statistics.median(res) if res else None,
        "goal_declared_s": 5.0, "goal_running_s": 10.0,
        "rejoined_all": all(r.get("rejoined_s") is not None for r in rounds),
        "check_ok": check.ok, "rounds": rounds,
    }
