"""Reading a lab guest's serial console: its marker, its counter, and the gaps in the counter.

The guest's console is a file on the host (libvirt `<serial type='file' append='on'>`), written
by whichever QEMU runs the guest: the source's before a migration, the destination's after. A
`ConsoleWatch` polls it every few milliseconds and stamps each counter line with the *host's*
monotonic clock when it appeared: a paused guest cannot see its own pause (its clock stops with
it), the host can. The largest gap between two consecutive ticks, less the usual interval, is
the downtime a user of the guest saw.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from poolvisor.lab.guest import DHCP, MARKER, TICK

_TICK_RE = re.compile(rf"{TICK} (\d+)")
_MARKER_RE = re.compile(rf"{MARKER} (\S+)")
_DHCP_RE = re.compile(rf"{DHCP} (\S+) (\S+) router=(\S+)")


def markers(path: Path) -> list[str]:
    """Guest ids of the marker lines in the console file, in order (one per boot)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return _MARKER_RE.findall(text)


def dhcp_leases(path: Path) -> list[tuple[str, str, str]]:
    """(interface, address/prefix, router or 'none') of every address the guest got by DHCP."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [(i, a, r) for i, a, r in _DHCP_RE.findall(text)]


def last_tick(path: Path) -> int | None:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    found = _TICK_RE.findall(text[-4096:])
    return int(found[-1]) if found else None


def ticks_after(path: Path, offset: int) -> list[int]:
    """Counter values written after byte `offset` of the console file (e.g. since a restore)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    return [int(x) for x in _TICK_RE.findall(text)]


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    """Poll `predicate()` until true; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(poll_s)


def wait_marker(path: Path, guest_id: str, timeout_s: float = 60.0, boots: int = 1) -> None:
    """Wait until the guest `guest_id` has printed its marker `boots` times (boots, restarts)."""
    wait_for(lambda: markers(path).count(guest_id) >= boots, timeout_s,
             f"marker {MARKER} {guest_id} (boot {boots}) in {path}")


def wait_ticks(path: Path, after: int, timeout_s: float = 30.0) -> int:
    """Wait until the counter passes `after`; return the last value seen."""
    seen: list[int] = []

    def passed() -> bool:
        t = last_tick(path)
        if t is not None and t > after:
            seen.append(t)
            return True
        return False

    wait_for(passed, timeout_s, f"guest counter past {after} in {path}")
    return seen[-1]


@dataclass(frozen=True)
class Gap:
    start: float  # host monotonic time of the tick before the gap
    end: float
    before: int   # counter values on each side
    after: int

    @property
    def seconds(self) -> float:
        return self.end - self.start


class ConsoleWatch:
    """Stamp every counter line of a console file with the host's clock, in a background thread."""

    def __init__(self, path: Path, poll_s: float = 0.002):
        self.path = path
        self.poll_s = poll_s
        self.ticks: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"console:{path.name}", daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> ConsoleWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        offset, partial = 0, b""
        while not self._stop.is_set():
            try:
                with open(self.path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except FileNotFoundError:
                chunk = b""
            now = time.monotonic()
            if chunk:
                offset += len(chunk)
                lines = (partial + chunk).split(b"\n")
                partial = lines.pop()
                with self._lock:
                    for line in lines:
                        m = _TICK_RE.search(line.decode(errors="replace"))
                        if m:
                            self.ticks.append((now, int(m.group(1))))
            self._stop.wait(self.poll_s)

    def snapshot(self) -> list[tuple[float, int]]:
        with self._lock:
            return list(self.ticks)

    def interval(self) -> float:
        """The guest's usual tick interval as the host sees it (median gap)."""
        t = self.snapshot()
        gaps = [b[0] - a[0] for a, b in zip(t, t[1:], strict=False)]
        return statistics.median(gaps) if gaps else 0.0

    def largest_gap(self, start: float, end: float) -> Gap | None:
        """The largest gap between consecutive ticks that overlaps [start, end]."""
        t = self.snapshot()
        best: Gap | None = None
        for (t0, n0), (t1, n1) in zip(t, t[1:], strict=False):
            if t1 < start or t0 > end:
                continue
            if best is None or t1 - t0 > best.seconds:
                best = Gap(t0, t1, n0, n1)
        return best

    def lost_ticks(self) -> list[tuple[int, int]]:
        """Places where the counter did not go up by one (a restarted or rolled-back guest)."""
        t = self.snapshot()
        return [(a[1], b[1]) for a, b in zip(t, t[1:], strict=False) if b[1] != a[1] + 1]
