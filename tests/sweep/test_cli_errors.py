"""`poolvisor sweep` rejects bad input with one line and exit code 1, before running anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolvisor.cli.errors import run_guarded
from poolvisor.cli.main import app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--traces", "/nonexistent-day", "--policies", "thr-mmt"], "trace directory not found"),
        (["--policies", "thr-mmt", "--params", "0.8,x"], "not a number"),
        (["--policies", "thr-mmt", "--params", "iqr-mmt=1.5"], "not in --policies"),
        (["--policies", "thr-mmt,", "--seeds", "0"], "comma-separated"),
        (["--policies", "thr-mmt", "--seeds", "a"], "not an integer"),
        (["--policies", "npa", "--params", "npa=1"], "takes no parameter"),
        (["--policies", "thr-mmt", "--compat", "ns3"], "--compat"),
        (["--policies", "thr-mmt,best-guess"], "unknown policy 'best-guess'"),
        (["--policies", "thr-mmt", "--workers", "2", "--dask", "tcp://127.0.0.1:1"], "exclusive"),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    if "--traces" not in args:
        args = ["--traces", str(tmp_path), *args]
    argv = ["sweep", *args, "--out", str(tmp_path / "r.csv")]
    with pytest.raises(SystemExit) as exit_info:
        run_guarded(lambda: app(argv, standalone_mode=True))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("poolvisor: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r.csv").exists()
