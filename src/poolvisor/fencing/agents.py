"""Fence agents: `driver` (the host's driver destroys every guest and refuses new ones), `sim` (the
sim driver's power switch, for sim hosts), `command` (an external program, e.g. an IPMI or PDU
script, given the host's name; exit 0 = fenced) and `none` (cannot fence: refused for HA)."""

from __future__ import annotations

import os
import shlex
import subprocess
import time

from poolvisor.domain.errors import InvalidInputError, PoolvisorError
from poolvisor.drivers.pool import DriverPool
from poolvisor.drivers.protocols import Capability, HostBinding, supports
from poolvisor.fencing.base import FenceAgent, FenceResult

METHODS = ("driver", "sim", "command", "none")
COMMAND_TIMEOUT_S = 60.0
MAX_SPEC = 1024


def check_method(spec: str) -> str:
    """Validate a fence method spec ("driver", "sim", "none", "command:ARGV"); 422 otherwise."""
    if not isinstance(spec, str) or not spec or len(spec) > MAX_SPEC:
        raise InvalidInputError(f"fence method must be 1..{MAX_SPEC} characters")
    if not all(" " <= c <= "~" for c in spec):
        raise InvalidInputError("fence method must be printable ASCII")
    method, _, arg = spec.partition(":")
    if method not in METHODS:
        raise InvalidInputError(f"unknown fence method {method!r}; known: {', '.join(METHODS)} "
                                "(command:PROGRAM [ARGS])")
    if method == "command":
        try:
            argv = shlex.split(arg)
        except ValueError as e:
            raise InvalidInputError(f"fence command {arg!r}: {e}") from None
        if not argv:
            raise InvalidInputError("fence method 'command' needs a program: command:PROGRAM [ARGS]")
    elif arg:
        raise InvalidInputError(f"fence method {method!r} takes no argument")
    return spec


class DriverAgent:
    """Ask the host's own driver to fence it (libvirt: destroy every domain, refuse new ones)."""

    method = "driver"
    ha_capable = True

    def __init__(self, drivers: DriverPool) -> None:
        self.drivers = drivers

    def fence(self, host: HostBinding) -> FenceResult:
        t0 = time.monotonic()
        d = self.drivers.driver_of(host.name)
        if not supports(d, Capability.FENCE):
            return FenceResult(host.name, self.method, False,
                               f"driver {d.name!r} of host {host.name} cannot fence hosts", 0.0)
        try:
            self.drivers.fencing(host.name).fence(host.name)
        except PoolvisorError as e:
            return FenceResult(host.name, self.method, False, e.message, time.monotonic() - t0)
        return FenceResult(host.name, self.method, True, f"driver {d.name!r} destroyed every guest",
                           time.monotonic() - t0)

    def unfence(self, host: HostBinding) -> None:
        if supports(self.drivers.driver_of(host.name), Capability.FENCE):
            self.drivers.fencing(host.name).unfence(host.name)


class SimAgent(DriverAgent):
    """The sim driver's model of a power switch: only for hosts the sim driver runs."""

    method = "sim"

    def fence(self, host: HostBinding) -> FenceResult:
        if host.driver != "sim":
            return FenceResult(host.name, self.method, False,
                               f"fence method 'sim' only fences sim hosts; {host.name} runs {host.driver!r}")
        r = super().fence(host)
        return FenceResult(r.host, self.method, r.ok, "sim power switch: host off" if r.ok else r.reason,
                           r.elapsed_s)


class CommandAgent:
    """Run `ARGV HOST` (environment: POOLVISOR_HOST, POOLVISOR_DRIVER, POOLVISOR_URI); exit 0 means
    the host is fenced. The command's last line of stderr (or stdout) is the reason on failure."""

    method = "command"
    ha_capable = True

    def __init__(self, argv: list[str], timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self.argv, self.timeout_s = argv, timeout_s

    def fence(self, host: HostBinding) -> FenceResult:
        t0 = time.monotonic()
        env = {**os.environ, "POOLVISOR_HOST": host.name, "POOLVISOR_DRIVER": host.driver,
               "POOLVISOR_URI": host.uri}
        try:
            r = subprocess.run([*self.argv, host.name], capture_output=True, text=True, env=env,
                               timeout=self.timeout_s, check=False)
        except FileNotFoundError:
            return FenceResult(host.name, self.method, False, f"fence command {self.argv[0]!r} not found")
        except PermissionError:
            return FenceResult(host.name, self.method, False,
                               f"fence command {self.argv[0]!r} is not executable")
        except subprocess.TimeoutExpired:
            return FenceResult(host.name, self.method, False,
                               f"fence command did not finish within {self.timeout_s:g} s",
                               time.monotonic() - t0)
        dt = time.monotonic() - t0
        lines = (r.stderr.strip() or r.stdout.strip()).splitlines()
        said = lines[-1][:300] if lines else ""
        if r.returncode == 0:
            return FenceResult(host.name, self.method, True, said or "fence command succeeded", dt)
        return FenceResult(host.name, self.method, False,
                           f"fence command exited {r.returncode}" + (f": {said}" if said else ""), dt)

    def unfence(self, host: HostBinding) -> None:
        """Nothing to undo here: the operator powers the host back on."""


class NoneAgent:
    method = "none"
    ha_capable = False

    def fence(self, host: HostBinding) -> FenceResult:
        return FenceResult(host.name, self.method, False,
                           f"host {host.name} has fence method 'none': it cannot be fenced (power it off "
                           "by hand, then set it down)")

    def unfence(self, host: HostBinding) -> None:
        """Nothing was done to the host."""


def make_agent(spec: str, drivers: DriverPool) -> FenceAgent:
    method, _, arg = check_method(spec).partition(":")
    if method == "command":
        return CommandAgent(shlex.split(arg))
    if method == "sim":
        return SimAgent(drivers)
    if method == "none":
        return NoneAgent()
    return DriverAgent(drivers)
