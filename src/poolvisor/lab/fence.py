"""Fence agent for lab hosts (the lab's power switch): `python -m poolvisor.lab.fence ROOT HOST`.

Used as a host's fence method `command:python -m poolvisor.lab.fence ROOT` (the agent appends the
host's name). It "pulls the plug" of the lab host ROOT/HOST: SIGKILL to its libvirtd (from its
pidfile, checked to be libvirtd), every process of that daemon's mount namespace, and the QEMUs of
the host's pidfiles (checked to be QEMU). Exit 0 once none of them is alive (also when the host
was already off), 1 with one line on stderr otherwise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from poolvisor.lab.hosts import LabError, LabHost


def power_off(host_dir: Path) -> list[int]:
    """Kill the lab host at `host_dir`; the PIDs it killed."""
    host = LabHost(host_dir.name, host_dir, 0, "")
    pidfile = host_dir / "run" / "libvirtd.pid"
    try:
        pid = int(pidfile.read_text().strip())
        if os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "libvirtd":
            host.mnt_ns = os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except (OSError, ValueError):
        pass  # no daemon: only its QEMUs may still run
    pids = host.processes()
    host.power_off(pids)
    return pids


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m poolvisor.lab.fence LAB_ROOT HOST", file=sys.stderr)
        return 2
    host_dir = Path(argv[0]) / argv[1]
    if not (host_dir / "etc" / "libvirtd.conf").exists():
        print(f"no lab host {argv[1]!r} under {argv[0]}", file=sys.stderr)
        return 1
    try:
        pids = power_off(host_dir)
    except LabError as e:
        print(str(e), file=sys.stderr)
        return 1
    print(f"lab host {argv[1]} off ({len(pids)} processes killed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
