"""CLI error policy: one clear line on stderr and a non-zero exit, never a traceback.

Every error line goes through `error_line`, which makes the message printable (a server's message
or a user's argument may hold control characters). Anything not foreseen is caught last in
`run_guarded` and still printed as one line (exit 1); POOLVISOR_DEBUG=1 shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import typer

from poolvisor.cli.render import printable
from poolvisor.domain.errors import PoolvisorError

EXIT_USAGE = 2
EXIT_FAILED = 1
ENV_DEBUG = "POOLVISOR_DEBUG"


class CliUsageError(PoolvisorError):
    """Bad command-line input found by the CLI itself (e.g. an invalid name): exit 2, nothing sent."""

    exit_code = EXIT_USAGE


def error_line(message: str) -> None:
    """Print `poolvisor: error: MESSAGE` on stderr as exactly one printable line."""
    typer.echo(f"poolvisor: error: {printable(message)}", err=True)


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    """Print `poolvisor: error: MESSAGE` and return an Exit to raise."""
    error_line(message)
    return typer.Exit(code)


def _describe(e: BaseException) -> str:
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def run_guarded(fn: Callable[[], Any]) -> Any:
    """Run the whole CLI, turning known errors (and stray exceptions) into one line + exit code."""
    try:
        return fn()
    except CliUsageError as e:
        error_line(e.message)
        sys.exit(e.exit_code)
    except PoolvisorError as e:
        error_line(e.message)
        sys.exit(EXIT_FAILED)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        error_line(f"{e.strerror}: {e.filename}")
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        typer.echo("poolvisor: interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # the last resort: a defect or an unforeseen failure, still one line
        if os.environ.get(ENV_DEBUG) == "1":
            raise
        error_line(f"{_describe(e)} (set {ENV_DEBUG}=1 for a traceback)")
        sys.exit(EXIT_FAILED)
