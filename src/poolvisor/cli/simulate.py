"""`poolvisor simulate ...`: trace-driven simulations, one command per trace format."""

from __future__ import annotations

import typer

from poolvisor.cli import simulate_online, simulate_planetlab

app = typer.Typer(help="Simulate placement and consolidation policies on traces.", no_args_is_help=True)
simulate_online.register(app)  # alibaba, azure, google: online packing on a fixed fleet
simulate_planetlab.register(app)  # planetlab: dynamic consolidation, CloudSim-compatible mode
