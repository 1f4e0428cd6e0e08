"""IndexedPlacer: the placement pipeline's decisions at index speed, for services and batch runs.

`place_fast` returns the host index the pipeline would choose (or -1); `place` returns a Decision
whose explanation is computed only when read, by the pipeline itself, and only while the state is
still the one the decision was taken on (the explanation counts hosts, so it costs O(H) and is not
worth paying on every request). `place(req, explain=True)` computes it at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from poolvisor.domain.errors import ConflictError
from poolvisor.policies.placement.explain import Decision, Explanation
from poolvisor.policies.placement.index import TOP_SLACK, PlacementIndex
from poolvisor.policies.placement.pipeline import PlacementPolicy, place, policy_rule, require_host
from poolvisor.policies.placement.request import Request
from poolvisor.state.cluster import ClusterState


class LazyDecision(Decision):
    """A Decision whose explanation is produced on first access by `pipeline.place`."""

    def __init__(self, state: ClusterState, req: Request, policy: PlacementPolicy, host: int):
        object.__setattr__(self, "request", req.name)
        object.__setattr__(self, "host", state.names[host] if host >= 0 else None)
        object.__setattr__(self, "host_index", host if host >= 0 else None)
        object.__setattr__(self, "_ctx", (state, req, policy, state.generation))
        object.__setattr__(self, "_expl", None)

    @property
    def explanation(self) -> Explanation:
        expl: Explanation | None = self.__dict__["_expl"]
        if expl is None:
            state, req, policy, gen = self.__dict__["_ctx"]
            if state.generation != gen:
                raise ConflictError(
                    f"explanation of {req.name!r} requested after the cluster changed; "
                    "read it before allocating, or place with explain=True"
                )
            expl = place(state, req, policy).explanation
            object.__setattr__(self, "_expl", expl)
        return expl

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return (self.request, self.host, self.host_index, self.explanation) == (
            other.request, other.host, other.host_index, other.explanation)

    __hash__ = None  # type: ignore[assignment]


class IndexedPlacer:
    """Exact drop-in for `pipeline.place`/`place_batch` on one ClusterState, backed by a PlacementIndex.

    Mutate the state through ClusterState's methods (or call `state.touch(hosts)` /
    `invalidate()` after writing its arrays directly) so the index sees every change."""

    def __init__(self, state: ClusterState, policy: PlacementPolicy | None = None, *,
                 fanout: int | None = None, max_classes: int = 64, admit_after: int = 1,
                 max_requeries: int = 4, point_updates: int = 8, jit: bool = True,
                 top_slack: int = TOP_SLACK):
        self.state = state
        self.policy = policy or PlacementPolicy()
        self.rule = policy_rule(self.policy)  # the same for every decision: worded once
        self.index = PlacementIndex(state, self.policy, fanout=fanout, max_classes=max_classes,
                                    admit_after=admit_after, max_requeries=max_requeries,
                                    point_updates=point_updates, jit=jit, top_slack=top_slack)

    @property
    def stats(self) -> dict[str, int]:
        return self.index.stats

    def close(self) -> None:
        self.index.close()

    def invalidate(self, hosts: Sequence[int] | None = None) -> None:
        self.index.invalidate(hosts)

    def place_fast(self, req: Request) -> int:
        """Host index the pipeline would choose for `req`, -1 when no host passes the filters."""
        return self.index.choose(req)

    def place(self, req: Request, *, explain: bool = False) -> Decision:
        if explain:
            return place(self.state, req, self.policy)
        return LazyDecision(self.state, req, self.policy, self.index.choose(req))

    def place_batch(self, reqs: Sequence[Request], *, all_or_nothing: bool = False,
                    explain: bool = False) -> list[Decision]:
        """Like `pipeline.place_batch`: allocate each request in order; all-or-nothing rolls back."""
        done: list[tuple[int, Request]] = []
        out: list[Decision] = []
        for req in reqs:
            d = self.place(req, explain=explain)
            if d.host_index is None:
                if all_or_nothing:
                    if not explain:  # the error names the filters: explain on the state that failed
                        d = place(self.state, req, self.policy)
                    for h, r in reversed(done):
                        self.state.release(h, r.demand, r.group)
                    require_host(d)
                out.append(d)
                continue
            self.state.allocate(d.host_index, req.demand, req.group)
            done.append((d.host_index, req))
            out.append(d)
        return out
