"""Accounts: read from the database, changed through the reconciler."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy import select

from services.api.commands import accepted
from services.api.deps import Admin, Reader, RuntimeDep, SessionDep
from services.api.errors import (
    CONFLICT,
    NOT_FOUND,
    READ_ERRORS,
    WRITE_ERRORS,
    invalid,
    not_found,
)
from services.api.ids import REGION, AccountPath, known_regions
from services.api.pagination import (
    CursorParam,
    Limit,
    Page,
    decode_cursor,
    encode_cursor,
    rows_at_most,
)
from services.api.schemas import (
    Accepted,
    AccountCreate,
    AccountDeleted,
    AccountOut,
    AccountUpdate,
    RegionRemoved,
)
from shared.db.models import Account
from shared.events import (
    AccountChanges,
    AccountSpec,
    CreateAccount,
    DeleteAccount,
    PollAccountNow,
    RemoveAccountRegion,
    UpdateAccount,
)

router = APIRouter(prefix="/accounts", tags=["accounts"])


@router.get("", responses=READ_ERRORS)
async def list_accounts(
    _: Reader, session: SessionDep, limit: Limit = 100, cursor: CursorParam = None
) -> Page[AccountOut]:
    """The accounts, by account id."""
    statement = (
        select(Account).order_by(Account.account_id).limit(rows_at_most(limit + 1))
    )
    if cursor is not None:
        (after,) = decode_cursor("accounts", cursor, 1)
        statement = statement.where(Account.account_id > after)
    accounts = list(await session.scalars(statement))

    next_cursor = None
    if len(accounts) > limit:
        accounts = accounts[:limit]
        next_cursor = encode_cursor("accounts", [accounts[-1].account_id])
    return Page(
        items=[AccountOut.model_validate(a) for a in accounts], next_cursor=next_cursor
    )


@router.get("/{account_id}", responses={**READ_ERRORS, **NOT_FOUND})
async def get_account(
    account_id: AccountPath, _: Reader, session: SessionDep
) -> AccountOut:
    account = await session.get(Account, account_id)
    if account is None:
        raise not_found(f"account {account_id}")
    return AccountOut.model_validate(account)


@router.post("", status_code=201, responses={**WRITE_ERRORS, **CONFLICT})
async def create_account(
    body: AccountCreate, principal: Admin, runtime: RuntimeDep, session: SessionDep
) -> AccountOut:
    """Register an account; answered once the reconciler has stored it."""
    command = CreateAccount(
        account=AccountSpec(**body.model_dump()), requested_by=principal.name
    )
    reply = await runtime.commands.send(runtime.names.accounts_create, command)

    return await _stored(session, body.account_id, reply.account)


@router.patch("/{account_id}", responses={**WRITE_ERRORS, **NOT_FOUND, **CONFLICT})
async def update_account(
    account_id: AccountPath,
    body: AccountUpdate,
    principal: Admin,
    runtime: RuntimeDep,
    session: SessionDep,
) -> AccountOut:
    """Change the fields sent; a field sent as null is cleared."""
    fields = body.model_dump(exclude_unset=True)
    if not fields:
        raise invalid("body", "send at least one field to change")
    changes = AccountChanges(**fields)
    command = UpdateAccount(
        account_id=account_id, changes=changes, requested_by=principal.name
    )
    reply = await runtime.commands.send(runtime.names.accounts_update, command)

    return await _stored(session, account_id, reply.account)


@router.delete("/{account_id}", responses={**WRITE_ERRORS, **NOT_FOUND})
async def delete_account(
    account_id: AccountPath, principal: Admin, runtime: RuntimeDep
) -> AccountDeleted:
    """Remove the account and what it owns; shared resources still in use stay."""
    command = DeleteAccount(account_id=account_id, requested_by=principal.name)
    reply = await runtime.commands.send(runtime.names.accounts_delete, command)

    return AccountDeleted(account_id=account_id, removed=reply.removed)


@router.delete(
    "/{account_id}/regions/{region}", responses={**WRITE_ERRORS, **NOT_FOUND}
)
async def remove_region(
    account_id: AccountPath,
    region: Annotated[str, Path(pattern=REGION, max_length=32)],
    principal: Admin,
    runtime: RuntimeDep,
) -> RegionRemoved:
    """Stop polling a region and remove what the account owns there."""
    if region not in known_regions():
        raise invalid("region", f"unknown AWS region {region!r}")
    command = RemoveAccountRegion(
        account_id=account_id, region=region, requested_by=principal.name
    )
    reply = await runtime.commands.send(runtime.names.accounts_remove_region, command)

    return RegionRemoved(account_id=account_id, region=region, removed=reply.removed)


@router.post(
    "/{account_id}/polls", status_code=202, responses={**WRITE_ERRORS, **NOT_FOUND}
)
async def poll_account(
    account_id: AccountPath, principal: Admin, runtime: RuntimeDep
) -> Accepted:
    """Poll this account now; follow the task it answers."""
    command = PollAccountNow(account_id=account_id, requested_by=principal.name)
    reply = await runtime.commands.send(runtime.names.scheduler_poll_account, command)

    return accepted(reply)


async def _stored(
    session: SessionDep, account_id: str, echoed: AccountSpec | None
) -> AccountOut:
    """The account as committed; the reply's copy if this read predates it."""
    # End the snapshot taken while authenticating: it predates the commit.
    await session.rollback()
    account = await session.get(Account, account_id, populate_existing=True)
    if account is not None:
        return AccountOut.model_validate(account)
    if echoed is None:
        raise not_found(f"account {account_id}")
    return AccountOut.model_validate(echoed.model_dump())
