"""The `libvirt` driver: real QEMU/KVM hosts, each reached through a libvirt URI.

A host is a URI (`qemu:///system`, `qemu+ssh://root@node7/system`, or a lab host's
`qemu+unix:///system?socket=...`). A workload becomes a persistent domain named
`project+name` carrying our metadata (so we never touch guests we did not create), with its disk
a qcow2 volume in the host's storage pool (`poolvisor`, created as a dir pool when missing) and a
NIC on the host's libvirt network of the configured name when the host has it. What guests boot
is the driver's configuration (drivers/libvirt_xml.py: base image or kernel+initrd).

Live migration is peer-to-peer (`--live --p2p --persistent --undefinesource`): the source's
libvirtd talks to the destination's URI itself, so the destination URI must be reachable from the
source host. Without shared storage (the default) the disk is copied along
(`--copy-storage-all`; the destination pre-creates the volume in its pool of the same path) and
the source's volume is removed once the guest runs on the destination. `start_migration` returns
a handle: the migration runs in a thread on its own connection, progress is the source's job
info, `abort` is abortJob.

Every libvirt failure becomes a DriverError (HTTP 503) naming the host and the action.
"""

from __future__ import annotations

import contextlib
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import libvirt

from poolvisor.domain.errors import InvalidInputError
from poolvisor.drivers.base import DriverError, DriverRefusal, DriverWorkload, HostStats
from poolvisor.drivers.libvirt_xml import (
    MIN_MEMORY_MIB,
    NET_PREFIX,
    LibvirtConfig,
    attached_volume_name,
    check_snapshot_name,
    cpu_model,
    dhcp_host_xml,
    dhcp_hosts,
    disk_by_source,
    disk_paths,
    disk_targets,
    domain_name,
    domain_xml,
    free_disk_target,
    guest_spec,
    host_uuid,
    interface_by_mac,
    interfaces,
    managed_key,
    managed_network,
    network_name,
    network_settings,
    network_xml,
    nic_xml,
    offers_kvm,
    raw_volume_xml,
    serves_dhcp,
    volume_disk_xml,
    volume_name,
    volume_xml,
    workload_key,
)
from poolvisor.drivers.protocols import (
    Capability,
    CopyBack,
    GuestMemory,
    HostBinding,
    HostInfo,
    MigrationProgress,
    MigrationState,
    NicSpec,
    SnapshotInfo,
    VolumeSpec,
    WorkloadSample,
)

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors are raised, not printed too

STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "running", libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running", libvirt.VIR_DOMAIN_PAUSED: "suspended",
    libvirt.VIR_DOMAIN_SHUTDOWN: "stopping", libvirt.VIR_DOMAIN_SHUTOFF: "stopped",
    libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}
DEFAULT_POOL_DIR = "/var/lib/libvirt/images/poolvisor"
CPU_WINDOW_S = 0.25  # the first stats call of a guest measures its CPU over this window
POLL_S = 0.1
PROGRESS_EVERY_S = 0.5  # a migration's job info is read from QEMU at most this often
DETACH_TIMEOUT_S = 10.0  # a running guest releases a hot-unplugged disk within this (ACPI eject)
COPY_BACK_PIECE = 16 << 20  # a detached disk's bytes come back into its volume in pieces of this size
UPLOAD_PIECE = 4 << 20  # an attached volume's bytes go to the host in pieces of this size
ROUTE_CLASH = "already in use by interface"  # libvirt refusing a network whose subnet the host routes
ACTIVE_CPU = 0.05  # a guest using more than this share of one CPU between two looks is active
_STATS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
          | libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_VCPU)


@dataclass
class _Host:
    binding: HostBinding
    conn: Any = None  # libvirt.virConnect
    domain_type: str | None = None


class LibvirtDriver:
    name = "libvirt"
    capabilities = frozenset({
        Capability.LIFECYCLE, Capability.MIGRATION, Capability.SNAPSHOTS, Capability.STATS,
        Capability.BALLOON, Capability.HOST_INFO, Capability.FENCE, Capability.VOLUME_ATTACH,
        Capability.NIC_ATTACH,
    })

    def __init__(self, uri: str = "", config: LibvirtConfig | None = None, **options: Any):
        self.config = config or LibvirtConfig.from_env(**options)
        self.default_uri = uri
        self._hosts: dict[str, _Host] = {}
        self._fenced: set[str] = set()
        self._cpu: dict[tuple[str, str], tuple[float, float]] = {}  # (host, key) -> (wall, cpu s)
        # (host, key) -> (wall, cpu s, epoch of its last activity): guest_memory's last_active
        self._activity: dict[tuple[str, str], tuple[float, float, float]] = {}
        self._resized: dict[tuple[str, str], float] = {}  # (host, key) -> epoch of our last balloon resize
        self._lock = threading.Lock()
        # libvirt networks: defining/starting one, its DHCP entries and plugging a NIC on it happen
        # under this lock, and so does the collection, which could otherwise remove a network
        # between its definition and the first NIC plugged on it
        self._net_lock = threading.RLock()

    # ---- hosts -----------------------------------------------------------------------------------
    def connect(self, host: HostBinding) -> None:
        uri = host.uri or self.default_uri
        if not uri:
            raise DriverError(f"libvirt host {host.name!r} has no URI")
        binding = HostBinding(host.name, host.driver, uri, host.capacity)
        with self._lock:
            h = self._hosts.get(host.name)
            if h is not None and h.binding.uri == uri and h.conn is not None:
                return
            self._hosts[host.name] = _Host(binding)
        conn = self._conn(host.name)
        with self._errors("prepare storage", host.name):
            self._ensure_pool(conn)

    def disconnect(self, host: str) -> None:
        with self._lock:
            h = self._hosts.pop(host, None)
        if h is not None and h.conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                h.conn.close()

    def uri(self, host: str) -> str:
        return self._host(host).binding.uri

    def host_info(self, host: str) -> HostInfo:
        conn = self._conn(host)
        with self._errors("read node info", host):
            info = conn.getInfo()  # [model, memory MiB, cpus, MHz, nodes, sockets, cores, threads]
            caps = conn.getCapabilities()
            capacity = {"vcpu": float(info[2]), "memory_mib": float(info[1])}
            with contextlib.suppress(libvirt.libvirtError):
                pool = conn.storagePoolLookupByName(self.config.storage_pool)
                capacity["disk_gib"] = pool.info()[1] / 2**30
            v = conn.getVersion()
            return HostInfo(host, capacity, hypervisor=conn.getType(),
                            version=f"{v // 1_000_000}.{v // 1000 % 1000}.{v % 1000}",
                            uuid=host_uuid(caps), cpu_model=cpu_model(caps) or str(info[0]))

    def heartbeat(self, host: str) -> bool:
        """The daemon answers (a dropped connection is reopened once); a fenced host is dead."""
        if host in self._fenced:
            return False
        try:
            self._conn(host).getLibVersion()
            return True
        except (DriverError, libvirt.libvirtError):
            self._drop(host)
        try:
            self._conn(host).getLibVersion()
            return True
        except (DriverError, libvirt.libvirtError):
            return False

    def stats(self, host: str) -> HostStats:
        alive = self.heartbeat(host)
        if not alive:
            return HostStats(host, False, 0)
        used: dict[str, float] = {}
        states: dict[str, str] = {}
        for key, dom in self._managed(host):
            with self._errors("read guest state", host):
                st, max_kib, _mem, vcpus, _cpu = dom.info()
            states[key] = STATES.get(st, "unknown")
            if states[key] == "running":
                used["vcpu"] = used.get("vcpu", 0.0) + vcpus
                used["memory_mib"] = used.get("memory_mib", 0.0) + max_kib / 1024
        return HostStats(host, True, len(states), used, states)

    # ---- lifecycle -------------------------------------------------------------------------------
    def create(self, host: str, workload: DriverWorkload) -> None:
        """Define and start the guest; idempotent (an existing guest is adopted and started).
        A guest that cannot start is removed again with its volume: a refused create leaves nothing."""
        self._refuse_if_fenced(host)
        if workload.kind != "vm":
            raise DriverRefusal(f"libvirt host {host!r} runs VMs, not {workload.kind}s")
        try:
            guest_spec(workload.demand)
        except ValueError as e:
            raise DriverRefusal(f"libvirt host {host!r}: {e}") from None
        conn = self._conn(host)
        dom = self._lookup(conn, workload.key)
        if dom is None:
            with self._errors("create volume", host):
                path = self._ensure_volume(conn, workload)
            xml = domain_xml(workload.key, workload.demand, self.config, domain_type=self._domain_type(host),
                             disk_path=path, network=self._network(conn), kind=workload.kind)
            try:
                with self._errors("define guest", host):
                    dom = conn.defineXML(xml)
            except DriverError:
                with contextlib.suppress(DriverError, libvirt.libvirtError):
                    self._delete_volumes(conn, [path], workload.key)
                raise
        if not dom.isActive():
            try:
                with self._errors("start guest", host):
                    dom.create()
            except DriverError:
                with contextlib.suppress(DriverError):
                    self.delete(host, workload)
                raise

    def start(self, host: str, workload: DriverWorkload) -> None:
        self._refuse_if_fenced(host)
        dom = self._need(host, workload)
        with self._errors("start guest", host):
            st = dom.state()[0]
            if st == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()
            elif not dom.isActive():
                dom.create()

    def stop(self, host: str, workload: DriverWorkload) -> None:
        """Graceful shutdown for up to stop_timeout_s, then a hard stop."""
        dom = self._need(host, workload)
        with self._errors("stop guest", host):
            if not dom.isActive():
                return
            if self.config.stop_timeout_s > 0 and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING:
                with contextlib.suppress(libvirt.libvirtError):
                    dom.shutdown()
                deadline = time.monotonic() + self.config.stop_timeout_s
                while dom.isActive() and time.monotonic() < deadline:
                    time.sleep(POLL_S)
            if dom.isActive():
                with contextlib.suppress(libvirt.libvirtError):  # it may have just stopped
                    dom.destroy()
            if dom.isActive():
                raise DriverError(f"libvirt host {host!r}: guest {workload.key} did not stop")

    def suspend(self, host: str, workload: DriverWorkload) -> None:
        dom = self._need(host, workload)
        with self._errors("suspend guest", host):
            if dom.state()[0] != libvirt.VIR_DOMAIN_PAUSED:
                dom.suspend()

    def resume(self, host: str, workload: DriverWorkload) -> None:
        self._refuse_if_fenced(host)
        dom = self._need(host, workload)
        with self._errors("resume guest", host):
            if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()

    def delete(self, host: str, workload: DriverWorkload) -> None:
        """Destroy and undefine the guest (snapshots too) and delete its volumes; idempotent."""
        conn = self._conn(host)
        dom = self._lookup(conn, workload.key)
        paths: list[str] = []
        nets: set[str] = set()
        if dom is not None:
            with self._errors("delete guest", host):
                paths = disk_paths(dom.XMLDesc(0))
                nets = set(interfaces(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).values())
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                                  | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        with self._errors("delete volume", host):
            self._delete_volumes(conn, paths, workload.key)
        with self._errors("remove networks", host):
            self._gc_networks(conn, nets)  # the last NIC on a poolvisor network of this host went
        self._cpu.pop((host, workload.key), None)
        self._activity.pop((host, workload.key), None)
        self._resized.pop((host, workload.key), None)

    def exists(self, host: str, workload: DriverWorkload) -> bool:
        if host in self._fenced:
            return False
        return self._lookup(self._conn(host), workload.key) is not None

    def state(self, host: str, workload: DriverWorkload) -> str:
        """The guest's state as the hypervisor sees it (running, suspended, stopped...)."""
        dom = self._need(host, workload)
        with self._errors("read guest state", host):
            return STATES.get(dom.state()[0], "unknown")

    # ---- migration -------------------------------------------------------------------------------
    def start_migration(self, workload: DriverWorkload, src: HostBinding, dst: HostBinding,
                        live: bool = True, *, bandwidth_mib_s: int | None = None) -> LibvirtMigration:
        """`bandwidth_mib_s` caps the transfer (a slow migration, e.g. to test abort)."""
        for b in (src, dst):
            if b.name not in self._hosts:
                self.connect(b)
        self._refuse_if_fenced(dst.name)
        if self._hosts[src.name].binding.uri == self._hosts[dst.name].binding.uri:
            raise DriverRefusal(f"hosts {src.name!r} and {dst.name!r} are the same libvirt node")
        self.check_migration(workload, src)
        dom = self._need(src.name, workload)
        with self._errors("prepare migration", src.name):
            paths = disk_paths(dom.XMLDesc(0))
            macs = interfaces(dom.XMLDesc(0))
            src_nets = {n: dom.connect().networkLookupByName(n).XMLDesc(0)
                        for n in set(macs.values()) if n.startswith(NET_PREFIX)}
            nets = [network_settings(x) for x in src_nets.values()]
        with self._errors("prepare networks", dst.name):
            # the guest's poolvisor networks must exist on the destination, with its DHCP entries
            for lname, xml in src_nets.items():
                settings = network_settings(xml)
                if settings is None:
                    continue
                with self._net_lock:
                    dnet = self._ensure_network(self._conn(dst.name), *settings)
                    hosts = dhcp_hosts(xml)
                    for mac in (m for m, n in macs.items() if n == lname and m in hosts):
                        self._dhcp_add(dnet, mac, hosts[mac])
        flags = (libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
                 | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
        if live:
            flags |= libvirt.VIR_MIGRATE_LIVE
        if paths and not self.config.shared_storage:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
        elif paths:
            # the operator declared the storage shared: trust that over libvirt's file-system
            # guess (it knows NFS, GFS2, OCFS2, CephFS..., not every shared mount)
            flags |= libvirt.VIR_MIGRATE_UNSAFE
        params = {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: int(bandwidth_mib_s)} if bandwidth_mib_s else {}
        return LibvirtMigration(self, workload, self._hosts[src.name].binding,
                                self._hosts[dst.name].binding, flags, params,
                                copied=paths if flags & libvirt.VIR_MIGRATE_NON_SHARED_DISK else [],
                                networks=tuple(network_name(n[0]) for n in nets if n is not None))

    def check_migration(self, workload: DriverWorkload, src: HostBinding) -> None:
        """libvirt cannot migrate a guest with (internal) snapshots: a refusal naming them."""
        if src.name not in self._hosts:
            self.connect(src)
        dom = self._need(src.name, workload)
        with self._errors("prepare migration", src.name):
            names = dom.snapshotListNames(0) if dom.snapshotNum(0) > 0 else []
        if names:
            raise DriverRefusal(f"workload {workload.key} has snapshots ({', '.join(sorted(names))}); "
                                "libvirt cannot migrate a guest with snapshots: delete them first",
                                detail={"snapshots": sorted(names), "host": src.name})

    # ---- snapshots -------------------------------------------------------------------------------
    def snapshot_create(self, host: str, workload: DriverWorkload, name: str) -> SnapshotInfo:
        """An internal qcow2 snapshot; of a running guest it includes its memory (restore resumes it)."""
        name = self._snap_name(name)
        dom = self._need(host, workload)
        with self._errors("create snapshot", host):
            snap = dom.snapshotCreateXML(f"<domainsnapshot><name>{name}</name></domainsnapshot>", 0)
            return _snapshot_info(snap)

    def snapshot_list(self, host: str, workload: DriverWorkload) -> list[SnapshotInfo]:
        dom = self._need(host, workload)
        with self._errors("list snapshots", host):
            # parents before children, then by time (creationTime has a one-second resolution)
            snaps = dom.listAllSnapshots(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)
            return sorted((_snapshot_info(s) for s in snaps), key=lambda s: s.created_at)

    def snapshot_delete(self, host: str, workload: DriverWorkload, name: str) -> None:
        """Idempotent: a snapshot already gone is deleted."""
        dom = self._need(host, workload)
        with self._errors("delete snapshot", host):
            try:
                snap = dom.snapshotLookupByName(self._snap_name(name), 0)
            except libvirt.libvirtError as e:
                if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                    return
                raise
            snap.delete(0)

    def snapshot_restore(self, host: str, workload: DriverWorkload, name: str) -> None:
        self._refuse_if_fenced(host)
        dom = self._need(host, workload)
        with self._errors("restore snapshot", host):
            dom.revertToSnapshot(dom.snapshotLookupByName(self._snap_name(name), 0), 0)

    # ---- stats and balloon -----------------------------------------------------------------------
    def workload_stats(self, host: str) -> dict[str, WorkloadSample]:
        """CPU utilization from the CPU-time delta since the previous call (a guest seen for the
        first time is measured over CPU_WINDOW_S), memory from the balloon and QEMU's RSS."""
        first = self._sample(host)
        if any((host, k) not in self._cpu for k in first):
            self._remember(host, first)
            time.sleep(CPU_WINDOW_S)
        samples = self._sample(host)
        out: dict[str, WorkloadSample] = {}
        for key, (now, state, cpu_s, vcpus, cur_kib, rss_kib) in samples.items():
            prev = self._cpu.get((host, key))
            util = 0.0
            if prev is not None and now > prev[0] and state == "running":
                util = min(1.0, max(0.0, (cpu_s - prev[1]) / ((now - prev[0]) * max(1, vcpus))))
            mem_mb = cur_kib / 1024
            used_mb = min(mem_mb, rss_kib / 1024) if rss_kib else 0.0
            out[key] = WorkloadSample(key, state, util, used_mb, mem_mb, cpu_s)
        self._remember(host, samples)
        return out

    def guest_memory(self, host: str, workload: DriverWorkload) -> GuestMemory:
        """The balloon's size and the guest's working set from virDomainMemoryStats. The working
        set is what the guest's balloon driver reports in use (`actual - usable`); a guest without
        one reports nothing, and then QEMU's RSS stands in (it over-counts: such a guest is
        never squeezed). Last activity: when its CPU time last grew faster than ACTIVE_CPU."""
        dom = self._need(host, workload)
        with self._errors("read guest memory", host):
            ms = dom.memoryStats()
            st, _max_kib, cur_kib, _vcpus, cpu_ns = dom.info()
        actual = float(ms.get("actual", cur_kib)) / 1024
        running = st == libvirt.VIR_DOMAIN_RUNNING
        return GuestMemory(actual, self._working_set(host, workload.key, ms, actual),
                           self._last_active(host, workload.key, running, cpu_ns / 1e9))

    def _working_set(self, host: str, key: str, ms: dict[str, Any], actual_mib: float) -> float:
        """The guest's report is only as new as its last stats period: one from before our last
        resize of it does not match the balloon's new size, so the balloon's size stands in
        (nothing more is taken from it until the guest reports again)."""
        resized = self._resized.get((host, key))
        if resized is not None and _has_balloon_driver(ms) and float(ms.get("last_update", 0)) <= resized:
            return actual_mib
        return min(actual_mib, _working_set_mib(ms, actual_mib))

    def set_memory(self, host: str, workload: DriverWorkload, mb: float) -> float:
        """Resize the balloon to `mb` (never below the working set); returns the size it goes to
        (the guest's driver moves the balloon within a second or so, and may stop a little short:
        guest_memory reports where it is). A guest without a balloon driver cannot give memory
        back: it keeps its size (returned), and neither the live nor the persistent size changes."""
        dom = self._need(host, workload)
        with self._errors("read guest memory", host):
            max_mib = dom.maxMemory() / 1024
            ms = dom.memoryStats() if dom.isActive() else {}
        if not 0 <= mb <= max_mib:
            raise InvalidInputError(f"balloon target must be in [0, {max_mib:g}] MiB (the guest's memory)")
        live = dom.isActive()
        actual = float(ms.get("actual", max_mib * 1024)) / 1024 if live else max_mib
        if live and not _has_balloon_driver(ms):
            return actual
        floor = self._working_set(host, workload.key, ms, actual) if live else 0.0
        kib = int(min(max_mib, max(float(mb), MIN_MEMORY_MIB, floor)) * 1024)
        if live and kib == int(actual * 1024):
            return actual
        with self._errors("set guest memory", host):
            if live:
                dom.setMemoryFlags(kib, libvirt.VIR_DOMAIN_AFFECT_LIVE)
                self._resized[(host, workload.key)] = time.time()
            dom.setMemoryFlags(kib, libvirt.VIR_DOMAIN_AFFECT_CONFIG)  # and after a restart
        return kib / 1024

    # ---- volumes ---------------------------------------------------------------------------------
    def attach_volume(self, host: str, workload: DriverWorkload, volume: VolumeSpec) -> None:
        """The volume becomes a disk of the guest: a sparse raw file in the host's storage pool,
        filled from the volume's bytes (uploaded through libvirt, so a remote host works too) or
        empty, added to the guest's definition and, when it runs, hot-plugged (virtio PCI
        hotplug through ACPI: the guest sees a new block device); a running guest that cannot
        hot-plug (defined without ACPI) gets it at its next start. Idempotent; a failed attach
        leaves no file."""
        self._refuse_if_fenced(host)
        conn = self._conn(host)
        dom = self._need(host, workload)
        name = attached_volume_name(workload.key, volume.id)
        with self._errors("attach volume", host):
            pool = self._ensure_pool(conn)
            vol = _vol_by_name(pool, name)
            if vol is not None and self._disk_xml(dom, str(vol.path())) is not None:
                return
            if vol is None:
                vol = pool.createXML(raw_volume_xml(name, max(1, round(volume.size_gib * 2**30))), 0)
        path = str(vol.path())
        try:
            with self._errors("write volume", host):
                _upload(conn, vol, volume)
            with self._errors("attach volume", host):
                used = (dom.XMLDesc(0), dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
                try:
                    dev = free_disk_target(used, "vd" if volume.bus == "virtio" else "sd")
                except ValueError as e:
                    raise DriverRefusal(f"libvirt host {host!r}: {e}") from None
                _attach_device(dom, volume_disk_xml(path, dev, bus=volume.bus, read_only=volume.read_only))
        except DriverError:
            with contextlib.suppress(libvirt.libvirtError):
                vol.delete(0)
            raise

    def detach_volume(self, host: str, workload: DriverWorkload, volume_id: str,
                      copy_back: CopyBack | None = None) -> None:
        """Unplug the volume's disk (a running guest must release it within DETACH_TIMEOUT_S, else
        a DriverError and the disk stays), drop it from the definition, hand the file's bytes to
        `copy_back` (downloaded through libvirt, so a remote host works too: what the guest wrote
        goes back into the volume), delete the file. A copy_back that fails keeps the file: the
        next detach copies again. Idempotent."""
        conn = self._conn(host)
        name = attached_volume_name(workload.key, volume_id)
        with self._errors("detach volume", host):
            vol = _vol_by_name(self._ensure_pool(conn), name)
            if vol is None:
                return
            path = str(vol.path())
            dom = self._lookup(conn, workload.key)
            if dom is not None:
                _detach_device(dom, lambda xml: disk_by_source(xml, path), host,
                               f"the disk of volume {volume_id}", workload.key)
        if copy_back is not None:
            with self._errors("read volume", host):
                _download(conn, vol, copy_back)
        with self._errors("detach volume", host):
            vol.delete(0)

    def volume_disks(self, host: str, workload: DriverWorkload) -> dict[str, str]:
        """Target device -> source file of the guest's disks as it runs now (its definition when stopped)."""
        dom = self._need(host, workload)
        with self._errors("read guest disks", host):
            return disk_targets(dom.XMLDesc(0))

    # ---- NICs ------------------------------------------------------------------------------------
    def attach_nic(self, host: str, workload: DriverWorkload, nic: NicSpec) -> None:
        """A NIC with poolvisor's MAC on the host's libvirt network of poolvisor network
        `nic.network` (an isolated bridge, defined and started on first use: network_xml),
        added to the definition and hot-plugged into a running guest. Idempotent."""
        if not nic.network:
            raise DriverRefusal(f"libvirt host {host!r}: a NIC needs a network")
        self._refuse_if_fenced(host)
        conn = self._conn(host)
        dom = self._need(host, workload)
        with self._errors("attach NIC", host):
            if interface_by_mac(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), nic.mac) is not None:
                return
            address, _, prefix = nic.address.partition("/")
            dhcp = f"{nic.dhcp}/{prefix}" if nic.dhcp and prefix else ""
            with self._net_lock:
                net = self._ensure_network(conn, nic.network, dhcp, nic.gateway)
                try:
                    if address:  # before the NIC appears: the guest's first DHCP request finds it
                        self._dhcp_add(net, nic.mac, address)
                    _attach_device(dom, nic_xml(nic.network, nic.mac, nic.model))
                except libvirt.libvirtError:
                    with contextlib.suppress(libvirt.libvirtError):
                        self._gc_networks(conn, {network_name(nic.network)})
                    raise

    def detach_nic(self, host: str, workload: DriverWorkload, mac: str) -> None:
        """Unplug the NIC (a running guest must release it within DETACH_TIMEOUT_S) and drop it
        from the definition; its libvirt network goes when no guest of the host uses it. Idempotent."""
        conn = self._conn(host)
        dom = self._lookup(conn, workload.key)
        if dom is None:
            return
        with self._errors("detach NIC", host):
            nets = set(interfaces(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).values()) \
                | set(interfaces(dom.XMLDesc(0)).values())
            _detach_device(dom, lambda xml: interface_by_mac(xml, mac), host, f"NIC {mac}", workload.key)
            self._gc_networks(conn, nets)

    def networks(self, host: str) -> dict[str, str]:
        """poolvisor network -> bridge of the libvirt networks poolvisor defined on the host."""
        conn = self._conn(host)
        with self._errors("list networks", host):
            return {str(managed_network(n.XMLDesc(0))): n.bridgeName() if n.isActive() else ""
                    for n in conn.listAllNetworks(0) if managed_network(n.XMLDesc(0)) is not None}

    def _ensure_network(self, conn: Any, network: str, dhcp: str = "", gateway: str = "") -> Any:
        """The started libvirt network of poolvisor network `network` on the host, defined on
        first use (with DHCP when `dhcp` is given: network_xml). A host that already routes the
        subnet through another bridge (another project's network of the same subnet; lab hosts
        sharing one kernel) refuses to start a second one with an address in it: that network
        then goes without DHCP on this host (its guests keep poolvisor's address by other means)."""
        name = network_name(network)
        try:
            net = conn.networkLookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() != libvirt.VIR_ERR_NO_NETWORK:
                raise
            net = conn.networkDefineXML(network_xml(name, network, dhcp, gateway))
            net.setAutostart(True)
        if not net.isActive():
            try:
                net.create()
            except libvirt.libvirtError as e:
                if ROUTE_CLASH not in str(e.get_error_message()) or not serves_dhcp(net.XMLDesc(0)):
                    raise
                net.undefine()
                net = conn.networkDefineXML(network_xml(name, network))
                net.setAutostart(True)
                net.create()
        return net

    def _dhcp_add(self, net: Any, mac: str, ip: str) -> None:
        """Make `mac` -> `ip` a static DHCP host entry of the network, live and persistent, without
        restarting it (virNetworkUpdate); an entry left by a NIC since gone that holds the same MAC
        or address is replaced (IPAM gives each address to one NIC at a time). Nothing when the
        network serves no DHCP on this host."""
        xml = net.XMLDesc(0)
        if not serves_dhcp(xml):
            return
        mac = mac.lower()
        hosts = dhcp_hosts(xml)
        if hosts.get(mac) == ip:
            return
        for m, a in hosts.items():
            if m == mac or a == ip:
                self._dhcp_update(net, libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, m, a)
        try:
            self._dhcp_update(net, libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, mac, ip)
        except libvirt.libvirtError:
            if dhcp_hosts(net.XMLDesc(0)).get(mac) != ip:  # not a concurrent add of the same entry
                raise

    @staticmethod
    def _dhcp_update(net: Any, command: int, mac: str, ip: str) -> None:
        flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
        if net.isActive():
            flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
        net.update(command, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, dhcp_host_xml(mac, ip), flags)

    def _gc_networks(self, conn: Any, names: set[str]) -> None:
        """Remove the poolvisor-defined libvirt networks among `names` that no guest of the host
        (running or defined) has a NIC on any more, and from those that stay the DHCP host entries
        of MACs no guest of the host has on them any more."""
        names = {n for n in names if n.startswith(NET_PREFIX)}
        if not names:
            return
        with self._net_lock:
            self._gc_locked(conn, names)

    def _gc_locked(self, conn: Any, names: set[str]) -> None:
        used: dict[str, set[str]] = {}  # libvirt network -> MACs of the host's NICs on it
        for dom in conn.listAllDomains(0):
            for xml in (dom.XMLDesc(0), dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)):
                for mac, net_name in interfaces(xml).items():
                    used.setdefault(net_name, set()).add(mac)
        for name in names:
            try:
                net = conn.networkLookupByName(name)
            except libvirt.libvirtError:
                continue
            xml = net.XMLDesc(0)
            if managed_network(xml) is None:
                continue  # not one we defined
            if name in used:
                for mac, ip in dhcp_hosts(xml).items():
                    if mac not in used[name]:
                        self._dhcp_update(net, libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, mac, ip)
                continue
            if net.isActive():
                net.destroy()
            net.undefine()

    @staticmethod
    def _disk_xml(dom: Any, path: str) -> str | None:
        return disk_by_source(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), path)

    # ---- fencing ---------------------------------------------------------------------------------
    def fence(self, host: str) -> None:
        """Refuse new guests on the host, then destroy every guest of ours it runs. Raises when the
        daemon cannot be reached: the guests may still run, so the host is *not* safely fenced."""
        self._fenced.add(host)
        for key, dom in self._managed(host):
            with self._errors(f"fence guest {key}", host):
                if dom.isActive():
                    dom.destroy()

    def unfence(self, host: str) -> None:
        self._fenced.discard(host)

    def is_fenced(self, host: str) -> bool:
        return host in self._fenced

    # ---- internals -------------------------------------------------------------------------------
    def _host(self, host: str) -> _Host:
        with self._lock:
            h = self._hosts.get(host)
            if h is None and self.default_uri:
                h = self._hosts[host] = _Host(HostBinding(host, self.name, self.default_uri))
        if h is None:
            raise DriverError(f"libvirt host {host!r} is not connected")
        return h

    def _conn(self, host: str) -> Any:
        h = self._host(host)
        conn = h.conn
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                if conn.isAlive():
                    return conn
            self._drop(host)
        try:
            conn = libvirt.open(h.binding.uri)
        except libvirt.libvirtError as e:
            raise DriverError(f"libvirt host {host!r} ({h.binding.uri}) unreachable: "
                              f"{e.get_error_message()}") from None
        h.conn = conn
        return conn

    def _drop(self, host: str) -> None:
        h = self._hosts.get(host)
        if h is not None and h.conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                h.conn.close()
            h.conn = None

    @contextlib.contextmanager
    def _errors(self, action: str, host: str) -> Iterator[None]:
        try:
            yield
        except libvirt.libvirtError as e:
            raise DriverError(f"libvirt host {host!r}: {action}: {e.get_error_message()}") from None

    def _refuse_if_fenced(self, host: str) -> None:
        if host in self._fenced:
            raise DriverError(f"libvirt host {host!r} is fenced")

    @staticmethod
    def _lookup(conn: Any, key: str) -> Any:
        try:
            return conn.lookupByName(domain_name(key))
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise DriverError(f"libvirt: look up {key}: {e.get_error_message()}") from None

    def _need(self, host: str, workload: DriverWorkload) -> Any:
        dom = self._lookup(self._conn(host), workload.key)
        if dom is None:
            raise DriverError(f"libvirt host {host!r} has no guest {workload.key}")
        return dom

    def _managed(self, host: str) -> list[tuple[str, Any]]:
        conn = self._conn(host)
        with self._errors("list guests", host):
            out = []
            for dom in conn.listAllDomains(0):
                key = managed_key(dom.XMLDesc(0))
                if key is not None:
                    out.append((key, dom))
            return out

    def _domain_type(self, host: str) -> str:
        if self.config.domain_type != "auto":
            return self.config.domain_type
        h = self._host(host)
        if h.domain_type is None:
            with self._errors("read capabilities", host):
                h.domain_type = "kvm" if offers_kvm(self._conn(host).getCapabilities(), self.config.arch) \
                    else "qemu"
        return h.domain_type

    def _network(self, conn: Any) -> str | None:
        if not self.config.network:
            return None
        try:
            net = conn.networkLookupByName(self.config.network)
            return self.config.network if net.isActive() else None
        except libvirt.libvirtError:
            return None

    def _ensure_pool(self, conn: Any) -> Any:
        try:
            pool = conn.storagePoolLookupByName(self.config.storage_pool)
        except libvirt.libvirtError as e:
            if e.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise
            pool = conn.storagePoolDefineXML(
                f"<pool type='dir'><name>{self.config.storage_pool}</name>"
                f"<target><path>{DEFAULT_POOL_DIR}</path></target></pool>", 0)
            pool.build(0)
            pool.setAutostart(True)
        if not pool.isActive():
            pool.create(0)
        return pool

    def _ensure_volume(self, conn: Any, workload: DriverWorkload) -> str:
        pool = self._ensure_pool(conn)
        try:
            return str(pool.storageVolLookupByName(volume_name(workload.key)).path())
        except libvirt.libvirtError as e:
            if e.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise
        spec = guest_spec(workload.demand)
        vol = pool.createXML(volume_xml(workload.key, spec.disk_bytes, self.config.base_image,
                                        self.config.base_format), 0)
        return str(vol.path())

    def _delete_volumes(self, conn: Any, paths: list[str], key: str) -> None:
        for path in paths:
            try:
                vol = self._volume_by_path(conn, path)
            except libvirt.libvirtError as e:
                if e.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                    raise
                continue
            vol.delete(0)
        # a create interrupted between the volume and the definition leaves the volume alone; not
        # on shared storage, where the volume of that name may be the disk of the guest running
        # on another host (after a migration)
        if self.config.shared_storage:
            return
        with contextlib.suppress(libvirt.libvirtError):
            conn.storagePoolLookupByName(self.config.storage_pool).storageVolLookupByName(
                volume_name(key)).delete(0)

    def _volume_by_path(self, conn: Any, path: str) -> Any:
        """The volume at `path`; on shared storage another host may have made it since this host's
        pool last looked, so a miss refreshes the pool once."""
        try:
            return conn.storageVolLookupByPath(path)
        except libvirt.libvirtError as e:
            if e.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise
            with contextlib.suppress(libvirt.libvirtError):
                conn.storagePoolLookupByName(self.config.storage_pool).refresh(0)
            return conn.storageVolLookupByPath(path)

    def _snap_name(self, name: str) -> str:
        try:
            return check_snapshot_name(name)
        except ValueError as e:
            raise DriverError(str(e)) from None

    def _sample(self, host: str) -> dict[str, tuple[float, str, float, int, float, float]]:
        conn = self._conn(host)
        out = {}
        with self._errors("read guest stats", host):
            stats = conn.getAllDomainStats(_STATS, 0)
            now = time.monotonic()
            for dom, s in stats:
                name = dom.name()
                if "+" not in name:
                    continue  # not ours (our domains are project+name)
                out[workload_key(name)] = (
                    now, STATES.get(s.get("state.state", 0), "unknown"), s.get("cpu.time", 0) / 1e9,
                    int(s.get("vcpu.current", 1)), float(s.get("balloon.current", 0)),
                    float(s.get("balloon.rss", 0)))
        return out

    def _last_active(self, host: str, key: str, running: bool, cpu_s: float) -> float:
        """Epoch seconds the guest was last seen active (first look at a running guest: now)."""
        mono, now = time.monotonic(), time.time()
        with self._lock:
            prev = self._activity.get((host, key))
            if prev is None:
                last = now if running else 0.0
            else:
                t0, c0, last = prev
                if running and mono > t0 and (cpu_s - c0) / (mono - t0) > ACTIVE_CPU:
                    last = now
            self._activity[(host, key)] = (mono, cpu_s, last)
        return last

    def _remember(self, host: str, samples: dict[str, tuple[float, str, float, int, float, float]]) -> None:
        for key, (now, _st, cpu_s, *_rest) in samples.items():
            self._cpu[(host, key)] = (now, cpu_s)


def _attach_device(dom: Any, xml: str) -> None:
    """Into the definition and, when the guest runs, hot-plugged; a running guest that cannot
    hot-plug (defined without ACPI) gets the device at its next start."""
    live = dom.isActive()
    try:
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG | (libvirt.VIR_DOMAIN_AFFECT_LIVE if live else 0)
        dom.attachDeviceFlags(xml, flags)
    except libvirt.libvirtError as e:
        if not live or "hotplug" not in (e.get_error_message() or ""):
            raise
        dom.attachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_CONFIG)


def _detach_device(dom: Any, find: Any, host: str, what: str, key: str) -> None:
    """Hot-unplug (waiting up to DETACH_TIMEOUT_S for the guest to release it), then out of the
    definition; `find(xml)` is the device's XML in a domain XML, or None."""
    if dom.isActive():
        dev = find(dom.XMLDesc(0))
        if dev is not None:
            dom.detachDeviceFlags(dev, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            deadline = time.monotonic() + DETACH_TIMEOUT_S
            while find(dom.XMLDesc(0)) is not None:
                if time.monotonic() > deadline:
                    raise DriverError(f"libvirt host {host!r}: guest {key} did not release {what} "
                                      "(no PCI hot-unplug in the guest?)")
                time.sleep(POLL_S)
    dev = find(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    if dev is not None:
        dom.detachDeviceFlags(dev, libvirt.VIR_DOMAIN_AFFECT_CONFIG)


def _vol_by_name(pool: Any, name: str) -> Any:
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as e:
        if e.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise
    return None


def _upload(conn: Any, vol: Any, volume: VolumeSpec) -> None:
    """Write the volume's pieces into the host's file (all-zero pieces are skipped: it is sparse)."""
    if volume.content is None:
        return
    for offset, data in volume.content():
        for at in range(0, len(data), UPLOAD_PIECE):
            piece = data[at:at + UPLOAD_PIECE]
            if not piece.strip(b"\0"):
                continue
            st = conn.newStream(0)
            try:
                vol.upload(st, offset + at, len(piece), 0)
                view = memoryview(piece)
                while view:
                    n = st.send(bytes(view[:1 << 20]))
                    view = view[n:]
                st.finish()
            except libvirt.libvirtError:
                with contextlib.suppress(libvirt.libvirtError):
                    st.abort()
                raise


def _download(conn: Any, vol: Any, sink: CopyBack) -> None:
    """The file's bytes to `sink` in COPY_BACK_PIECE pieces (zeros included: the guest may have
    zeroed what the volume held)."""
    size = int(vol.info()[1])
    for offset in range(0, size, COPY_BACK_PIECE):
        n = min(COPY_BACK_PIECE, size - offset)
        st = conn.newStream(0)
        buf = bytearray()
        try:
            vol.download(st, offset, n, 0)
            while len(buf) < n:
                got = st.recv(n - len(buf))
                if not got or isinstance(got, int):  # -2: would block (never on a blocking stream)
                    break
                buf += got
            st.finish()
        except libvirt.libvirtError:
            with contextlib.suppress(libvirt.libvirtError):
                st.abort()
            raise
        if len(buf) != n:
            raise libvirt.libvirtError(f"short download of {vol.name()}: {len(buf)} of {n} bytes at {offset}")
        sink(offset, bytes(buf))


def _has_balloon_driver(ms: dict[str, Any]) -> bool:
    """The guest's balloon driver reports its own memory figures (QEMU alone: actual and rss)."""
    return "usable" in ms or "unused" in ms


def _working_set_mib(ms: dict[str, Any], actual_mib: float) -> float:
    """Memory the guest cannot give back, from its balloon driver's report (KiB): the balloon's
    size less what the guest could free without losing caches (`usable` = MemAvailable; that
    counts the kernel's own memory as used) or, from older drivers, less its free memory, plus
    the headroom it needs; without a driver, QEMU's resident set (an over-estimate: the guest is
    then never squeezed)."""
    free = ms.get("usable", ms.get("unused"))
    if free is not None:
        return max(0.0, actual_mib - float(free) / 1024) + guest_headroom_mib(actual_mib)
    return float(ms.get("rss", actual_mib * 1024)) / 1024


def guest_headroom_mib(actual_mib: float) -> float:
    """Memory a guest keeps beyond its use: measured on the lab's 96 MiB guest, a balloon sent
    down to `actual - usable` stopped ~8 MiB above it and the guest stopped reporting (its
    balloon driver retrying allocations it cannot get); 16 MiB above, it reached the target and
    went on reporting."""
    return max(16.0, 0.05 * actual_mib)


def _snapshot_info(snap: Any) -> SnapshotInfo:
    root = ET.fromstring(snap.getXMLDesc(0))
    return SnapshotInfo(name=snap.getName(), created_at=float(root.findtext("creationTime") or 0),
                        state=STATES.get(_SNAP_STATES.get(root.findtext("state") or "", -1), "unknown"))


_SNAP_STATES = {"running": libvirt.VIR_DOMAIN_RUNNING, "paused": libvirt.VIR_DOMAIN_PAUSED,
                "shutoff": libvirt.VIR_DOMAIN_SHUTOFF, "disk-snapshot": libvirt.VIR_DOMAIN_SHUTOFF}


class LibvirtMigration:
    """A migration in flight (a MigrationHandle). The blocking migrate call runs in a thread on a
    connection of its own; progress reads the source's job info; abort is abortJob."""

    def __init__(self, driver: LibvirtDriver, workload: DriverWorkload, src: HostBinding,
                 dst: HostBinding, flags: int, params: dict[str, Any], copied: list[str],
                 networks: tuple[str, ...] = ()):
        self.driver, self.workload, self.src, self.dst = driver, workload, src, dst
        self.flags, self.params, self.copied = flags, params, copied
        self.networks = networks
        self.started = time.monotonic()
        self.finished: float | None = None
        self._final: MigrationProgress | None = None
        self._seen: tuple[float, MigrationProgress] | None = None  # the last job info read
        self._aborted = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"migrate:{workload.key}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        name = domain_name(self.workload.key)
        final: MigrationProgress
        conn = None
        try:
            conn = libvirt.open(self.src.uri)
            dom = conn.lookupByName(name)
            dom.migrateToURI3(self.dst.uri, self.params, self.flags)
            final = self._completed()
        except libvirt.libvirtError as e:
            state = MigrationState.ABORTED if self._aborted else MigrationState.FAILED
            final = MigrationProgress(state, error=e.get_error_message())
            self._clean_destination()
        finally:
            if conn is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
        with self._lock:
            self._final = final
            self.finished = time.monotonic()

    def _completed(self) -> MigrationProgress:
        """Read the destination's statistics of the finished job, then remove the copied source
        volumes (the guest's disk now lives on the destination)."""
        downtime = None
        total = done = 0
        with contextlib.suppress(libvirt.libvirtError, DriverError):
            dconn = self.driver._conn(self.dst.name)
            js = dconn.lookupByName(domain_name(self.workload.key)).jobStats(
                libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
            downtime = float(js["downtime"]) if "downtime" in js else None
            total, done = int(js.get("data_total", 0)), int(js.get("data_processed", 0))
        if self.copied:
            with contextlib.suppress(libvirt.libvirtError, DriverError):
                self.driver._delete_volumes(self.driver._conn(self.src.name), self.copied, self.workload.key)
        with contextlib.suppress(libvirt.libvirtError, DriverError):  # its networks left the source too
            self.driver._gc_networks(self.driver._conn(self.src.name), set(self.networks))
        return MigrationProgress(MigrationState.COMPLETED, 1.0, total, done or total, downtime)

    def _clean_destination(self) -> None:
        """A failed or aborted copy may leave the pre-created volume on the destination, and the
        networks (or DHCP entries) prepared for the guest."""
        with contextlib.suppress(libvirt.libvirtError, DriverError):
            dconn = self.driver._conn(self.dst.name)
            if self.driver._lookup(dconn, self.workload.key) is None:
                if self.copied:
                    self.driver._delete_volumes(dconn, [], self.workload.key)
                self.driver._gc_networks(dconn, set(self.networks))

    def progress(self) -> MigrationProgress:
        with self._lock:
            if self._final is not None:
                return self._final
            cached = self._seen
        now = time.monotonic()
        if cached is not None and now - cached[0] < PROGRESS_EVERY_S:
            return cached[1]  # each query is a QEMU monitor round trip during the migration
        try:
            dom = self.driver._lookup(self.driver._conn(self.src.name), self.workload.key)
            info = dom.jobStats(0) if dom is not None else {}
        except (libvirt.libvirtError, DriverError):
            info = {}
        total, done = int(info.get("data_total", 0)), int(info.get("data_processed", 0))
        fraction = done / total if total else 0.0
        if cached is not None and fraction < cached[1].fraction:
            # the source's job info can start over (seen between lab hosts with the disk copied)
            # or be unreadable for a moment: the handle's progress never goes back
            p = cached[1]
        else:
            p = MigrationProgress(MigrationState.RUNNING, fraction, total, done)
        with self._lock:
            self._seen = (now, p)
        return p

    def abort(self) -> None:
        with self._lock:
            if self._final is not None:
                return
            self._aborted = True
        # the job may not have begun yet (abortJob: "no job is active"): retry until it stops
        while self._thread.is_alive():
            try:
                dom = self.driver._lookup(self.driver._conn(self.src.name), self.workload.key)
                if dom is None:
                    return
                dom.abortJob()
                return
            except (libvirt.libvirtError, DriverError):
                self._thread.join(0.05)

    def wait(self, timeout_s: float | None = None) -> MigrationProgress:
        self._thread.join(timeout_s)
        return self.progress()

    @property
    def seconds(self) -> float | None:
        return None if self.finished is None else self.finished - self.started
