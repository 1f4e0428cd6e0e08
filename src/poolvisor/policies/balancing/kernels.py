"""Compiled PABFD batch (numba), used when available; the numpy batch in consolidation.py is the fallback.

A PABFD batch walks its VMs in order and, for each, scans the candidate hosts: suitable (PE and
available MIPS), not overloaded after the VM is added (THR or the LR linear functional), least
power increase, first host on ties. In numpy that is ~40 calls per batch plus per-VM Python work;
here it is one call. The arithmetic is the same IEEE operations in the same order as the numpy
path and as CloudSim (no fastmath), so results are identical.

`available()` is False when numba is not installed (the optional `fast` extra) or when
POOLVISOR_NO_JIT=1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from poolvisor.jit import CompileOnce

_batch: Callable[..., bool] | None = None
_initial: Callable[..., bool] | None = None
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
    """IQR (mode 2) or MAD (mode 3) of the first n values, as detection.iqr / detection.mad."""
    x = np.sort(row[:n])
    if mode == 2:
        q1 = int(math.floor(0.25 * (n + 1) + 0.5)) - 1
        q3 = int(math.floor(0.75 * (n + 1) + 0.5)) - 1
        return x[q3] - x[q1]
    med = median_sorted(x, n)
    dev = np.sort(np.abs(med - x))
    return median_sorted(dev, n)


def batch(
    vms: Any,
    req: Any,
    ram: Any,
    vm_hlen: Any,
    vm_m: Any,
    vm_g: Any,
    tot: Any,
    pe: Any,
    av: Any,
    asum: Any,
    rs: Any,
    rf: Any,
    hl: Any,
    mr: Any,
    pnow: Any,
    lm: Any,
    lg: Any,
    model: Any,
    ht: Any,
    flat: Any,
    delta: Any,
    hist: Any,
    contrib: Any,
    mode: int,
    param: float,
    fallback: float,
    w: int,
    xbar: float,
    sxx: float,
    bw: float,
    interval: float,
    check_ram: bool,
    stale: bool,
    all_or_nothing: bool,
    out: Any,
    open_: Any,
    cls_start: Any,
    cls_members: Any,
) -> bool:
    """Scans ``open_`` (local indices of hosts to evaluate one by one) and, per class of identical
    empty hosts (``cls_members[cls_start[k]:cls_start[k+1]]``, ascending), only its first still
    empty member, which beats its identical successors on the tie; a class member that gets a VM
    joins the open hosts. Ties go to the lowest index, as in a scan of every host in order."""
    n = tot.shape[0]
    buf = np.empty(hist.shape[1])
    scan = np.empty(n, dtype=np.int64)
    n_open = open_.shape[0]
    scan[:n_open] = open_
    K = cls_start.shape[0] - 1
    ptr = cls_start[:-1].copy()
    # power reference of each host (its power now; the measured one if empty or stale), updated
    # when the host gets a VM: saves one power evaluation per (VM, host) pair
    pref = pnow.copy()
    if not stale:
        for j in range(n):
            if asum[j] != 0:
                pref[j] = power(flat, delta, model[j], min(asum[j] / tot[j], 1.0))
    for i in range(vms.shape[0]):
        vm = vms[i]
        r = req[vm]
        ram_v = ram[vm]
        best = np.inf
        bj = -1
        # the open-host / class-representative scan is written out here and in initial(): as a
        # shared numba helper (even inlined) it made both scans ~3x slower
        for q in range(n_open + K):
            if q < n_open:
                j = scan[q]
            else:
                k = q - n_open
                if ptr[k] >= cls_start[k + 1]:
                    continue
                j = cls_members[ptr[k]]
            if not (pe[j] >= r and av[j] >= r):
                continue
            if check_ram and rf[j] < ram_v:
                continue
            a = asum[j]
            u = min((a + r) / tot[j], 1.0)
            d = power(flat, delta, model[j], u) - pref[j]
            if not (d < best or (d == best and j < bj)):  # cannot win: skip the overload check
                continue
            if a != 0:
                ru = (rs[j] + r) / tot[j]
                hla = max(hl[j], vm_hlen[vm])
                if mode == 0:
                    over = ru > param
                elif mode == 1:
                    if hla >= w:
                        steps = math.ceil(max(mr[j], ram_v) / bw / interval)
                        t = ht[j]
                        m = lm[j] + vm_m[t, vm]
                        g = lg[j] + vm_g[t, vm]
                        over = (m + g / sxx * (w + steps - xbar)) * param >= 1
                    else:
                        over = ru > fallback
                elif hla >= 12:
                    t = ht[j]
                    for c in range(buf.shape[0]):
                        buf[c] = hist[j, c] + contrib[t, vm, c]
                    over = ru > 1 - param * spread(buf, int(hla), mode)
                else:
                    over = ru > fallback
                if over:
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
        asum[bj] += r  # a suitable VM fits: it gets its (uncapped = capped) request
        if not stale and asum[bj] != 0:
            pref[bj] = power(flat, delta, model[bj], min(asum[bj] / tot[bj], 1.0))
        av[bj] -= r
        rs[bj] += r
        rf[bj] -= ram_v
        hl[bj] = max(hl[bj], vm_hlen[vm])
        mr[bj] = max(mr[bj], ram_v)
        if mode == 1:
            lm[bj] += vm_m[ht[bj], vm]
            lg[bj] += vm_g[ht[bj], vm]
        elif mode >= 2:
            for c in range(hist.shape[1]):
                hist[bj, c] += contrib[ht[bj], vm, c]
    return True


def initial(
    req: Any,
    ram: Any,
    tot: Any,
    pe: Any,
    av: Any,
    asum: Any,
    rf: Any,
    pnow: Any,
    model: Any,
    slots: Any,
    cls_start: Any,
    cls_members: Any,
    limit: float,
    flat: Any,
    delta: Any,
    stale: bool,
    out: Any,
) -> bool:
    """PABFD placement at t=0 of VMs 0..V-1 in order (Simulator.initial_placement).

    At t=0 a placed VM requests 0 MIPS, so a non-empty host is overloaded after adding VM v iff
    req[v] / total > ``limit``; RAM is checked and each host takes at most ``slots`` VMs. Same
    decisions as scanning every host (least power increase, first host on ties), but only over
    *open* hosts: the non-empty ones that can still take a VM, plus, per class of identical empty
    hosts (``cls_members[cls_start[k]:cls_start[k+1]]``, ascending ids), the first still empty
    one, which beats its identical successors on the tie. Full hosts are dropped for good
    (capacity only shrinks). Returns False (out[v] = -1 for the first failing VM) if a VM fits
    nowhere."""
    H = tot.shape[0]
    V = req.shape[0]
    rmin = req.min()
    rammin = ram.min()
    count = np.zeros(H, dtype=np.int64)
    open_ = np.empty(H, dtype=np.int64)
    n_open = 0
    K = cls_start.shape[0] - 1
    ptr = cls_start[:-1].copy()
    is_open = np.zeros(H, dtype=np.bool_)
    for v in range(V):
        r = req[v]
        ram_v = ram[v]
        best = np.inf
        bj = -1
        for q in range(n_open + K):
            if q < n_open:
                j = open_[q]
            else:
                k = q - n_open
                if ptr[k] >= cls_start[k + 1]:
                    continue
                j = cls_members[ptr[k]]
            if count[j] >= slots[j] or not (pe[j] >= r and av[j] >= r) or rf[j] < ram_v:
                continue
            a = asum[j]
            u = min((a + r) / tot[j], 1.0)
            d = power(flat, delta, model[j], u)
            d = d - pnow[j] if stale or a == 0 else d - power(flat, delta, model[j], min(a / tot[j], 1.0))
            if not (d < best or (d == best and j < bj)):
                continue
            if a != 0 and r / tot[j] > limit:
                continue
            best = d
            bj = j
        if bj < 0:
            out[v] = -1
            return False
        out[v] = bj
        if not is_open[bj]:  # leaves its class of empty hosts, joins the open list
            is_open[bj] = True
            for k in range(K):
                if ptr[k] < cls_start[k + 1] and cls_members[ptr[k]] == bj:
                    ptr[k] += 1
                    break
            open_[n_open] = bj
            n_open += 1
        asum[bj] += r
        av[bj] -= r
        rf[bj] -= ram_v
        count[bj] += 1
        if count[bj] >= slots[bj] or av[bj] < rmin or rf[bj] < rammin:  # full for good
            for q in range(n_open):
                if open_[q] == bj:
                    open_[q] = open_[n_open - 1]
                    n_open -= 1
                    break
    return True


def shed(
    idx: Any,
    rank: Any,
    req: Any,
    ram: Any,
    vm_hlen: Any,
    vm_m: Any,
    vm_g: Any,
    t: int,
    total: float,
    mode: int,
    param: float,
    fallback: float,
    w: int,
    xbar: float,
    sxx: float,
    bw: float,
    interval: float,
) -> int:
    """How many VMs leave a host whose list is ``idx`` when the VM at list position i leaves as the
    rank[i]-th, each time until the host is no longer overloaded (mode 0 THR, 1 linear LR); all of
    them if it never is. Sums run over what is left in list order, as the planner's stats."""
    n = idx.shape[0]
    for k in range(n - 1):
        rs = 0.0
        m = 0.0
        g = 0.0
        hl = 0
        mr = -np.inf
        for i in range(n):
            if rank[i] > k:
                vm = idx[i]
                rs += req[vm]
                if mode == 1:
                    m += vm_m[t, vm]
                    g += vm_g[t, vm]
                    hl = max(hl, vm_hlen[vm])
                    mr = max(mr, ram[vm])
        ru = rs / total
        if mode == 0:
            over = ru > param
        elif hl < w:
            over = ru > fallback
        else:
            steps = math.ceil(mr / bw / interval)
            over = (m + g / sxx * (w + steps - xbar)) * param >= 1
        if not over:
            return k + 1
    return n


def run_initial(
    req: np.ndarray,
    ram: np.ndarray,
    G: np.ndarray,
    model: np.ndarray,
    slots: np.ndarray,
    limit: float,
    flat: np.ndarray,
    delta: np.ndarray,
    stale: bool,
) -> np.ndarray:
    """Compiled :func:`initial` over host rows G (11, H) (same layout as :func:`run`; avail,
    alloc_sum and ram_free are updated in place). Returns each VM's host; from the first VM that fits
    nowhere on, -1. All hosts must be empty (t=0). Empty hosts are grouped by every column the
    decision reads."""
    assert _initial is not None
    tot, pe, av, asum, rs, rf, _, _, pnow, _, _ = G
    cols = [tot, pe, av, rf, pnow, model.astype(np.float64), slots.astype(np.float64), asum, rs]
    start, members = identical_classes(np.stack(cols, axis=1))
    out = np.full(req.size, -1, dtype=np.int64)
    _initial(
        req, ram, tot, pe, av, asum, rf, pnow, np.ascontiguousarray(model, dtype=np.intp),
        np.ascontiguousarray(slots, dtype=np.int64), start, members, float(limit),
        flat, delta, bool(stale), out,
    )  # fmt: skip
    return out


def run_shed(*args: Any) -> int:
    """Compiled :func:`shed`, same arguments (the numpy form is _Planner.shed_count's fallback)."""
    assert _shed is not None
    return int(_shed(*args))


def _compile() -> None:
    """Replace the plain functions above by their compiled versions (module globals, so that
    numba resolves the calls between them at compile time and can cache them on disk)."""
    global _batch, _initial, _shed
    from numba import njit

    jit = njit(cache=True, nogil=True)
    g = globals()
    for name in ("power", "median_sorted", "spread"):
        g[name] = jit(g[name])
    _batch = jit(batch)
    _initial = jit(initial)
    _shed = jit(shed)


def _build() -> None:
    _compile()
    _warm()


_compiler = CompileOnce(_build)


def available() -> bool:
    """Compile (or load from cache) the kernel once; False when numba is missing or disabled."""
    return _compiler.ready() and _batch is not None


def _warm() -> None:
    """Trigger compilation with the argument types the planner uses."""
    i = np.zeros(1, dtype=np.intp)
    vm2 = np.zeros((2, 1))
    flat = np.linspace(80.0, 120.0, 22)
    hist, contrib = np.zeros((1, 30)), np.zeros((2, 1, 30))
    for mode in (1, 3):
        run(i, np.ones(1), np.ones(1), np.zeros(1), vm2, vm2, np.ones((11, 1)), i, i, flat, np.zeros(22),
            hist, contrib, mode, 0.8, 0.7, 10, 5.5, 82.5, 62.5, 300.0, False, True, True,
            np.zeros(1, dtype=np.intp))  # fmt: skip


def run(
    vms: np.ndarray,
    req: np.ndarray,
    ram: np.ndarray,
    vm_hlen: np.ndarray,
    vm_m: np.ndarray,
    vm_g: np.ndarray,
    G: np.ndarray,
    model: np.ndarray,
    ht: np.ndarray,
    flat: np.ndarray,
    delta: np.ndarray,
    hist: np.ndarray,
    contrib: np.ndarray,
    mode: int,
    param: float,
    fallback: float,
    w: int,
    xbar: float,
    sxx: float,
    bw: float,
    interval: float,
    check_ram: bool,
    stale: bool,
    all_or_nothing: bool,
    out: np.ndarray,
    classes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> bool:
    """One batch over the gathered host rows G (11, n) = total, pe, avail, alloc_sum, req_sum,
    ram_free, hlen, max_ram, p_now, lr_m, lr_g and histories ``hist`` (n, L) (IQR/MAD only);
    ``mode``: 0 THR, 1 linear LR, 2 IQR, 3 MAD. G and hist are updated in place; out[i] is the
    local host index or -1. ``classes``: (open, cls_start, cls_members) from
    :func:`empty_host_classes`; None scans every host."""
    assert _batch is not None
    tot, pe, av, asum, rs, rf, hl, mr, pnow, lm, lg = G
    if classes is None:
        none = np.zeros(0, dtype=np.int64)
        classes = (np.arange(tot.shape[0], dtype=np.int64), np.zeros(1, dtype=np.int64), none)
    return _batch(
        vms,
        req,
        ram,
        vm_hlen,
        vm_m,
        vm_g,
        tot,
        pe,
        av,
        asum,
        rs,
        rf,
        hl,
        mr,
        pnow,
        lm,
        lg,
        model,
        ht,
        flat,
        delta,
        hist,
        contrib,
        mode,
        param,
        fallback,
        w,
        xbar,
        sxx,
        bw,
        interval,
        check_ram,
        stale,
        all_or_nothing,
        out,
        *classes,
    )


def empty_host_classes(
    G: np.ndarray, model: np.ndarray, ht: np.ndarray, empty: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group the ``empty`` hosts of rows G (11, n) by every column the batch reads (G, power model,
    history type); the others are scanned one by one. Returns (open, cls_start, cls_members) for
    :func:`run`: scanning one empty host per class instead of thousands of identical switched-off
    hosts gives the same choices."""
    e = np.flatnonzero(empty)
    key = np.concatenate([G[:, e], model[e][None, :].astype(np.float64), ht[e][None, :].astype(np.float64)])
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
