"""SQLite writers of several processes queue on one file lock (store/writelock.py), not in
SQLite's sleeping busy handler; the lock is the process's, never inherited across fork."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
from typing import Any

import pytest
from sqlalchemy import select, update

from poolvisor.store import open_store
from poolvisor.store.rows import PoolRow
from poolvisor.store.writelock import WriteLock


def _locked_by_someone(path: str) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def test_a_write_transaction_holds_the_file_lock_and_releases_it(tmp_path):
    store = open_store(str(tmp_path / "l.db"))
    lock = f"{tmp_path / 'l.db'}-writer.lock"
    seen: list[bool] = []
    try:
        store.run(lambda s: seen.append(_locked_by_someone(lock)))
        assert seen == [True]
        assert not _locked_by_someone(lock)  # released at commit
        store.run(lambda s: seen.append(_locked_by_someone(lock)), write=False)  # readers do not take it
        assert seen == [True, False]

        def fails(s):
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            store.run(fails)
        assert not _locked_by_someone(lock)  # released when the transaction fails too
    finally:
        store.close()


def test_reentrant_on_a_thread_and_exclusive_between_threads(tmp_path):
    lock = WriteLock(str(tmp_path / "x.lock"))
    order: list[str] = []
    with lock:
        with lock:  # the same thread again: no self-deadlock
            order.append("inner")
        assert _locked_by_someone(str(tmp_path / "x.lock"))  # still held by the outer level
        def other() -> None:
            with lock:
                order.append("other")

        t = threading.Thread(target=other)
        t.start()
        t.join(0.2)
        assert t.is_alive() and order == ["inner"]  # the other thread waits
        order.append("outer done")
    t.join(10)
    assert order == ["inner", "outer done", "other"]
    lock.close()


def _child_holds(path: str, held: Any, release: Any) -> None:
    lock = WriteLock(path)
    with lock:
        held.set()
        release.wait(30)


def test_another_process_holding_the_lock_makes_writers_wait(tmp_path):
    db = str(tmp_path / "p.db")
    store = open_store(db)
    store.run(lambda s: s.add(PoolRow(name="p", description="")))
    ctx = multiprocessing.get_context("spawn")
    held, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_child_holds, args=(f"{db}-writer.lock", held, release))
    child.start()
    try:
        assert held.wait(60)
        done = threading.Event()
        t = threading.Thread(target=lambda: (store.run(
            lambda s: s.execute(update(PoolRow).values(description="written"))), done.set()))
        t.start()
        assert not done.wait(0.3)  # queued behind the other process's writer
        release.set()
        assert done.wait(30)  # and in as soon as it let go
        t.join()
        assert store.run(lambda s: s.scalar(select(PoolRow.description)), write=False) == "written"
    finally:
        release.set()
        child.join(30)
        store.close()


def test_a_forked_child_takes_its_own_lock(tmp_path):
    """A descriptor inherited across fork would share the parent's flock (both 'holding' it)."""
    path = str(tmp_path / "f.lock")
    lock = WriteLock(path)
    with lock:
        pass  # the parent opened its descriptor
    r, w = os.pipe()
    with lock:
        pid = os.fork()
        if pid == 0:  # the child: its lock must wait for the parent's, not pass through it
            try:
                lock._thread = threading.RLock()  # the parent's thread holds the inherited RLock
                lock._depth = 0
                fd = lock._file()
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    os.write(w, b"shared")
                except BlockingIOError:
                    os.write(w, b"waits")
            finally:
                os._exit(0)
        answer = os.read(r, 16)
        os.waitpid(pid, 0)
    os.close(r)
    os.close(w)
    lock.close()
    assert answer == b"waits"


def test_an_unwritable_lock_file_leaves_the_thread_lock(tmp_path):
    lock = WriteLock(str(tmp_path / "missing-dir" / "x.lock"))  # cannot be created
    with lock, lock:
        pass
    lock.close()


def _increment(url: str, n: int) -> None:
    store = open_store(url)
    try:
        for _ in range(n):
            store.run(lambda s: s.execute(update(PoolRow).where(PoolRow.name == "c")
                                          .values(description=PoolRow.description + "x")))
    finally:
        store.close()


def test_writers_of_four_processes_all_commit(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = open_store(url)
    store.run(lambda s: s.add(PoolRow(name="c", description="")))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_increment, args=(url, 150)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    try:
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]
        assert len(store.run(lambda s: s.scalar(select(PoolRow.description)), write=False)) == 600
    finally:
        store.close()


def test_stores_of_one_process_share_its_lock(tmp_path):
    """A flock is held per open file: two stores of one process with a descriptor each would wait
    for each other, forever when one thread nests a write of one inside the other's (a replica
    simulated in one process, as the token-adoption race test does)."""
    db = str(tmp_path / "s.db")
    a, b = open_store(db), open_store(db)
    try:
        assert a._writer is b._writer
        def outer(s):
            b.run(lambda t: t.add(PoolRow(name="inner", description="")))  # nested, same thread
            s.add(PoolRow(name="outer", description=""))

        a.run(outer)
        names = a.run(lambda s: s.scalars(select(PoolRow.name)).all(), write=False)
        assert sorted(names) == ["inner", "outer"]
    finally:
        a.close()
        a.close()  # twice: releases its use once
        assert writelock_users(db) == 1
        b.close()
    assert writelock_users(db) == 0
    c = open_store(db)  # a later store opens the file again
    try:
        c.run(lambda s: s.add(PoolRow(name="later", description="")))
    finally:
        c.close()


def writelock_users(db: str) -> int:
    from poolvisor.store import writelock

    return writelock._shared.get(os.path.realpath(f"{db}-writer.lock"), (None, 0))[1]
