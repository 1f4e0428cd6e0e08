"""`poolvisor leader`: which server runs the pool-wide loops (client of GET /v1/leader)."""

from __future__ import annotations

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path
from poolvisor.cli.render import emit_json, table


def leader(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Show the elected leader among the servers sharing the database (it alone runs the alerts,
    memory reclaim and controller loops)."""
    with Api(url, token) as api:
        st = api.get(api_path("leader"))
    if as_json:
        emit_json(st)
        return
    table("Leader", ("field", "value"), [
        ("leader", st["leader"] or "none (no server leads now)"),
        ("term", str(st["term"])),
        ("since", st["since"] or "–"),
        ("renewed", st["renewed"] or "–"),
        ("answered by", st["me"] + (" (the leader)" if st["is_leader"] else " (a follower)")),
        ("election", f"lease {st['lease_s']:g} s" if st["election"] else "off (this server runs every loop)"),
    ])
