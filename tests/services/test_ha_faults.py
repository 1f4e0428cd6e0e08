"""Fault injection on the sim driver, bounded (< 60 s): creations and deletions while random hosts
die and heartbeats are partitioned (some fences failing at first), with the HA loop running on
its wall clock as in `serve`. Afterwards every acknowledged workload runs exactly once, nothing
deleted comes back, no host is over-allocated, and `repair.check()` is clean; while it runs, no
workload ever has two running copies (a partitioned host is fenced before its workloads restart).
"""

from __future__ import annotations

import random
import threading
import time

from sqlalchemy import func, select

from poolvisor.domain.errors import PoolvisorError
from poolvisor.drivers.sim import SimDriver
from poolvisor.services.ha import HaLoop, HaSettings
from poolvisor.store.rows import EventRow

CHAOS_S = 8.0
SETTLE_S = 20.0
HOSTS = 8


def test_creations_and_deletions_survive_host_kills_and_partitions(lite):
    svc = lite
    d = svc.driver
    assert isinstance(d, SimDriver)
    svc.catalog.create_pool("p")
    names = [f"h{i}" for i in range(HOSTS)]
    for h in names:
        svc.hosts.create_host(h, {"vcpu": 16, "memory_mib": 32768}, pool="p")
    svc.catalog.create_project("demo")
    svc.ha.settings = HaSettings(interval_s=0.1, suspect_after=1, fail_after=3)
    loop = HaLoop(svc.ha)
    acked: set[str] = set()  # create returned a workload
    deleted: set[str] = set()  # delete returned
    doubt: set[str] = set()  # the call raised: it may or may not have happened
    lock = threading.Lock()
    stop = threading.Event()
    double: list[str] = []
    stats = {"killed": 0, "partitioned": 0, "fence_faults": 0}

    def client(seed: int) -> None:
        rng = random.Random(seed)
        i = 0
        while not stop.is_set():
            with lock:
                mine = sorted(n for n in acked - deleted if n.startswith(f"c{seed}-"))
            if mine and rng.random() < 0.35:
                n = rng.choice(mine)
                try:
                    svc.workloads.delete_workload("demo", n)
                    with lock:
                        deleted.add(n)
                except PoolvisorError:
                    pass  # e.g. its host does not answer: it stays
                continue
            n = f"c{seed}-{i}"
            i += 1
            try:
                svc.workloads.create_workload("demo", n, demand={"vcpu": 1, "memory_mib": 1024},
                                              priority=rng.randint(0, 5))
                with lock:
                    acked.add(n)
            except PoolvisorError:
                with lock:
                    doubt.add(n)

    def chaos() -> None:
        rng = random.Random(7)
        down: dict[str, float] = {}
        cut: dict[str, float] = {}
        while not stop.is_set():
            now = time.monotonic()
            for h, t in list(down.items()):
                if now - t > 1.5:
                    d.revive(h)
                    del down[h]
            for h, t in list(cut.items()):  # short: heals while suspect; long: fenced
                if now > t:  # (its length is drawn once, when it is cut)
                    d.partition(h, cut=False)
                    del cut[h]
            healthy = [h for h in names if h not in down and h not in cut]
            if len(healthy) > HOSTS // 2 and rng.random() < 0.5:
                h = rng.choice(healthy)
                if rng.random() < 0.5:
                    d.fail(h)
                    down[h] = now
                    stats["killed"] += 1
                else:
                    if rng.random() < 0.5:
                        d.inject("fence", h, times=2)  # the first fences fail: it must not restart
                        stats["fence_faults"] += 1
                    d.partition(h)
                    cut[h] = now + rng.choice((0.15, 1.0))  # when it heals
                    stats["partitioned"] += 1
            with d._lock:  # never two running copies, at any instant
                seen: dict[str, int] = {}
                for sh in d.hosts.values():
                    for k in sh.guests:
                        seen[k] = seen.get(k, 0) + 1
                double.extend(k for k, c in seen.items() if c > 1)
            time.sleep(0.3)
        for h in down:
            d.revive(h)
        for h in cut:
            d.partition(h, cut=False)

    loop.start()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(2)]
    threads.append(threading.Thread(target=chaos))
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(CHAOS_S)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    # settle: every host back, HA restarts what it fenced; then stop the loop and look
    end = time.monotonic() + SETTLE_S
    steps0 = svc.ha.steps
    while time.monotonic() < end:
        if svc.ha.steps < steps0 + 5:  # HA looks at every host after the last revive and heal
            time.sleep(0.1)
            continue
        ws = svc.workloads.list_workloads("demo")
        hs = svc.hosts.list_hosts()
        if all(w.state == "running" for w in ws) and all(h.state == "up" for h in hs):
            break
        time.sleep(0.1)
    loop.stop()
    assert time.monotonic() - t0 < 60

    assert not double, f"two running copies: {sorted(set(double))}"
    assert stats["killed"] + stats["partitioned"] >= 3, stats
    ws = {w.name: w for w in svc.workloads.list_workloads("demo")}
    live = acked - deleted
    assert len(live) > 10
    missing = live - set(ws)
    assert not missing, f"acknowledged workloads gone: {sorted(missing)}"
    back = (deleted & set(ws))
    assert not back, f"deleted workloads came back: {sorted(back)}"
    unknown = set(ws) - live - doubt
    assert not unknown, f"workloads nobody created: {sorted(unknown)}"
    not_running = {n: w.state for n, w in ws.items() if w.state != "running"}
    assert not not_running, not_running
    with d._lock:
        copies: dict[str, int] = {}
        for sh in d.hosts.values():
            for k in sh.guests:
                copies[k] = copies.get(k, 0) + 1
    for n, w in ws.items():
        assert copies.get(f"demo/{n}") == 1, (n, copies.get(f"demo/{n}"), [
            e.message for e in svc.events.list_events(limit=1000) if e.subject == f"workload/demo/{n}"])
        assert f"demo/{n}" in d.hosts[w.host or ""].guests
    assert set(copies) == {f"demo/{n}" for n in ws}  # no orphan guest either
    for h in svc.hosts.list_hosts():
        for r, a in h.allocated.items():
            assert a <= h.allocatable[r] + 1e-9, (h.name, r)
        used = sum(w.demand.get("vcpu", 0.0) for w in ws.values() if w.host == h.name)
        assert abs(h.allocated.get("vcpu", 0.0) - used) < 1e-9, h.name
    rep = svc.repair.check()
    assert rep.ok, rep.violations
    def count(kind: str) -> int:
        return int(svc.ctx.read(lambda s: s.scalar(select(func.count()).select_from(EventRow)
                                                   .where(EventRow.kind == kind))) or 0)

    restarted, fenced = count("workload.restarted"), count("host.fenced")
    assert fenced >= 1 and restarted >= 1
    print(f"\nfault injection: {stats['killed']} hosts killed, {stats['partitioned']} partitioned "
          f"({stats['fence_faults']} with failing fences), {fenced} fenced, {restarted} workloads restarted, "
          f"{len(live)} acknowledged workloads running once")
