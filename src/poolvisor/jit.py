"""Compile numba kernels once per process, or fall back to numpy.

Both compiled hot paths (the placement index, the consolidation planner) follow the same rule:
numba is the optional `fast` extra, POOLVISOR_NO_JIT=1 disables it, and compilation is attempted
at most once per process. A server builds them before it answers (`warm`, called from the app's
start-up), so no request pays the ~1 s of loading them from numba's cache.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable


class CompileOnce:
    """Runs `build` (compile, then warm up) the first time `ready()` is asked; remembers the outcome.

    Thread-safe: a thread asking while another builds waits for that build and gets its outcome
    (it used to get False and run the numpy twin, silently, for that call)."""

    def __init__(self, build: Callable[[], None]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._done = False
        self._ok = False

    def ready(self) -> bool:
        """True when the compiled kernels are usable; False when numba is missing or disabled."""
        if self._done:  # the fast path: one attribute read once decided
            return self._ok
        with self._lock:
            if not self._done:
                self._ok = self._attempt()
                self._done = True
        return self._ok

    @property
    def built(self) -> bool:
        """Compiled already in this process (asking builds nothing)."""
        return self._done and self._ok

    def _attempt(self) -> bool:
        if os.environ.get("POOLVISOR_NO_JIT") == "1":
            return False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._build()
        except ImportError:
            return False
        return True


def warm() -> bool:
    """Build (or load from numba's disk cache) the kernels a server's requests use: the served
    placement index, the allocation step of the placement cache, the balancing planner. Returns
    whether they are compiled (False: numba missing or disabled, numpy runs them)."""
    from poolvisor.policies.balancing import kernels as balancing
    from poolvisor.policies.placement import kernels as placement
    from poolvisor.state import kernels as state

    return all([state.add() is not None, placement.available(), balancing.available()])
