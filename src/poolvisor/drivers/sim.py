"""The `sim` driver: in-process simulated hosts implementing every capability protocol.

Each simulated host keeps the workloads it runs, their state, snapshots, balloon size and attached
devices. Operations on a live host are idempotent and adopt workloads they did not create: the
sim's world is reconstructed from the database after a restart or in another process.

Models (so that work in progress is visible):
- `durations`: seconds per operation (default 0);
- migration: memory (`memory_mib` of the demand) over `migration_bandwidth_mibps` (None = at
  once), plus `durations["migrate"]`; a live migration's downtime is the stop-and-copy of the
  last `DIRTY_FRACTION` of memory, an offline one's the whole transfer. The handle is a clock,
  not a thread: the move commits when the handle is polled after its end time;
- utilization: a running workload uses its whole demand (cpu_util 1) unless set otherwise
  (`set_utilization`, or `set_profile`: a repeating series of values over the driver's clock,
  kept per workload key so it follows migrations), a stopped one nothing;
- power (DPM): an empty host can be switched off; switched on, it boots for `boot_s` seconds of
  the driver's `clock` (no heartbeat, no guests meanwhile).

Fault injection (`fail`, `revive`, `inject`) is for tests and the sim admin API extension only
(api/routes/sim_admin.py); services never call it. Instances that share a `SimFabric` (one per
DriverPool) can migrate workloads between them: that is how two sim URIs form one pool.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import BinaryIO

import numpy as np

from poolvisor.domain.errors import InvalidInputError
from poolvisor.drivers.balloon import SimBalloon
from poolvisor.drivers.base import DriverError, DriverWorkload, HostStats
from poolvisor.drivers.protocols import (
    Capability,
    CopyBack,
    GuestMemory,
    HostBinding,
    HostInfo,
    ImageInfo,
    MigrationProgress,
    MigrationState,
    NicSpec,
    SnapshotInfo,
    VolumeSpec,
    WorkloadSample,
)
from poolvisor.policies import shares as share_policy

OPERATIONS = ("create", "start", "stop", "suspend", "resume", "delete", "migrate", "fence", "snapshot",
              "restore", "export", "import")
_AFTER = {"create": "running", "start": "running", "stop": "stopped", "suspend": "suspended",
          "resume": "running"}
DIRTY_FRACTION = 0.01  # of memory re-copied during a live migration's final pause
MIB = 1 << 20
IMAGE_MAGIC = b"POOLVISOR-SIM-IMAGE 1\n"
IMAGE_BYTES_PER_MIB = 64  # a sim image is a scaled-down model: 64 bytes per MiB of memory and disk
MAX_IMAGE_HEADER = 64 * 1024


@dataclass
class SimGuest:
    workload: DriverWorkload
    state: str
    cpu_util: float | None = None  # None = its whole demand while running
    memory_mb: float | None = None  # balloon target; None = its demand
    volumes: dict[str, VolumeSpec] = field(default_factory=dict)
    nics: dict[str, NicSpec] = field(default_factory=dict)
    disk_writes: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)  # volume id -> guest writes


@dataclass
class SimHost:
    name: str
    capacity: dict[str, float]
    alive: bool = True
    fenced: bool = False
    reachable: bool = True  # False: partitioned (guests keep running; only the power switch reaches it)
    guests: dict[str, SimGuest] = field(default_factory=dict)
    power: str = "on"  # on, off, booting
    ready_at: float = 0.0  # when a booting host is on (driver clock)
    # False while this process has only rebuilt the host from the database (a restart of the
    # control plane, another replica): its guest list is what this process has seen, not the
    # host's whole inventory (a real hypervisor keeps running while poolvisor restarts). True
    # once the host itself lost its guests (fail, fence, unfence): then it holds exactly `guests`.
    remembers: bool = False


@dataclass
class _Fault:
    op: str
    host: str | None
    remaining: int


class SimFabric:
    """What several sim driver instances share: one lock, which instance serves which host, and
    snapshots (kept per workload key, so they follow a migrating workload)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.owners: dict[str, SimDriver] = {}
        self.snapshots: dict[str, dict[str, tuple[SnapshotInfo, str]]] = {}
        self.profiles: dict[str, tuple[tuple[float, ...], float, float]] = {}  # key -> values, step, t0


def capacity_from_uri(uri: str) -> dict[str, float]:
    """`sim://?vcpu=32&memory_mib=131072` -> the node's capacity (what host_info reports)."""
    out: dict[str, float] = {}
    try:
        query = urllib.parse.urlsplit(uri).query
    except ValueError as e:
        raise InvalidInputError(f"sim URI {uri!r}: {e}") from None
    for k, v in urllib.parse.parse_qsl(query):
        try:
            out[k] = float(v)
        except ValueError:
            raise InvalidInputError(f"sim URI {uri!r}: {k}={v!r} is not a number") from None
    return out


class SimDriver:
    name = "sim"
    capabilities = frozenset(Capability)

    def __init__(self, uri: str = "", durations: Mapping[str, float] | None = None,
                 migration_bandwidth_mibps: float | None = None, fabric: SimFabric | None = None,
                 boot_s: float = 0.0, clock: Callable[[], float] | None = None):
        self.uri = uri
        self.node_capacity = capacity_from_uri(uri)
        self.durations = {op: 0.0 for op in OPERATIONS}
        for op, d in (durations or {}).items():
            if op not in self.durations:
                raise ValueError(f"unknown sim operation {op!r}; known: {', '.join(OPERATIONS)}")
            self.durations[op] = float(d)
        if migration_bandwidth_mibps is not None and not migration_bandwidth_mibps > 0:
            raise ValueError("sim migration bandwidth must be > 0 MiB/s (None: instantaneous)")
        self.bandwidth = migration_bandwidth_mibps
        self.fabric = fabric or SimFabric()
        self.hosts: dict[str, SimHost] = {}
        self._faults: list[_Fault] = []
        self._lock = self.fabric.lock
        self.balloon = SimBalloon()  # memory balloons (drivers/balloon.py)
        if not boot_s >= 0:
            raise ValueError("sim boot time must be >= 0 s")
        self.boot_s = float(boot_s)
        self.clock: Callable[[], float] = clock or time.time  # boot and profiles (a SimClock's in tests)

    # ---- fault injection (tests, sim admin extension) ----------------------------------------
    def fail(self, host: str) -> None:
        """The host dies: no heartbeat, every workload on it is gone."""
        with self._lock:
            h = self._host(host)
            h.alive = False
            h.guests.clear()
            h.remembers = True

    def revive(self, host: str) -> None:
        with self._lock:
            h = self._host(host)
            h.alive, h.fenced = True, False

    def partition(self, host: str, cut: bool = True) -> None:
        """Cut (or heal) the host's management network: it answers no heartbeat and no operation,
        but it is alive and its guests keep running; its fence agent (the power switch, out of
        band) still reaches it."""
        with self._lock:
            self._host(host).reachable = not cut

    def inject(self, op: str, host: str | None = None, times: int = 1) -> None:
        """Make the next `times` operations `op` (on `host`, or any host) fail with DriverError."""
        if op not in OPERATIONS:
            raise ValueError(f"unknown sim operation {op!r}")
        with self._lock:
            self._faults.append(_Fault(op, host, times))

    def set_utilization(self, host: str, workload: DriverWorkload, cpu_util: float) -> None:
        if not 0.0 <= cpu_util <= 1.0:
            raise InvalidInputError("cpu_util must be in [0, 1]")
        with self._lock:
            self._guest(self._live(host), workload).cpu_util = cpu_util

    def set_profile(self, key: str, values: Sequence[float], step_s: float, t0: float) -> None:
        """Workload `key` uses `values[k % n]` of its CPU at clock time t0 + k*step_s (a recorded
        day replayed in a loop: what the demo does so the controller measures something real)."""
        vals = tuple(float(v) for v in values)
        if not vals or not all(0.0 <= v <= 1.0 for v in vals) or not step_s > 0:
            raise InvalidInputError("a utilization profile needs values in [0, 1] and a step > 0")
        with self._lock:
            self.fabric.profiles[key] = (vals, float(step_s), float(t0))

    def _util(self, key: str, g: SimGuest) -> float:
        if g.cpu_util is not None:
            return g.cpu_util
        prof = self.fabric.profiles.get(key)
        if prof is None:
            return 1.0
        vals, step, t0 = prof
        return vals[int((self.clock() - t0) // step) % len(vals)]

    # ---- Power (DPM) ---------------------------------------------------------------------------
    def power_off(self, host: str) -> None:
        with self._lock:
            h = self._live(host)
            if h.guests:
                raise DriverError(f"sim host {host!r} still runs {len(h.guests)} guest(s); not switched off")
            h.power = "off"

    def power_on(self, host: str) -> None:
        with self._lock:
            h = self._host(host)
            if h.power == "off":
                h.power, h.ready_at = "booting", self.clock() + self.boot_s
            self._booted(h)

    def power_state(self, host: str) -> str:
        with self._lock:
            h = self._host(host)
            self._booted(h)
            return h.power

    def _booted(self, h: SimHost) -> None:
        if h.power == "booting" and self.clock() >= h.ready_at:
            h.power = "on"

    # ---- HostDriver ----------------------------------------------------------------------------
    def connect(self, host: HostBinding) -> None:
        with self._lock:
            h = self._host(host.name)
            self.fabric.owners[host.name] = self  # bound here now, even if another instance adopted it
            if host.capacity:
                h.capacity = dict(host.capacity)

    def disconnect(self, host: str) -> None:
        with self._lock:
            self.hosts.pop(host, None)
            if self.fabric.owners.get(host) is self:
                del self.fabric.owners[host]

    def host_info(self, host: str) -> HostInfo:
        """The capacity it was bound with, else its URI's; empty when neither says (the caller
        then needs one given)."""
        with self._lock:
            h = self._live(host)
            cap = dict(h.capacity or self.node_capacity)
        return HostInfo(host, cap, hypervisor="sim", version="1")

    def heartbeat(self, host: str) -> bool:
        with self._lock:
            h = self.hosts.get(host)
            if h is not None:
                self._booted(h)
            return h is not None and h.alive and not h.fenced and h.power == "on" and h.reachable

    def stats(self, host: str) -> HostStats:
        with self._lock:
            h = self._host(host)
            used: dict[str, float] = {}
            for g in h.guests.values():
                if g.state == "running":
                    for r, v in g.workload.demand.items():
                        used[r] = used.get(r, 0.0) + float(v)
            states = {k: g.state for k, g in h.guests.items()}
            return HostStats(host, h.alive and not h.fenced and h.reachable, len(h.guests), used, states,
                             complete=h.remembers)

    # ---- Lifecycle -----------------------------------------------------------------------------
    def create(self, host: str, workload: DriverWorkload) -> None:
        self._op("create", host, workload)

    def start(self, host: str, workload: DriverWorkload) -> None:
        self._op("start", host, workload)

    def stop(self, host: str, workload: DriverWorkload) -> None:
        self._op("stop", host, workload)

    def suspend(self, host: str, workload: DriverWorkload) -> None:
        self._op("suspend", host, workload)

    def resume(self, host: str, workload: DriverWorkload) -> None:
        self._op("resume", host, workload)

    def delete(self, host: str, workload: DriverWorkload) -> None:
        self._sleep("delete")
        with self._lock:
            self._check_fault("delete", host)
            h = self.hosts.get(host)
            if h is not None:  # deleting from a dead or unknown host is a no-op: it is gone anyway
                h.guests.pop(workload.key, None)
            self.fabric.snapshots.pop(workload.key, None)

    def exists(self, host: str, workload: DriverWorkload) -> bool:
        with self._lock:
            h = self.hosts.get(host)
            return h is not None and h.alive and not h.fenced and h.reachable and workload.key in h.guests

    # ---- Migration -----------------------------------------------------------------------------
    def check_migration(self, workload: DriverWorkload, src: HostBinding) -> None:
        """The sim migrates any workload it runs (snapshots included)."""

    def start_migration(self, workload: DriverWorkload, src: HostBinding, dst: HostBinding,
                        live: bool = True) -> SimMigration:
        if dst.driver != self.name:
            raise DriverError(f"sim cannot migrate to host {dst.name!r} of driver {dst.driver!r}")
        with self._lock:
            target = self.fabric.owners.get(dst.name, self)
            self._check_fault("migrate", src.name)
            s = self._live(src.name)
            target._live(dst.name)
            self._guest(s, workload)  # adopt: the database says it runs there
        mem = float(workload.demand.get("memory_mib", 0.0))
        transfer = mem / self.bandwidth if self.bandwidth else 0.0
        total_s = self.durations["migrate"] + transfer
        downtime = (DIRTY_FRACTION * transfer if live else total_s) * 1000.0
        return SimMigration(self, target, workload, src.name, dst.name, int(mem * MIB), total_s, downtime)

    # ---- Snapshots -----------------------------------------------------------------------------
    def snapshot_create(self, host: str, workload: DriverWorkload, name: str) -> SnapshotInfo:
        self._sleep("snapshot")
        with self._lock:
            self._check_fault("snapshot", host)
            g = self._guest(self._live(host), workload)
            snaps = self.fabric.snapshots.setdefault(workload.key, {})
            if name in snaps:
                raise DriverError(f"sim: workload {workload.key!r} already has a snapshot {name!r}")
            size = int(float(workload.demand.get("memory_mib", 0.0)) * MIB) if g.state != "stopped" else 0
            info = SnapshotInfo(name, time.time(), g.state, size)
            snaps[name] = (info, g.state)
            return info

    def snapshot_list(self, host: str, workload: DriverWorkload) -> list[SnapshotInfo]:
        with self._lock:
            self._live(host)
            snaps = self.fabric.snapshots.get(workload.key, {})
            return sorted((i for i, _st in snaps.values()), key=lambda i: (i.created_at, i.name))

    def snapshot_delete(self, host: str, workload: DriverWorkload, name: str) -> None:
        with self._lock:
            self._live(host)
            self.fabric.snapshots.get(workload.key, {}).pop(name, None)  # idempotent

    def snapshot_restore(self, host: str, workload: DriverWorkload, name: str) -> None:
        """Return the workload to the snapshot's state (sim snapshots live in this process only)."""
        self._sleep("restore")
        with self._lock:
            self._check_fault("restore", host)
            g = self._guest(self._live(host), workload)
            known = self.fabric.snapshots.get(workload.key, {}).get(name)
            if known is None:
                raise DriverError(f"sim: workload {workload.key!r} has no snapshot {name!r}")
            g.state = known[1]

    # ---- BackupImage ---------------------------------------------------------------------------
    def export_image(self, host: str, workload: DriverWorkload, out: BinaryIO) -> ImageInfo:
        """Write a deterministic image of the guest: a magic line, a JSON header (its state,
        balloon, utilization, the body's length and SHA-256), then the body, derived from the
        workload's key and state (so two exports of an unchanged guest are byte-identical)."""
        self._sleep("export")
        with self._lock:
            self._check_fault("export", host)
            g = self._guest(self._live(host), workload)
            state, memory_mb, cpu_util = g.state, g.memory_mb, g.cpu_util
        body = _image_body(workload, state)
        header = json.dumps({"key": workload.key, "kind": workload.kind, "demand": dict(workload.demand),
                             "state": state, "memory_mb": memory_mb, "cpu_util": cpu_util,
                             "body_bytes": len(body), "body_sha256": hashlib.sha256(body).hexdigest()},
                            sort_keys=True).encode() + b"\n"
        digest = hashlib.sha256()
        for part in (IMAGE_MAGIC, header, body):
            out.write(part)
            digest.update(part)
        return ImageInfo(state, len(IMAGE_MAGIC) + len(header) + len(body), digest.hexdigest())

    def import_image(self, host: str, workload: DriverWorkload, src: BinaryIO) -> ImageInfo:
        """Check the image (magic, header, body length and checksum) and run the guest from it on
        `host` in the state it holds; DriverError for a corrupt or truncated image."""
        self._sleep("import")
        digest = hashlib.sha256()
        magic = src.read(len(IMAGE_MAGIC))
        if magic != IMAGE_MAGIC:
            raise DriverError("sim: not a sim backup image (bad magic)")
        digest.update(magic)
        line = src.readline(MAX_IMAGE_HEADER)
        digest.update(line)
        try:
            header = json.loads(line)
            n, want, state = int(header["body_bytes"]), str(header["body_sha256"]), str(header["state"])
        except (ValueError, KeyError, TypeError):
            raise DriverError("sim: backup image header is corrupt") from None
        body_digest, got = hashlib.sha256(), 0
        while got < n:
            chunk = src.read(min(1 << 16, n - got))
            if not chunk:
                break
            body_digest.update(chunk)
            digest.update(chunk)
            got += len(chunk)
        if got != n or src.read(1):
            raise DriverError(f"sim: backup image body is {got} bytes (or more), expected {n}")
        if body_digest.hexdigest() != want:
            raise DriverError("sim: backup image body checksum mismatch (corrupt image)")
        if state not in ("running", "stopped", "suspended"):
            raise DriverError(f"sim: backup image holds an unknown guest state {state!r}")
        with self._lock:
            self._check_fault("import", host)
            h = self._live(host)
            mem, util = header.get("memory_mb"), header.get("cpu_util")
            h.guests[workload.key] = SimGuest(workload, state, float(util) if util is not None else None,
                                              float(mem) if mem is not None else None)
        return ImageInfo(state, len(magic) + len(line) + n, digest.hexdigest())

    # ---- WorkloadStats, Balloon, VolumeAttach, NicAttach ---------------------------------------
    def workload_stats(self, host: str) -> dict[str, WorkloadSample]:
        """Per guest: its CPU use (the utilization it asks for) and what the host grants it
        (`granted`): the shares core over the running guests' demands (util x its vCPU limit, its
        limit of every other resource) against the host's capacity."""
        with self._lock:
            h = self._live(host)
            out = {}
            for k, g in h.guests.items():
                mem = float(g.workload.demand.get("memory_mib", 0.0))
                cur = g.memory_mb if g.memory_mb is not None else mem
                run = g.state == "running"
                util = self._util(k, g) if run else 0.0
                out[k] = WorkloadSample(k, g.state, util, cur if g.state != "stopped" else 0.0, cur)
            shared = self._granted(h, {k: s.cpu_util for k, s in out.items()})
            return {k: replace(s, granted=shared[k][0], wanted=shared[k][1]) if k in shared else s
                    for k, s in out.items()}

    def _granted(self, h: SimHost,
                 util: Mapping[str, float]) -> dict[str, tuple[dict[str, float], dict[str, float]]]:
        """Per running guest: (granted, wanted) per resource."""
        running = [(k, g) for k, g in h.guests.items() if g.state == "running"]
        cap = h.capacity or self.node_capacity
        names = sorted({r for _, g in running for r in g.workload.demand} & set(cap))
        if not running or not names:
            return {}
        res, lim, sh = share_policy.spec_columns(
            [(g.workload.demand, g.workload.spec) for _, g in running], names)
        want = lim.copy()
        if "vcpu" in names:  # CPU is what a guest uses in part; the rest it holds whole
            want[:, names.index("vcpu")] *= [util[k] for k, _ in running]
        got = share_policy.grant(want, res, lim, sh, np.array([float(cap[r]) for r in names]))
        return {k: (dict(zip(names, map(float, got[i]), strict=True)),
                    dict(zip(names, map(float, want[i]), strict=True))) for i, (k, _) in enumerate(running)}

    def guest_memory(self, host: str, workload: DriverWorkload) -> GuestMemory:
        with self._lock:
            self._guest(self._live(host), workload)
        return self.balloon.guest(host, workload)

    def set_memory(self, host: str, workload: DriverWorkload, mb: float) -> float:
        mem = float(workload.demand.get("memory_mib", 0.0))
        if not 0 <= mb <= mem:
            raise InvalidInputError(f"balloon target must be in [0, {mem:g}] MiB (the workload's memory)")
        with self._lock:
            g = self._guest(self._live(host), workload)
            g.memory_mb = got = self.balloon.set(host, workload, mb)
        return got

    def attach_volume(self, host: str, workload: DriverWorkload, volume: VolumeSpec) -> None:
        with self._lock:
            self._guest(self._live(host), workload).volumes[volume.id] = volume

    def detach_volume(self, host: str, workload: DriverWorkload, volume_id: str,
                      copy_back: CopyBack | None = None) -> None:
        """The guest's writes to the disk (guest_write) go to `copy_back`, then the disk goes."""
        with self._lock:
            g = self._guest(self._live(host), workload)
            writes = list(g.disk_writes.get(volume_id, [])) if volume_id in g.volumes else []
        if copy_back is not None:
            for offset, data in writes:
                copy_back(offset, data)
        with self._lock:
            g = self._guest(self._live(host), workload)
            g.volumes.pop(volume_id, None)
            g.disk_writes.pop(volume_id, None)

    def guest_write(self, host: str, workload: DriverWorkload, volume_id: str, offset: int,
                    data: bytes) -> None:
        """The guest writes to an attached disk (the model of what a real guest does; tests)."""
        with self._lock:
            g = self._guest(self._live(host), workload)
            if volume_id not in g.volumes:
                raise DriverError(f"sim host {host!r}: {workload.key} has no disk {volume_id}")
            g.disk_writes.setdefault(volume_id, []).append((offset, bytes(data)))

    def attach_nic(self, host: str, workload: DriverWorkload, nic: NicSpec) -> None:
        with self._lock:
            self._guest(self._live(host), workload).nics[nic.mac] = nic

    def detach_nic(self, host: str, workload: DriverWorkload, mac: str) -> None:
        with self._lock:
            self._guest(self._live(host), workload).nics.pop(mac, None)

    def devices(self, host: str, workload: DriverWorkload) -> tuple[list[str], list[str]]:
        """(volume ids, NIC MACs) attached to the workload: what tests inspect."""
        with self._lock:
            g = self._guest(self._live(host), workload)
            return sorted(g.volumes), sorted(g.nics)

    # ---- Fencing -------------------------------------------------------------------------------
    def fence(self, host: str) -> None:
        """Power the host off (STONITH): its workloads stop for good, it takes no new ones."""
        self._sleep("fence")
        with self._lock:
            self._check_fault("fence", host)
            h = self._host(host)
            h.fenced = True
            h.guests.clear()
            h.remembers = True

    def unfence(self, host: str) -> None:
        """The host rejoins, empty (a host that was fenced never brings its old guests back)."""
        with self._lock:
            h = self._host(host)
            h.fenced = False
            h.guests.clear()
            h.remembers = True

    def quick(self, op: str) -> bool:
        """In-process, no delay injected for `op`: callers may run it where nothing may wait."""
        return self.durations.get(op, 1.0) <= 0

    # ---- internals -----------------------------------------------------------------------------
    def _sleep(self, op: str) -> None:
        d = self.durations[op]
        if d > 0:
            time.sleep(d)

    def _op(self, op: str, host: str, workload: DriverWorkload) -> None:
        self._sleep(op)
        with self._lock:
            self._check_fault(op, host)
            h = self._live(host)
            g = h.guests.get(workload.key)
            if g is None:
                h.guests[workload.key] = SimGuest(workload, _AFTER[op])
            else:
                g.workload, g.state = workload, _AFTER[op]

    def _host(self, host: str) -> SimHost:
        # The database is the authority on which hosts exist: a host this process has not seen
        # yet (created by another process, or before a restart) is adopted as a live host.
        h = self.hosts.get(host)
        if h is None:
            h = self.hosts[host] = SimHost(host, {})
            self.fabric.owners.setdefault(host, self)
        return h

    def _live(self, host: str) -> SimHost:
        h = self._host(host)
        self._booted(h)
        if not h.alive or h.fenced or h.power != "on" or not h.reachable:
            raise DriverError(f"sim host {host!r} does not respond")
        return h

    @staticmethod
    def _guest(h: SimHost, workload: DriverWorkload) -> SimGuest:
        g = h.guests.get(workload.key)
        if g is None:
            g = h.guests[workload.key] = SimGuest(workload, "running")
        return g

    def _check_fault(self, op: str, host: str) -> None:
        for f in self._faults:
            if f.op == op and f.host in (None, host):
                f.remaining -= 1
                if f.remaining <= 0:
                    self._faults.remove(f)
                raise DriverError(f"sim: injected failure of {op} on {host!r}")


def _image_body(workload: DriverWorkload, state: str) -> bytes:
    """The image body: SHA-256 blocks chained from the workload's key and state, sized from its
    memory and disk (IMAGE_BYTES_PER_MIB per MiB), at least one block."""
    mib = float(workload.demand.get("memory_mib", 0.0)) + 1024.0 * float(workload.demand.get("disk_gib", 0.0))
    n = max(32, int(mib * IMAGE_BYTES_PER_MIB))
    seed = hashlib.sha256(f"{workload.key}|{workload.kind}|{state}".encode()).digest()
    out, block = bytearray(), seed
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


class SimMigration:
    """A sim migration in flight: progress is elapsed time over the modelled transfer time."""

    def __init__(self, src_driver: SimDriver, dst_driver: SimDriver, workload: DriverWorkload, src: str,
                 dst: str, total_bytes: int, total_s: float, downtime_ms: float) -> None:
        self.src_driver, self.dst_driver = src_driver, dst_driver
        self.workload, self.src, self.dst = workload, src, dst
        self.total_bytes, self.total_s, self.downtime_ms = total_bytes, total_s, downtime_ms
        self.started = time.monotonic()
        self._final: MigrationProgress | None = None

    def progress(self) -> MigrationProgress:
        with self.src_driver._lock:
            if self._final is not None:
                return self._final
            elapsed = time.monotonic() - self.started
            if elapsed < self.total_s:
                frac = elapsed / self.total_s
                return MigrationProgress(MigrationState.RUNNING, frac, self.total_bytes,
                                         int(frac * self.total_bytes))
            self._final = self._complete()
            return self._final

    def abort(self) -> None:
        with self.src_driver._lock:
            if self._final is None and time.monotonic() - self.started < self.total_s:
                p = self.progress()
                self._final = replace(p, state=MigrationState.ABORTED, error="aborted")

    def wait(self, timeout_s: float | None = None) -> MigrationProgress:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            p = self.progress()
            if p.done:
                return p
            left = self.started + self.total_s - time.monotonic()
            if deadline is not None:
                left = min(left, deadline - time.monotonic())
                if left <= 0:
                    return p
            time.sleep(max(0.0, min(left, 0.05)))

    def _complete(self) -> MigrationProgress:
        """The end of the transfer: the guest switches to the destination (caller holds the lock)."""
        s, d = self.src_driver, self.dst_driver
        fail = MigrationProgress(MigrationState.FAILED, 1.0, self.total_bytes, self.total_bytes)
        try:
            d._check_fault("migrate", self.dst)
            src_h, dst_h = s._live(self.src), d._live(self.dst)
        except DriverError as e:
            return replace(fail, error=e.message)
        g = src_h.guests.pop(self.workload.key, None)
        if g is None:
            return replace(fail, error=f"workload {self.workload.key!r} vanished from {self.src!r} "
                                       "during its migration")
        dst_h.guests[self.workload.key] = g
        return MigrationProgress(MigrationState.COMPLETED, 1.0, self.total_bytes, self.total_bytes,
                                 downtime_ms=self.downtime_ms)
