"""IP and MAC address management as interval sets, always inside the caller's transaction.

A pool's address space [first, last] is split into disjoint intervals: free rows (`ip_free`, kept
coalesced) and allocated rows (`ip_allocations`, a single address being first == last). Every
operation is a few indexed lookups on (pool_id, first) or (pool_id, last), so its cost is
O(log n) of the pool's intervals whatever the pool's size: a /8 or a /64 is never enumerated.

Concurrency: every change first bumps the pool's generation (`lock_pool`), which serializes changes to
one pool (a row lock on PostgreSQL until commit; SQLite has one writer at a time). The interval
UPDATEs re-check what was read (first/last unchanged) and raise Stale otherwise, and
(pool_id, first) is unique in both tables, so two transactions can never hand out one address.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from poolvisor.domain.addresses import Family, fmt, key, unkey
from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.store.retry import Stale
from poolvisor.store.rows import IpAllocationRow, IpFreeRow, IpPoolRow

MAX_BLOCK_RANGES = 10_000  # one request may take addresses from at most this many free intervals
USER_KINDS = ("address", "reserved")  # what the IP API may release; other kinds belong to objects
_NO_SYNC = {"execution_options": {"synchronize_session": False}}


@dataclass(frozen=True)
class Interval:
    first: int
    last: int
    kind: str = "free"
    owner: str = ""

    @property
    def size(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class PoolInfo:
    id: int
    family: Family
    first: int
    last: int


def create_pool(s: Session, project_id: int | None, name: str, family: Family, cidr: str, first: int,
                last: int) -> int:
    """Insert a pool whose whole interval is free; returns its id (a duplicate name: ConflictError)."""
    if first > last:
        raise InvalidInputError(f"pool {name!r} has no usable address")
    p = IpPoolRow(project_id=project_id, name=name, family=family, cidr=cidr, first=key(first),
                  last=key(last), generation=0)
    s.add(p)
    try:
        s.flush()
    except IntegrityError:  # created concurrently under the same name
        raise ConflictError(f"address pool {name!r} already exists") from None
    s.execute(insert(IpFreeRow).values(pool_id=p.id, first=key(first), last=key(last)))
    return p.id


def info(p: IpPoolRow) -> PoolInfo:
    return PoolInfo(p.id, p.family, unkey(p.first), unkey(p.last))  # type: ignore[arg-type]


def lock_pool(s: Session, pool_id: int) -> None:
    r = s.execute(update(IpPoolRow).where(IpPoolRow.id == pool_id)
                  .values(generation=IpPoolRow.generation + 1), **_NO_SYNC)
    if r.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFoundError("address pool was removed concurrently")


def _free_containing(s: Session, pool_id: int, value: int) -> tuple[int, int, int] | None:
    """(row id, first, last) of the free interval holding `value`, if any."""
    row = s.execute(select(IpFreeRow.id, IpFreeRow.first, IpFreeRow.last)
                    .where(IpFreeRow.pool_id == pool_id, IpFreeRow.first <= key(value))
                    .order_by(IpFreeRow.first.desc()).limit(1)).first()
    if row is None or unkey(row[2]) < value:
        return None
    return row[0], unkey(row[1]), unkey(row[2])


def _allocation_containing(s: Session, pool_id: int, value: int) -> IpAllocationRow | None:
    a = s.scalars(select(IpAllocationRow)
                  .where(IpAllocationRow.pool_id == pool_id, IpAllocationRow.first <= key(value))
                  .order_by(IpAllocationRow.first.desc()).limit(1)).first()
    return a if a is not None and unkey(a.last) >= value else None


def _cut(s: Session, pool_id: int, row: tuple[int, int, int], first: int, last: int) -> None:
    """Remove [first, last] (inside the free row) from the free set: shrink, split or delete the row,
    re-checking inside each statement that the row is still what was read."""
    rid, f, ln = row
    guard = (IpFreeRow.id == rid, IpFreeRow.first == key(f), IpFreeRow.last == key(ln))
    if f == first and ln == last:
        r = s.execute(delete(IpFreeRow).where(*guard), **_NO_SYNC)
    elif f == first:
        r = s.execute(update(IpFreeRow).where(*guard).values(first=key(last + 1)), **_NO_SYNC)
    else:
        r = s.execute(update(IpFreeRow).where(*guard).values(last=key(first - 1)), **_NO_SYNC)
        if last < ln:
            s.execute(insert(IpFreeRow).values(pool_id=pool_id, first=key(last + 1), last=key(ln)))
    if r.rowcount != 1:  # type: ignore[attr-defined]
        raise Stale()


def _record(s: Session, pool_id: int, first: int, last: int, kind: str, owner: str) -> None:
    s.execute(insert(IpAllocationRow).values(pool_id=pool_id, first=key(first), last=key(last), kind=kind,
                                             owner=owner))


def allocate_next(s: Session, pool: PoolInfo, count: int = 1, *, kind: str = "address",
                  owner: str = "") -> list[Interval]:
    """The `count` lowest free addresses (as few intervals as the free set allows), or ConflictError
    when the pool has fewer free addresses; nothing is taken then."""
    if count < 1:
        raise InvalidInputError("count must be at least 1")
    lock_pool(s, pool.id)
    rows = s.execute(select(IpFreeRow.id, IpFreeRow.first, IpFreeRow.last)
                     .where(IpFreeRow.pool_id == pool.id).order_by(IpFreeRow.first)
                     .limit(min(count, MAX_BLOCK_RANGES))).all()
    taken: list[Interval] = []
    need = count
    for rid, f0, l0 in rows:
        f, ln = unkey(f0), unkey(l0)
        last = min(ln, f + need - 1)
        _cut(s, pool.id, (rid, f, ln), f, last)
        _record(s, pool.id, f, last, kind, owner)
        taken.append(Interval(f, last, kind, owner))
        need -= last - f + 1
        if need == 0:
            return taken
    if len(rows) == MAX_BLOCK_RANGES:
        raise ConflictError(f"the free addresses are split into more than {MAX_BLOCK_RANGES} ranges; "
                            "allocate fewer at once")
    raise ConflictError(f"address pool has fewer than {count} free address(es)")


def allocate(s: Session, pool: PoolInfo, first: int, last: int | None = None, *, kind: str = "address",
             owner: str = "") -> Interval:
    """Take exactly [first, last] (one address when last is None); ConflictError naming the holder
    when any of it is taken or reserved."""
    last = first if last is None else last
    if not pool.first <= first <= last <= pool.last:
        raise InvalidInputError(f"{_span(pool.family, first, last)} is not inside the pool "
                                f"({_span(pool.family, pool.first, pool.last)})")
    lock_pool(s, pool.id)
    row = _free_containing(s, pool.id, first)
    if row is None or row[2] < last:
        holder = _allocation_containing(s, pool.id, first if row is None else row[2] + 1)
        who = f"{holder.kind}{' ' + holder.owner if holder.owner else ''}" if holder is not None else "in use"
        raise ConflictError(f"{_span(pool.family, first, last)} is not free ({who})")
    _cut(s, pool.id, row, first, last)
    _record(s, pool.id, first, last, kind, owner)
    return Interval(first, last, kind, owner)


def release(s: Session, pool: PoolInfo, first: int, last: int | None = None, *,
            kinds: Iterable[str] | None = None) -> Interval:
    """Give back [first, last] (one address by default), which must lie inside one allocated
    interval of an allowed kind; what remains of that interval stays allocated."""
    last = first if last is None else last
    if first > last:
        raise InvalidInputError("the first address is after the last")
    lock_pool(s, pool.id)
    a = _allocation_containing(s, pool.id, first)
    span = _span(pool.family, first, last)
    if a is None or unkey(a.last) < last:
        raise NotFoundError(f"{span} is not allocated")
    allowed = tuple(kinds) if kinds is not None else None
    if allowed is not None and a.kind not in allowed:
        raise ConflictError(f"{span} is held by {a.kind}{' ' + a.owner if a.owner else ''}; "
                            "release it through that object")
    af, al, kind, owner = unkey(a.first), unkey(a.last), a.kind, a.owner
    s.execute(delete(IpAllocationRow).where(IpAllocationRow.id == a.id), **_NO_SYNC)
    if af < first:
        _record(s, pool.id, af, first - 1, kind, owner)
    if last < al:
        _record(s, pool.id, last + 1, al, kind, owner)
    _give_back(s, pool.id, first, last)
    return Interval(first, last, kind, owner)


def _give_back(s: Session, pool_id: int, first: int, last: int) -> None:
    """Insert [first, last] into the free set, merged with the free neighbours on either side."""
    left = s.execute(select(IpFreeRow.id, IpFreeRow.first).where(
        IpFreeRow.pool_id == pool_id, IpFreeRow.last == key(first - 1))).first() if first > 0 else None
    right = s.execute(select(IpFreeRow.id, IpFreeRow.last).where(
        IpFreeRow.pool_id == pool_id, IpFreeRow.first == key(last + 1))).first()
    lo = unkey(left[1]) if left is not None else first
    hi = unkey(right[1]) if right is not None else last
    if right is not None:
        s.execute(delete(IpFreeRow).where(IpFreeRow.id == right[0]), **_NO_SYNC)
    if left is not None:
        r = s.execute(update(IpFreeRow).where(IpFreeRow.id == left[0], IpFreeRow.last == key(first - 1))
                      .values(last=key(hi)), **_NO_SYNC)
        if r.rowcount != 1:  # type: ignore[attr-defined]
            raise Stale()
    else:
        s.execute(insert(IpFreeRow).values(pool_id=pool_id, first=key(lo), last=key(hi)))


def retag(s: Session, pool: PoolInfo, value: int, *, from_kind: str, kind: str, owner: str) -> bool:
    """Hand the single address `value` held as `from_kind` to a new holder (e.g. a network's reserved
    gateway to the router interface that takes it); False when it is not held that way."""
    lock_pool(s, pool.id)
    r = s.execute(update(IpAllocationRow).where(
        IpAllocationRow.pool_id == pool.id, IpAllocationRow.first == key(value),
        IpAllocationRow.last == key(value), IpAllocationRow.kind == from_kind)
        .values(kind=kind, owner=owner), **_NO_SYNC)
    return bool(r.rowcount == 1)  # type: ignore[attr-defined]


def intervals(s: Session, pool_id: int, *, free: bool = False, limit: int | None = None,
              after: int | None = None) -> list[Interval]:
    """Allocated (or free) intervals in address order, from the one after `after`."""
    if free:
        q = select(IpFreeRow.first, IpFreeRow.last).where(IpFreeRow.pool_id == pool_id)
        if after is not None:
            q = q.where(IpFreeRow.first > key(after))
        q = q.order_by(IpFreeRow.first).limit(limit)
        return [Interval(unkey(f), unkey(ln)) for f, ln in s.execute(q)]
    qa = select(IpAllocationRow.first, IpAllocationRow.last, IpAllocationRow.kind, IpAllocationRow.owner) \
        .where(IpAllocationRow.pool_id == pool_id)
    if after is not None:
        qa = qa.where(IpAllocationRow.first > key(after))
    qa = qa.order_by(IpAllocationRow.first).limit(limit)
    return [Interval(unkey(f), unkey(ln), k, o) for f, ln, k, o in s.execute(qa)]


def usage(s: Session, pool_id: int) -> dict[str, int]:
    """Addresses per allocation kind, plus 'free' (sums of interval sizes: exact for any pool size)."""
    out: dict[str, int] = {"free": 0}
    for f, ln in s.execute(select(IpFreeRow.first, IpFreeRow.last).where(IpFreeRow.pool_id == pool_id)):
        out["free"] += unkey(ln) - unkey(f) + 1
    for f, ln, k in s.execute(select(IpAllocationRow.first, IpAllocationRow.last, IpAllocationRow.kind)
                              .where(IpAllocationRow.pool_id == pool_id)):
        out[k] = out.get(k, 0) + unkey(ln) - unkey(f) + 1
    return out


def check_pool(s: Session, pool: PoolInfo, name: str) -> list[str]:
    """Invariant violations of one pool: the free and allocated intervals are disjoint, free ones
    never touch, and together they cover the pool's interval exactly."""
    spans = [(iv.first, iv.last, "free") for iv in intervals(s, pool.id, free=True)]
    spans += [(iv.first, iv.last, iv.kind) for iv in intervals(s, pool.id)]
    spans.sort()
    v: list[str] = []
    expect = pool.first
    prev_free = False
    for f, ln, kind in spans:
        where = f"pool {name}: {_span(pool.family, f, ln)} ({kind})"
        if ln < f:
            v.append(f"{where} is an empty interval")
        if f < expect:
            v.append(f"{where} overlaps the interval before it")
        elif f > expect:
            v.append(f"pool {name}: {_span(pool.family, expect, f - 1)} is neither free nor allocated")
        elif kind == "free" and prev_free:
            v.append(f"{where} touches the free interval before it (not coalesced)")
        expect = max(expect, ln + 1)
        prev_free = kind == "free"
    if expect != pool.last + 1:
        v.append(f"pool {name}: intervals end at {fmt(pool.family, expect - 1)}, "
                 f"not at {fmt(pool.family, pool.last)}")
    return v


def _span(family: str, first: int, last: int) -> str:
    return fmt(family, first) if first == last else f"{fmt(family, first)}-{fmt(family, last)}"
