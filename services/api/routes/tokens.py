"""API tokens: admins create and revoke them; only their SHA-256 is stored."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response
from sqlalchemy import select

from services.api.auth import new_token, token_sha256
from services.api.deps import Admin, RuntimeDep, SessionDep
from services.api.errors import (
    FORBIDDEN,
    NOT_FOUND,
    READ_ERRORS,
    WRITE_ERRORS,
    invalid,
)
from services.api.pagination import (
    CursorParam,
    Limit,
    Page,
    decode_cursor,
    encode_cursor,
    rows_at_most,
)
from services.api.schemas import TokenCreate, TokenCreated, TokenOut
from shared.db.models import ApiToken
from shared.events import CreateApiToken, RevokeApiToken

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.get("", responses={**READ_ERRORS, **FORBIDDEN})
async def list_tokens(
    _: Admin, session: SessionDep, limit: Limit = 100, cursor: CursorParam = None
) -> Page[TokenOut]:
    """The tokens' records (never the tokens), oldest first."""
    statement = select(ApiToken).order_by(ApiToken.id).limit(rows_at_most(limit + 1))
    if cursor is not None:
        (after,) = decode_cursor("tokens", cursor, 1)
        statement = statement.where(ApiToken.id > _uuid(after))
    tokens = list(await session.scalars(statement))

    next_cursor = None
    if len(tokens) > limit:
        tokens = tokens[:limit]
        next_cursor = encode_cursor("tokens", [str(tokens[-1].id)])
    items = [
        TokenOut(
            token_id=t.id,
            name=t.name,
            role=t.role,
            created_by=t.created_by,
            created_at=t.created_at,
            revoked_at=t.revoked_at,
        )
        for t in tokens
    ]
    return Page(items=items, next_cursor=next_cursor)


@router.post("", status_code=201, responses=WRITE_ERRORS)
async def create_token(
    body: TokenCreate, principal: Admin, runtime: RuntimeDep
) -> TokenCreated:
    """A new token, shown in this answer only; keep it, it cannot be shown again."""
    token = new_token()
    command = CreateApiToken(
        token_id=uuid.uuid4(),
        name=body.name,
        role=body.role,
        token_sha256=token_sha256(token),
        requested_by=principal.name,
    )
    await runtime.commands.send(runtime.names.tokens_create, command)

    return TokenCreated(
        token_id=command.token_id, name=body.name, role=body.role, token=token
    )


@router.delete("/{token_id}", status_code=204, responses={**WRITE_ERRORS, **NOT_FOUND})
async def revoke_token(
    token_id: uuid.UUID, principal: Admin, runtime: RuntimeDep
) -> Response:
    """Revoke a token: it is refused from the next request on."""
    command = RevokeApiToken(token_id=token_id, requested_by=principal.name)
    await runtime.commands.send(runtime.names.tokens_revoke, command)

    return Response(status_code=204)


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise invalid("cursor", "not a cursor this API handed out") from None
