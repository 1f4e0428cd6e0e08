"""Compiled PABFD (numba), used when available; ``pabfd.place`` is the numpy definition.

:func:`pabfd` is ``pabfd.place`` in one call: the same decisions, the same IEEE operations in the
same order (no fastmath), so results are identical; it only skips work that cannot change a
decision (the overload check of a host that would not beat the current best; identical empty
hosts; hosts that can no longer take any VM of the batch). :func:`overloaded` is the compiled twin
of ``overload.overloaded``, :func:`shed` the selection phase's "how many VMs must leave".

`available()` is False when numba is not installed (the optional `fast` extra) or when
POOLVISOR_NO_JIT=1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from poolvisor.jit import CompileOnce
from poolvisor.policies.balancing.overload import GENERAL, IQR, LINEAR, MAD, THR, Rule
from poolvisor.policies.balancing.pabfd import (
    ALLOC,
    AVAIL,
    HLEN,
    LR_G,
    LR_M,
    MAX_RAM,
    N_ROWS,
    P_NOW,
    PE,
    RAM_FREE,
    REQ,
    SLOTS,
    TOTAL,
    VmColumns,
)

_pabfd: Callable[..., bool] | None = None
_shed: Callable[..., int] | None = None


def power(flat: Any, delta: Any, model: int, u: float) -> float:
    u10 = u * 10
    i1 = int(u10)
    idx = model * 11 + i1
    return flat[idx] + delta[idx] * (math.ceil(u10) - i1) * (u - i1 / 10) * 100


def median_sorted(x: Any, n: int) -> float:
    pos = 50.0 * (n + 1) / 100
    fpos = math.floor(pos)
    ipos = int(fpos)
    dif = pos - fpos
    lower = x[ipos - 1]
    if dif == 0:
        return lower
    return lower + dif * (x[min(ipos, x.shape[0] - 1)] - lower)


def spread(row: Any, n: int, mode: int) -> float:
    """IQR or MAD (``mode``) of the first n values, as detection.iqr / detection.mad."""
    x = np.sort(row[:n])
    if mode == IQR:
        q1 = int(math.floor(0.25 * (n + 1) + 0.5)) - 1
        q3 = int(math.floor(0.75 * (n + 1) + 0.5)) - 1
        return x[q3] - x[q1]
    med = median_sorted(x, n)
    dev = np.sort(np.abs(med - x))
    return median_sorted(dev, n)



def overloaded(
    rule: Any, req_util: float, hlen: float, max_ram: float, lr_m: float, lr_g: float, spread_: float
) -> bool:
    """overload.overloaded for one host (THR, LINEAR, IQR, MAD), given the host's statistics: LR
    parts ``lr_m``/``lr_g`` (LINEAR) or the :func:`spread` of its history (IQR, MAD; read only
    when ``hlen`` reaches the rule's minimum). Scalars only: an array argument costs reference
    counting on every call, which made PABFD's scan ~1.5x slower."""
    if rule.mode == THR:
        return req_util > rule.param
    if hlen < rule.min_history:
        return req_util > rule.fallback
    if rule.mode == LINEAR:
        steps = math.ceil(max_ram / rule.mig_bw / rule.interval)
        return (lr_m + lr_g / rule.sxx * (rule.window + steps - rule.xbar)) * rule.param >= 1
    return req_util > 1 - rule.param * spread_


def pabfd(
    vms: Any,
    req: Any,
    settled: Any,
    ram: Any,
    vm_hlen: Any,
    vm_m: Any,
    vm_g: Any,
    contrib: Any,
    rows: Any,
    model: Any,
    htype: Any,
    hist: Any,
    rule: Any,
    flat: Any,
    delta: Any,
    check_ram: bool,
    measured_reference: bool,
    all_or_nothing: bool,
    out: Any,
    open_: Any,
    cls_start: Any,
    cls_members: Any,
) -> bool:
    """pabfd.place over ``rows`` (N_ROWS, n) and ``hist``, updated in place; out[i] = local host
    or -1; False when a VM of an ``all_or_nothing`` batch fits nowhere.

    Scans ``open_`` (hosts to evaluate one by one) and, per class of identical empty hosts
    (``cls_members[cls_start[k]:cls_start[k+1]]``, ascending), only its first still empty member,
    which beats its identical successors on the tie; a member that gets a VM joins the open hosts,
    and a host that can no longer take any VM of the batch leaves them. Ties go to the lowest
    index, as in a scan of every host in order. Every host passed must have a free slot."""
    total, pe, avail, alloc, req_sum = rows[TOTAL], rows[PE], rows[AVAIL], rows[ALLOC], rows[REQ]
    ram_free, hlen, max_ram, slots = rows[RAM_FREE], rows[HLEN], rows[MAX_RAM], rows[SLOTS]
    lr_m, lr_g = rows[LR_M], rows[LR_G]
    n = total.shape[0]
    buf = np.empty(hist.shape[1])
    scan = np.empty(n, dtype=np.int64)
    n_open = open_.shape[0]
    scan[:n_open] = open_
    K = cls_start.shape[0] - 1
    ptr = cls_start[:-1].copy()
    # each host's power reference (pabfd.power_reference), updated when the host takes a VM
    ref = rows[P_NOW].copy()
    if not measured_reference:
        for j in range(n):
            if alloc[j] != 0:
                ref[j] = power(flat, delta, model[j], min(alloc[j] / total[j], 1.0))
    rmin = np.inf
    rammin = np.inf
    for i in range(vms.shape[0]):
        rmin = min(rmin, req[vms[i]])
        rammin = min(rammin, ram[vms[i]])
    for i in range(vms.shape[0]):
        v = vms[i]
        r = req[v]
        ram_v = ram[v]
        best = np.inf
        bj = -1
        # the open-host / class-representative scan stays written out here: as a shared numba
        # helper (even inlined) it made the scan ~3x slower (git log 11a9b9e)
        for q in range(n_open + K):
            if q < n_open:
                j = scan[q]
            else:
                k = q - n_open
                if ptr[k] >= cls_start[k + 1]:
                    continue
                j = cls_members[ptr[k]]
            if not (pe[j] >= r and avail[j] >= r):
                continue
            if check_ram and ram_free[j] < ram_v:
                continue
            a = alloc[j]
            d = power(flat, delta, model[j], min((a + r) / total[j], 1.0)) - ref[j]
            if not (d < best or (d == best and j < bj)):  # cannot win: skip the overload check
                continue
            if a != 0:  # an empty host is never overloaded
                t = htype[j]
                hla = max(hlen[j], vm_hlen[v])
                m = 0.0
                g = 0.0
                sp = 0.0
                if rule.mode == LINEAR:
                    m = lr_m[j] + vm_m[t, v]
                    g = lr_g[j] + vm_g[t, v]
                elif rule.mode >= IQR and hla >= rule.min_history:
                    for c in range(buf.shape[0]):
                        buf[c] = hist[j, c] + contrib[t, v, c]
                    sp = spread(buf, int(hla), rule.mode)
                ru = (req_sum[j] + r) / total[j]
                if overloaded(rule, ru, hla, max(max_ram[j], ram_v), m, g, sp):
                    continue
            best = d
            bj = j
        if bj < 0:
            if all_or_nothing:
                return False
            out[i] = -1
            continue
        out[i] = bj
        for k in range(K):  # a class representative leaves its class and joins the open hosts
            if ptr[k] < cls_start[k + 1] and cls_members[ptr[k]] == bj:
                ptr[k] += 1
                scan[n_open] = bj
                n_open += 1
                break
        alloc[bj] += r  # a VM that fits gets its request
        if not measured_reference and alloc[bj] != 0:
            ref[bj] = power(flat, delta, model[bj], min(alloc[bj] / total[bj], 1.0))
        avail[bj] -= r
        req_sum[bj] += settled[v]
        ram_free[bj] -= ram_v
        hlen[bj] = max(hlen[bj], vm_hlen[v])
        max_ram[bj] = max(max_ram[bj], ram_v)
        slots[bj] -= 1
        if rule.mode == LINEAR:
            lr_m[bj] += vm_m[htype[bj], v]
            lr_g[bj] += vm_g[htype[bj], v]
        elif rule.mode >= IQR:
            for c in range(hist.shape[1]):
                hist[bj, c] += contrib[htype[bj], v, c]
        if slots[bj] < 1 or avail[bj] < rmin or (check_ram and ram_free[bj] < rammin):
            for q in range(n_open):  # full for this batch: capacity only shrinks
                if scan[q] == bj:
                    scan[q] = scan[n_open - 1]
                    n_open -= 1
                    break
    return True


def shed(idx: Any, rank: Any, req: Any, ram: Any, vm_hlen: Any, vm_m: Any, vm_g: Any, t: int, total: float,
         rule: Any) -> int:  # fmt: skip
    """How many VMs leave a host whose list is ``idx`` when the VM at list position i leaves as the
    rank[i]-th, each time until the host is no longer overloaded (THR, LINEAR); all of them if it
    never is. Sums run over what is left in list order, as the planner's stats."""
    n = idx.shape[0]
    for k in range(n - 1):
        rs = 0.0
        m = 0.0
        g = 0.0
        hl = 0.0
        mr = -np.inf
        for i in range(n):
            if rank[i] > k:
                vm = idx[i]
                rs += req[vm]
                if rule.mode == LINEAR:
                    m += vm_m[t, vm]
                    g += vm_g[t, vm]
                    hl = max(hl, vm_hlen[vm])
                    mr = max(mr, ram[vm])
        if not overloaded(rule, rs / total, hl, mr, m, g, 0.0):
            return k + 1
    return n


def place(
    vms: np.ndarray,
    vm: VmColumns,
    rows: np.ndarray,
    model: np.ndarray,
    htype: np.ndarray,
    hist: np.ndarray,
    rule: Rule,
    flat: np.ndarray,
    delta: np.ndarray,
    check_ram: bool,
    measured_reference: bool,
    all_or_nothing: bool,
    classes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray | None:
    """pabfd.place, compiled (same arguments, but the power table as its ``flat``/``delta``
    arrays). ``rows`` (contiguous) and ``hist`` are updated in place. ``classes``: (open,
    cls_start, cls_members) from :func:`empty_host_classes`; None scans every host."""
    assert _pabfd is not None and rule.mode != GENERAL
    if classes is None:
        none = np.zeros(0, dtype=np.int64)
        classes = (np.arange(rows.shape[1], dtype=np.int64), np.zeros(1, dtype=np.int64), none)
    out = np.empty(len(vms), dtype=np.intp)
    done = _pabfd(
        vms, vm.req, vm.settled, vm.ram, vm.hlen, vm.lr_m, vm.lr_g, vm.contrib, rows, model, htype, hist,
        rule, flat, delta, check_ram, measured_reference, all_or_nothing, out, *classes,
    )  # fmt: skip
    return out if done else None


def run_shed(*args: Any) -> int:
    """Compiled :func:`shed`, same arguments."""
    assert _shed is not None
    return int(_shed(*args))


def _compile() -> None:
    """Replace the plain functions above by their compiled versions (module globals, so that
    numba resolves the calls between them at compile time and can cache them on disk)."""
    global _pabfd, _shed
    from numba import njit

    jit = njit(cache=True, nogil=True)
    g = globals()
    for name in ("power", "median_sorted", "spread", "overloaded"):
        g[name] = jit(g[name])
    _pabfd = jit(pabfd)
    _shed = jit(shed)


def _build() -> None:
    _compile()
    _warm()


_compiler = CompileOnce(_build)


def available() -> bool:
    """Compile (or load from cache) the kernels once; False when numba is missing or disabled."""
    return _compiler.ready() and _pabfd is not None


def _warm() -> None:
    """Trigger compilation with the argument types the planner uses."""
    i = np.zeros(1, dtype=np.intp)
    one = np.ones(1)
    vm2 = np.zeros((2, 1))
    vm = VmColumns(one, one, one, np.zeros(1), vm2, vm2, np.zeros((2, 1, 30)))
    flat = np.linspace(80.0, 120.0, 22)
    for mode in (LINEAR, MAD):
        rule = Rule(mode, 0.8, 0.7, 10, 10, 5.5, 82.5, 62.5, 300.0)
        rows, hist = np.ones((N_ROWS, 1)), np.zeros((1, 30))
        place(i, vm, rows, i, i, hist, rule, flat, np.zeros(22), False, True, True)
    run_shed(i, i, one, one, one, vm2, vm2, 0, 1.0, Rule(THR, 0.8, 0.7, 0, 10, 5.5, 82.5, 62.5, 300.0))


def empty_host_classes(
    rows: np.ndarray, model: np.ndarray, htype: np.ndarray, empty: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group the ``empty`` hosts of ``rows`` (N_ROWS, n) by every value a batch reads (rows,
    power model, history type); the others are scanned one by one. Returns (open, cls_start,
    cls_members) for :func:`place`: scanning one empty host per class instead of thousands of
    identical switched-off hosts gives the same choices."""
    e = np.flatnonzero(empty)
    key = np.concatenate([rows[:, e], model[e][None, :], htype[e][None, :]]).astype(np.float64)
    start, members = identical_classes(key.T)
    return np.flatnonzero(~empty).astype(np.int64), start, e[members].astype(np.int64)


def identical_classes(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``key`` (n, c) grouped by equal value: (start, members), members ascending within
    a class, class k = members[start[k]:start[k+1]]."""
    n = key.shape[0]
    if not n:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    members = np.lexsort(key.T[::-1]).astype(np.int64)  # stable: equal rows keep ascending order
    s = key[members]
    new = np.flatnonzero((s[1:] != s[:-1]).any(axis=1)) + 1
    return np.concatenate([[0], new, [n]]).astype(np.int64), members
