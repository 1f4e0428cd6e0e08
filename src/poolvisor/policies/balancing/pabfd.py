"""PABFD (power-aware best-fit decreasing), the readable numpy definition.

Each VM of a batch, in order, goes to the candidate host with the least power increase among the
hosts that can take it: enough PE and available MIPS (and RAM when checked, and a free slot), and
not overloaded after the VM is added (only non-empty hosts are checked, as CloudSim does); ties go
to the first host. The chosen host's sums are updated before the next VM.

:func:`place` is the definition. ``kernels.pabfd`` is the same rule compiled (numba), with the
same IEEE operations in the same order, scanning only the hosts that can still win; the planner
uses it when numba is available, and tests check that both give the same hosts and the same host
state bit for bit.

Per-host state is one float array of ``N_ROWS`` rows (named below) by hosts, so that a batch
gathers its candidates with one take and the kernel gets one contiguous block.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from poolvisor.policies.balancing.detection import Detector
from poolvisor.policies.balancing.overload import GENERAL, IQR, LINEAR, MAD, Rule, overloaded
from poolvisor.policies.balancing.power import PowerTable

# rows of the host state
TOTAL = 0  #: capacity (MIPS)
PE = 1  #: MIPS of one PE: a VM's request is capped at one PE, so a VM needs req <= PE
AVAIL = 2  #: unallocated MIPS
ALLOC = 3  #: MIPS allocated to the VMs in the host's list (0: the host is empty)
REQ = 4  #: MIPS those VMs request (what the overload check sees)
RAM_FREE = 5  #: MB (checked only when asked)
HLEN = 6  #: length of the host's utilization history
MAX_RAM = 7  #: largest RAM of its VMs (LR looks ahead by that VM's migration time)
P_NOW = 8  #: the power PABFD measures the increase from (see PlanConfig's power knobs)
LR_M = 9  #: LR: the host's history as the two linear parts of the regression
LR_G = 10
SLOTS = 11  #: how many more VMs the host may take (inf: no limit)
N_ROWS = 12

#: the overload check of a batch runs on the best-ranked hosts first, in chunks growing this much
_CHUNK0, _CHUNK_GROWTH = 4, 4


class VmColumns(NamedTuple):
    """Per-VM inputs of a batch (indexed by VM id).

    ``req``: MIPS the VM requests (placement and capacity); ``settled``: what it counts as
    requesting once placed (the overload check of later VMs; ``req`` except at creation);
    ``ram``; ``hlen``: its history length (float); ``lr_m``/``lr_g`` (T, V): its LR parts on a
    host of history type t; ``contrib`` (T, V, L): its history scaled to such a host.
    """

    req: np.ndarray
    settled: np.ndarray
    ram: np.ndarray
    hlen: np.ndarray
    lr_m: np.ndarray
    lr_g: np.ndarray
    contrib: np.ndarray


def power_reference(rows: np.ndarray, model: np.ndarray, power: PowerTable, measured: bool) -> np.ndarray:
    """What each host's power increase is measured from: ``P_NOW`` if ``measured`` or the host is
    empty, else its power with the VMs planned onto it."""
    ref = rows[P_NOW].copy()
    if not measured:
        busy = rows[ALLOC] != 0
        ref[busy] = power.power(model[busy], np.minimum(rows[ALLOC, busy] / rows[TOTAL, busy], 1.0))
    return ref


def place(
    vms: np.ndarray,
    vm: VmColumns,
    rows: np.ndarray,
    model: np.ndarray,
    htype: np.ndarray,
    hist: np.ndarray,
    rule: Rule,
    detector: Detector,
    power: PowerTable,
    check_ram: bool,
    measured_reference: bool,
    all_or_nothing: bool,
) -> np.ndarray | None:
    """PABFD for ``vms`` in order over the hosts of ``rows`` (N_ROWS, n) and ``hist`` (n, L)
    (read only in the IQR, MAD and GENERAL modes), both updated in place. Returns each VM's host
    (local index, -1: none), or None as soon as a VM of an ``all_or_nothing`` batch fits nowhere
    (the state is then partly updated: callers pass copies)."""
    total, pe, avail, alloc, req_sum = rows[TOTAL], rows[PE], rows[AVAIL], rows[ALLOC], rows[REQ]
    ram_free, hlen, max_ram, slots = rows[RAM_FREE], rows[HLEN], rows[MAX_RAM], rows[SLOTS]
    lr_m, lr_g = rows[LR_M], rows[LR_G]
    ref = power_reference(rows, model, power, measured_reference)
    out = np.full(len(vms), -1, dtype=np.intp)
    for i, v in enumerate(vms.tolist()):
        r, ram = vm.req[v], vm.ram[v]
        fits = (pe >= r) & (avail >= r) & (slots >= 1)
        if check_ram:
            fits &= ram_free >= ram
        hosts = np.flatnonzero(fits)
        increase = power.power(model[hosts], np.minimum((alloc[hosts] + r) / total[hosts], 1.0)) - ref[hosts]
        ranked = hosts[np.argsort(increase, kind="stable")]  # least increase first, then host order
        j = -1
        lo, size = 0, _CHUNK0
        while j < 0 and lo < ranked.size:  # the first ranked host not overloaded after adding v
            c = ranked[lo : lo + size]
            lo, size = lo + size, size * _CHUNK_GROWTH
            t = htype[c]
            m = g = h = None
            if rule.mode == LINEAR:
                m, g = lr_m[c] + vm.lr_m[t, v], lr_g[c] + vm.lr_g[t, v]
            elif rule.mode in (IQR, MAD, GENERAL):
                h = hist[c] + vm.contrib[t, v]
            ru = (req_sum[c] + r) / total[c]
            hl, mr = np.maximum(hlen[c], vm.hlen[v]), np.maximum(max_ram[c], ram)
            over = overloaded(rule, detector, ru, hl, mr, m, g, h)
            fine = np.flatnonzero(~over | (alloc[c] == 0))  # an empty host is never overloaded
            if fine.size:
                j = int(c[fine[0]])
        if j < 0:
            if all_or_nothing:
                return None
            continue
        out[i] = j
        alloc[j] += r  # a VM that fits gets its request
        if not measured_reference and alloc[j] != 0:
            ref[j] = power.power1(int(model[j]), min(alloc[j] / total[j], 1.0))
        avail[j] -= r
        req_sum[j] += vm.settled[v]
        ram_free[j] -= ram
        hlen[j] = max(hlen[j], vm.hlen[v])
        max_ram[j] = max(max_ram[j], ram)
        slots[j] -= 1
        if rule.mode == LINEAR:
            lr_m[j] += vm.lr_m[htype[j], v]
            lr_g[j] += vm.lr_g[htype[j], v]
        elif rule.mode in (IQR, MAD, GENERAL):
            hist[j] += vm.contrib[htype[j], v]
    return out
