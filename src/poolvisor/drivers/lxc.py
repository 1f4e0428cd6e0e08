"""The `lxc` driver: system containers on this machine, through the LXC command-line tools.

A host is an LXC path on this machine (`lxc:///var/lib/poolvisor/lxc`; the URI's path is the
`-P` directory): several hosts can share one machine, each with its own directory. A workload
of kind `container` becomes a container named `project+name` from the busybox template, with no
network (`lxc.net.0.type = empty`) and its demand as cgroup limits: `memory_mib` as the memory
limit, `vcpu` as a CPU quota. Stats come from the container's cgroup (CPU time, memory usage).
LXC cannot live-migrate and snapshots need rsync and a stopped container: the driver declares
neither, so services refuse those operations with a 409 instead of failing halfway.

Containers are machine-global in one respect: the cgroup is named after the container, so the
names carry the project, and a key runs on one host at a time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from poolvisor.drivers.base import DriverError, DriverRefusal, DriverWorkload, HostStats
from poolvisor.drivers.protocols import Capability, HostBinding, HostInfo, WorkloadSample

DEFAULT_PATH = "/var/lib/poolvisor/lxc"
SEP = "+"  # never in project or workload names: the mapping key <-> container name is 1:1
TIMEOUT_S = 60.0
CPU_WINDOW_S = 0.25
STATES = {"RUNNING": "running", "STOPPED": "stopped", "FROZEN": "suspended", "FREEZING": "suspended",
          "STARTING": "running", "STOPPING": "stopping", "ABORTING": "stopping", "THAWED": "running"}
TOOLS = ("lxc-create", "lxc-start", "lxc-stop", "lxc-destroy", "lxc-info", "lxc-attach", "lxc-freeze",
         "lxc-unfreeze", "lxc-ls", "lxc-cgroup")


def container_name(key: str) -> str:
    return key.replace("/", SEP)


def lxc_path(uri: str) -> Path:
    """`lxc:///some/dir` (or a bare absolute path) -> the LXC path; '' -> the default."""
    if not uri:
        return Path(DEFAULT_PATH)
    if uri.startswith("/"):
        return Path(uri)
    u = urlparse(uri)
    if u.scheme != "lxc" or u.netloc not in ("", "localhost") or not u.path.startswith("/"):
        raise DriverError(f"LXC host URI must be lxc:///ABSOLUTE/PATH (this machine), not {uri!r}")
    return Path(u.path)


def cgroup_limits(demand: Mapping[str, float], v1: bool) -> list[str]:
    """Config lines capping the container at its demand (nothing for what it does not ask)."""
    lines = []
    mem = float(demand.get("memory_mib", 0.0))
    if mem > 0:
        b = int(mem * 2**20)
        lines.append(f"lxc.cgroup.memory.limit_in_bytes = {b}" if v1 else f"lxc.cgroup2.memory.max = {b}")
    cpu = float(demand.get("vcpu", 0.0))
    if cpu > 0:
        period = 100_000
        quota = max(1000, int(cpu * period))
        if v1:
            lines += [f"lxc.cgroup.cpu.cfs_period_us = {period}", f"lxc.cgroup.cpu.cfs_quota_us = {quota}"]
        else:
            lines.append(f"lxc.cgroup2.cpu.max = {quota} {period}")
    return lines


def cgroup_v1() -> bool:
    """Legacy/hybrid hierarchy (memory controller mounted on its own) or unified cgroup v2."""
    return os.path.isdir("/sys/fs/cgroup/memory")


@dataclass(frozen=True)
class LxcConfig:
    """How containers are made; every field has a POOLVISOR_LXC_<FIELD> environment override."""

    template: str = "busybox"
    stop_timeout_s: float = 10.0  # graceful stop (the init's halt signal) before a kill; 0 = kill
    apparmor: str = ""            # '' = unconfined when the kernel has no AppArmor, else generated

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> LxcConfig:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in cls.__dataclass_fields__:
            raw = env.get(f"POOLVISOR_LXC_{f.upper()}")
            if raw is not None:
                values[f] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown lxc driver option(s): {', '.join(sorted(unknown))}")
        if "stop_timeout_s" in values:
            try:
                values["stop_timeout_s"] = float(values["stop_timeout_s"])
            except (TypeError, ValueError):
                raise ValueError("lxc stop_timeout_s must be a number") from None
            if not 0 <= values["stop_timeout_s"] <= 3600:
                raise ValueError("lxc stop_timeout_s must be in 0..3600")
        return cls(**values)


class LxcDriver:
    name = "lxc"
    capabilities = frozenset({Capability.LIFECYCLE, Capability.STATS, Capability.HOST_INFO, Capability.FENCE})

    def __init__(self, uri: str = "", config: LxcConfig | None = None, **options: Any):
        self.config = config or LxcConfig.from_env(**options)
        self.default_uri = uri
        self._paths: dict[str, Path] = {}
        self._fenced: set[str] = set()
        self._cpu: dict[tuple[str, str], tuple[float, float]] = {}
        self._lock = threading.Lock()

    # ---- hosts -----------------------------------------------------------------------------------
    def connect(self, host: HostBinding) -> None:
        missing = [t for t in TOOLS if shutil.which(t) is None]
        if missing:
            raise DriverError(f"LXC host {host.name!r}: missing {', '.join(missing)} (apt-get install lxc)")
        path = lxc_path(host.uri or self.default_uri)
        try:  # the directory itself is made, never a missing parent (a typo makes no new tree)
            path.mkdir(parents=str(path) == DEFAULT_PATH, exist_ok=True)
        except OSError as e:
            raise DriverError(f"LXC host {host.name!r}: cannot use {path}: {e.strerror}") from None
        with self._lock:
            self._paths[host.name] = path

    def disconnect(self, host: str) -> None:
        with self._lock:
            self._paths.pop(host, None)

    def host_info(self, host: str) -> HostInfo:
        path = self._path(host)
        mem_kib = 0.0
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kib = float(line.split()[1])
        st = os.statvfs(path)
        version = self._run(host, ["lxc-create", "--version"]).strip()
        return HostInfo(host, {"vcpu": float(os.cpu_count() or 1), "memory_mib": mem_kib / 1024,
                               "disk_gib": st.f_blocks * st.f_frsize / 2**30},
                        hypervisor="LXC", version=version, cpu_model=_cpu_model())

    def heartbeat(self, host: str) -> bool:
        if host in self._fenced:
            return False
        try:
            self._run(host, ["lxc-ls", "-P", str(self._path(host))])
            return True
        except DriverError:
            return False

    def stats(self, host: str) -> HostStats:
        if not self.heartbeat(host):
            return HostStats(host, False, 0)
        states: dict[str, str] = {}
        used = {"vcpu": 0.0, "memory_mib": 0.0}
        for n in self._ours(host):
            states[self._key(n)] = st = self._state(host, n)
            if st == "running":  # what running containers may take: their limits
                used["vcpu"] += self._cpu_limit(host, n)
                used["memory_mib"] += self._memory(host, n)[1]
        return HostStats(host, True, len(states), used, states)

    # ---- lifecycle -------------------------------------------------------------------------------
    def create(self, host: str, workload: DriverWorkload) -> None:
        """lxc-create (busybox template, no network, cgroup limits) then lxc-start; idempotent.
        A container that cannot start is destroyed again: a refused create leaves nothing."""
        self._refuse_if_fenced(host)
        if workload.kind != "container":
            raise DriverRefusal(f"LXC host {host!r} runs containers, not {workload.kind}s")
        name = container_name(workload.key)
        path = self._path(host)
        if not (path / name / "config").exists():
            with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
                f.write("lxc.net.0.type = empty\n")
                f.write(f"lxc.apparmor.profile = {self._apparmor()}\n")
                for line in cgroup_limits(workload.demand, cgroup_v1()):
                    f.write(line + "\n")
                conf = f.name
            try:
                self._run(host, ["lxc-create", "-P", str(path), "-n", name, "-f", conf,
                                 "-t", self.config.template])
            except DriverError:
                self._destroy(host, name)
                raise
            finally:
                os.unlink(conf)
        if self._state(host, name) == "stopped":
            try:
                self._run(host, ["lxc-start", "-P", str(path), "-n", name])
            except DriverError:
                self._destroy(host, name)
                raise

    def start(self, host: str, workload: DriverWorkload) -> None:
        self._refuse_if_fenced(host)
        name = self._need(host, workload)
        st = self._state(host, name)
        if st == "suspended":
            self._run(host, ["lxc-unfreeze", "-P", str(self._path(host)), "-n", name])
        elif st == "stopped":
            self._run(host, ["lxc-start", "-P", str(self._path(host)), "-n", name])

    def stop(self, host: str, workload: DriverWorkload) -> None:
        name = self._need(host, workload)
        if self._state(host, name) == "stopped":
            return
        path = str(self._path(host))
        if self._state(host, name) == "suspended":
            self._run(host, ["lxc-unfreeze", "-P", path, "-n", name])
        t = self.config.stop_timeout_s
        args = ["-k"] if t <= 0 else ["-t", str(int(max(1, t)))]
        self._run(host, ["lxc-stop", "-P", path, "-n", name, *args], timeout=TIMEOUT_S + t)

    def suspend(self, host: str, workload: DriverWorkload) -> None:
        name = self._need(host, workload)
        if self._state(host, name) == "running":
            self._run(host, ["lxc-freeze", "-P", str(self._path(host)), "-n", name])

    def resume(self, host: str, workload: DriverWorkload) -> None:
        self._refuse_if_fenced(host)
        name = self._need(host, workload)
        if self._state(host, name) == "suspended":
            self._run(host, ["lxc-unfreeze", "-P", str(self._path(host)), "-n", name])

    def delete(self, host: str, workload: DriverWorkload) -> None:
        self._destroy(host, container_name(workload.key))
        self._cpu.pop((host, workload.key), None)

    def exists(self, host: str, workload: DriverWorkload) -> bool:
        if host in self._fenced:
            return False
        return (self._path(host) / container_name(workload.key) / "config").exists()

    def state(self, host: str, workload: DriverWorkload) -> str:
        return self._state(host, self._need(host, workload))

    def attach(self, host: str, workload: DriverWorkload, argv: list[str], timeout: float = 30.0) -> str:
        """Run a command inside the running container (lxc-attach); its stdout."""
        name = self._need(host, workload)
        return self._run(host, ["lxc-attach", "-P", str(self._path(host)), "-n", name, "--", *argv],
                         timeout=timeout)

    # ---- stats and fencing -----------------------------------------------------------------------
    def workload_stats(self, host: str) -> dict[str, WorkloadSample]:
        """CPU utilization from the cgroup's CPU time since the previous call (first call: over
        CPU_WINDOW_S), memory from the cgroup's usage and limit."""
        names = self._ours(host)
        fresh = [n for n in names if (host, self._key(n)) not in self._cpu]
        if fresh:
            now = time.monotonic()
            for n in fresh:
                cpu = self._cpu_s(host, n)
                if cpu is not None:
                    self._cpu[(host, self._key(n))] = (now, cpu)
            time.sleep(CPU_WINDOW_S)
        out = {}
        for n in names:
            key, st = self._key(n), self._state(host, n)
            now, cpu = time.monotonic(), self._cpu_s(host, n) if st != "stopped" else None
            util = 0.0
            prev = self._cpu.get((host, key))
            if cpu is not None and prev is not None and now > prev[0]:
                vcpu = self._cpu_limit(host, n)
                util = min(1.0, max(0.0, (cpu - prev[1]) / ((now - prev[0]) * vcpu)))
            if cpu is not None:
                self._cpu[(host, key)] = (now, cpu)
            used, limit = self._memory(host, n) if st != "stopped" else (0.0, 0.0)
            out[key] = WorkloadSample(key, st, util, used, limit, cpu)
        return out

    def fence(self, host: str) -> None:
        """Refuse new containers on the host and kill every container of ours it runs."""
        self._fenced.add(host)
        for n in self._ours(host):
            if self._state(host, n) != "stopped":
                self._run(host, ["lxc-stop", "-P", str(self._path(host)), "-n", n, "-k"])

    def unfence(self, host: str) -> None:
        self._fenced.discard(host)

    # ---- internals -------------------------------------------------------------------------------
    def _path(self, host: str) -> Path:
        with self._lock:
            p = self._paths.get(host)
            if p is None and self.default_uri:
                p = self._paths[host] = lxc_path(self.default_uri)
        if p is None:
            raise DriverError(f"LXC host {host!r} is not connected")
        return p

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(SEP, "/", 1)

    def _ours(self, host: str) -> list[str]:
        path = self._path(host)
        try:
            return sorted(d.name for d in path.iterdir() if SEP in d.name and (d / "config").exists())
        except OSError as e:
            raise DriverError(f"LXC host {host!r}: cannot list {path}: {e.strerror}") from None

    def _need(self, host: str, workload: DriverWorkload) -> str:
        name = container_name(workload.key)
        if not (self._path(host) / name / "config").exists():
            raise DriverError(f"LXC host {host!r} has no container {workload.key}")
        return name

    def _state(self, host: str, name: str) -> str:
        out = self._run(host, ["lxc-info", "-P", str(self._path(host)), "-n", name, "-s", "-H"])
        return STATES.get(out.strip().split()[-1] if out.strip() else "", "unknown")

    def _destroy(self, host: str, name: str) -> None:
        path = self._path(host)
        if not (path / name).exists():
            return
        if (path / name / "config").exists():
            if self._state(host, name) != "stopped":
                self._run(host, ["lxc-stop", "-P", str(path), "-n", name, "-k"])
            self._run(host, ["lxc-destroy", "-P", str(path), "-n", name])
        if (path / name).exists():  # a create that failed before writing its config
            shutil.rmtree(path / name)

    def _cgroup(self, host: str, name: str, key: str) -> str | None:
        try:
            return self._run(host, ["lxc-cgroup", "-P", str(self._path(host)), "-n", name, key]).strip()
        except DriverError:
            return None

    def _cpu_s(self, host: str, name: str) -> float | None:
        v = self._cgroup(host, name, "cpuacct.usage")  # ns (v1)
        if v:
            return float(v) / 1e9
        stat = self._cgroup(host, name, "cpu.stat")    # usage_usec (v2)
        for line in (stat or "").splitlines():
            if line.startswith("usage_usec"):
                return float(line.split()[1]) / 1e6
        return None

    def _cpu_limit(self, host: str, name: str) -> float:
        """The container's CPUs: its quota, else every CPU of the machine."""
        q, p = self._cgroup(host, name, "cpu.cfs_quota_us"), self._cgroup(host, name, "cpu.cfs_period_us")
        if q and p and int(q) > 0:
            return int(q) / int(p)
        mx = self._cgroup(host, name, "cpu.max")
        if mx and not mx.startswith("max"):
            quota, period = mx.split()
            return int(quota) / int(period)
        return float(os.cpu_count() or 1)

    def _memory(self, host: str, name: str) -> tuple[float, float]:
        used = self._cgroup(host, name, "memory.usage_in_bytes") or self._cgroup(host, name, "memory.current")
        limit = self._cgroup(host, name, "memory.limit_in_bytes") or self._cgroup(host, name, "memory.max")
        u = float(used) / 2**20 if used and used.isdigit() else 0.0
        lim = float(limit) / 2**20 if limit and limit.isdigit() and int(limit) < 2**60 else 0.0
        return u, lim

    def _apparmor(self) -> str:
        if self.config.apparmor:
            return self.config.apparmor
        return "generated" if os.path.isdir("/sys/kernel/security/apparmor") else "unconfined"

    def _refuse_if_fenced(self, host: str) -> None:
        if host in self._fenced:
            raise DriverError(f"LXC host {host!r} is fenced")

    def _run(self, host: str, cmd: list[str], timeout: float = TIMEOUT_S) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                               stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise DriverError(f"LXC host {host!r}: {cmd[0]} not found (apt-get install lxc)") from None
        except subprocess.TimeoutExpired:
            raise DriverError(f"LXC host {host!r}: {cmd[0]} timed out after {timeout:.0f}s") from None
        if r.returncode != 0:
            msg = (r.stderr or r.stdout).strip().splitlines()
            raise DriverError(f"LXC host {host!r}: {' '.join(cmd[:1] + cmd[3:5])} failed: "
                              f"{msg[-1] if msg else f'exit {r.returncode}'}")
        return r.stdout


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""
