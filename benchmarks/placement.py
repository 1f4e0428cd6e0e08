"""Placement throughput at scale: `python benchmarks/placement.py [--hosts N] [--requests N] [...]`.

Thin wrapper over `poolvisor bench placement` (same options, same output); run it a few times on a
shared machine and keep the best and the typical figure.
"""

from __future__ import annotations

import sys

from poolvisor.cli.errors import run_guarded
from poolvisor.cli.main import app


def main(argv: list[str]) -> None:
    run_guarded(lambda: app(["bench", "placement", *argv], standalone_mode=True))


if __name__ == "__main__":
    main(sys.argv[1:])
