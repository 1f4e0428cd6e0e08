"""Google 2011 samples: machine events -> fleet, task events -> instances, usage; bad rows name file:line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import require_shared_data
from poolvisor.domain.errors import InvalidInputError
from poolvisor.traces.google import load_google, read_machine_events, read_task_events


def test_samples() -> None:
    tr = load_google(require_shared_data("google-2011-samples"))
    f = tr.fleet
    assert f.machine_id.tolist() == [10, 20, 30, 40, 50, 60]
    assert np.allclose(f.cpu, 0.5) and np.allclose(f.memory, 0.2493)
    # machine 30 is removed at 30 ms and added back at 50 ms
    down = np.flatnonzero(~f.change_up)
    assert down.size == 1 and f.machine_id[f.change_machine[down[0]]] == 30
    assert f.change_time[down[0]] == pytest.approx(0.03)
    wl = tr.tasks.to_workload()
    assert len(wl) == 11  # SCHEDULE events
    # job 2 task 0: scheduled at 12 s, evicted at 30 s, rescheduled at 42 s, finished at 60 s
    starts = wl.arrival.tolist()
    assert (12.0 in starts) and (42.0 in starts)
    i12, i42 = starts.index(12.0), starts.index(42.0)
    assert wl.departure[i12] == 30.0 and wl.departure[i42] == 60.0
    assert np.all(wl.departure >= wl.arrival)
    assert tr.usage is not None and len(tr.usage) == 11 and tr.usage.cpu_rate[0] == pytest.approx(0.1)


def test_headerless_gz_and_never(tmp_path: Path) -> None:
    import gzip

    p = tmp_path / "part-00000-of-00500.csv.gz"
    with gzip.open(p, "wt") as fh:
        fh.write("0,,7,0,,1,u,0,0,0.5,0.25,0,0\n9223372036854775807,,7,0,,4,u,0,0,0.5,0.25,0,0\n")
    ev = read_task_events(p)
    assert len(ev) == 2 and np.isinf(ev.time[1])
    wl = ev.to_workload()
    assert len(wl) == 1 and np.isinf(wl.departure[0])


@pytest.mark.parametrize(
    ("name", "line", "text", "expect"),
    [
        ("task-events-sample-1.csv", 4, "0,,2,0,1,x,RyCO/1PCdI6fV/w+5a72xg=,3,9,0.03125,0.08691,0.22745,0",
         "event_type"),
        ("task-events-sample-1.csv", 6, "0,,2,2,2", "fields"),
        ("task-events-sample-1.csv", 8, "0,,4,0,3,0,X,3,9,-0.1875,0.09839,0.4306,0", "cpu_request"),
        ("machine-events-sample-1.csv", 3, "0,20,7,p,0.5,0.2493", "event_type"),
        ("task-usage-sample-1.csv", 2, "50000000,10000000,1,0,0,0.1,0.20,0.08,0.0012,0.002,0.07,0.00286,"
         "0.00019,0.0397,0.0004,2.45,0.0072,0,1,0", "ends before it starts"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path: Path, name: str, line: int, text: str, expect: str) -> None:
    src = require_shared_data("google-2011-samples")
    for f in src.iterdir():
        shutil.copy(f, tmp_path / f.name)
    p = tmp_path / name
    lines = p.read_text().splitlines()
    lines[line - 1] = text
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInputError) as ei:
        load_google(tmp_path)
    assert f"{p}:{line}:" in ei.value.message
    assert expect in ei.value.message


def test_machine_events_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        read_machine_events(tmp_path / "machine_events.csv")
