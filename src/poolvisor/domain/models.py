"""Plain domain objects: what a host, flavor, group and workload are, independent of storage and API."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from poolvisor.domain.errors import InvalidInputError
from poolvisor.domain.text import MAX_NAME_LEN as MAX_NAME_LEN  # the name rule: domain.text
from poolvisor.domain.text import check_name as check_name


class HostState(enum.IntEnum):
    """Host lifecycle; only UP hosts accept new workloads. Codes are stored in an int8 state array."""

    UP = 0
    MAINTENANCE = 1
    FENCED = 2
    DOWN = 3
    REMOVED = 4
    DRAINING = 5  # being emptied by a drain task (services/maintenance.py); set only by that task
    STANDBY = 6  # switched off by the controller's power management (empty; powered on on demand)

    @classmethod
    def parse(cls, value: str | HostState) -> HostState:
        if isinstance(value, HostState):
            return value
        try:
            return cls[value.upper()]
        except KeyError:
            allowed = ", ".join(s.name.lower() for s in cls if s not in (cls.REMOVED, cls.DRAINING))
            raise InvalidInputError(f"unknown host state {value!r}; allowed: {allowed}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


class WorkloadKind(enum.StrEnum):
    VM = "vm"
    CONTAINER = "container"


class GroupPolicy(enum.StrEnum):
    """Nova-style server-group policies; `soft-*` only weigh, the others filter."""

    AFFINITY = "affinity"
    ANTI_AFFINITY = "anti-affinity"
    SOFT_AFFINITY = "soft-affinity"
    SOFT_ANTI_AFFINITY = "soft-anti-affinity"
    DOMAIN_SPREAD = "domain-spread"  # hard anti-affinity between failure domains


@dataclass(frozen=True)
class HostSpec:
    name: str
    capacity: Mapping[str, float]
    overcommit: Mapping[str, float] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    domain: str = "default"
    state: HostState = HostState.UP
    max_workloads: int = 0  # 0 = unlimited
    pool: str | None = None


@dataclass(frozen=True)
class Flavor:
    name: str
    demand: Mapping[str, float]


@dataclass(frozen=True)
class Group:
    name: str
    policy: GroupPolicy
