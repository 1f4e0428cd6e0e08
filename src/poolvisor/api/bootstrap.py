"""Admin-token set-up for `poolvisor serve`: adopt a token chosen by the operator (POOLVISOR_TOKEN).

The services contract mints random tokens only; this one addition stores a given plaintext token
as an admin token, hashed exactly like the services do (poolvisor.services.auth.digest).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import InvalidInputError
from poolvisor.services import Services
from poolvisor.services.auth import MAX_TOKEN_LEN, digest
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
            s.add(TokenRow(digest=d, role="admin", project_id=None))
        elif row.role != "admin":
            raise InvalidInputError("POOLVISOR_TOKEN is already a member token; choose another")

    svc.store.run(tx, write=True)
