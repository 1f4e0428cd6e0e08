"""A simulation scenario: hosts, VMs and their CPU demand over time (columnar arrays).

The CloudSim PlanetLab scenario (800 HP ProLiant hosts, 4 VM types assigned in contiguous blocks)
is built by :func:`cloudsim_planetlab`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from poolvisor.policies.balancing.power import HP_ML110_G4, HP_ML110_G5, PowerTable


@dataclass(frozen=True)
class Scenario:
    """Hosts (H,) and VMs (V,); ``util`` is (V, S+1) CPU fractions per interval (last value repeated)."""

    host_pes: np.ndarray
    host_pe_mips: np.ndarray
    host_ram: np.ndarray
    host_bw: np.ndarray
    host_model: np.ndarray
    power: PowerTable
    vm_mips: np.ndarray
    vm_ram: np.ndarray
    vm_bw: np.ndarray
    util: np.ndarray
    interval_s: float = 300.0
    start_s: float = 0.1
    end_s: float = 86400.0
    name: str = ""

    @property
    def hosts(self) -> int:
        return int(self.host_pes.size)

    @property
    def vms(self) -> int:
        return int(self.vm_mips.size)

    @property
    def host_total(self) -> np.ndarray:
        return self.host_pes * self.host_pe_mips


#: CloudSim PlanetLab VM types: (MIPS, RAM MB)
CLOUDSIM_VM_TYPES = ((2500.0, 870.0), (2000.0, 1740.0), (1000.0, 1740.0), (500.0, 613.0))
#: CloudSim PlanetLab host types: (PEs, MIPS per PE), power model index
CLOUDSIM_HOST_TYPES = ((2, 1860.0), (2, 2660.0))


def cloudsim_planetlab(trace_util_pct: np.ndarray, hosts: int = 800, name: str = "") -> Scenario:
    """The scenario of CloudSim's PlanetLab examples for N trace rows (CPU % per 5 min).

    Host i is type i % 2; VM i is type i // ceil(N/4) (four contiguous blocks, as CloudSim's
    PlanetLabHelper assigns them). Trace values become fractions and the last one is repeated.
    """
    n = trace_util_pct.shape[0]
    htype = np.arange(hosts) % 2
    pes = np.array([t[0] for t in CLOUDSIM_HOST_TYPES], dtype=np.float64)[htype]
    pe_mips = np.array([t[1] for t in CLOUDSIM_HOST_TYPES])[htype]
    vtype = np.arange(n) // math.ceil(n / 4)
    vm_mips = np.array([t[0] for t in CLOUDSIM_VM_TYPES])[vtype]
    vm_ram = np.array([t[1] for t in CLOUDSIM_VM_TYPES])[vtype]
    util = np.empty((n, trace_util_pct.shape[1] + 1))
    util[:, :-1] = trace_util_pct / 100.0
    util[:, -1] = util[:, -2]
    return Scenario(
        host_pes=pes,
        host_pe_mips=pe_mips,
        host_ram=np.full(hosts, 4096.0),
        host_bw=np.full(hosts, 1_000_000.0),
        host_model=htype.astype(np.intp),
        power=PowerTable.of(HP_ML110_G4, HP_ML110_G5),
        vm_mips=vm_mips,
        vm_ram=vm_ram,
        vm_bw=np.full(n, 100_000.0),
        util=util,
        name=name,
    )
