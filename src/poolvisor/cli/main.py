"""The `poolvisor` command: sub-commands are registered explicitly, one module per topic.

`poolvisor --help` groups them in panels the way a user meets them (the README's order): run the
server, manage the pool through it, offline tools, maintenance. ORDER fixes the order within and
across panels (Typer would list plain commands before groups); a command missing from ORDER goes
after the listed ones, in its own panel. A new group registers with one of the PANEL_* names (a
`token` group belongs to PANEL_POOL; its place in ORDER is reserved).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from poolvisor import __version__
from poolvisor.cli import alert as alert_cli
from poolvisor.cli import backup as backup_cli
from poolvisor.cli import bench, flavor, host, pool, project, sim, simulate, sweep, task, vm, whatif
from poolvisor.cli import check as check_cli
from poolvisor.cli import controller as controller_cli
from poolvisor.cli import events as events_cli
from poolvisor.cli import ha as ha_cli
from poolvisor.cli import ip as ip_cli
from poolvisor.cli import leader as leader_cli
from poolvisor.cli import memory as memory_cli
from poolvisor.cli import network as network_cli
from poolvisor.cli import pack as pack_cli
from poolvisor.cli import routing as routing_cli
from poolvisor.cli import serve as serve_cli
from poolvisor.cli import simulate_memory as simulate_memory_cli
from poolvisor.cli import storage as storage_cli
from poolvisor.cli import token as token_cli
from poolvisor.cli.entry import run_app
from poolvisor.cli.errors import run_guarded

PANEL_SERVER = "Run the server"
PANEL_POOL = "Manage the pool (client of the REST API)"
PANEL_OFFLINE = "Offline tools (no server needed)"
PANEL_MAINTENANCE = "Maintenance"
ORDER = (
    "serve",
    "host", "vm", "pool", "task", "flavor", "project", "token", "network", "ip", "router", "route",
    "storage", "storage-pool", "volume", "backup-target", "backup", "events", "alert", "controller", "ha",
    "leader", "sim",
    "simulate", "sweep", "whatif", "pack", "bench",
    "check", "version",
)


class OrderedGroup(TyperGroup):
    """Lists sub-commands in ORDER (unknown ones last, in registration order)."""

    def list_commands(self, ctx: Any) -> list[str]:
        rank = {name: i for i, name in enumerate(ORDER)}
        return sorted(super().list_commands(ctx), key=lambda n: rank.get(n, len(rank)))


app = typer.Typer(
    name="poolvisor",
    help="Pool virtualization hosts: place, balance, heal and simulate workloads.",
    cls=OrderedGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command(name="serve", rich_help_panel=PANEL_SERVER)(serve_cli.serve)

app.add_typer(host.app, name="host", rich_help_panel=PANEL_POOL)
app.add_typer(vm.app, name="vm", rich_help_panel=PANEL_POOL)
app.add_typer(pool.app, name="pool", rich_help_panel=PANEL_POOL)
pool.app.command("memory-report")(memory_cli.memory_report)
pool.app.command("memory-overcommit")(memory_cli.memory_overcommit)
pool.app.command("memory-reclaim")(memory_cli.memory_reclaim)
vm.app.command("reserve-memory")(memory_cli.reserve_memory)
app.add_typer(task.app, name="task", rich_help_panel=PANEL_POOL)
app.add_typer(sim.app, name="sim", rich_help_panel=PANEL_POOL)
app.add_typer(flavor.app, name="flavor", rich_help_panel=PANEL_POOL)
app.add_typer(project.app, name="project", rich_help_panel=PANEL_POOL)
app.command(name="events", rich_help_panel=PANEL_POOL)(events_cli.events)
app.add_typer(alert_cli.app, name="alert", rich_help_panel=PANEL_POOL)
app.add_typer(backup_cli.target_app, name="backup-target", rich_help_panel=PANEL_POOL)
app.add_typer(backup_cli.backup_app, name="backup", rich_help_panel=PANEL_POOL)
vm.app.add_typer(backup_cli.vm_app, name="backup")
app.command(name="leader", rich_help_panel=PANEL_POOL)(leader_cli.leader)
app.add_typer(ha_cli.app, name="ha", rich_help_panel=PANEL_POOL)
app.add_typer(controller_cli.app, name="controller", rich_help_panel=PANEL_POOL)
app.add_typer(token_cli.app, name="token", rich_help_panel=PANEL_POOL)
app.add_typer(network_cli.app, name="network", rich_help_panel=PANEL_POOL)
app.add_typer(ip_cli.app, name="ip", rich_help_panel=PANEL_POOL)
app.add_typer(routing_cli.router_app, name="router", rich_help_panel=PANEL_POOL)
app.add_typer(routing_cli.route_app, name="route", rich_help_panel=PANEL_POOL)
app.add_typer(storage_cli.storage_app, name="storage", rich_help_panel=PANEL_POOL)
app.add_typer(storage_cli.pool_app, name="storage-pool", rich_help_panel=PANEL_POOL)
app.add_typer(storage_cli.volume_app, name="volume", rich_help_panel=PANEL_POOL)

app.add_typer(simulate.app, name="simulate", rich_help_panel=PANEL_OFFLINE)
simulate.app.command("memory")(simulate_memory_cli.simulate_memory_cmd)
app.command(name="sweep", rich_help_panel=PANEL_OFFLINE)(sweep.sweep)
app.command(name="whatif", rich_help_panel=PANEL_OFFLINE)(whatif.whatif)
app.command(name="pack", rich_help_panel=PANEL_OFFLINE)(pack_cli.pack)
app.add_typer(bench.app, name="bench", rich_help_panel=PANEL_OFFLINE)

app.command(name="check", rich_help_panel=PANEL_MAINTENANCE)(check_cli.check)


@app.command(rich_help_panel=PANEL_MAINTENANCE)
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    run_guarded(lambda: run_app(app))  # usage errors: one line too (cli/entry.py)


if __name__ == "__main__":
    main()
