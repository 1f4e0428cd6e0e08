"""A lab of real hosts on one machine: libvirtd per mount namespace, a tiny guest, its console.

Used by the real test suite and `poolvisor bench migrate`; needs root, libvirt and QEMU
(scripts/install-real-deps.sh). Nothing here is used by the service itself.
"""

from poolvisor.lab.console import ConsoleWatch, markers, wait_marker, wait_ticks
from poolvisor.lab.guest import GuestImage, build_guest_image
from poolvisor.lab.hosts import Lab, LabError, LabHost, lab_available

__all__ = ["ConsoleWatch", "GuestImage", "Lab", "LabError", "LabHost", "build_guest_image", "lab_available",
           "markers", "wait_marker", "wait_ticks"]
