"""The lab's guest: a Debian cloud kernel and a busybox initramfs, built once into a cache dir.

The guest boots in about 3 s under TCG (direct kernel boot, no disk needed) and its `/init`
prints, on the serial console, a marker line carrying the id given on the kernel command line
(`poolvisor.id=...`) and then a counter every `poolvisor.tick_ms` milliseconds (default 25).
The counter is what the tests and `bench migrate` read: it continues on the destination after a
live migration, and the gap in its arrival times is the downtime as the guest's user sees it.
The initramfs also carries the kernel's virtio PCI and balloon modules (from the same package as
the kernel), loaded by `/init`: the guest then has a memory balloon the libvirt driver can resize
and that reports the guest's memory use. Every NIC the guest gets (virtio_net, also
hot-plugged) asks DHCP for its address with busybox's udhcpc, and the address it was given is a
console line (DHCP).

Nothing is downloaded but Debian's own kernel package (`apt-get download`); the build runs only
when the cache lacks a file, and writes atomically (a crashed build leaves no half image).
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

MARKER = "POOLVISOR-GUEST-UP"
TICK = "TICK"
BUSYBOX = Path("/bin/busybox")
KERNEL_META = "linux-image-cloud-amd64"
ENV_CACHE = "POOLVISOR_LAB_CACHE"

# Runs as PID 1. `usleep` keeps the pace; the guest's uptime rides along for diagnosis. The id
# comes from the kernel command line so a test can tell *which* guest printed the marker.
INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko; done
id=unknown; tick=25
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    poolvisor.id=*) id="${arg#poolvisor.id=}" ;;
    poolvisor.tick_ms=*) tick="${arg#poolvisor.tick_ms=}" ;;
  esac
done
echo "@MARKER@ $id"
# every NIC that appears (also hot-plugged ones) asks DHCP for its address once (60 tries, 1 s
# apart); /bin/dhcp-event configures it and prints it on the console
( while :; do
    for d in /sys/class/net/eth*; do
      n=${d##*/}
      [ -e "$d" ] && [ ! -e "/tmp/dhcp.$n" ] || continue
      : > "/tmp/dhcp.$n"
      udhcpc -i "$n" -s /bin/dhcp-event -q -n -t 60 -T 1 -A 1 >/dev/null 2>&1 &
    done
    usleep 250000
  done ) &
i=0
while :; do
  read up idle < /proc/uptime
  echo "@TICK@ $i $up"
  i=$((i+1))
  usleep $((tick*1000))
done
"""
# udhcpc's script: the address the DHCP server gave, on the NIC and on the console
DHCP_EVENT = """#!/bin/busybox sh
case "$1" in
  deconfig) ip link set "$interface" up ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    echo "@DHCP@ $interface $ip/$mask router=${router:-none}" > /dev/console ;;
esac
"""
# the memory balloon and the NICs (Debian's cloud kernel builds virtio as modules); what they
# depend on comes along, and /init loads them dependencies first (lib/modules/order)
MODULES = ("virtio_pci", "virtio_balloon", "virtio_net")
DHCP = "POOLVISOR-DHCP"  # a console line "POOLVISOR-DHCP eth0 10.0.0.2/24 router=10.0.0.1"
INIT = INIT.replace("@MARKER@", MARKER).replace("@TICK@", TICK)
DHCP_EVENT = DHCP_EVENT.replace("@DHCP@", DHCP)


class GuestImageError(RuntimeError):
    """The guest image could not be built (no apt, no busybox-static, no kernel package)."""


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path

    def cmdline(self, guest_id: str, tick_ms: int = 25) -> str:
        return f"console=ttyS0 quiet panic=-1 poolvisor.id={guest_id} poolvisor.tick_ms={tick_ms}"


def default_cache() -> Path:
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "poolvisor" / "lab"


def build_guest_image(cache: Path | None = None) -> GuestImage:
    """Return the cached guest image, building what is missing (kernel ~10 s, initramfs <1 s)."""
    cache = cache or default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    kernel, initrd, modules = cache / "vmlinuz", cache / "initrd.gz", cache / "modules"
    done = modules / ".complete"  # the kernel's file name, then the MODULES it was extracted for
    if not kernel.exists() or not done.exists() or done.read_text().split("\n")[1:2] != [",".join(MODULES)]:
        _fetch_kernel(kernel, modules)  # both from one package
    want = _initramfs(sorted(modules.glob("*.ko")))
    if not initrd.exists() or initrd.read_bytes() != want:
        _atomic_write(initrd, want)
    return GuestImage(kernel, initrd)


def _kernel_package() -> str:
    """The versioned package the cloud meta-package depends on (linux-image-6.1.0-NN-cloud-amd64)."""
    r = _run(["apt-cache", "depends", KERNEL_META])
    for line in r.splitlines():
        name = line.strip().removeprefix("Depends:").strip()
        if line.strip().startswith("Depends:") and name.startswith("linux-image-"):
            return name
    raise GuestImageError(f"apt-cache knows no kernel behind {KERNEL_META} (run apt-get update)")


def _fetch_kernel(dest: Path, modules: Path) -> None:
    """The kernel to `dest`, its MODULES (those it has as modules) into `modules`."""
    with tempfile.TemporaryDirectory(prefix="pv-kernel-") as tmp:
        _run(["apt-get", "download", "-q", _kernel_package()], cwd=tmp)
        debs = list(Path(tmp).glob("*.deb"))
        if len(debs) != 1:
            raise GuestImageError("apt-get download produced no kernel package")
        root = Path(tmp) / "x"
        _run(["dpkg", "-x", str(debs[0]), str(root)])
        found = sorted((root / "boot").glob("vmlinuz-*"))
        if not found:
            raise GuestImageError(f"{debs[0].name} has no /boot/vmlinuz-*")
        shutil.rmtree(modules, ignore_errors=True)
        modules.mkdir(parents=True)
        for name, data in _module_closure(root / "lib" / "modules", MODULES).items():
            _atomic_write(modules / f"{name}.ko", data)
        _atomic_write(dest, found[0].read_bytes())
        (modules / ".complete").write_text(f"{found[0].name}\n{','.join(MODULES)}\n")


def _module_closure(tree: Path, wanted: tuple[str, ...]) -> dict[str, bytes]:
    """The `wanted` modules of a kernel's module tree and everything they depend on (name ->
    uncompressed .ko); a module the kernel has built in (or compresses otherwise) is left out."""
    files = {p.name.split(".ko")[0].replace("-", "_"): p for p in tree.glob("*/kernel/**/*.ko*")}
    out: dict[str, bytes] = {}
    todo = list(wanted)
    while todo:
        name = todo.pop()
        found = files.get(name)
        if name in out or found is None:
            continue
        ko = found
        data = ko.read_bytes()
        if ko.name.endswith(".ko.xz"):
            data = lzma.decompress(data)
        elif not ko.name.endswith(".ko"):
            continue
        out[name] = data
        todo.extend(_depends(data))
    return out


def _depends(ko: bytes) -> list[str]:
    """The `depends=` field of a module's .modinfo."""
    i = ko.find(b"\0depends=")
    if i < 0:
        return []
    raw = ko[i + 9:ko.index(b"\0", i + 1)].decode()
    return [d.replace("-", "_") for d in raw.split(",") if d]


def _load_order(modules: dict[str, bytes]) -> list[str]:
    """Dependencies first (depth-first; by name, so the same bytes every build)."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in modules:
            return
        seen.add(name)
        for dep in sorted(_depends(modules[name])):
            visit(dep)
        order.append(name)

    for name in sorted(modules):
        visit(name)
    return order


def _initramfs(modules: list[Path]) -> bytes:
    """A newc cpio (gzip, fixed mtime: the same bytes every build) with /init, busybox and the
    kernel modules /init loads."""
    if not BUSYBOX.exists():
        raise GuestImageError(f"{BUSYBOX} missing (apt-get install busybox-static)")
    with tempfile.TemporaryDirectory(prefix="pv-initrd-") as tmp:
        root = Path(tmp)
        (root / "bin").mkdir()
        shutil.copy2(BUSYBOX, root / "bin" / "busybox")
        (root / "init").write_text(INIT)
        os.chmod(root / "init", 0o755)
        (root / "bin" / "dhcp-event").write_text(DHCP_EVENT)
        os.chmod(root / "bin" / "dhcp-event", 0o755)
        for d in ("proc", "sys", "dev", "tmp", "lib/modules"):
            (root / d).mkdir(parents=True)
        kos = {ko.name.removesuffix(".ko"): ko.read_bytes() for ko in modules}
        for name, data in kos.items():
            (root / "lib" / "modules" / f"{name}.ko").write_bytes(data)
        (root / "lib" / "modules" / "order").write_text("".join(f"{n}\n" for n in _load_order(kos)))
        for p in root.rglob("*"):
            os.utime(p, (0, 0), follow_symlinks=False)
        names = "\n".join(sorted(str(p.relative_to(root)) for p in root.rglob("*"))) + "\n"
        cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet", "--reproducible"], cwd=root,
                              input=names.encode(), capture_output=True, check=False)
        if cpio.returncode != 0:
            raise GuestImageError(f"cpio failed: {cpio.stderr.decode(errors='replace').strip()}")
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write(cpio.stdout)
    return buf.getvalue()


def _atomic_write(dest: Path, data: bytes) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)


def _run(cmd: list[str], cwd: str | None = None) -> str:
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    except FileNotFoundError as e:
        raise GuestImageError(f"{cmd[0]} not found") from e
    if r.returncode != 0:
        raise GuestImageError(f"{' '.join(cmd)} failed: {(r.stderr or r.stdout).strip()[-300:]}")
    return r.stdout
