"""bench api reads servers' CPU from /proc including their worker processes (serve --workers)."""

from __future__ import annotations

import subprocess
import sys
import time

from poolvisor.bench.api import children, cpu_seconds

SPIN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\ntime.sleep(60)"
PARENT = f"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", {SPIN!r}])
print(child.pid, flush=True)
time.sleep(60)
"""


def test_cpu_seconds_counts_live_children():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert children(parent.pid) == [child]
        deadline = time.monotonic() + 30
        while cpu_seconds(child) < 0.55 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cpu_seconds(parent.pid) >= cpu_seconds(child) >= 0.55  # the parent alone idles
    finally:
        for pid in [*children(parent.pid), parent.pid]:
            subprocess.run(["kill", "-9", str(pid)], check=False)
        parent.wait(10)
        assert parent.stdout is not None
        parent.stdout.close()
    assert cpu_seconds(parent.pid) == 0.0  # gone
