"""Lab hosts: several libvirt "hosts" on one machine, one libvirtd per mount namespace.

Each host is a directory (run, lib, etc, log, cache) bind-mounted, inside a private mount
namespace, over /run/libvirt, /var/lib/libvirt, /etc/libvirt, /var/log/libvirt and
/var/cache/libvirt, with its own `host_uuid`; its URI is
`qemu+unix:///system?socket=HOSTDIR/run/libvirt-sock`, reachable from every namespace. Two such
hosts migrate guests between each other like two machines sharing a network (no shared disk:
migrations copy storage), which is what the tests and `bench migrate` need.

`unshare` execs `sh`, which execs `libvirtd` in the foreground: the PID we start is the
daemon's. `stop()` ends exactly what we started: the processes whose mount namespace is the one
that PID created (libvirtd, its QEMUs, any dnsmasq), found by that namespace's inode, never by name.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from poolvisor.lab.guest import default_cache

BIND = {"run": "/run/libvirt", "lib": "/var/lib/libvirt", "etc": "/etc/libvirt",
        "log": "/var/log/libvirt", "cache": "/var/cache/libvirt"}
MIGRATION_PORTS = 64  # each host gets its own migration port range (49152 + 64 * index)
STORAGE_POOL = "poolvisor"
NETWORK = "poolvisor"
START_TIMEOUT_S = 30.0
BINARIES = ("libvirtd", "unshare", "qemu-system-x86_64", "qemu-img")


class LabError(RuntimeError):
    """A lab host could not be started (missing binaries, daemon did not come up)."""


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def lab_available() -> tuple[bool, str]:
    """Whether this machine can run lab hosts, and if not why (for skip/fail messages)."""
    if os.geteuid() != 0:
        return False, "lab hosts need root (mount namespaces, libvirtd)"
    miss = missing_binaries()
    if miss:
        return False, f"missing {', '.join(miss)} (scripts/install-real-deps.sh)"
    try:
        import libvirt  # noqa: F401
    except ImportError:
        return False, "python module libvirt missing (pip install libvirt-python)"
    return True, ""


@dataclass
class LabHost:
    name: str
    dir: Path
    index: int
    host_uuid: str
    proc: subprocess.Popen[bytes] | None = None
    mnt_ns: int | None = None  # inode of the mount namespace the daemon runs in
    # /var/cache/libvirt shared by the lab's hosts (and kept between labs): QEMU's capabilities
    # are probed once (~5 s) instead of at every daemon start; libvirt revalidates the cache itself
    shared_cache: Path | None = None
    # the storage pool's directory when the lab's hosts share storage (like NFS): the same
    # directory, at the same path, for every host; None = each host its own /var/lib/libvirt/images
    shared_images: Path | None = None

    @property
    def socket(self) -> Path:
        return self.dir / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    # ---- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        for sub in BIND:
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "lib" / "images").mkdir(exist_ok=True)
        # what libvirt's package creates: its networks keep their DHCP and MAC files here
        (self.dir / "lib" / "dnsmasq").mkdir(exist_ok=True)
        self._write_config()
        src = {s: self.dir / s for s in BIND}
        if self.shared_cache is not None:
            self.shared_cache.mkdir(parents=True, exist_ok=True)
            src["cache"] = self.shared_cache
        mounts = " && ".join(f"mkdir -p {t} && mount --bind {shlex.quote(str(src[s]))} {t}"
                             for s, t in BIND.items())
        conf, pidfile = self.dir / "etc" / "libvirtd.conf", self.dir / "run" / "libvirtd.pid"
        script = f"{mounts} && exec libvirtd -f {shlex.quote(str(conf))} -p {shlex.quote(str(pidfile))}"
        out = open(self.dir / "libvirtd.out", "ab")  # noqa: SIM115 - owned by the child
        try:
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._responds():
            if self.proc.poll() is not None:
                raise LabError(f"libvirtd of {self.name} exited ({self.proc.returncode}): {self._tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise LabError(f"libvirtd of {self.name} did not answer within {START_TIMEOUT_S:.0f}s")
            time.sleep(0.1)
        self.mnt_ns = os.stat(f"/proc/{self.proc.pid}/ns/mnt").st_ino
        self._define_storage_pool()

    def _write_config(self) -> None:
        etc = self.dir / "etc"
        (etc / "libvirtd.conf").write_text(
            f'host_uuid = "{self.host_uuid}"\n'
            'auth_unix_ro = "none"\nauth_unix_rw = "none"\nunix_sock_rw_perms = "0700"\n'
            'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n'
            'keepalive_interval = 5\n')
        lo = 49152 + MIGRATION_PORTS * self.index
        # root without dynamic ownership: no re-probing of KVM and files on every start; no
        # virtlogd (stdio to files): one daemon per host is all we have to start and stop.
        (etc / "qemu.conf").write_text(
            'user = "root"\ngroup = "root"\ndynamic_ownership = 0\nremember_owner = 0\n'
            'security_driver = "none"\nstdio_handler = "file"\n'
            # QEMU stays in the daemon's mount namespace, which is how stop() finds it
            "namespaces = []\n"
            # no per-guest cgroups: this machine's init reaps slowly, and libvirt retries removing a
            # cgroup that still holds a zombie QEMU for 2 s at every stop and migration
            "cgroup_controllers = []\n"
            f"migration_port_min = {lo}\nmigration_port_max = {lo + MIGRATION_PORTS - 1}\n")

    def _define_storage_pool(self) -> None:
        import libvirt

        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # raised, not also printed
        conn = libvirt.open(self.uri)
        try:
            with contextlib.suppress(libvirt.libvirtError):
                conn.storagePoolLookupByName(STORAGE_POOL)
                return
            target = self.shared_images or f"{BIND['lib']}/images"
            pool = conn.storagePoolDefineXML(
                f"<pool type='dir'><name>{STORAGE_POOL}</name>"
                f"<target><path>{target}</path></target></pool>", 0)
            pool.setAutostart(True)
            pool.create(0)
        finally:
            conn.close()

    def _responds(self) -> bool:
        if not self.socket.exists():
            return False
        r = subprocess.run(["virsh", "-q", "-c", self.uri, "version"], capture_output=True, timeout=10,
                           check=False)
        return r.returncode == 0

    def _tail(self) -> str:
        try:
            return (self.dir / "libvirtd.out").read_text(errors="replace")[-400:].strip()
        except OSError:
            return ""

    # ---- stop ----------------------------------------------------------------------------------
    def processes(self) -> list[int]:
        """PIDs of this host: those living in its mount namespace (the daemon and what it started)
        and the QEMUs of its pidfiles (checked to be QEMU: a stale pidfile names no one else)."""
        pids = self._qemu_pidfiles()
        if self.mnt_ns is None:
            if self.proc is not None and self.proc.poll() is None:
                pids.append(self.proc.pid)
            return pids
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry}/ns/mnt").st_ino == self.mnt_ns and int(entry) not in pids:
                    pids.append(int(entry))
            except OSError:
                continue
        return pids

    def _qemu_pidfiles(self) -> list[int]:
        pids = []
        for f in (self.dir / "run" / "qemu").glob("*.pid"):
            try:
                pid = int(f.read_text().strip())
                if "qemu-system" in os.readlink(f"/proc/{pid}/exe"):
                    pids.append(pid)
            except (OSError, ValueError):
                continue
        return pids

    def kill_daemon(self) -> None:
        """SIGKILL the libvirtd only (its guests keep running): a daemon crash, for fault tests."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def power_off(self, pids: list[int] | None = None, timeout_s: float = 10.0) -> None:
        """Pull the plug: SIGKILL the daemon and its guests at once (what a fence agent does)."""
        pids = self.processes() if pids is None else pids
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while any(_alive(p) for p in pids):
            if time.monotonic() > deadline:
                raise LabError(f"lab host {self.name}: processes survived SIGKILL")
            time.sleep(0.05)
        self._reap()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the daemon and every process of its namespace; SIGKILL what lingers."""
        pids = self.processes()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if self.proc is not None:
                    self.proc.poll()  # reap our child so it does not linger as a zombie
                pids = [p for p in pids if _alive(p)]
                if not pids:
                    self._reap()
                    return
                time.sleep(0.05)
        self._reap()
        if pids:
            raise LabError(f"lab host {self.name}: processes {pids} survived SIGKILL")

    def _reap(self) -> None:
        """Collect our child's exit status (no zombie, no 'still running' warning at exit)."""
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class Lab:
    """N lab hosts under one root directory; a context manager that stops them all."""

    def __init__(self, root: Path, count: int = 2, prefix: str = "lab", cache: Path | None = None,
                 shared_storage: bool = False):
        """`shared_storage`: one storage directory for every host (ROOT/shared-images), as if on
        NFS; otherwise each host has its own, and migrations copy disks."""
        self.root = root
        shared = (cache or default_cache()) / "libvirt-cache"
        images = root / "shared-images" if shared_storage else None
        if images is not None:
            images.mkdir(parents=True, exist_ok=True)
        self.hosts = [LabHost(f"{prefix}{i + 1}", root / f"{prefix}{i + 1}", i, str(uuid.uuid4()),
                              shared_cache=shared, shared_images=images) for i in range(count)]
        self.consoles = root / "consoles"

    def start(self) -> Lab:
        self.consoles.mkdir(parents=True, exist_ok=True)
        try:
            for h in self.hosts:
                h.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        errors = []
        for h in self.hosts:
            try:
                h.stop()
            except LabError as e:
                errors.append(str(e))
        if errors:
            raise LabError("; ".join(errors))

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[LabHost]:
        return iter(self.hosts)

    def uris(self) -> Sequence[str]:
        return [h.uri for h in self.hosts]
