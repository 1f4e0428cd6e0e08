"""Alibaba GPU 2023 reader: the real files match the README's counts; broken copies name file:line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import require_shared_data
from poolvisor.domain.errors import InvalidInputError
from poolvisor.traces.alibaba import NODE_FILE, POD_FILE, load_alibaba, read_nodes, read_pods


def test_real_trace_counts_and_columns() -> None:
    tr = load_alibaba(require_shared_data("alibaba-gpu-2023"))
    assert len(tr.nodes) == 1523
    assert len(tr.pods) == 8152
    assert int(tr.nodes.gpus.sum()) == 6212
    assert tr.nodes.names[0] == "openb-node-0000"
    # fractional pods ask for one GPU; multi-GPU pods ask for whole GPUs
    frac = tr.pods.gpu_milli < 1000
    assert np.all(tr.pods.num_gpu[frac & (tr.pods.num_gpu > 0)] == 1)
    assert np.all((tr.pods.num_gpu == 0) == (tr.pods.gpu_milli == 0))
    assert int(np.isnan(tr.pods.scheduled).sum()) == 897  # the Pending pods were never scheduled
    wl = tr.pods.to_workload()
    assert len(wl) == 8152 and wl.resources == ("cpu_milli", "memory_mib", "gpu_milli")
    assert np.all(np.diff(wl.arrival) >= 0) and np.all(wl.departure >= wl.arrival)
    np.testing.assert_array_equal(wl.demand[:, 2], wl.gpu_count * wl.gpu_milli)


def _broken_copy(tmp_path: Path, name: str, line: int, new: str) -> Path:
    src = require_shared_data("alibaba-gpu-2023")
    for f in (NODE_FILE, POD_FILE):
        shutil.copy(src / f, tmp_path / f)
    p = tmp_path / name
    lines = p.read_text().splitlines()
    lines[line - 1] = new
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.mark.parametrize(
    ("name", "line", "text", "expect"),
    [
        (POD_FILE, 5, "openb-pod-0003,6000,12288,1,460,,LS,Running,2690044,abc,2690044", "deletion_time"),
        (POD_FILE, 7, "openb-pod-0005,6000,12288,1,1460,,LS,Running,1,2,1", "gpu_milli"),
        (POD_FILE, 9, "openb-pod-0007,6000,12288,0,460,,LS,Running,1,2,1", "disagree"),
        (POD_FILE, 11, "openb-pod-0009,6000,12288,1,460,,LS,Running,50,10,1", "precedes"),
        (POD_FILE, 12, "openb-pod-0010,6000", "fields"),
        (NODE_FILE, 3, "openb-node-0001,32000,-5,0,", "memory_mib"),
        (NODE_FILE, 4, "openb-node-0000,32000,262144,0,", "duplicate"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path: Path, name: str, line: int, text: str, expect: str) -> None:
    p = _broken_copy(tmp_path, name, line, text)
    with pytest.raises(InvalidInputError) as ei:
        load_alibaba(tmp_path)
    assert f"{p}:{line}:" in ei.value.message
    assert expect in ei.value.message


def test_missing_column_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "pods.csv"
    p.write_text("name,cpu_milli\nx,1\n")
    with pytest.raises(InvalidInputError, match=r"pods\.csv:1: header lacks column"):
        read_pods(p)
    with pytest.raises(InvalidInputError, match="not found"):
        read_nodes(tmp_path / "nope.csv")
