"""Run a picklable task over grid points on local processes or a Dask cluster.

The task is any module-level function `task(point: dict) -> dict` (so it pickles by reference);
the runner knows nothing about simulation, which keeps it usable for online-packing sweeps too.
A failing point does not abort the sweep: its row carries the error message instead of results.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from poolvisor.domain.errors import InvalidInputError, UnavailableError

Task = Callable[[dict[str, Any]], dict[str, Any]]
Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class GridResult:
    """Rows in grid order: each is the point merged with the task's result (or `error`)."""

    rows: list[dict[str, Any]]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r.get("error")]


def _merge(point: dict[str, Any], result: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
    row = dict(point)
    if result is not None:
        clash = set(point) & set(result)
        if clash:
            raise InvalidInputError(f"sweep task returned keys that clash with grid axes: {sorted(clash)}")
        row.update(result)
    row["error"] = error or ""
    return row


def _describe(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {msg}"


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _run_inline(task: Task, points: Sequence[dict[str, Any]], progress: Progress | None) -> list[Any]:
    out: list[Any] = []
    for i, p in enumerate(points):
        try:
            out.append(_merge(p, task(p), None))
        except Exception as e:  # a bad point must not lose the others
            out.append(_merge(p, None, _describe(e)))
        if progress:
            progress(i + 1, len(points))
    return out


def _run_local(
    task: Task, points: Sequence[dict[str, Any]], workers: int, progress: Progress | None
) -> list[Any]:
    # forkserver: children do not inherit the parent's threads (Rich, Dask) or open sockets
    ctx = multiprocessing.get_context("forkserver")
    rows: list[Any] = [None] * len(points)
    with ProcessPoolExecutor(max_workers=min(workers, len(points)), mp_context=ctx) as pool:
        futs: dict[Future[dict[str, Any]], int] = {pool.submit(task, p): i for i, p in enumerate(points)}
        for done, fut in enumerate(as_completed(futs), 1):
            i = futs[fut]
            exc = fut.exception()
            if exc is not None:
                rows[i] = _merge(points[i], None, _describe(exc))
            else:
                rows[i] = _merge(points[i], fut.result(), None)
            if progress:
                progress(done, len(points))
    return rows


def _run_dask(
    task: Task, points: Sequence[dict[str, Any]], client: Any, progress: Progress | None
) -> list[Any]:
    from distributed import as_completed as dask_as_completed

    futs = [client.submit(task, p, pure=False) for p in points]
    index = {f.key: i for i, f in enumerate(futs)}
    rows: list[Any] = [None] * len(points)
    try:
        for done, fut in enumerate(dask_as_completed(futs), 1):
            i = index[fut.key]
            if fut.status == "error":
                rows[i] = _merge(points[i], None, _describe(fut.exception()))
            else:
                rows[i] = _merge(points[i], fut.result(), None)
            if progress:
                progress(done, len(points))
    finally:
        for f in futs:
            f.release()
    return rows


def run_grid(
    task: Task,
    points: Sequence[dict[str, Any]],
    *,
    workers: int | None = None,
    dask: str | Any | None = None,
    progress: Progress | None = None,
) -> GridResult:
    """Run `task` on every point.

    `dask` is a scheduler address (a Client is opened and closed here) or an existing
    `distributed.Client`. Otherwise `workers` processes run locally (default: all cores;
    1 runs inline in this process, which is what tests and debuggers want).
    """
    if not points:
        return GridResult([])
    if dask is not None:
        if isinstance(dask, str):
            try:
                from distributed import Client
            except ImportError:  # pragma: no cover - optional extra
                raise UnavailableError("--dask needs the 'dask' extra (poolvisor[dask])") from None
            try:
                client = Client(dask, timeout=10)
            except OSError as e:
                raise UnavailableError(f"cannot reach the Dask scheduler at {dask}: {e}") from None
            with client:
                return GridResult(_run_dask(task, points, client, progress))
        return GridResult(_run_dask(task, points, dask, progress))
    n = default_workers() if workers is None else workers
    if n < 1:
        raise InvalidInputError("--workers must be at least 1")
    if n == 1 or len(points) == 1:
        return GridResult(_run_inline(task, points, progress))
    return GridResult(_run_local(task, points, n, progress))
