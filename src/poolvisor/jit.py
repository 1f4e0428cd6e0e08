"""Compile numba kernels once per process, or fall back to numpy.

Both compiled hot paths (the placement index, the consolidation planner) follow the same rule:
numba is the optional `fast` extra, POOLVISOR_NO_JIT=1 disables it, and compilation is attempted
at most once per process.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable


class CompileOnce:
    """Runs `build` (compile, then warm up) the first time `ready()` is asked; remembers the outcome."""

    def __init__(self, build: Callable[[], None]) -> None:
        self._build = build
        self._tried = False
        self._ok = False

    def ready(self) -> bool:
        """True when the compiled kernels are usable; False when numba is missing or disabled."""
        if not self._tried:
            self._tried = True
            if os.environ.get("POOLVISOR_NO_JIT") == "1":
                return False
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._build()
            except ImportError:
                return False
            self._ok = True
        return self._ok
