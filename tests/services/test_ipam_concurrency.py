"""Hammer one small pool from many threads and several processes: never one address twice.

The pool only shrinks during the run, so a conflict means it really was exhausted: the addresses
acknowledged must be exactly the pool's free addresses, each once, and the intervals must still
partition the pool.
"""

from __future__ import annotations

import multiprocessing

from ipam_load import allocate_many, worker

from poolvisor.services import open_services

THREADS, PROCS, PER_PROC = 12, 3, 40


def hammer(url: str, pool: str, in_threads: int, address: str | None = None):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    children = [ctx.Process(target=worker, args=(url, "demo", pool, PER_PROC, 2, address, queue))
                for _ in range(PROCS)]
    for c in children:
        c.start()
    s = open_services(url, repair=False)
    try:
        acked, conflicts, errors = allocate_many(s, "demo", pool, in_threads, THREADS, address)
    finally:
        s.close()
    for _ in children:
        a, c, e = queue.get(timeout=300)
        acked, conflicts, errors = acked + a, conflicts + c, errors + e
    for c in children:
        c.join(timeout=60)
        assert c.exitcode == 0
    return acked, conflicts, errors


def test_next_free_never_twice(db_url):
    s = open_services(db_url)
    try:
        s.catalog.create_project("demo")
        s.networks.create_ip_pool("demo", "lan", "10.1.0.0/26")  # 62 usable
        s.networks.allocate_ip("demo", "lan", address="10.1.0.7")
        s.networks.reserve_ip_range("demo", "lan", "10.1.0.40", "10.1.0.49")
    finally:
        s.close()
    requested = THREADS * 8 + PROCS * PER_PROC  # 216 requests for 51 free addresses
    acked, conflicts, errors = hammer(db_url, "lan", THREADS * 8)
    assert not errors
    assert len(acked) == len(set(acked)) == 51
    assert conflicts == requested - 51
    expected = {f"10.1.0.{i}" for i in range(1, 63)} - {"10.1.0.7"} - {f"10.1.0.{i}" for i in range(40, 50)}
    assert set(acked) == expected
    s = open_services(db_url, repair=False)
    try:
        assert s.networks.check_ipam() == []
        p = s.networks.get_ip_pool("demo", "lan")
        assert p.free == 0 and p.used == {"address": 52, "reserved": 10}
    finally:
        s.close()


def test_one_specific_address_has_one_winner(db_url):
    s = open_services(db_url)
    try:
        s.catalog.create_project("demo")
        s.networks.create_ip_pool("demo", "v6", "fd00:7::/64")
    finally:
        s.close()
    acked, conflicts, errors = hammer(db_url, "v6", 24, address="fd00:7::99")
    assert not errors
    assert acked == ["fd00:7::99"]
    assert conflicts == 24 + PROCS * PER_PROC - 1


def test_churn_never_hands_out_a_held_address(db_url):
    """Threads allocate and release in a loop: an acknowledged address is never held by another
    thread at the same time, and the pool partitions cleanly at the end (merged free intervals)."""
    import threading

    from poolvisor.domain.errors import ConflictError

    s = open_services(db_url)
    try:
        s.catalog.create_project("demo")
        s.networks.create_ip_pool("demo", "lan", "10.2.0.0/28")  # 14 usable for 8 threads holding up to 2
        held: set[str] = set()
        lock = threading.Lock()
        dupes: list[str] = []

        def work(t: int) -> None:
            mine: list[str] = []
            for i in range(25):
                if len(mine) < 2:
                    try:
                        got = s.networks.allocate_ip("demo", "lan")[0].first
                    except ConflictError:
                        continue
                    with lock:
                        if got in held:
                            dupes.append(got)
                        held.add(got)
                    mine.append(got)
                if i % 2 and mine:
                    a = mine.pop(0)
                    with lock:
                        held.discard(a)
                    s.networks.release_ip("demo", "lan", a)
            for a in mine:
                with lock:
                    held.discard(a)
                s.networks.release_ip("demo", "lan", a)

        ts = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert dupes == []
        assert s.networks.check_ipam() == []
        assert [(r.first, r.last) for r in s.networks.list_ip_ranges("demo", "lan", free=True)] == [
            ("10.2.0.1", "10.2.0.14")]
    finally:
        s.close()
