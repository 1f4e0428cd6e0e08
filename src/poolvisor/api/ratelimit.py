"""Per-project token-bucket rate limits on creation requests (429 with `Retry-After`).

Each project has a bucket of `burst` tokens refilled at `rate_per_s`; a creation request takes
one token, and without one it is refused with 429 and `Retry-After`: the whole seconds until the
bucket holds a token again (rounded up, so a retry after that long finds one, unless others took
it first). A project's own limit (PUT /v1/projects/{name}/quota) overrides the server's default
(`poolvisor serve --rate-limit R/S --rate-burst B`); with neither, the project is not limited.

The buckets live in this process: each `serve` replica enforces its own (N replicas admit up to
N times the rate). The projects' limits are read from the database, refreshed every
`refresh_s` seconds (one query for all projects), so a change reaches every replica within that.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from poolvisor.domain.errors import RateLimitedError
from poolvisor.services.quotas import RateLimit

DEFAULT_REFRESH_S = 2.0
MAX_BUCKETS = 10_000  # beyond this many projects seen, full buckets (same as new ones) are dropped


@dataclass
class TokenBucket:
    """A token bucket, pure: the caller passes the time (seconds, monotonic)."""

    limit: RateLimit
    tokens: float
    at: float

    @classmethod
    def full(cls, limit: RateLimit, now: float) -> TokenBucket:
        return cls(limit, float(limit.burst), now)

    def take(self, now: float) -> float:
        """Take one token: 0.0 when there was one, else the seconds until there will be one."""
        elapsed = max(0.0, now - self.at)
        self.tokens = min(float(self.limit.burst), self.tokens + elapsed * self.limit.rate_per_s)
        self.at = max(self.at, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.limit.rate_per_s


class RateLimiter:
    """The buckets of this process, one per project; thread-safe."""

    def __init__(self, default: RateLimit | None, project_limits: Callable[[], dict[str, RateLimit]],
                 *, refresh_s: float = DEFAULT_REFRESH_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.default = default
        self._load = project_limits
        self._refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._limits: dict[str, RateLimit] = {}
        self._loaded_at: float | None = None
        self._buckets: dict[str, TokenBucket] = {}

    def limit_of(self, project: str) -> RateLimit | None:
        """The project's own limit, else the server's default (None: not limited)."""
        now = self._clock()
        if self._loaded_at is None or now - self._loaded_at >= self._refresh_s:
            limits = self._load()  # outside the lock: a slow read holds no other request
            with self._lock:
                self._limits, self._loaded_at = limits, now
        return self._limits.get(project, self.default)

    def check(self, project: str) -> None:
        """Take a token from the project's bucket, or raise RateLimitedError (429)."""
        limit = self.limit_of(project)
        if limit is None:
            return
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(project)
            if bucket is None or bucket.limit != limit:  # new, or its limit changed: start full
                if len(self._buckets) >= MAX_BUCKETS:
                    self._prune(now)
                bucket = self._buckets[project] = TokenBucket.full(limit, now)
            wait = bucket.take(now)
        if wait > 0:
            retry = max(1, math.ceil(wait - 1e-9))
            raise RateLimitedError(
                f"too many creation requests for project {project!r} (limit {limit.rate_per_s:g}/s, "
                f"burst {limit.burst}); retry after {retry} s", retry,
                {"project": project, "rate_per_s": limit.rate_per_s, "burst": limit.burst,
                 "retry_after": retry})


    def _prune(self, now: float) -> None:
        """Forget the buckets that have refilled: a new bucket starts full, so nothing changes."""
        for name, b in list(self._buckets.items()):
            if b.tokens + (now - b.at) * b.limit.rate_per_s >= b.limit.burst:
                del self._buckets[name]

    def __len__(self) -> int:
        return len(self._buckets)


def limiter_of(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


async def rate_limiter(request: Request) -> RateLimiter:
    """The app's limiter, as a dependency: a route that takes it is rate limited, and the OpenAPI
    document declares its 429 (api/openapi.py). Async: a plain `def` dependency costs a thread-pool
    hop per request, for a lookup (the route's own code calls `check`, in its thread)."""
    return limiter_of(request)


Limiter = Annotated[RateLimiter, Depends(rate_limiter)]
