"""`poolvisor serve`: open the services, seed a demo pool, make sure an admin token exists, run the API.

Token policy: with POOLVISOR_TOKEN set, that token is (made) an admin token and no file is
written. Otherwise the token in ~/.config/poolvisor/token is kept when this database knows it;
if not (first start, or a different database), a new admin token is minted and written there
with mode 0600, so the CLI finds it without flags.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from poolvisor.cli.client import ENV_TOKEN, token_file
from poolvisor.cli.errors import fail

if TYPE_CHECKING:
    from poolvisor.services import Services


def write_token(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)


def ensure_admin_token(svc: Services) -> str:
    """Returns a one-line note on where the admin token is."""
    from poolvisor.api.bootstrap import register_admin_token

    first = svc.bootstrap_admin_token()
    env = os.environ.get(ENV_TOKEN, "").strip()
    if env:
        register_admin_token(svc, env)
        return f"admin token: ${ENV_TOKEN}"
    path = token_file()
    if first is None:
        try:
            saved = path.read_text().strip()
        except OSError:
            saved = ""
        who = svc.authenticate(saved) if saved else None
        if who is not None and who.role == "admin":
            return f"admin token: {path}"
        first = svc.create_token("admin")
    write_token(path, first)
    return f"admin token: {path} (new)"


def _listen(host: str, port: int) -> socket.socket:
    """Bind first, so a busy port is one clear error line rather than a server log."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise fail(f"cannot resolve --host {host!r}: {e.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise fail(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock


def serve(
    db: Annotated[str | None, typer.Option(
        "--db", help="Database URL or SQLite file [default: $POOLVISOR_DATABASE_URL or "
        "~/.local/share/poolvisor/poolvisor.db]", show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8080,
    demo: Annotated[int | None, typer.Option(
        help="Seed a demo pool of N sim hosts, flavors and project 'demo' when the database is empty.")]
    = None,
    demo_vms: Annotated[int, typer.Option(
        help="With --demo: also create M VMs in project 'demo' with a day of recorded CPU use "
        "(for `poolvisor whatif`), when that project has none.")] = 0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    metrics_token_file: Annotated[Path | None, typer.Option(
        "--metrics-token-file", envvar="POOLVISOR_METRICS_TOKEN_FILE",
        help="File holding a bearer token that may read every /metrics series and nothing else "
        "(for a Prometheus scraper). Without a token /metrics shows fleet totals only.")] = None,
) -> None:
    """Run the REST API (and create the admin token on first start)."""
    import uvicorn

    from poolvisor.api.app import create_app
    from poolvisor.api.metrics import load_scrape_token
    from poolvisor.services import open_services

    if log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
        raise fail(f"--log-level must be one of critical, error, warning, info, debug, trace; "
                   f"got {log_level!r}")
    scrape_token = load_scrape_token(metrics_token_file) if metrics_token_file is not None else None
    sock = _listen(host, port)
    try:
        svc = open_services(db)
    except BaseException:
        sock.close()
        raise
    try:
        if demo is not None:
            svc.seed_demo(demo)
            if demo_vms:
                from poolvisor.services.demo_usage import seed_demo_usage

                made = seed_demo_usage(svc, demo_vms)
                if made:
                    typer.echo(f"poolvisor: demo: {made} VMs with a day of utilization in project 'demo'",
                               err=True)
        elif demo_vms:
            raise fail("--demo-vms needs --demo N")
        note = ensure_admin_token(svc)
        app = create_app(svc, metrics_token=scrape_token)
        shown = f"[{host}]" if ":" in host else host
        typer.echo(f"poolvisor: serving http://{shown}:{port}  (API /v1, OpenAPI /openapi.json); {note}",
                   err=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="off"))
        server.run(sockets=[sock])
    finally:
        sock.close()
        svc.close()
