"""Values every driver shares (the capability protocols are in protocols.py).

Drivers know nothing of the database. Services call them around their transactions and record
what happened; a driver failure is a DriverError (an UnavailableError, HTTP 503).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from poolvisor.domain.errors import ConflictError, UnavailableError


class DriverError(UnavailableError):
    """The driver could not carry the action out (host dead, injected fault, hypervisor error)."""

    code = "driver_error"


class DriverRefusal(ConflictError):
    """The driver reached the host but will not do this to the workload as it is (a guest with
    snapshots cannot migrate, a VM on a container host, a guest with no free disk slot...): a
    409 carrying the driver's reason, raised before anything changed. Retrying does not help;
    changing the workload (or the request) does. DriverError (503) is for what may pass."""

    code = "refused_by_driver"


@dataclass(frozen=True)
class DriverWorkload:
    """What a driver needs to run a workload; `key` is unique across projects ("project/name")."""

    key: str
    kind: str
    demand: Mapping[str, float]  # vcpu, memory_mib, disk_gib... (what the guest is sized by)
    flavor: str | None = None
    # per resource {"reservation", "limit", "shares"} when declared (services/shares.py); None:
    # the demand is reservation and limit, shares normal
    spec: Mapping[str, Mapping[str, float]] | None = None


@dataclass(frozen=True)
class HostStats:
    host: str
    alive: bool
    workloads: int
    used: dict[str, float] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)  # workload key -> driver-side state
    # `states` is the host's whole inventory: a workload missing from it is not there (HA's
    # check for a host that restarted between heartbeats); False when the driver only knows part
    complete: bool = True
