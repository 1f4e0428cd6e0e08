"""poolvisor: pool many virtualization hosts, place, balance, heal and simulate workloads on them.

The public Python API is small on purpose: import from here, not from private modules.
"""

from poolvisor.domain.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    NoValidHostError,
    PoolvisorError,
)
from poolvisor.domain.resources import DEFAULT_RESOURCES, ResourceSet

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_RESOURCES",
    "ConflictError",
    "InvalidInputError",
    "NoValidHostError",
    "NotFoundError",
    "PoolvisorError",
    "ResourceSet",
    "__version__",
]
