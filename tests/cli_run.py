"""Run the `poolvisor` CLI in this process as a user's shell would: the exit code, output on capsys."""

from __future__ import annotations

from poolvisor.cli.errors import run_guarded
from poolvisor.cli.main import app


def run_cli(argv: list[str]) -> int:
    """The exit code of `poolvisor ARGV` (0 when the command returns without exiting)."""
    try:
        run_guarded(lambda: app(argv, standalone_mode=True))
    except SystemExit as e:
        return int(e.code or 0)
    return 0
