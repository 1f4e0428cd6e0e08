"""`poolvisor check [--db URL] [--json]`: verify the store's invariants; non-zero exit on a violation."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from poolvisor.cli.errors import fail

EXIT_VIOLATIONS = 1


def check(
    db: str | None = typer.Option(None, "--db", help="Database URL or SQLite file "
                                  "(default: POOLVISOR_DATABASE_URL or $POOLVISOR_HOME/poolvisor.db)"),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Verify allocations sum to what hosts record, no workload is on two hosts, nothing is
    allocated on a down or fenced host, no workload is stuck placing/migrating/deleting past its
    lease (its process died). Exits 1 and lists the violations when one is found."""
    from sqlalchemy.engine import make_url  # the store stack loads on use, not with every command

    from poolvisor.services.invariants import check_invariants
    from poolvisor.store import normalize_url, open_store

    url = normalize_url(db)
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:" and not Path(path).exists():
            raise fail(f"no database at {path}")
    store = open_store(url)
    try:
        report = store.run(check_invariants, write=False)
    finally:
        store.close()
    if json_out:
        typer.echo(json.dumps({"ok": report.ok, "violations": report.violations, "counts": report.counts}))
    else:
        console = Console()
        counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report.counts.items()
                           if k != "violations")
        if report.ok:
            console.print(f"[green]ok[/green]: every invariant holds ({counts})")
        else:
            n = len(report.violations)
            table = Table(title=f"{n} invariant violation{'' if n == 1 else 's'} ({counts})")
            table.add_column("#", justify="right")
            table.add_column("violation")
            for i, v in enumerate(report.violations, 1):
                table.add_row(str(i), v)
            console.print(table)
    if not report.ok:
        raise typer.Exit(EXIT_VIOLATIONS)
