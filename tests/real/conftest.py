"""Real-host fixtures: the lab guest image, and libvirt hosts each in its own mount namespace.

Everything here is marked real: skipped with a reason locally when libvirt, QEMU or root are
missing, a failure under POOLVISOR_REQUIRE_REAL=1 (CI). The lab is session-wide (the first host
start probes QEMU once, ~8 s; later ones take ~0.5 s) and stops exactly the processes it started.
Each test removes its own guests; `tests_real_helpers.assert_host_empty` checks that nothing was
left behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from poolvisor.lab import GuestImage, Lab, build_guest_image, lab_available
from poolvisor.lab.guest import GuestImageError
from realenv import require_real

LAB_HOSTS = 2


@pytest.fixture(scope="session")
def guest_image() -> GuestImage:
    ok, why = lab_available()
    require_real(ok, why)
    try:
        return build_guest_image()
    except GuestImageError as e:
        require_real(False, f"lab guest image: {e}")
        raise


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory, guest_image: GuestImage) -> Iterator[Lab]:
    root = Path(tmp_path_factory.mktemp("lab"))
    with Lab(root, LAB_HOSTS) as lab:
        yield lab

