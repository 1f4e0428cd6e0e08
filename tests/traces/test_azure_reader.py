"""Azure V1 flavour arrivals: tokens, batches, durations and censoring; broken copies name file:line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import require_shared_data
from poolvisor.domain.errors import InvalidInputError
from poolvisor.traces.azure import read_azure, read_flavours, read_interval_map

FILES = ("v1.test.txt", "v1.test.c2591400.txt", "flav_map.txt", "v1.interval_map.txt")


def test_real_trace() -> None:
    tr = read_azure(require_shared_data("azure-v1-flavour-arrivals"))
    assert len(tr) == 410276
    assert int(tr.censored.sum()) == 23311
    assert tr.end_s == 2591400.0
    assert tr.flavours.letters[0] == "a" and tr.flavours.vcpu[0] == 1 and tr.flavours.memory_gb[0] == 0.75
    assert tr.time[0] == 2100000 and tr.time[-1] == 2591100
    # first bin: "m,m,m,|,b,..." -> three 8 vCPU / 14 GB VMs of one tenant, then a new batch
    m = tr.flavours.letters.index("m")
    assert tr.flavour[:3].tolist() == [m, m, m] and tr.batch[2] == tr.batch[0] != tr.batch[3]
    # durations: "U3" = bin 3 = [900, 1200) s -> middle 1050 s; censored VMs never leave
    assert tr.durations()[0] == 1050.0 and tr.durations("low")[0] == 900.0
    assert np.all(np.isinf(tr.durations()[tr.censored]))
    # censoring is consistent: a censored VM's bin covers the time it was observed until the end
    obs = tr.end_s - tr.time[tr.censored]
    k = tr.duration_bin[tr.censored]
    assert np.all((tr.bin_low[k] <= obs) & (obs < tr.bin_high[k] + 300))
    wl = tr.to_workload()
    assert wl.demand.shape == (410276, 2) and np.all(wl.departure >= wl.arrival)


def _copy(tmp_path: Path) -> Path:
    src = require_shared_data("azure-v1-flavour-arrivals")
    for f in FILES:
        shutil.copy(src / f, tmp_path / f)
    return tmp_path


def _edit(p: Path, line: int, fn: object) -> None:
    lines = p.read_text().splitlines()
    lines[line - 1] = fn(lines[line - 1])  # type: ignore[operator]
    p.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("name", "line", "fn", "expect"),
    [
        ("v1.test.txt", 3, lambda s: s.replace("b", "z", 1), "unknown flavour 'z'"),
        ("v1.test.c2591400.txt", 4, lambda s: s.replace("U", "X", 1), "is not U<bin> or C<bin>"),
        ("v1.test.c2591400.txt", 5, lambda s: s.replace("U", "U99", 1), "not in v1.interval_map.txt"),
        ("v1.test.c2591400.txt", 6, lambda s: s.rstrip(",") + ",U1", "tokens but"),
        ("v1.test.txt", 7, lambda s: "abc " + s.split(" ", 1)[1], "bin time"),
        ("v1.test.txt", 8, lambda s: "2100000 " + s.split(" ", 1)[1], "not after the previous bin"),
        ("flav_map.txt", 2, lambda s: "1;1.75 b", "expected '<vcpu>,<memory GB> <letter>'"),
        ("v1.interval_map.txt", 3, lambda s: "600 x", "expected two integers"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path: Path, name: str, line: int, fn: object, expect: str) -> None:
    d = _copy(tmp_path)
    _edit(d / name, line, fn)
    with pytest.raises(InvalidInputError) as ei:
        read_azure(d)
    assert f"{d / name}:{line}:" in ei.value.message
    assert expect in ei.value.message


def test_small_files(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("2,4 x\n4,8 y\n")
    fl = read_flavours(tmp_path / "f.txt")
    assert fl.letters == ("x", "y") and fl.vcpu.tolist() == [2, 4]
    (tmp_path / "i.txt").write_text("0 0\n300 1\n600 1\n")
    lo, hi = read_interval_map(tmp_path / "i.txt")
    assert lo.tolist() == [0, 300] and hi.tolist() == [300, 900]
