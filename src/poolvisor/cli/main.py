"""The `poolvisor` command: sub-commands are registered explicitly, one module per topic."""

from __future__ import annotations

import typer

from poolvisor import __version__
from poolvisor.cli import bench, flavor, host, pool, project, simulate, sweep, vm, whatif
from poolvisor.cli import check as check_cli
from poolvisor.cli import events as events_cli
from poolvisor.cli import ip as ip_cli
from poolvisor.cli import network as network_cli
from poolvisor.cli import pack as pack_cli
from poolvisor.cli import routing as routing_cli
from poolvisor.cli import serve as serve_cli
from poolvisor.cli.entry import run_app
from poolvisor.cli.errors import run_guarded

app = typer.Typer(
    name="poolvisor",
    help="Pool virtualization hosts: place, balance, heal and simulate workloads.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(bench.app, name="bench")
app.add_typer(simulate.app, name="simulate")
app.command(name="pack")(pack_cli.pack)
app.command(name="sweep")(sweep.sweep)
app.command(name="whatif")(whatif.whatif)
app.command(name="check")(check_cli.check)
app.command(name="serve")(serve_cli.serve)
app.command(name="events")(events_cli.events)
app.add_typer(host.app, name="host")
app.add_typer(pool.app, name="pool")
app.add_typer(flavor.app, name="flavor")
app.add_typer(project.app, name="project")
app.add_typer(vm.app, name="vm")
app.add_typer(network_cli.app, name="network")
app.add_typer(ip_cli.app, name="ip")
app.add_typer(routing_cli.router_app, name="router")
app.add_typer(routing_cli.route_app, name="route")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    run_guarded(lambda: run_app(app))  # usage errors: one line too (cli/entry.py)


if __name__ == "__main__":
    main()
