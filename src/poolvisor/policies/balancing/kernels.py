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
import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

_batch: Callable[..., bool] | None = None
_state = {"tried": False}


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
) -> bool:
    n = tot.shape[0]
    buf = np.empty(hist.shape[1])
    for i in range(vms.shape[0]):
        vm = vms[i]
        r = req[vm]
        ram_v = ram[vm]
        best = np.inf
        bj = -1
        for j in range(n):
            if not (pe[j] >= r and av[j] >= r):
                continue
            if check_ram and rf[j] < ram_v:
                continue
            a = asum[j]
            u = min((a + r) / tot[j], 1.0)
            d = power(flat, delta, model[j], u)
            if stale:
                d = d - pnow[j]
            elif a != 0:
                d = d - power(flat, delta, model[j], min(a / tot[j], 1.0))
            else:
                d = d - pnow[j]
            if not d < best:  # cannot win (ties go to the first host): skip the overload check
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
        asum[bj] += r  # a suitable VM fits: it gets its (uncapped = capped) request
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


def _compile() -> None:
    """Replace the plain functions above by their compiled versions (module globals, so that
    numba resolves the calls between them at compile time and can cache them on disk)."""
    global _batch
    from numba import njit

    jit = njit(cache=True, nogil=True)
    g = globals()
    for name in ("power", "median_sorted", "spread"):
        g[name] = jit(g[name])
    _batch = jit(batch)


def available() -> bool:
    """Compile (or load from cache) the kernel once; False when numba is missing or disabled."""
    if not _state["tried"]:
        _state["tried"] = True
        if os.environ.get("POOLVISOR_NO_JIT") == "1":
            return False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _compile()
                _warm()
        except ImportError:
            return False
    return _batch is not None


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
) -> bool:
    """One batch over the gathered host rows G (11, n) = total, pe, avail, alloc_sum, req_sum,
    ram_free, hlen, max_ram, p_now, lr_m, lr_g and histories ``hist`` (n, L) (IQR/MAD only);
    ``mode``: 0 THR, 1 linear LR, 2 IQR, 3 MAD. G and hist are updated in place; out[i] is the
    local host index or -1."""
    assert _batch is not None
    tot, pe, av, asum, rs, rf, hl, mr, pnow, lm, lg = G
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
    )
