"""PlanetLab reader: sorted names (spaces allowed), and bad input reported as file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.traces.planetlab import read_planetlab


def _write(d: Path, name: str, values: list[str]) -> Path:
    p = d / name
    p.write_text("\n".join(values) + "\n")
    return p


def test_reads_sorted_names_with_spaces(tmp_path: Path) -> None:
    _write(tmp_path, "b host", ["10"] * 288)
    _write(tmp_path, "a_host", [str(i % 101) for i in range(288)])
    _write(tmp_path, "B", ["0"] * 288)
    tr = read_planetlab(tmp_path)
    assert tr.names == ("B", "a_host", "b host")  # byte-wise order, like sorted(os.listdir())
    assert tr.util.shape == (3, 288)
    assert tr.util[1, :3].tolist() == [0.0, 1.0, 2.0]
    assert tr.util[2].max() == 10.0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["5"] * 10 + ["x"] + ["5"] * 277, ":11: expected an integer"),
        (["5"] * 287 + ["101"], ":288: CPU percentage 101 outside 0..100"),
        (["5"] * 3 + ["-1"] + ["5"] * 284, ":4: CPU percentage -1"),
        (["5"] * 289, ":289: more than 288 values"),
        (["5"] * 100, "100 values, expected 288"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path: Path, values: list[str], message: str) -> None:
    _write(tmp_path, "good", ["1"] * 288)
    bad = _write(tmp_path, "my vm", values)
    with pytest.raises(InvalidInputError) as e:
        read_planetlab(tmp_path)
    assert str(bad) in e.value.message
    assert message in e.value.message


def test_missing_or_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        read_planetlab(tmp_path / "nope")
    with pytest.raises(InvalidInputError, match="no trace files"):
        read_planetlab(tmp_path)


def test_binary_file(tmp_path: Path) -> None:
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidInputError, match="bin"):
        read_planetlab(tmp_path)
