"""Fencing: making sure a host can no longer run its guests, before HA restarts them elsewhere.

Each host names its fence method (its row's `fence`: "driver", "sim", "none" or "command:ARGV");
services build the host's FenceAgent with `make_agent` and call it, never a hypervisor directly.
"""

from poolvisor.fencing.agents import (
    METHODS,
    CommandAgent,
    DriverAgent,
    NoneAgent,
    SimAgent,
    check_method,
    make_agent,
)
from poolvisor.fencing.base import FenceAgent, FenceFailed, FenceResult

__all__ = ["METHODS", "CommandAgent", "DriverAgent", "FenceAgent", "FenceFailed", "FenceResult", "NoneAgent",
           "SimAgent", "check_method", "make_agent"]
