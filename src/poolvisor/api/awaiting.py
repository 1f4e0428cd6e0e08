"""Awaiting a use case the server's writer runs (services/flow.py) from an async route.

The route's coroutine hands the flow over and awaits a future that the thread ending the flow
(the writer, or a worker for a slow driver call) resolves through `loop.call_soon_threadsafe`:
no thread of the pool sits waiting for a claim, a commit or a driver. A client that goes away
cancels only the await: the flow runs to its end (nothing is left half done, leases and repair
work as for any request).
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from poolvisor.services.flow import Flow, FlowRunner

T = TypeVar("T")


async def run_flow(runner: FlowRunner, flow: Flow[T]) -> T:
    """The flow's result (or its exception, raised here: the app's handlers answer 4xx)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def done(value: Any, error: BaseException | None) -> None:
        loop.call_soon_threadsafe(_settle, fut, value, error)

    runner.start(flow, done)
    return await fut


def _settle(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if fut.done():  # the request was cancelled (the client went away)
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)
