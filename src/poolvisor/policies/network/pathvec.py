"""Path-vector routing between sites (BGP-like): each site is an autonomous system (AS) that
originates its prefixes and tells its neighbours, per prefix, its best route with the AS path.

- Loop prevention: a site drops any route whose AS path already contains its own number.
- Import policy: `local_pref[(site, neighbour)]` ranks routes learned from that neighbour (higher
  wins, default 100); then the shorter AS path; then the lower neighbour number.
- Rounds are synchronous: every site re-advertises its best routes each round (a route that is no
  longer advertised is withdrawn). Some local-preference policies have no stable solution (Griffin's
  "bad gadget"): then the run stops after `max_rounds` with converged False.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

DEFAULT_PREF = 100


@dataclass(frozen=True, order=True)
class PvRoute:
    """A site's route to a prefix: path[0] is the neighbour it came from (empty: originated here)."""

    prefix: str
    path: tuple[int, ...]
    local_pref: int

    @property
    def neighbour(self) -> int | None:
        return self.path[0] if self.path else None


@dataclass(frozen=True)
class PvResult:
    ribs: dict[int, dict[str, PvRoute]]  # site -> prefix -> best route
    rounds: int
    converged: bool
    history: list[int] = field(default_factory=list)  # routes changed per round


def _rank(r: PvRoute) -> tuple[int, int, int]:
    """Smaller is better: originated first, then local preference, path length, neighbour."""
    if not r.path:
        return (-(1 << 62), 0, 0)
    return (-r.local_pref, len(r.path), r.path[0])


def path_vector(sites: Iterable[int], sessions: Iterable[tuple[int, int]],
                originate: Mapping[int, Iterable[str]], *,
                local_pref: Mapping[tuple[int, int], int] | None = None, max_rounds: int = 100,
                start: Mapping[int, Mapping[str, PvRoute]] | None = None) -> PvResult:
    """Best routes of every site to every prefix. `sessions` are undirected neighbour pairs;
    `start` continues from earlier tables (e.g. converged before a session failed)."""
    nodes = sorted(set(sites))
    known = set(nodes)
    neigh: dict[int, list[int]] = {s: [] for s in nodes}
    for a, b in sessions:
        if a not in known or b not in known:
            raise ValueError(f"session {a}-{b} names an unknown site")
        if a != b and b not in neigh[a]:
            neigh[a].append(b)
            neigh[b].append(a)
    for s in nodes:
        neigh[s].sort()
    prefs = dict(local_pref or {})
    own = {s: sorted(set(originate.get(s, ()))) for s in nodes}
    rib: dict[int, dict[str, PvRoute]] = {s: {p: PvRoute(p, (), DEFAULT_PREF) for p in own[s]} for s in nodes}
    if start is not None:
        for s in nodes:
            for p, r in start.get(s, {}).items():
                if r.path and p not in own[s]:
                    rib[s][p] = r
    history: list[int] = []
    for _ in range(max_rounds):
        new: dict[int, dict[str, PvRoute]] = {}
        for s in nodes:
            best: dict[str, PvRoute] = {p: PvRoute(p, (), DEFAULT_PREF) for p in own[s]}
            for nb in neigh[s]:
                pref = prefs.get((s, nb), DEFAULT_PREF)
                for p, r in rib[nb].items():
                    if s in r.path:  # loop prevention (the route went through us already)
                        continue
                    cand = PvRoute(p, (nb, *r.path), pref)
                    cur = best.get(p)
                    if cur is None or _rank(cand) < _rank(cur):
                        best[p] = cand
            new[s] = best
        changed = sum(1 for s in nodes for p in set(new[s]) | set(rib[s]) if new[s].get(p) != rib[s].get(p))
        rib = new
        if not changed:
            return PvResult(rib, len(history), True, history)
        history.append(changed)
    return PvResult(rib, len(history), False, history)
