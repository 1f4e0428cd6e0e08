"""The one retry mechanism: `Stale` (an optimistic check lost a race) and `with_retry`.

Every optimistic step in poolvisor (a transaction whose guarded UPDATE found the row changed, the
database reporting a transient conflict, a placement decision whose host generation moved before
the commit) raises `Stale`; `with_retry` runs the step again, after a jittered, growing pause,
until it succeeds or the deadline passes, and then raises the caller's declared ConflictError
(409). What "the step" is decides what is re-read: Store.run retries one transaction function
(it re-reads inside the transaction); a use case whose decision is taken before its transaction
(create, batch, migrate) wraps decide + commit (Store.run_once) in its own with_retry.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from poolvisor.domain.errors import ConflictError

T = TypeVar("T")


class Stale(Exception):  # noqa: N818 - control flow: an optimistic commit lost a race
    """Raised by a step that lost a race: re-read the state and do the step again."""


def with_retry(step: Callable[[], T], *, deadline_s: float, conflict: str, first_s: float = 0.001,
               cap_s: float = 0.05) -> T:
    """`step()` until it does not raise Stale; ConflictError(`conflict`) once `deadline_s` passed.

    Pauses between attempts are uniform in [pause/2, pause), the pause growing 1.5x from
    `first_s` up to `cap_s`, so racing processes spread out instead of colliding again."""
    end = time.monotonic() + deadline_s
    pause = first_s
    while True:
        try:
            return step()
        except Stale:
            if time.monotonic() >= end:
                raise ConflictError(conflict) from None
        time.sleep(pause * (0.5 + 0.5 * random.random()))
        pause = min(pause * 1.5, cap_s)
