"""Azure Public Dataset V1 VM arrivals in the flavour-sequence form of huaweicloud/trace_generation_rnn.

Files (one directory):

* ``v1.test.txt``: one line per 300 s bin, ``<bin start s> <token>,<token>,...``; a token is a
  flavour letter (one VM) or ``|`` which closes one tenant's batch.
* ``v1.test.c<END>.txt``: the same layout with one duration token per VM: ``U<k>`` (the VM ended,
  uncensored) or ``C<k>`` (still running when the data ends at ``<END>`` s: censored), ``k`` is a
  bin index of ``v1.interval_map.txt``.
* ``v1.interval_map.txt``: ``<duration s> <k>`` rows: the 300 s-granular durations grouped into bins.
* ``flav_map.txt``: ``<vcpu>,<memory GB> <letter>``.

A VM's duration is the middle of its bin's range (``duration="mid"``; "low"/"high" are the ends);
censored VMs never depart within the simulation (their departure is ``inf``).
Derived from Azure's vmtable (Cortez et al., SOSP 2017), CC-BY-4.0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from poolvisor.domain.errors import InvalidInputError
from poolvisor.traces.csvcols import open_text
from poolvisor.traces.workload import Workload

ARRIVALS = "v1.test.txt"
FLAVOURS = "flav_map.txt"
INTERVALS = "v1.interval_map.txt"
BIN_S = 300.0
RESOURCES = ("vcpu", "memory_gb")


@dataclass(frozen=True)
class Flavours:
    letters: tuple[str, ...]
    vcpu: np.ndarray  # (F,)
    memory_gb: np.ndarray  # (F,)


@dataclass(frozen=True)
class AzureArrivals:
    time: np.ndarray  # (n,) bin start, s
    flavour: np.ndarray  # (n,) index into flavours.letters
    batch: np.ndarray  # (n,) tenant batch id (consecutive VMs between '|')
    duration_bin: np.ndarray  # (n,) index into the interval map
    censored: np.ndarray  # (n,) bool
    flavours: Flavours
    bin_low: np.ndarray  # (K,) shortest duration in bin k, s
    bin_high: np.ndarray  # (K,) end of bin k's range, s
    end_s: float  # where the data stops (censoring time)

    def __len__(self) -> int:
        return int(self.time.size)

    def durations(self, how: Literal["mid", "low", "high"] = "mid") -> np.ndarray:
        lo, hi = self.bin_low[self.duration_bin], self.bin_high[self.duration_bin]
        d = {"mid": (lo + hi) / 2.0, "low": lo, "high": hi}[how]
        return np.where(self.censored, np.inf, d)

    def to_workload(self, how: Literal["mid", "low", "high"] = "mid", name: str = "azure-v1") -> Workload:
        demand = np.stack([self.flavours.vcpu[self.flavour], self.flavours.memory_gb[self.flavour]], 1)
        return Workload(
            name=name,
            resources=RESOURCES,
            arrival=self.time.astype(np.float64),
            departure=self.time + self.durations(how),
            demand=demand,
            kind=self.flavour.astype(np.int64),
            kind_names=self.flavours.letters,
        )


def _lines(path: Path) -> list[str]:
    with open_text(path) as fh:
        try:
            return fh.read().splitlines()
        except UnicodeDecodeError as e:
            raise InvalidInputError(f"{path}: not UTF-8 text ({e.reason})") from None


def read_flavours(path: str | Path) -> Flavours:
    p = Path(path)
    letters: list[str] = []
    vals: list[tuple[float, float]] = []
    for i, raw in enumerate(_lines(p), start=1):
        s = raw.strip()
        if not s:
            continue
        m = re.fullmatch(r"([0-9.]+)\s*,\s*([0-9.]+)\s+(\S+)", s)
        if not m:
            raise InvalidInputError(f"{p}:{i}: expected '<vcpu>,<memory GB> <letter>', got {s!r}")
        try:
            cpu, mem = float(m.group(1)), float(m.group(2))
        except ValueError:
            raise InvalidInputError(f"{p}:{i}: bad numbers in {s!r}") from None
        if cpu <= 0 or mem <= 0:
            raise InvalidInputError(f"{p}:{i}: vcpu and memory must be > 0")
        if m.group(3) in letters or m.group(3) == "|":
            raise InvalidInputError(f"{p}:{i}: duplicate or reserved flavour {m.group(3)!r}")
        letters.append(m.group(3))
        vals.append((cpu, mem))
    if not letters:
        raise InvalidInputError(f"{p}: no flavours")
    v = np.array(vals)
    return Flavours(tuple(letters), v[:, 0], v[:, 1])


def read_interval_map(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per bin index: the range [low, high) of durations (s) mapped to that bin."""
    p = Path(path)
    rows: list[tuple[int, int]] = []
    for i, raw in enumerate(_lines(p), start=1):
        parts = raw.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise InvalidInputError(f"{p}:{i}: expected '<seconds> <bin>', got {raw.strip()!r}")
        try:
            s, k = int(parts[0]), int(parts[1])
        except ValueError:
            raise InvalidInputError(f"{p}:{i}: expected two integers, got {raw.strip()!r}") from None
        if s < 0 or k < 0:
            raise InvalidInputError(f"{p}:{i}: values must be >= 0")
        rows.append((s, k))
    if not rows:
        raise InvalidInputError(f"{p}: empty interval map")
    a = np.array(rows, dtype=np.int64)
    k = int(a[:, 1].max()) + 1
    low = np.full(k, np.inf)
    high = np.full(k, -np.inf)
    np.minimum.at(low, a[:, 1], a[:, 0].astype(np.float64))
    np.maximum.at(high, a[:, 1], a[:, 0].astype(np.float64) + BIN_S)
    missing = np.flatnonzero(~np.isfinite(low))
    if missing.size:
        raise InvalidInputError(f"{p}: bin {int(missing[0])} has no durations")
    return low, high


@dataclass(frozen=True)
class _TokenFile:
    times: np.ndarray  # (L,) bin start per line
    lines: np.ndarray  # (L,) file line number per bin
    tokens: np.ndarray  # (T,) object: every token of the file, in order
    counts: np.ndarray  # (L,) tokens per line


def _tokens(path: Path) -> _TokenFile:
    times: list[int] = []
    linenos: list[int] = []
    toks: list[str] = []
    counts: list[int] = []
    for i, raw in enumerate(_lines(path), start=1):
        s = raw.strip()
        if not s:
            continue
        head, _, rest = s.partition(" ")
        try:
            t = int(head)
        except ValueError:
            raise InvalidInputError(
                f"{path}:{i}: line must start with the bin time in seconds, got {head!r}"
            ) from None
        if times and t <= times[-1]:
            raise InvalidInputError(f"{path}:{i}: bin time {t} is not after the previous bin ({times[-1]})")
        parts = [x for x in rest.replace(" ", "").split(",") if x]
        times.append(t)
        linenos.append(i)
        counts.append(len(parts))
        toks.extend(parts)
    if not times:
        raise InvalidInputError(f"{path}: no arrival lines")
    return _TokenFile(np.array(times, dtype=np.int64), np.array(linenos, dtype=np.int64),
                      np.array(toks, dtype=object), np.array(counts, dtype=np.int64))


def _duration_file(d: Path, arrivals: str) -> Path:
    stem = arrivals[: -len(".txt")] if arrivals.endswith(".txt") else arrivals
    found = sorted(d.glob(f"{stem}.c*.txt"))
    if not found:
        raise InvalidInputError(f"{d}: no duration file {stem}.c<END>.txt next to {arrivals}")
    return found[0]


def read_azure(directory: str | Path, arrivals: str = ARRIVALS) -> AzureArrivals:
    d = Path(directory)
    if not d.is_dir():
        raise InvalidInputError(f"Azure trace directory not found: {d}")
    flav = read_flavours(d / FLAVOURS)
    low, high = read_interval_map(d / INTERVALS)
    apath = d / arrivals
    dpath = _duration_file(d, arrivals)
    m = re.search(r"\.c(\d+)\.txt$", dpath.name)
    af, df = _tokens(apath), _tokens(dpath)
    at, al, atok, acount = af.times, af.lines, af.tokens, af.counts
    dt, dl, dtok, dcount = df.times, df.lines, df.tokens, df.counts
    k = min(at.size, dt.size)
    differ = np.flatnonzero(at[:k] != dt[:k])
    if differ.size or at.size != dt.size:
        first = int(differ[0]) if differ.size else k
        line_a = int(al[min(first, al.size - 1)])
        line_d = int(dl[min(first, dl.size - 1)])
        raise InvalidInputError(f"{dpath}:{line_d}: bins do not match {apath}:{line_a}")
    mism = np.flatnonzero(acount != dcount)
    if mism.size:
        i = int(mism[0])
        raise InvalidInputError(
            f"{dpath}:{int(dl[i])}: {int(dcount[i])} tokens but {apath}:{int(al[i])} has {int(acount[i])}"
        )
    line_of_tok = np.repeat(np.arange(at.size), acount)
    a_sep = atok == "|"
    d_sep = dtok == "|"
    off = np.flatnonzero(a_sep != d_sep)
    if off.size:
        i = int(line_of_tok[off[0]])
        raise InvalidInputError(
            f"{dpath}:{int(dl[i])}: batch separators '|' do not line up with {apath}:{int(al[i])}"
        )
    vm = ~a_sep
    letters = np.array(flav.letters, dtype=object)
    order = np.argsort(letters)
    avm = atok[vm]
    pos = np.searchsorted(letters[order], avm)
    pos = np.minimum(pos, letters.size - 1)
    fl = order[pos]
    unknown = np.flatnonzero(letters[fl] != avm)
    vm_line = line_of_tok[vm]
    if unknown.size:
        j = int(unknown[0])
        raise InvalidInputError(
            f"{apath}:{int(al[vm_line[j]])}: unknown flavour {avm[j]!r} (not in {FLAVOURS})"
        )
    dvm = dtok[vm]
    kind = np.array([s[:1] for s in dvm], dtype=object)
    num = np.array([s[1:] for s in dvm], dtype=object)
    okk = (kind == "U") | (kind == "C")
    okn = np.array([s.isdigit() for s in num], dtype=bool)
    bad = np.flatnonzero(~(okk & okn))
    if bad.size:
        j = int(bad[0])
        raise InvalidInputError(
            f"{dpath}:{int(dl[vm_line[j]])}: duration token {dvm[j]!r} is not U<bin> or C<bin>"
        )
    kbin = num.astype(np.int64)
    over = np.flatnonzero(kbin >= low.size)
    if over.size:
        j = int(over[0])
        raise InvalidInputError(
            f"{dpath}:{int(dl[vm_line[j]])}: duration bin {int(kbin[j])} not in {INTERVALS}"
        )
    batch = np.cumsum(a_sep)[vm]
    end = float(m.group(1)) if m else float(at[-1]) + BIN_S
    return AzureArrivals(
        time=at[vm_line].astype(np.float64),
        flavour=fl.astype(np.int64),
        batch=batch.astype(np.int64),
        duration_bin=kbin,
        censored=kind == "C",
        flavours=flav,
        bin_low=low,
        bin_high=high,
        end_s=end,
    )
