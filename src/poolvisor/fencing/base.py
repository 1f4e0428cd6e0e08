"""The fence agent protocol, its result, and the error of a fence that failed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from poolvisor.domain.errors import UnavailableError
from poolvisor.drivers.protocols import HostBinding


class FenceFailed(UnavailableError):
    """The agent could not make sure the host is off (503): nothing may treat its guests as gone."""

    code = "fence_failed"


@dataclass(frozen=True)
class FenceResult:
    """`ok` only when the agent is sure the host runs none of its guests any more."""

    host: str
    agent: str
    ok: bool
    reason: str
    elapsed_s: float = 0.0


@runtime_checkable
class FenceAgent(Protocol):
    method: str
    ha_capable: bool  # False: HA must not restart this host's workloads (it cannot be fenced)

    def fence(self, host: HostBinding) -> FenceResult: ...

    def unfence(self, host: HostBinding) -> None:
        """Let the host run guests again (it rejoins empty)."""
