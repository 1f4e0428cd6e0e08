"""Per-resource reservation / limit / shares of a workload, and each pool's allocation policy.

A create may declare, per resource of its demand, a reservation (its guaranteed minimum), a limit
(the most it may use) and shares (its weight under contention). Undeclared: the limit is the
demand, the reservation the limit, shares 1000 (normal), so a workload that declares nothing is
sized as before under every policy and costs no extra query. What the ledger claims is
policies/shares.py's `set_aside` under the pool's policy (min, max or balanced; a request that
names no pool is sized by the default, max); the workload's `demand` then holds that amount and
`resource_spec` the declaration, which the sim driver uses to share an overloaded host.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies import shares as share_policy
from poolvisor.services.base import ServiceBase
from poolvisor.store.rows import PoolRow

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


def size(policy: str, spec: ResourceSpec) -> dict[str, float]:
    """What the ledger claims for this declaration under `policy` (every declared resource)."""
    names = list(spec)
    res, lim, sh = share_policy.spec_columns([({}, spec)], names)
    amount = share_policy.set_aside(policy, res, lim, sh)[0]
    return {n: float(a) for n, a in zip(names, amount, strict=True)}


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


def pool_policy_in(s: Session, pool_id: int | None) -> str:
    """A pool's static allocation policy (the default without a pool), read in the caller's session."""
    if pool_id is None:
        return share_policy.DEFAULT_ALLOCATION_POLICY
    got = s.scalars(select(PoolRow.allocation_policy).where(PoolRow.id == pool_id)).first()
    return str(got or share_policy.DEFAULT_ALLOCATION_POLICY)


def sized(s: Session, spec: Any, reservation: Mapping[str, float] | None,
          limit: Mapping[str, float] | None, shares: Mapping[str, float] | None) -> Any:
    """The create's spec (services/workloads.py `_Spec`) with its demand set to what the pool's
    policy sets aside for the declaration, and the declaration kept (unchanged when none); read in
    the create's own resolve transaction."""
    rs = declared(spec.demand, reservation, limit, shares)
    if rs is None:
        return spec
    return replace(spec, demand=size(pool_policy_in(s, spec.pool_id), rs), resource_spec=rs)
