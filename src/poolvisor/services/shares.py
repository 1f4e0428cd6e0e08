"""Per-resource reservation / limit / shares of a workload, and each pool's allocation policy.

A create may declare, per resource of its demand, a reservation (its guaranteed minimum), a limit
(the most it may use) and shares (its weight under contention). Undeclared: the limit is the
demand, the reservation the limit, shares 1000 (normal), so a workload that declares nothing is
sized as before under every policy and costs no extra query. What the ledger claims is
policies/shares.py's `set_aside` under the pool's policy (min, max or balanced; a request that
names no pool is placed by the default's, max, and claims what the chosen host's pool sets aside:
`sizing`, `on_host`, `smaller`); the workload's `demand` then holds that amount and
`resource_spec` the declaration, which the host's driver gets (the sim driver shares an
overloaded host by it; `granted` reads back what it gives). One rule for single creates, batch
items, HA restarts and backup restores.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

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
    """A declaration sized for placement: `demand` is what the ledger claims under `policy`;
    `per_pool` (only when no pool was named) maps each pool whose policy sets aside a different
    amount to (its policy, that amount), for the claim once placement has chosen a host."""

    demand: dict[str, float]
    spec: ResourceSpec
    policy: str
    per_pool: Mapping[int, tuple[str, dict[str, float]]] | None = None

    def on_pool(self, pool_id: int | None) -> Sizing:
        """The sizing of the claim on a host of `pool_id` (None or < 0: no pool): self when its
        pool sets aside what placement decided by."""
        got = self.per_pool.get(pool_id) if self.per_pool and pool_id is not None else None
        return self if got is None else Sizing(got[1], self.spec, got[0])


def sizing(s: Session, pool_id: int | None, demand: Mapping[str, float],
           reservation: Mapping[str, float] | None, limit: Mapping[str, float] | None,
           shares: Mapping[str, float] | None) -> Sizing | None:
    """The one sizing rule of a declared create (single, batch item, HA restart), read in the
    caller's transaction; None when nothing is declared (no query then).

    A named pool: its policy's set-aside. No pool named: placement decides by the default policy's
    (max: the limit, the most any policy sets aside, since reservation <= limit), so every host it
    may choose also fits what that host's pool's policy sets aside; `per_pool` then gives the
    claim on each pool whose policy sets aside less (one small query, declared creates only)."""
    rs = declared(demand, reservation, limit, shares)
    if rs is None:
        return None
    if pool_id is not None:
        pol = pool_policy_in(s, pool_id)
        return Sizing(size(pol, rs), rs, pol)
    default = size(share_policy.DEFAULT_ALLOCATION_POLICY, rs)
    per: dict[int, tuple[str, dict[str, float]]] = {}
    for pid, pol in s.execute(select(PoolRow.id, PoolRow.allocation_policy).where(
            PoolRow.allocation_policy != share_policy.DEFAULT_ALLOCATION_POLICY)).all():
        amount = size(str(pol), rs)
        if amount != default:
            per[int(pid)] = (str(pol), amount)
    return Sizing(default, rs, share_policy.DEFAULT_ALLOCATION_POLICY, per or None)


def spec_of(rs: Mapping[str, Mapping[str, float]]) -> tuple[dict[str, float], dict[str, float],
                                                            dict[str, float]]:
    """(reservation, limit, shares) of a stored declaration, to size it again (an HA restart)."""
    return ({r: float(v["reservation"]) for r, v in rs.items()},
            {r: float(v["limit"]) for r, v in rs.items()},
            {r: float(v["shares"]) for r, v in rs.items()})


def sized(s: Session, spec: Any, reservation: Mapping[str, float] | None,
          limit: Mapping[str, float] | None, shares: Mapping[str, float] | None) -> Any:
    """The create's spec (services/workloads.py `_Spec`) with its demand set to what the pool's
    policy sets aside for the declaration, and the declaration kept (unchanged when none); read in
    the create's own resolve transaction. Without a pool, `sizing` keeps the per-pool amounts
    for :func:`on_host` once placement has chosen."""
    got = sizing(s, spec.pool_id, spec.demand, reservation, limit, shares)
    if got is None:
        return spec
    return replace(spec, demand=got.demand, resource_spec=got.spec, sizing=got)


def on_host(spec: Any, pool_of: Any, host_index: int | None) -> Any:
    """The spec (workloads.py `_Spec`, batch.py `_Item`) whose claim follows the chosen host's
    pool's policy (a declaration that named no pool; any other spec unchanged). `pool_of`: the
    placement view's pool id per host (-1: none)."""
    sz: Sizing | None = getattr(spec, "sizing", None)
    if sz is None or sz.per_pool is None or host_index is None or host_index < 0:
        return spec
    got = sz.on_pool(int(pool_of[host_index]))
    return spec if got is sz else replace(spec, demand=got.demand, sizing=got)


def smaller(spec: Any) -> list[Any]:
    """A declaration naming no pool that fits no host by what `max` sets aside: the same request
    on each pool whose policy sets aside less, with that amount (balanced pools before min ones,
    which guarantee less; then by pool id), for placement to try in turn. Each is settled: its
    claim is that pool's amount."""
    sz: Sizing | None = getattr(spec, "sizing", None)
    if sz is None or not sz.per_pool:
        return []
    rank = {"balanced": 0, "min": 1}
    out = []
    for pid, (pol, amount) in sorted(sz.per_pool.items(), key=lambda kv: (rank.get(kv[1][0], 2), kv[0])):
        out.append(replace(spec, pool_id=pid, demand=amount, sizing=Sizing(amount, sz.spec, pol)))
    return out
