"""`poolvisor bench ...`: performance figures printed as a table or JSON (never asserted in tests).

Each area adds its own command here, delegating to a function in its own module.
"""

from __future__ import annotations

import typer

app = typer.Typer(help="Benchmarks: print measured figures and ratios.", no_args_is_help=True)
