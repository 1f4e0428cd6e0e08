"""Run the Typer app so that bad arguments are one `poolvisor: error:` line too (exit 2).

In standalone mode Typer prints usage errors as a framed Rich panel over several lines; here the
app runs non-standalone and click's usage errors (missing argument, bad value, unknown option or
command) become the same single line as every other CLI error. `--help` and `no_args_is_help`
behave as before. The message goes through `error_line` (printable: an argument may hold control
characters).
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from poolvisor.cli.errors import error_line

try:  # recent Typer vendors click as typer._click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older Typer on the real click
    from click import exceptions as click_exceptions  # type: ignore[no-redef]


def run_app(app: typer.Typer, args: list[str] | None = None) -> None:
    try:
        rc: Any = app(args, standalone_mode=False, prog_name="poolvisor")
    except click_exceptions.NoArgsIsHelpError:
        sys.exit(2)  # the help text was printed while building the exception
    except click_exceptions.ClickException as e:
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        error_line(f"{e.format_message()}{hint}")
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("poolvisor: aborted", err=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)
