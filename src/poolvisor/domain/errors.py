"""Error hierarchy shared by every layer; the API maps each class to one declared HTTP status."""

from __future__ import annotations

from typing import Any


class PoolvisorError(Exception):
    """Base class: a clear, one-line message plus optional structured detail."""

    status_code = 500
    code = "error"

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class InvalidInputError(PoolvisorError):
    """The caller sent something that can never be valid (unknown resource, negative demand...)."""

    status_code = 422
    code = "invalid_input"


class NotFoundError(PoolvisorError):
    status_code = 404
    code = "not_found"


class ConflictError(PoolvisorError):
    """Duplicate name, or a state that forbids the operation right now."""

    status_code = 409
    code = "conflict"


class NoValidHostError(PoolvisorError):
    """Placement found no host; `detail` carries the explanation (which filters eliminated the hosts)."""

    status_code = 409
    code = "no_valid_host"


class UnavailableError(PoolvisorError):
    """A backing component (database, driver) cannot be reached."""

    status_code = 503
    code = "unavailable"


class QuotaExceededError(PoolvisorError):
    """The project's quota does not leave room for the request; `detail` names the resource, the
    project's use, the request and the limit."""

    status_code = 403
    code = "quota_exceeded"


class RateLimitedError(PoolvisorError):
    """Too many requests from this project right now; retry after `retry_after` seconds."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int, detail: object = None) -> None:
        super().__init__(message, detail)
        self.retry_after = retry_after
