"""Bearer tokens: hashed, with a role; the environment's admin token is never stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import ApiToken
from shared.events import ApiTokenRole

ENVIRONMENT_ADMIN = "admin (API_ADMIN_TOKEN)"

_tokens = ApiToken.__table__.c
# A Core statement: every request runs it, and the ORM's layer would only add cost.
_TOKEN_LOOKUP = select(_tokens.name, _tokens.role).where(
    _tokens.token_sha256 == bindparam("digest"), _tokens.revoked_at.is_(None)
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the name recorded as `requested_by`, and the role."""

    name: str
    role: ApiTokenRole

    @property
    def can_write(self) -> bool:
        return self.role is ApiTokenRole.ADMIN


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh token: 256 random bits, URL-safe."""
    return "inv_" + secrets.token_urlsafe(32)


async def authenticate(
    session: AsyncSession, token: str, admin_token_sha256: str | None
) -> Principal | None:
    """The principal a token stands for, or None when it is unknown or revoked."""
    digest = token_sha256(token)
    # Compared in constant time so the answer's timing tells nothing of the token.
    if admin_token_sha256 is not None and hmac.compare_digest(
        digest, admin_token_sha256
    ):
        return Principal(ENVIRONMENT_ADMIN, ApiTokenRole.ADMIN)

    row = (await session.execute(_TOKEN_LOOKUP, {"digest": digest})).first()
    if row is None:
        return None
    return Principal(f"token:{row.name}", ApiTokenRole(row.role))
