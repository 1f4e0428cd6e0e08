"""Admin-token set-up for `poolvisor serve`: adopt a token chosen by the operator (POOLVISOR_TOKEN).

The services contract mints random tokens only; this one addition stores a given plaintext token
as an admin token, hashed exactly like the services do (poolvisor.services.auth.digest).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import InvalidInputError
from poolvisor.services import Services
from poolvisor.services.auth import MAX_TOKEN_LEN, digest, hint
from poolvisor.services.base import as_utc
from poolvisor.store.rows import TokenRow

MIN_CHOSEN_TOKEN_LEN = 16


def register_admin_token(svc: Services, token: str) -> None:
    """Make `token` an admin token (idempotent); too short or odd tokens are refused."""
    if not MIN_CHOSEN_TOKEN_LEN <= len(token) <= MAX_TOKEN_LEN or not token.isprintable() or " " in token:
        raise InvalidInputError(
            f"POOLVISOR_TOKEN must be {MIN_CHOSEN_TOKEN_LEN}..{MAX_TOKEN_LEN} printable characters "
            "without spaces")
    d = digest(token)

    def tx(s: Session) -> None:
        row = s.scalars(select(TokenRow).filter_by(digest=d)).first()
        if row is None:
            s.add(TokenRow(digest=d, role="admin", project_id=None, label="POOLVISOR_TOKEN",
                           hint=hint(token)))
        elif row.role != "admin":
            raise InvalidInputError("POOLVISOR_TOKEN is already a member token; choose another")
        elif row.revoked_at is not None or (row.expires_at is not None and
                                            as_utc(row.expires_at) <= datetime.now(UTC)):
            # never bring a revoked (or expired) token back to life by restarting with it
            raise InvalidInputError("POOLVISOR_TOKEN was revoked or has expired; choose another")

    svc.store.run(tx, write=True)
