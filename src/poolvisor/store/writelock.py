"""The SQLite write lock as this process's writers take it: a thread lock, then a file lock.

SQLite admits one writer at a time. Left to itself, a writer that finds the database locked
polls in SQLite's busy handler, sleeping 1, 2, 5 ... 100 ms between tries: under load the write
lock sat idle while writers slept (one process's threads queue on a thread lock instead, woken at
once). Several processes on one database file (`serve` replicas, a CLI beside a server) queue the
same way on an advisory `flock` of a file beside the database: the kernel wakes the next waiter
the moment the holder releases, so the lock passes between processes without sleeps. SQLite's own
lock is still taken inside (`BEGIN IMMEDIATE`); this only decides who asks next, so a process
that does not take it (an older poolvisor, the sqlite3 shell) still works, through busy_timeout.

A process has one lock per database file (`shared`), whatever number of stores it opens on it: a
`flock` is held per open file, so two stores of one process each with its own descriptor would
wait for each other, and forever when one thread nests a write of one inside the other's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from types import TracebackType

_registry = threading.Lock()
_shared: dict[str, tuple[WriteLock, int]] = {}  # real path -> (the lock, stores using it)


def shared(path: str | None) -> WriteLock:
    """This process's write lock of the database whose lock file is `path` (None: in memory, a
    lock of its own); give it back with `release`."""
    if path is None:
        return WriteLock(None)
    key = os.path.realpath(path)
    with _registry:
        lock, users = _shared.get(key, (None, 0))
        if lock is None:
            lock = WriteLock(key)
        _shared[key] = (lock, users + 1)
        return lock


def release(lock: WriteLock) -> None:
    """A store is done with `lock`: the last one closes its file."""
    if lock.path is None:
        return
    with _registry:
        held, users = _shared.get(lock.path, (None, 0))
        if held is not lock:
            return
        if users > 1:
            _shared[lock.path] = (lock, users - 1)
            return
        del _shared[lock.path]
    lock.close()


class WriteLock:
    """Reentrant on one thread (a nested write then fails in SQLite, as it would without this);
    the file lock is held while this process's outermost writer is inside."""

    def __init__(self, path: str | None) -> None:
        self.path = path  # None: an in-memory database (one process): the thread lock alone
        self._thread = threading.RLock()
        self._depth = 0
        self._fd, self._pid = -1, 0
        self._held = False

    def _file(self) -> int:
        """The lock file, opened by this process (a forked child opens its own: a descriptor
        inherited across fork shares its flock with the parent). -1 when it cannot be opened
        (a read-only directory): writers then rely on busy_timeout alone."""
        if self._pid != os.getpid():
            self._fd, self._pid = -1, os.getpid()
            assert self.path is not None
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                self._fd = -1
        return self._fd

    def __enter__(self) -> WriteLock:
        self._thread.acquire()
        if self._depth == 0 and self.path is not None:
            try:
                fd = self._file()
                if fd >= 0:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    self._held = True
            except BaseException:
                self._thread.release()
                raise
        self._depth += 1
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._held:
                self._held = False
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()

    def close(self) -> None:
        with self._thread:
            if self._fd >= 0 and self._pid == os.getpid():
                with contextlib.suppress(OSError):
                    os.close(self._fd)
            self._fd, self._pid = -1, 0
