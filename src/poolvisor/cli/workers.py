"""`poolvisor serve --workers N`: N server processes answering on one listening socket.

A Python server process runs its request handling and its database writer under one GIL, so
one process uses about one core whatever the machine has. Workers are forked after the socket
is bound and the one-time start-up (migrations, repair, demo seed, admin token) is done, so each
starts with the imports made and a database ready; each then opens its own services, as
separate `serve` replicas on one database do (the ledger's guarded writes keep them from
over-allocating; leader election picks the one that runs the pool-wide loops; SQLite writers of
all of them queue on one file lock, store/writelock.py). The kernel spreads connections between
the processes accepting on the socket.

This process supervises: SIGTERM or SIGINT stops every worker gracefully (each drains its
requests, as a single server does) and waits for them; a worker that dies otherwise is started
again, unless workers keep dying within seconds of starting (then all stop, exit status 1).
Workers run in their own process group, so a Ctrl-C reaches only the supervisor, which passes it
on once; each worker stops by itself if the supervisor disappears (kill -9).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

QUICK_DEATH_S = 5.0  # a worker that dies this soon after starting counts towards giving up
MAX_QUICK_DEATHS = 5
RESTART_DELAY_S = 0.5
ORPHAN_POLL_S = 0.5


def run_workers(n: int, work: Callable[[int], int], report: Callable[[str], None]) -> int:
    """Fork `n` workers running `work(i)` (its return value is the worker's exit status) and
    supervise them until they are told to stop; the exit status is 0 when all stopped cleanly."""
    stopping = threading.Event()
    pids: dict[int, tuple[int, float]] = {}  # pid -> (worker index, start time)

    def start(i: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the supervisor's code
            status = 1
            try:
                os.setpgid(0, 0)
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                status = work(i)
            except BaseException as e:  # noqa: BLE001 - report, then leave with a status
                with contextlib.suppress(Exception):
                    report(f"worker {i} failed: {type(e).__name__}: {e}")
            finally:
                os._exit(status)
        pids[pid] = (i, time.monotonic())

    def stop(signum: int, _frame: FrameType | None) -> None:
        if stopping.is_set():
            return
        stopping.set()
        for pid in list(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    quick, status = 0, 0
    try:
        for i in range(n):
            start(i)
        while pids:
            try:
                pid, raw = os.wait()
            except ChildProcessError:
                break
            if pid not in pids:
                continue
            i, since = pids.pop(pid)
            code = os.waitstatus_to_exitcode(raw)
            if stopping.is_set():
                status = status or (1 if code not in (0, -signal.SIGTERM) else 0)
                continue
            report(f"worker {i} (pid {pid}) exited with status {code}; starting it again")
            quick = quick + 1 if time.monotonic() - since < QUICK_DEATH_S else 0
            if quick >= MAX_QUICK_DEATHS:
                report(f"workers keep exiting at start ({quick} in a row); stopping")
                stop(signal.SIGTERM, None)
                status = 1
                continue
            time.sleep(RESTART_DELAY_S)
            if not stopping.is_set():
                start(i)
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
    return status


def exit_with_supervisor(parent: int, stop: Callable[[], None]) -> threading.Thread:
    """In a worker: call `stop` once the supervisor `parent` is gone (re-parented: it was killed)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_POLL_S)
        stop()

    t = threading.Thread(target=watch, name="poolvisor-supervisor-watch", daemon=True)
    t.start()
    return t
