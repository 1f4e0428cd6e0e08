"""What a placement asks for: a demand vector plus constraints (labels, group, per-host limits)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from poolvisor.domain.models import GroupPolicy


@dataclass(frozen=True)
class Request:
    name: str
    demand: np.ndarray  # shape (R,), in the ClusterState's resource order
    required_labels: Mapping[str, str] = field(default_factory=dict)
    forbidden_labels: Mapping[str, str] = field(default_factory=dict)
    group: str | None = None
    group_policy: GroupPolicy | None = None
    priority: int = 0
    # an explicit set of allowed host indices (e.g. one pool); None = all hosts
    allowed_hosts: np.ndarray | None = None
