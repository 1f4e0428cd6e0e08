"""The in-process task executor of `poolvisor serve`: a small worker pool that runs queued tasks.

Started and stopped with the API's lifespan (api/app.py), next to the repair sweep. A dispatcher
thread wakes on every submission (TaskService.task_wakeup) or every `interval` seconds, takes as many
queued tasks as it has idle workers (TaskService.claim_tasks: those submitted here and those whose
owner's lease lapsed, i.e. a dead process's) and hands them to the pool; the task's lease is
renewed while it runs. Nothing long runs inside an HTTP request.

stop() lets the running tasks finish (a migration is not abandoned between its transactions by a
clean shutdown); a kill leaves them to the crash recovery of the next start (tasks.py).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from poolvisor.domain.errors import InvalidInputError, PoolvisorError
from poolvisor.services.records import TaskRecord

DEFAULT_WORKERS = 2
MAX_WORKERS = 64
DEFAULT_INTERVAL_S = 0.5
log = logging.getLogger("poolvisor.tasks")


class TaskRunner(Protocol):
    @property
    def task_wakeup(self) -> threading.Event: ...

    def claim_tasks(self, limit: int) -> list[int]: ...

    def run_task(self, task_id: int) -> TaskRecord | None: ...


class TaskExecutor:
    """Run queued tasks on `workers` threads until stop()."""

    def __init__(self, services: TaskRunner, workers: int = DEFAULT_WORKERS,
                 interval: float = DEFAULT_INTERVAL_S) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
            raise InvalidInputError(f"task workers must be 1..{MAX_WORKERS}")
        self.services = services
        self.workers = workers
        self.interval = interval
        self._busy: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="poolvisor-task")
            self._thread = threading.Thread(target=self._dispatch, name="poolvisor-task-dispatch",
                                            daemon=True)
            self._thread.start()

    def busy(self) -> set[int]:
        with self._lock:
            return set(self._busy)

    def _dispatch(self) -> None:
        wake = self.services.task_wakeup
        while not self._stop.is_set():
            try:
                self.dispatch_once()
            except PoolvisorError as e:  # database unavailable: try again at the next wake-up
                log.warning("task dispatch failed: %s", e.message)
            except Exception:  # never let the dispatcher die: queued tasks would wait forever
                log.exception("task dispatch failed")
            wake.wait(self.interval)
            wake.clear()

    def dispatch_once(self) -> list[int]:
        """Take queued tasks for the idle workers and start them; returns their ids."""
        pool = self._pool
        if pool is None or self._stop.is_set():
            return []
        with self._lock:
            idle = self.workers - len(self._busy)
        ids = self.services.claim_tasks(idle)
        for tid in ids:
            with self._lock:
                self._busy.add(tid)
            pool.submit(self._run, tid)
        return ids

    def _run(self, task_id: int) -> None:
        try:
            self.services.run_task(task_id)
        except PoolvisorError as e:  # e.g. the database went away mid-task: recovery resumes it
            log.warning("task %d stopped: %s", task_id, e.message)
        except Exception:
            log.exception("task %d crashed", task_id)
        finally:
            with self._lock:
                self._busy.discard(task_id)
            self.services.task_wakeup.set()  # a worker is free: look for more

    def stop(self) -> None:
        self._stop.set()
        self.services.task_wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
