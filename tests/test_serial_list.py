"""tests/serial.txt names tests that exist: a stale or mistyped entry would let a load or kill -9
test run beside another worker's tests (make test's parallel part) without anyone noticing."""

from __future__ import annotations

from pathlib import Path

from conftest import SERIAL

ROOT = Path(__file__).resolve().parents[1]


def test_every_serial_entry_names_an_existing_test() -> None:
    assert SERIAL
    for entry in SERIAL:
        path, _, name = entry.partition("::")
        assert (ROOT / path).exists(), entry
        if name:
            assert f"def {name}" in (ROOT / path).read_text(), entry
