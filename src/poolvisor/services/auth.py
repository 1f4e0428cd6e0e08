"""Bearer tokens: random secrets shown once, stored as sha256 digests; admin or project member."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from poolvisor.domain.errors import InvalidInputError
from poolvisor.services.base import ServiceBase
from poolvisor.services.records import Principal, Role
from poolvisor.store.rows import MetaRow, ProjectRow, TokenRow

BOOTSTRAP_KEY = "admin-bootstrapped"
MAX_TOKEN_LEN = 256


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "pv_" + secrets.token_urlsafe(32)


class AuthServices(ServiceBase):
    def bootstrap_admin_token(self) -> str | None:
        """The first admin token, exactly once per database (a unique meta key is the latch)."""
        token = new_token()

        def tx(s: Session) -> str | None:
            if s.get(MetaRow, BOOTSTRAP_KEY) is not None:
                return None
            try:
                with s.begin_nested():  # a savepoint: losing the race must not abort the transaction
                    s.add(MetaRow(key=BOOTSTRAP_KEY, value="1"))
            except IntegrityError:
                return None
            s.add(TokenRow(digest=digest(token), role="admin", project_id=None))
            self._event(s, "token.created", "token/admin", "bootstrap admin token created")
            return token

        return self._write(tx)

    def create_token(self, role: Role, project: str | None = None) -> str:
        if role not in ("admin", "member"):
            raise InvalidInputError(f"unknown role {role!r}; allowed: admin, member")
        if role == "member" and project is None:
            raise InvalidInputError("a member token needs a project")
        if role == "admin" and project is not None:
            raise InvalidInputError("an admin token is not bound to a project")
        token = new_token()

        def tx(s: Session) -> str:
            pid = self._project(s, project).id if project is not None else None
            s.add(TokenRow(digest=digest(token), role=role, project_id=pid))
            self._event(s, "token.created", f"token/{role}", f"{role} token created", project=project)
            return token

        return self._write(tx)

    def authenticate(self, token: str) -> Principal | None:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LEN:
            return None
        d = digest(token)

        def tx(s: Session) -> Principal | None:
            row = s.scalars(select(TokenRow).filter_by(digest=d)).first()
            if row is None or row.role not in ("admin", "member"):
                return None
            project = s.get(ProjectRow, row.project_id) if row.project_id is not None else None
            role: Role = "admin" if row.role == "admin" else "member"
            return Principal(row.id, project.name if project is not None else None, role)

        return self._read(tx)
