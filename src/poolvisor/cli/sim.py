"""`poolvisor sim ...`: fault injection on sim hosts, through the sim admin API extension (/v1/sim),
which only `poolvisor serve --demo` or `serve --sim-admin` mount."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from poolvisor.cli.client import Api, ApiError, ApiPath, JsonOpt, TokenOpt, UrlOpt, api_path, name_argument
from poolvisor.cli.errors import fail as cli_fail
from poolvisor.cli.render import emit_json, say

app = typer.Typer(help="Sim fault injection: fail and revive sim hosts, make operations fail (admin; "
                  "needs `serve --demo` or `serve --sim-admin`).", no_args_is_help=True)
HostArg = Annotated[str, typer.Argument(help="Sim host name.", callback=name_argument)]
NO_EXTENSION = ("this server has no sim admin API (/v1/sim): start it with `poolvisor serve --demo N` or "
                "`poolvisor serve --sim-admin`")


def _post(api: Api, path: ApiPath, body: Any = None) -> Any:
    try:
        return api.post(path, body)
    except ApiError as e:
        if e.status_code == 404 and e.message == "Not Found":  # the route, not a host, is missing
            raise cli_fail(NO_EXTENSION) from None
        raise


@app.command()
def fail(name: HostArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """The sim host dies: no heartbeat, its workloads are lost."""
    with Api(url, token) as api:
        h = _post(api, api_path("sim", "hosts", name, "fail"))
    if as_json:
        emit_json(h)
    else:
        say("host {}: {} (failure injected)", h["name"], h["state"])


@app.command()
def revive(name: HostArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """The sim host comes back, empty, and is up again."""
    with Api(url, token) as api:
        h = _post(api, api_path("sim", "hosts", name, "revive"))
    if as_json:
        emit_json(h)
    else:
        say("host {}: {} (revived)", h["name"], h["state"])


@app.command()
def inject(
    operation: Annotated[str, typer.Argument(help="create, start, stop, suspend, resume, delete, migrate, "
                                             "fence, snapshot or restore.")],
    host: Annotated[str | None, typer.Option(help="Only on this host.")] = None,
    times: Annotated[int, typer.Option(min=1, max=1_000_000, help="How many operations fail.")] = 1,
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Make the next TIMES sim operations fail."""
    with Api(url, token) as api:
        f = _post(api, api_path("sim", "faults"), {"operation": operation, "host": host, "times": times})
    if as_json:
        emit_json(f)
    else:
        say("next {} {} operation(s){} will fail", f["times"], f["operation"],
            f" on {f['host']}" if f.get("host") else "")
