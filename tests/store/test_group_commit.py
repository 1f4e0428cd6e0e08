"""Group commit (store/group.py): concurrent short writes share one transaction, each caller is
answered only after that commit, and a failing item never fails the others."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError
from poolvisor.store import Stale, Store, open_store
from poolvisor.store.rows import PoolRow

POOLS = PoolRow.__table__


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    st = open_store(str(tmp_path / "g.db"))
    assert st.start_group_commit()
    yield st
    st.close()


def _add(name: str, fail: BaseException | None = None) -> Callable[[Session], int]:
    """Insert pool `name` (then raise `fail`, if given); returns how many pools it saw after."""

    def fn(s: Session) -> int:
        s.connection().execute(insert(POOLS), {"name": name, "description": ""})
        if fail is not None:
            raise fail
        return int(s.scalar(select(func.count()).select_from(POOLS)) or 0)

    return fn


def _names(store: Store) -> set[str]:
    return set(store.run(lambda s: s.scalars(select(PoolRow.name)).all(), write=False))


def _grouped(store: Store, fns: list[Callable[[Session], Any]]) -> list[tuple[str, Any]]:
    """Run `fns` from one thread each so that they all wait in the queue together: the writer is
    held (by this process's SQLite writer lock) on a first item until all are queued."""
    group = store._group
    assert group is not None
    outcomes: list[tuple[str, Any]] = [("pending", None)] * len(fns)

    def call(i: int, fn: Callable[[Session], Any]) -> None:
        try:
            outcomes[i] = ("ok", store.run_once(fn, grouped=True))
        except Exception as e:  # noqa: BLE001 - recorded for the assertions
            outcomes[i] = ("error", e)

    with store._writer:  # the writer thread blocks on this once it takes the first item
        first = threading.Thread(target=call, args=(0, fns[0]))
        first.start()
        _until(lambda: group.taken == 1)  # the writer took it (and waits for the lock)
        rest = [threading.Thread(target=call, args=(i, fn)) for i, fn in enumerate(fns) if i > 0]
        for t in rest:
            t.start()
        _until(lambda: group.queued == len(rest))
    for t in [first, *rest]:
        t.join(timeout=30)
    return outcomes


def _until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.001)


def test_queued_writes_commit_together_in_order(store: Store) -> None:
    out = _grouped(store, [_add("p0"), _add("p1"), _add("p2"), _add("p3")])
    assert [o[0] for o in out] == ["ok"] * 4
    assert store._group is not None and store._group.groups == 1  # p1..p3: one transaction
    assert sorted(o[1] for o in out[1:]) == [2, 3, 4]  # each saw the writes queued before it
    assert _names(store) == {"p0", "p1", "p2", "p3"}


@pytest.mark.parametrize("fail", [ConflictError("no room"), Stale(), ValueError("a bug")])
def test_a_failing_item_does_not_fail_the_others(store: Store, fail: BaseException) -> None:
    out = _grouped(store, [_add("p0"), _add("a"), _add("bad", fail), _add("c")])
    assert out[1][0] == out[3][0] == "ok"
    assert out[2][0] == "error" and type(out[2][1]) is type(fail)
    assert store._group is not None and store._group.fallbacks == 1 and store._group.groups == 0
    assert _names(store) == {"p0", "a", "c"}  # the failed item's write is rolled back, the others kept


def test_a_conflicting_item_alone_gets_the_conflict(store: Store) -> None:
    """Two items insert the same unique name: the group's transaction fails; run alone, the first
    commits and the second gets the declared 409 (as without grouping)."""
    out = _grouped(store, [_add("p0"), _add("dup"), _add("dup")])
    assert sorted(o[0] for o in out[1:]) == ["error", "ok"]
    assert any(isinstance(o[1], ConflictError) for o in out)
    assert _names(store) == {"p0", "dup"}


def test_retry_through_store_run(store: Store) -> None:
    """Store.run(grouped=True) runs a Stale item again (a new group) until it passes."""
    tries = []

    def flaky(s: Session) -> str:
        tries.append(1)
        if len(tries) < 3:
            raise Stale()
        return _add("late")(s) and "done"

    assert store.run(flaky, grouped=True) == "done" and len(tries) == 3
    assert "late" in _names(store)


def test_nested_grouped_write_on_the_writer_thread_does_not_wait_on_itself(store: Store) -> None:
    def outer(s: Session) -> str:
        return store.run_once(lambda s2: "inner", grouped=True)  # e.g. a helper that writes

    assert store.run_once(outer, grouped=True) == "inner"


def test_stop_runs_what_is_queued(tmp_path: Path) -> None:
    st = open_store(str(tmp_path / "s.db"))
    st.start_group_commit()
    done: list[int] = []
    threads = [threading.Thread(target=lambda i=i: done.append(st.run_once(_add(f"q{i}"), grouped=True)))
               for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    st.close()
    assert len(done) == 5
    st2 = Store(str(tmp_path / "s.db"))
    try:
        assert _names(st2) == {f"q{i}" for i in range(5)}
    finally:
        st2.close()


CRASH = textwrap.dedent("""
    import os, sys, threading, time
    from sqlalchemy import insert
    from poolvisor.store import open_store
    from poolvisor.store.rows import PoolRow
    store = open_store(sys.argv[1])
    store.start_group_commit()
    def add(name, crash=False):
        def fn(s):
            s.connection().execute(insert(PoolRow.__table__), {"name": name, "description": ""})
            if crash:
                os._exit(9)  # the process dies in the middle of a group, after others' writes
            return name
        return fn
    def client(name, crash=False):
        store.run_once(add(name, crash), grouped=True)
        print("ack", name, flush=True)  # acknowledged only once its commit returned
    for i in range(20):
        client(f"solo{i}")  # groups of one, each acknowledged
    group = store._group
    with store._writer:  # the writer takes `blocker` alone and waits; the g's queue into one group
        threading.Thread(target=client, args=("blocker",)).start()
        while group.taken < 21:  # the 20 solos, then the blocker: taken alone, waiting for the lock
            time.sleep(0.001)
        for i in range(6):
            threading.Thread(target=client, args=(f"g{i}", i == 3)).start()
        while group.queued < 6:
            time.sleep(0.001)
    time.sleep(30)
""")


def test_a_crash_in_the_middle_of_a_group_loses_no_acknowledged_write(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    script = tmp_path / "crash.py"
    script.write_text(CRASH)
    p = subprocess.run([sys.executable, str(script), str(db)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 9, p.stderr[-2000:]
    acked = {line.split()[1] for line in p.stdout.splitlines() if line.startswith("ack ")}
    assert {f"solo{i}" for i in range(20)} <= acked  # (the blocker may commit without printing in time)
    st = Store(str(db))
    try:
        names = _names(st)
    finally:
        st.close()
    assert acked <= names  # every acknowledged write is there
    assert not any(n.startswith("g") for n in acked)  # the group died before its commit: no ack ...
    assert not any(n.startswith("g") for n in names)  # ... and none of its writes
