"""Simulator at scale: `python benchmarks/sim_scale.py [DAY_DIR...] [--vms N] [--hosts N] [--policy P]`.

Thin wrapper over `poolvisor bench simulate-scale` (same options, same output): 100,000 synthetic
VMs resampled from PlanetLab shapes on 10,000 hosts for one day; prints wall time and peak RSS.
"""

from __future__ import annotations

import sys

from poolvisor.cli.errors import run_guarded
from poolvisor.cli.main import app


def main(argv: list[str]) -> None:
    run_guarded(lambda: app(["bench", "simulate-scale", *argv], standalone_mode=True))


if __name__ == "__main__":
    main(sys.argv[1:])
