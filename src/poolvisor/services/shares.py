"""Per-resource reservation / limit / shares of a workload, and each pool's allocation policy.

A create may declare, per resource of its demand, a reservation (its guaranteed minimum), a limit
(the most it may use) and shares (its weight under contention). Undeclared: the limit is the
demand, the reservation the limit, shares 1000 (normal), so a workload that declares nothing is
sized as before under every policy and costs no extra query. What the ledger claims is
policies/shares.py's `amount` under the pool's policy (min, max or balanced; a request that
names no pool is placed by the default's, max, and claims what the chosen host's pool sets aside;
when max fits nowhere, the pools that set aside less are tried in policies/shares.py's
`fallback_order`). One object carries it (`Sizing`: `for_pool`, `fallbacks`), one adapter puts
it on a request (`apply`), one loop falls back (`first_fit`). The workload's `demand` then holds
that amount and `resource_spec` the declaration, which the host's driver gets (the sim driver
shares an overloaded host by it; `granted` reads back what it gives). One rule for single
creates, batch items, HA restarts, live migrations (consolidation, evacuation, drain) and
backup restores.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from poolvisor.domain.errors import InvalidInputError, PoolvisorError
from poolvisor.drivers.protocols import Capability, supports
from poolvisor.policies import shares as share_policy
from poolvisor.services.base import ServiceBase
from poolvisor.services.records import WorkloadRecord
from poolvisor.store.rows import PoolRow

log = logging.getLogger("poolvisor.services")
ResourceSpec = dict[str, dict[str, float]]  # resource -> {"reservation", "limit", "shares"}


def declared(demand: Mapping[str, float], reservation: Mapping[str, float] | None,
             limit: Mapping[str, float] | None, shares: Mapping[str, float] | None) -> ResourceSpec | None:
    """The full declaration over the demand's resources (None when nothing is declared)."""
    if reservation is None and limit is None and shares is None:
        return None
    res, lim, sh = (_amounts(what, m, demand) for what, m in
                    (("reservation", reservation), ("limit", limit), ("shares", shares)))
    out: ResourceSpec = {}
    for r, d in demand.items():
        lr = lim.get(r, float(d))
        rr = res.get(r, lr)
        if rr > lr:
            raise InvalidInputError(f"{r}: the reservation {rr:g} exceeds the limit {lr:g}")
        s = sh.get(r, share_policy.NORMAL_SHARES)
        if not 1 <= s <= share_policy.MAX_SHARES:
            raise InvalidInputError(f"{r}: shares must be in [1, {share_policy.MAX_SHARES:g}]")
        out[str(r)] = {"reservation": rr, "limit": lr, "shares": s}
    return out


def _amounts(what: str, m: Mapping[str, float] | None, demand: Mapping[str, float]) -> dict[str, float]:
    if m is None:
        return {}
    if not isinstance(m, Mapping):
        raise InvalidInputError(f"{what} must be a mapping of resource -> amount")
    out = {}
    for k, v in m.items():
        if k not in demand:
            raise InvalidInputError(f"{what} names {k!r}, which the workload does not demand")
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise InvalidInputError(f"{what} of {k} must be a finite number >= 0")
        out[str(k)] = float(v)
    return out


class SharesService(ServiceBase):
    """Each pool's static allocation policy, and the sizing of declared creates."""

    def pool_policy(self, pool_id: int | None) -> str:
        return self._read(lambda s: pool_policy_in(s, pool_id))

    def set_allocation_policy(self, pool: str, policy: str) -> str:
        share_policy.check_policy(policy)

        def tx(s: Session) -> str:
            p = self._pool(s, pool)
            s.execute(update(PoolRow).where(PoolRow.id == p.id).values(allocation_policy=policy))
            self._event(s, "pool.allocation_policy", f"pool/{pool}",
                        f"pool {pool}: allocation policy {policy}", data={"policy": policy})
            return policy

        return self._write(tx)

    def get_allocation_policy(self, pool: str) -> str:
        return self._read(lambda s: str(self._pool(s, pool).allocation_policy))

    def granted(self, rec: WorkloadRecord) -> WorkloadRecord:
        """The record with what its host gives it now per resource (`granted`): read from a host
        whose driver shares a contended host (Capability.SHARES) and is running it; unchanged
        otherwise, and when the host does not answer (a read never fails on telemetry)."""
        if rec.host is None or rec.state != "running":
            return rec
        try:
            driver = self.drivers.driver_of(rec.host)
            if not supports(driver, Capability.SHARES):
                return rec
            got = self.drivers.workload_stats(rec.host).workload_stats(rec.host)
        except PoolvisorError as e:
            log.info("granted of %s/%s not read from %s: %s", rec.project, rec.name, rec.host, e.message)
            return rec
        sample = got.get(f"{rec.project}/{rec.name}")
        return replace(rec, granted=dict(sample.granted)) if sample is not None and sample.granted else rec


def pool_policy_in(s: Session, pool_id: int | None) -> str:
    """A pool's static allocation policy (the default without a pool), read in the caller's session."""
    if pool_id is None:
        return share_policy.DEFAULT_ALLOCATION_POLICY
    got = s.scalars(select(PoolRow.allocation_policy).where(PoolRow.id == pool_id)).first()
    return str(got or share_policy.DEFAULT_ALLOCATION_POLICY)


@dataclass(frozen=True)
class Sizing:
    """A declaration sized for placement, the one object of the sizing rule: `demand` is what the
    ledger claims under `policy`; `per_pool` (only when no pool was named) maps each pool of
    another policy to (its policy, the amount it sets aside), for the claim once placement has
    chosen a host (:meth:`for_pool`) and for the pools to fall back to (:meth:`fallbacks`)."""

    demand: dict[str, float]
    spec: ResourceSpec
    policy: str
    per_pool: Mapping[int, tuple[str, dict[str, float]]] | None = None

    def for_pool(self, pool_id: int | None) -> Sizing:
        """The sizing of the claim on a host of `pool_id` (None or < 0: a host in no pool, sized by
        the default policy), settled (no per-pool table); self when it already is."""
        if self.per_pool is None:
            return self
        got = self.per_pool.get(pool_id) if pool_id is not None else None
        pol, amount = got if got is not None else (self.policy, self.demand)
        return Sizing(amount, self.spec, pol)

    def fallbacks(self) -> list[tuple[int, Sizing]]:
        """(pool id, its settled sizing) of each pool whose policy sets aside less than `demand`, in
        the order placement tries them when `demand` fits no host (policies/shares.py
        `fallback_order`: balanced before min, then pool id)."""
        if not self.per_pool:
            return []
        less = {p: pol for p, (pol, a) in self.per_pool.items() if a != self.demand}
        return [(p, self.for_pool(p)) for p in share_policy.fallback_order(less)]


class _Sized(Protocol):
    """What the sizing rule is applied to (workloads.py `_Spec`, batch.py `_Item`)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def sizing(self) -> Sizing | None: ...


S = TypeVar("S", bound=_Sized)
R = TypeVar("R")


def sizing(s: Session, pool_id: int | None, demand: Mapping[str, float],
           reservation: Mapping[str, float] | None, limit: Mapping[str, float] | None,
           shares: Mapping[str, float] | None) -> Sizing | None:
    """The one sizing rule of a declared workload (single create, batch item, HA restart, live
    migration), read in the caller's transaction; None when nothing is declared (no query then).

    A named pool: its policy's set-aside. No pool named: placement decides by the default policy's
    (max: the limit, the most any policy sets aside, since reservation <= limit), so every host it
    may choose also fits what that host's pool's policy sets aside; `per_pool` then gives the
    claim on each pool of another policy (one small query, declared workloads only)."""
    rs = declared(demand, reservation, limit, shares)
    if rs is None:
        return None
    if pool_id is not None:
        pol = pool_policy_in(s, pool_id)
        return Sizing(share_policy.amount(pol, rs), rs, pol)
    per: dict[int, tuple[str, dict[str, float]]] = {}
    for pid, pol in s.execute(select(PoolRow.id, PoolRow.allocation_policy).where(
            PoolRow.allocation_policy != share_policy.DEFAULT_ALLOCATION_POLICY)).all():
        per[int(pid)] = (str(pol), share_policy.amount(str(pol), rs))
    return Sizing(share_policy.amount(share_policy.DEFAULT_ALLOCATION_POLICY, rs), rs,
                  share_policy.DEFAULT_ALLOCATION_POLICY, per or None)


def spec_of(rs: Mapping[str, Mapping[str, float]]) -> tuple[dict[str, float], dict[str, float],
                                                            dict[str, float]]:
    """(reservation, limit, shares) of a stored declaration, to size it again (an HA restart, a
    migration)."""
    return ({r: float(v["reservation"]) for r, v in rs.items()},
            {r: float(v["limit"]) for r, v in rs.items()},
            {r: float(v["shares"]) for r, v in rs.items()})


def apply(spec: S, sz: Sizing | None) -> S:
    """The one adapter: `spec` claiming what `sz` sets aside, with the declaration kept
    (`resource_spec`, for the host's driver) and the sizing (`sized_by`); unchanged without one."""
    if sz is None or spec.sizing is sz:
        return spec
    return replace(spec, demand=dict(sz.demand), resource_spec=sz.spec, sizing=sz)


def on_host(spec: S, pool_of: Any, host_index: int | None) -> S:
    """`spec` as claimed on the chosen host (`pool_of`: the placement view's pool id per host, -1
    none): its pool's amount for a declaration that named no pool; unchanged otherwise."""
    if spec.sizing is None or host_index is None or host_index < 0:
        return spec
    return apply(spec, spec.sizing.for_pool(int(pool_of[host_index])))


def first_fit(spec: S, attempt: Callable[[S, int | None], R], fits: Callable[[R], bool], *,
              first: R | None = None) -> tuple[S, R]:
    """The one fallback loop of every path that places a declared workload (single create and HA
    restart through workloads.py `_decide_sized`, batch items, live migrations): `attempt(spec,
    None)` as sized (`first`: its answer when the caller already has it); when that fits nowhere,
    `attempt(sub, pool)` for each of :meth:`Sizing.fallbacks` (that pool's amount, its hosts
    only) until one `fits`. Returns the spec and answer that fit, else the first ones."""
    got = attempt(spec, None) if first is None else first
    if fits(got) or spec.sizing is None:
        return spec, got
    for pool_id, sz in spec.sizing.fallbacks():
        sub = apply(spec, sz)
        answer = attempt(sub, pool_id)
        if fits(answer):
            return sub, answer
    return spec, got
