"""The .vbp reader: real layout, expansion of demands, and errors naming file and line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.traces.vbp import iter_vbp_texts, parse_vbp, read_vbp

GOOD = "2\n10 8\n3\n5 4 2\n10 8 1\n0 1 3\n"


def test_parse_expands_demands() -> None:
    inst = parse_vbp(GOOD, "x.vbp")
    assert inst.name == "x"
    assert inst.capacity.tolist() == [10, 8]
    assert inst.items.shape == (6, 2)
    assert inst.items.tolist() == [[5, 4], [5, 4], [10, 8], [0, 1], [0, 1], [0, 1]]
    assert inst.demand.tolist() == [2, 1, 3]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", 1, "unexpected end of file"),
        ("x\n", 1, "integers"),
        ("2\n10\n", 2, "expected 2 numbers"),
        ("2\n10 0\n1\n1 1 1\n", 2, "capacities must be > 0"),
        ("2\n10 10\n2\n1 1 1\n", 5, "unexpected end of file"),
        ("2\n10 10\n1\n11 1 1\n", 4, "larger than the bin capacity"),
        ("2\n10 10\n1\n1 -1 1\n", 4, ">= 0"),
        ("2\n10 10\n1\n1 1\n", 4, "expected 3 numbers"),
        ("2\n10 10\n1\n1 1 1\n7 7 7\n", 5, "unexpected data"),
    ],
)
def test_bad_input_names_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(InvalidInputError) as e:
        parse_vbp(text, "bad.vbp")
    assert e.value.message.startswith(f"bad.vbp:{line}:"), e.value.message
    assert fragment in e.value.message


def test_read_file_and_directory(tmp_path: Path) -> None:
    (tmp_path / "a.vbp").write_text(GOOD)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.vbp").write_text(GOOD)
    assert read_vbp(tmp_path / "a.vbp").items.shape == (6, 2)
    assert [n for n, _, _ in iter_vbp_texts(tmp_path)] == ["a", "b"]


def test_real_archive_layout(shared_data: Path) -> None:
    archive = shared_data / "vbp" / "Panigrahy_instances.tar.gz"
    names = []
    for name, source, text in iter_vbp_texts(archive):
        names.append(name)
        if len(names) <= 3:
            inst = parse_vbp(text, source, name)
            assert inst.items.shape[1] == inst.capacity.size in (3, 5, 10)
            assert np.all(inst.items <= inst.capacity)
    assert len(names) == 1620
