"""CLI error policy: one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import typer

from poolvisor.domain.errors import PoolvisorError

EXIT_USAGE = 2
EXIT_FAILED = 1


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    """Print `poolvisor: error: MESSAGE` and return an Exit to raise."""
    typer.echo(f"poolvisor: error: {message}", err=True)
    return typer.Exit(code)


def run_guarded(fn: Callable[[], Any]) -> Any:
    """Run the whole CLI, turning known errors (and stray exceptions) into one line + exit code."""
    try:
        return fn()
    except PoolvisorError as e:
        typer.echo(f"poolvisor: error: {e.message}", err=True)
        sys.exit(EXIT_FAILED)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        typer.echo(f"poolvisor: error: {e.strerror}: {e.filename}", err=True)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        typer.echo("poolvisor: interrupted", err=True)
        sys.exit(130)
