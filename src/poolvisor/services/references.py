"""Dangling references as declared 409s that name the objects, not a bare foreign-key error.

Two ways a foreign key fails: deleting a row other rows still refer to (a host a storage device
is local to, a compute pool a storage pool is limited to), and inserting a row that refers to one
a concurrent request deleted (attaching a volume to a workload deleted meanwhile). The first is
checked before the delete from the schema itself (every foreign key without ON DELETE that points
at the row's table), so a table added later is covered without touching the delete; the second is
caught at the flush and named by the caller, who knows what it referred to.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError
from poolvisor.store.engine import is_foreign_key
from poolvisor.store.rows import Base

SHOWN = 3  # referring objects named in the message


def _noun(table: str, n: int) -> str:
    word = table.replace("_", " ")
    word = word[:-1] if word.endswith("s") else word
    return f"{n} {word}{'s' if n != 1 else ''}"


def users(s: Session, row: Any) -> list[str]:
    """What still refers to `row` through a foreign key that would refuse its deletion, e.g.
    ["1 storage device (d0)"]; empty when it may be deleted."""
    table = row.__table__
    out = []
    for other in Base.metadata.sorted_tables:
        for fk in other.foreign_keys:
            if fk.column.table is not table or (fk.ondelete or "").upper() in ("CASCADE", "SET NULL"):
                continue
            key = getattr(row, fk.column.key)
            n = s.scalar(select(func.count()).select_from(other).where(fk.parent == key)) or 0
            if not n:
                continue
            names: list[str] = []
            if "name" in other.c:
                names = [str(x) for x in s.scalars(select(other.c.name).where(fk.parent == key)
                                                   .order_by(other.c.name).limit(SHOWN))]
            more = ", ..." if n > len(names) else ""
            out.append(_noun(other.name, n) + (f" ({', '.join(names)}{more})" if names else ""))
    return out


def delete_unused(s: Session, row: Any, what: str, name: str) -> None:
    """Delete `row`, or a 409 naming what still uses it (remove or move those first)."""
    used = users(s, row)
    if used:
        raise ConflictError(f"{what} {name!r} is still used by {' and '.join(used)}; "
                            "remove or move those first")
    s.delete(row)
    s.flush()


def flush_referring(s: Session, gone: str) -> None:
    """Flush new rows; a foreign key to a row deleted meanwhile (a concurrent request) is a 409
    saying `gone` (e.g. "workload 'vm' was deleted meanwhile")."""
    try:
        s.flush()
    except IntegrityError as e:
        if is_foreign_key(e):
            raise ConflictError(f"{gone}; nothing was changed") from None
        raise
