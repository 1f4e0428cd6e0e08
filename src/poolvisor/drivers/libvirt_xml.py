"""Domain and volume XML for the libvirt driver, and the configuration that shapes it.

Pure functions (no libvirt import), so the XML is unit-tested without a daemon. A workload's
demand sizes its guest: `vcpu` (rounded up, at least 1), `memory_mib`, `disk_gib` (its qcow2 volume's
capacity; sparse) and `net_mbps` (the NIC's average bandwidth). What the guest boots is the
driver's configuration, not the workload's: a base image (each volume a qcow2 overlay on it) or a
kernel + initrd (direct kernel boot), or nothing (an empty disk).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from xml.sax.saxutils import escape, quoteattr

NS = "https://poolvisor.dev/xmlns/libvirt/1"  # our <metadata> element: marks guests we manage
DOMAIN_SEP = "+"  # never in a project or workload name (domain/text.py), so the mapping is 1:1
MIN_MEMORY_MIB = 16
DEFAULT_DISK_GIB = 1.0
ENV_PREFIX = "POOLVISOR_LIBVIRT_"
BALLOON_STATS_PERIOD_S = 2  # how often a guest's balloon driver reports its memory use


@dataclass(frozen=True)
class LibvirtConfig:
    """How guests are built. Every field has a POOLVISOR_LIBVIRT_<FIELD> environment override."""

    domain_type: str = "auto"      # kvm, qemu (TCG) or auto: kvm when the host offers it
    arch: str = "x86_64"
    machine: str = "pc"
    storage_pool: str = "poolvisor"
    network: str = "poolvisor"     # a NIC on this libvirt network when the host has it
    base_image: str = ""           # file every new volume is a qcow2 overlay of (on every host)
    base_format: str = "qcow2"     # the base image's format (qcow2 or raw)
    kernel: str = ""               # direct kernel boot when set
    initrd: str = ""
    cmdline: str = ""              # {name} and {key} are replaced by the domain name and workload key
    console_dir: str = ""          # serial console to {console_dir}/{domain}.log when set (else a pty)
    stop_timeout_s: float = 30.0   # graceful shutdown before a hard stop; 0 = hard stop at once
    shared_storage: bool = False   # the storage pool is shared (NFS...): migrations copy no disk

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> LibvirtConfig:
        env = os.environ if env is None else env
        cfg = cls()
        values: dict[str, object] = {}
        for f in cfg.__dataclass_fields__:
            raw = env.get(ENV_PREFIX + f.upper())
            if raw is not None:
                values[f] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - set(cfg.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown libvirt driver option(s): {', '.join(sorted(unknown))}")
        cfg = replace(cfg, **values)  # type: ignore[arg-type]
        if cfg.domain_type not in ("auto", "kvm", "qemu"):
            raise ValueError(f"domain_type must be auto, kvm or qemu, not {cfg.domain_type!r}")
        if cfg.stop_timeout_s < 0 or not math.isfinite(cfg.stop_timeout_s):
            raise ValueError("stop_timeout_s must be finite and >= 0")
        return cfg


def _parse(field: str, raw: str) -> object:
    if field == "stop_timeout_s":
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{ENV_PREFIX}STOP_TIMEOUT_S must be a number, not {raw!r}") from None
    if field == "shared_storage":
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(f"{ENV_PREFIX}SHARED_STORAGE must be a boolean, not {raw!r}")
        return raw.lower() in ("1", "true", "yes")
    return raw


def domain_name(key: str) -> str:
    """'project/name' -> 'project+name' (libvirt names become file names: no '/')."""
    return key.replace("/", DOMAIN_SEP)


def workload_key(name: str) -> str:
    return name.replace(DOMAIN_SEP, "/", 1)


def volume_name(key: str) -> str:
    return f"{domain_name(key)}.qcow2"


def attached_volume_name(key: str, volume_id: str) -> str:
    """The file, in the host's storage pool, of volume `volume_id` attached to guest `key`:
    `project+name--<volume id, '/' as '+'>.raw` (the guest's own disk is `project+name.qcow2`)."""
    return f"{domain_name(key)}--{volume_id.replace('/', DOMAIN_SEP)}.raw"


def raw_volume_xml(name: str, capacity_bytes: int) -> str:
    """A sparse raw file: an attached volume's bytes are written into it as they are."""
    return (f"<volume><name>{escape(name)}</name><capacity unit='bytes'>{capacity_bytes}</capacity>"
            "<allocation unit='bytes'>0</allocation><target><format type='raw'/></target></volume>")


def volume_disk_xml(path: str, dev: str, *, bus: str = "virtio", read_only: bool = False) -> str:
    ro = "<readonly/>" if read_only else ""
    return (f"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
            f"<source file={quoteattr(path)}/><target dev={quoteattr(dev)} bus={quoteattr(bus)}/>{ro}</disk>")


def free_disk_target(xmls: Iterable[str], prefix: str = "vd") -> str:
    """The first `prefix`+letter target no disk uses in any of the domain's XMLs (live and
    persistent): vdb after the guest's vda."""
    used = {t.get("dev") for xml in xmls for t in ET.fromstring(xml).findall("devices/disk/target")}
    for c in "abcdefghijklmnopqrstuvwxyz":
        if prefix + c not in used:
            return prefix + c
    raise ValueError(f"the guest has no free disk target left ({prefix}a..{prefix}z)")


def disk_by_source(xml: str, path: str) -> str | None:
    """The <disk> element (as XML) whose source is `path`, else None."""
    for disk in ET.fromstring(xml).findall("devices/disk"):
        src = disk.find("source")
        if src is not None and src.get("file") == path:
            return ET.tostring(disk, encoding="unicode")
    return None


NET_PREFIX = "pv-"  # libvirt networks poolvisor defines for its networks: pv-project+network


def network_name(network: str) -> str:
    """poolvisor's 'project/network' -> the libvirt network 'pv-project+network'."""
    return NET_PREFIX + network.replace("/", DOMAIN_SEP)


DNSMASQ_NS = "http://libvirt.org/schemas/network/dnsmasq/1.0"


def network_xml(name: str, network: str, dhcp: str = "", gateway: str = "") -> str:
    """An isolated L2 bridge for one poolvisor network on one host; libvirt picks the bridge's
    name (virbrN). Without `dhcp` the host has no address on it (a poolvisor network spans hosts;
    its gateway is a poolvisor router, not every host). With `dhcp` ("10.0.0.254/24", the address
    the network reserved for it) the host takes that address and libvirt's dnsmasq answers DHCP
    for the static host entries only (one per NIC: dhcp_host_xml, never a dynamic range), telling
    guests `gateway` as their router (or no router), no DNS."""
    meta = f"<pv:network xmlns:pv='{NS}' name={quoteattr(network)}"
    ip = opts = ""
    if dhcp:
        address, _, prefix = dhcp.partition("/")
        meta += f" dhcp={quoteattr(dhcp)} gateway={quoteattr(gateway)}"
        ip = f"<dns enable='no'/><ip address={quoteattr(address)} prefix={quoteattr(prefix)}><dhcp/></ip>"
        router = f"dhcp-option=3,{gateway}" if gateway else "dhcp-option=3"
        opts = f"<dnsmasq:options><dnsmasq:option value={quoteattr(router)}/></dnsmasq:options>"
    return (f"<network xmlns:dnsmasq='{DNSMASQ_NS}'><name>{escape(name)}</name>"
            f"<metadata>{meta}/></metadata><bridge stp='off' delay='0'/>{ip}{opts}</network>")


def dhcp_host_xml(mac: str, ip: str) -> str:
    """A static DHCP host entry (virNetworkUpdate's IP_DHCP_HOST section) with an infinite lease:
    the guest keeps its address without renewing (also on a host that serves no DHCP)."""
    return f"<host mac={quoteattr(mac)} ip={quoteattr(ip)}><lease expiry='0'/></host>"


def dhcp_hosts(xml: str) -> dict[str, str]:
    """MAC -> address of a libvirt network's static DHCP host entries ({} without DHCP)."""
    return {str(h.get("mac")).lower(): str(h.get("ip")) for h in ET.fromstring(xml).findall("ip/dhcp/host")
            if h.get("mac") and h.get("ip")}


def serves_dhcp(xml: str) -> bool:
    """Whether a libvirt network we defined serves DHCP: it has the host's address (network_xml
    gives one only for DHCP; libvirt drops an empty <dhcp/> from the XML it returns)."""
    return ET.fromstring(xml).find("ip") is not None


def network_settings(xml: str) -> tuple[str, str, str] | None:
    """(poolvisor network, dhcp, gateway) of a libvirt network we defined (for defining it alike
    on a migration's destination), else None."""
    try:
        el = ET.fromstring(xml).find(f"metadata/{{{NS}}}network")
    except ET.ParseError:
        return None
    if el is None:
        return None
    return str(el.get("name")), el.get("dhcp") or "", el.get("gateway") or ""


def nic_xml(network: str, mac: str, model: str = "virtio") -> str:
    """A NIC on poolvisor network `network` (its libvirt network) with poolvisor's MAC."""
    return (f"<interface type='network'><source network={quoteattr(network_name(network))}/>"
            f"<mac address={quoteattr(mac)}/><model type={quoteattr(model)}/></interface>")


def managed_network(xml: str) -> str | None:
    """The poolvisor network ('project/network') a libvirt network we defined is for, else None."""
    try:
        el = ET.fromstring(xml).find(f"metadata/{{{NS}}}network")
    except ET.ParseError:
        return None
    return el.get("name") if el is not None else None


def interfaces(xml: str) -> dict[str, str]:
    """MAC -> libvirt network of the domain's network interfaces."""
    out = {}
    for nic in ET.fromstring(xml).findall("devices/interface"):
        mac, src = nic.find("mac"), nic.find("source")
        if mac is not None and src is not None and src.get("network"):
            out[str(mac.get("address")).lower()] = str(src.get("network"))
    return out


def interface_by_mac(xml: str, mac: str) -> str | None:
    for nic in ET.fromstring(xml).findall("devices/interface"):
        m = nic.find("mac")
        if m is not None and str(m.get("address")).lower() == mac.lower():
            return ET.tostring(nic, encoding="unicode")
    return None


def mac_address(key: str) -> str:
    """A stable locally administered MAC (QEMU's 52:54:00 prefix) derived from the workload key."""
    h = hashlib.sha256(key.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in h[:3])


@dataclass(frozen=True)
class GuestSpec:
    """The guest a workload asks for, in libvirt's units."""

    vcpus: int
    memory_kib: int
    disk_bytes: int
    net_kbytes_s: int | None


def guest_spec(demand: Mapping[str, float]) -> GuestSpec:
    if float(demand.get("gpu", 0.0)) > 0:
        raise ValueError("the libvirt driver has no GPU passthrough: demand gpu must be 0")
    vcpus = max(1, math.ceil(float(demand.get("vcpu", 1.0)) - 1e-9))
    mem = max(MIN_MEMORY_MIB, math.ceil(float(demand.get("memory_mib", 512.0))))
    disk = float(demand.get("disk_gib", 0.0)) or DEFAULT_DISK_GIB
    net = float(demand.get("net_mbps", 0.0))
    return GuestSpec(vcpus, mem * 1024, math.ceil(disk * 2**30), math.ceil(net * 125) if net > 0 else None)


def volume_xml(key: str, capacity_bytes: int, base_image: str = "", base_format: str = "qcow2") -> str:
    backing = ""
    if base_image:
        backing = (f"<backingStore><path>{escape(base_image)}</path>"
                   f"<format type={quoteattr(base_format)}/></backingStore>")
    return (f"<volume><name>{escape(volume_name(key))}</name>"
            f"<capacity unit='bytes'>{capacity_bytes}</capacity>"
            f"<target><format type='qcow2'/></target>{backing}</volume>")


def domain_xml(key: str, demand: Mapping[str, float], cfg: LibvirtConfig, *, domain_type: str,
               disk_path: str, network: str | None, kind: str = "vm") -> str:
    """The persistent definition of the workload's guest."""
    spec = guest_spec(demand)
    name = domain_name(key)
    os_parts = [f"<type arch={quoteattr(cfg.arch)} machine={quoteattr(cfg.machine)}>hvm</type>"]
    if cfg.kernel:
        os_parts.append(f"<kernel>{escape(cfg.kernel)}</kernel>")
        if cfg.initrd:
            os_parts.append(f"<initrd>{escape(cfg.initrd)}</initrd>")
        cmd = cfg.cmdline.replace("{name}", name).replace("{key}", key)
        if cmd:
            os_parts.append(f"<cmdline>{escape(cmd)}</cmdline>")
    else:
        os_parts.append("<boot dev='hd'/>")
    devices = [f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
               f"<source file={quoteattr(disk_path)}/><target dev='vda' bus='virtio'/></disk>"]
    if network:
        bw = ""
        if spec.net_kbytes_s:
            bw = (f"<bandwidth><inbound average='{spec.net_kbytes_s}'/>"
                  f"<outbound average='{spec.net_kbytes_s}'/></bandwidth>")
        devices.append(f"<interface type='network'><source network={quoteattr(network)}/>"
                       f"<mac address='{mac_address(key)}'/><model type='virtio'/>{bw}</interface>")
    if cfg.console_dir:
        log = quoteattr(os.path.join(cfg.console_dir, f"{name}.log"))
        devices.append(f"<serial type='file'><source path={log} append='on'/><target port='0'/></serial>")
    else:
        devices.append("<serial type='pty'><target port='0'/></serial>")
    devices.append(f"<memballoon model='virtio'><stats period='{BALLOON_STATS_PERIOD_S}'/></memballoon>")
    return (f"<domain type={quoteattr(domain_type)}><name>{escape(name)}</name>"
            f"<title>{escape(key)}</title>"
            f"<metadata><pv:workload xmlns:pv='{NS}' key={quoteattr(key)} kind={quoteattr(kind)}/></metadata>"
            f"<memory unit='KiB'>{spec.memory_kib}</memory>"
            f"<currentMemory unit='KiB'>{spec.memory_kib}</currentMemory>"
            f"<vcpu>{spec.vcpus}</vcpu><os>{''.join(os_parts)}</os>"
            "<features><acpi/></features>"  # PCI hotplug (attached volumes) and graceful shutdown
            "<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>"
            f"<devices>{''.join(devices)}</devices></domain>")


def managed_key(xml: str) -> str | None:
    """The workload key of a domain we manage (our metadata element), else None."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    el = root.find(f"metadata/{{{NS}}}workload")
    return el.get("key") if el is not None else None


def disk_paths(xml: str) -> list[str]:
    """Source files of the domain's disks (its volumes, to delete or copy)."""
    root = ET.fromstring(xml)
    out = []
    for disk in root.findall("devices/disk"):
        src = disk.find("source")
        if src is not None and src.get("file"):
            out.append(str(src.get("file")))
    return out


def disk_targets(xml: str) -> dict[str, str]:
    """Target device -> source file of the domain's file disks ({'vda': ..., 'vdb': ...})."""
    out = {}
    for disk in ET.fromstring(xml).findall("devices/disk"):
        src, tgt = disk.find("source"), disk.find("target")
        if src is not None and tgt is not None and src.get("file") and tgt.get("dev"):
            out[str(tgt.get("dev"))] = str(src.get("file"))
    return out


def host_uuid(capabilities_xml: str) -> str | None:
    el = ET.fromstring(capabilities_xml).find("host/uuid")
    return el.text if el is not None else None


def cpu_model(capabilities_xml: str) -> str:
    el = ET.fromstring(capabilities_xml).find("host/cpu/model")
    return el.text or "" if el is not None else ""


def offers_kvm(capabilities_xml: str, arch: str = "x86_64") -> bool:
    root = ET.fromstring(capabilities_xml)
    for guest in root.findall("guest"):
        a = guest.find("arch")
        if a is not None and a.get("name") == arch and a.find("domain[@type='kvm']") is not None:
            return True
    return False


_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_snapshot_name(name: str) -> str:
    if not _SAFE.match(name):
        raise ValueError(f"invalid snapshot name {name!r}: letters, digits, '-', '_' or '.', 1..63")
    return name
