"""What route handlers depend on: the runtime, a read session, the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.api.auth import Principal, authenticate
from services.api.commands import CommandSender
from services.api.errors import ApiError, ErrorCode, FieldProblem
from shared.bus import BusNames

PAGE_COOKIE = "inventory_token"


@dataclass
class Runtime:
    """Everything a request may use, made once at start (see `app.py`)."""

    sessions: async_sessionmaker[AsyncSession]
    nats: NatsClient
    js: JetStreamContext
    names: BusNames
    commands: CommandSender
    admin_token_sha256: str | None


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """A read-only, repeatable-read session: one request sees one snapshot."""
    async with runtime.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

_bearer = HTTPBearer(
    auto_error=False,
    description="A token from API_ADMIN_TOKEN or from `POST /api/v1/tokens`.",
)


async def _principal_for(
    token: str | None, session: AsyncSession, runtime: Runtime
) -> Principal:
    if not token:
        raise ApiError(
            401, ErrorCode.UNAUTHORIZED, "missing token: send Authorization: Bearer"
        )
    principal = await authenticate(session, token, runtime.admin_token_sha256)
    if principal is None:
        raise ApiError(401, ErrorCode.UNAUTHORIZED, "unknown or revoked token")
    return principal


async def get_principal(
    runtime: RuntimeDep,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    return await _principal_for(
        credentials.credentials if credentials else None, session, runtime
    )


async def require_admin(
    principal: Annotated[Principal, Depends(get_principal)],
) -> Principal:
    if not principal.can_write:
        raise ApiError(403, ErrorCode.FORBIDDEN, "this needs an admin token")
    return principal


Reader = Annotated[Principal, Depends(get_principal)]
Admin = Annotated[Principal, Depends(require_admin)]


async def page_principal(
    request: Request, runtime: RuntimeDep, session: SessionDep
) -> Principal:
    """The caller of a page: a bearer token, or the cookie set by the login form."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        token = request.cookies.get(PAGE_COOKIE, "")
    return await _principal_for(token.strip() or None, session, runtime)


_allowed_query: dict[int, tuple[frozenset[str], frozenset[str]]] = {}


async def reject_unknown_query(request: Request) -> None:
    """Refuse unknown query parameters (a typo must not widen a list) and
    control characters (no id, name or tag has them)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _allowed_query.get(id(route))
    if known is None:
        known = _query_names(route.dependant)
        _allowed_query[id(route)] = known
    allowed, repeatable = known
    for name, value in request.query_params.multi_items():
        if any(ord(char) < 32 for char in value):
            raise ApiError(
                422,
                ErrorCode.INVALID,
                f"invalid {name}: control characters are not allowed",
                [FieldProblem(field=name, reason="control characters")],
            )
    repeated = sorted(
        name
        for name in set(request.query_params) - repeatable
        if len(request.query_params.getlist(name)) > 1
    )
    if repeated:
        # Only the last would count: `region=a&region=b` must not read as both.
        raise ApiError(
            422,
            ErrorCode.INVALID,
            f"given more than once: {', '.join(repeated)}",
            [FieldProblem(field=name, reason="give it once") for name in repeated],
        )
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise ApiError(
            422,
            ErrorCode.INVALID,
            f"unknown query parameter {', '.join(unknown)}; "
            f"known: {', '.join(sorted(allowed)) or 'none'}",
            [FieldProblem(field=name, reason="unknown parameter") for name in unknown],
        )


def _query_names(dependant: Dependant) -> tuple[frozenset[str], frozenset[str]]:
    """The query parameters a route takes, and those of them that may repeat."""
    names = {param.alias for param in dependant.query_params}
    repeatable = {
        param.alias
        for param in dependant.query_params
        if _is_sequence(param.field_info.annotation)
    }
    for sub in dependant.dependencies:
        sub_names, sub_repeatable = _query_names(sub)
        names |= sub_names
        repeatable |= sub_repeatable
    return frozenset(names), frozenset(repeatable)


def _is_sequence(annotation: Any) -> bool:
    if get_origin(annotation) in (Union, UnionType):
        return any(_is_sequence(arg) for arg in get_args(annotation))
    return get_origin(annotation) in (list, set, frozenset, tuple)
