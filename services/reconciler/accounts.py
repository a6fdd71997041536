"""Account and token commands from the API, each in one transaction.

Removing an account, or one of its regions, applies an empty snapshot of that
account to each region concerned, so the same rules decide what goes: its ENIs
and instances, its VPCs, subnets and groups unless something still uses them,
and what only it reported of owners outside the inventory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg

from services.reconciler.apply import ApplyResult, apply_snapshot, lock_region
from services.reconciler.rows import StagedRows
from shared.events import (
    AccountSpec,
    AuthMethod,
    CommandReply,
    CreateAccount,
    CreateApiToken,
    DeleteAccount,
    ErrorCode,
    RemoveAccountRegion,
    RevokeApiToken,
    UpdateAccount,
)

_ACCOUNT_COLUMNS = (
    "account_id",
    "account_name",
    "auth_method",
    "is_active",
    "default_role_name",
    "role_arn",
    "external_id",
    "default_regions",
)
_CLEARABLE_COLUMNS = frozenset({"default_role_name", "role_arn", "external_id"})
"""Nullable columns: null in an update clears them; elsewhere null changes nothing."""
_SELECT = ", ".join(_ACCOUNT_COLUMNS)
_RESOURCE_TABLES = ("vpcs", "subnets", "security_groups", "enis", "ec2_instances")


def _spec(row: asyncpg.Record) -> AccountSpec:
    values = dict(row)
    values["default_regions"] = list(values["default_regions"])
    return AccountSpec.model_validate(values)


def _not_found(account_id: str) -> CommandReply:
    return CommandReply(
        ok=False,
        error_code=ErrorCode.NOT_FOUND,
        error=f"account {account_id} is not in the inventory",
    )


async def create_account(pool: asyncpg.Pool, command: CreateAccount) -> CommandReply:
    spec = command.account
    values = spec.model_dump(include=set(_ACCOUNT_COLUMNS), mode="json")
    placeholders = ", ".join(f"${n}" for n in range(1, len(_ACCOUNT_COLUMNS) + 1))
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            f"INSERT INTO accounts ({_SELECT}) VALUES ({placeholders})"
            f" ON CONFLICT (account_id) DO NOTHING RETURNING {_SELECT}",
            *(values[column] for column in _ACCOUNT_COLUMNS),
        )
    if row is None:
        return CommandReply(
            ok=False,
            error_code=ErrorCode.CONFLICT,
            error=f"account {spec.account_id} already exists",
        )
    return CommandReply(ok=True, account=_spec(row))


async def update_account(pool: asyncpg.Pool, command: UpdateAccount) -> CommandReply:
    """Change the fields given; a region dropped from the account loses its data.

    Send the changes with `model_dump_json(exclude_unset=True)`: a field absent
    stays as it is, a role name, role ARN or external id given as null is cleared.
    """
    changes = {
        column: value
        for column, value in command.changes.model_dump(
            include=command.changes.model_fields_set, mode="json"
        ).items()
        if column in _ACCOUNT_COLUMNS
        and (value is not None or column in _CLEARABLE_COLUMNS)
    }
    new_regions = changes.get("default_regions")
    account_id = command.account_id

    async def change(connection: asyncpg.Connection, held: set[str]) -> CommandReply:
        current = await connection.fetchval(
            "SELECT default_regions FROM accounts WHERE account_id = $1 FOR UPDATE",
            account_id,
        )
        if current is None:
            return _not_found(account_id)
        dropped = [] if new_regions is None else sorted(set(current) - set(new_regions))
        if not set(dropped) <= held:
            raise _MoreRegions(dropped)
        row = await _update_row(connection, account_id, changes)
        assert row is not None  # locked above
        if _unreachable(row):
            raise _Unreachable  # rolls the change back
        removed = await _remove_regions(connection, account_id, dropped)
        return CommandReply(ok=True, account=_spec(row), removed=removed)

    async with pool.acquire() as connection:
        current = await connection.fetchval(
            "SELECT default_regions FROM accounts WHERE account_id = $1", account_id
        )
        if current is None:
            return _not_found(account_id)
        likely = [] if new_regions is None else set(current) - set(new_regions)
        try:
            return await _holding_regions(connection, likely, change)
        except _Unreachable:
            return CommandReply(
                ok=False,
                error_code=ErrorCode.INVALID,
                error="an instance_role account needs default_role_name or role_arn;"
                " this change would leave it with neither",
            )


class _MoreRegions(Exception):
    """The change needs the locks of more regions than it holds."""

    def __init__(self, regions: Iterable[str]) -> None:
        super().__init__(sorted(regions))
        self.regions = set(regions)


LOCK_ATTEMPTS = 5


async def _holding_regions(
    connection: asyncpg.Connection,
    regions: Iterable[str],
    change: Callable[[asyncpg.Connection, set[str]], Awaitable[CommandReply]],
) -> CommandReply:
    """Run `change` in one transaction that holds the locks of the regions it needs.

    Region locks come before the account's row (the lock order), but which
    regions a change touches is only certain once that row is locked: read
    before, it may have changed meanwhile. So `change` is given the regions
    held and raises `_MoreRegions` when it finds it needs others; it is then
    rolled back and run again holding those too.
    """
    held = set(regions)
    for _ in range(LOCK_ATTEMPTS):
        try:
            async with connection.transaction():
                for region in sorted(held):
                    await lock_region(connection, region)
                return await change(connection, held)
        except _MoreRegions as more:
            held |= more.regions
    return CommandReply(
        ok=False,
        error_code=ErrorCode.UNAVAILABLE,
        error="the account's regions kept changing meanwhile; try again",
    )


class _Unreachable(Exception):
    """The change would leave an instance-role account without a role."""


def _unreachable(row: asyncpg.Record) -> bool:
    return (
        row["auth_method"] == AuthMethod.INSTANCE_ROLE
        and not row["default_role_name"]
        and not row["role_arn"]
    )


async def _update_row(
    connection: asyncpg.Connection, account_id: str, changes: dict[str, Any]
) -> asyncpg.Record | None:
    columns = [column for column in _ACCOUNT_COLUMNS if column in changes]
    assignments = [f"{column} = ${n}" for n, column in enumerate(columns, start=2)]
    assignments.append("updated_at = now()")
    row: asyncpg.Record | None = await connection.fetchrow(
        f"UPDATE accounts SET {', '.join(assignments)} WHERE account_id = $1"
        f" RETURNING {_SELECT}",
        account_id,
        *(changes[column] for column in columns),
    )
    return row


async def delete_account(pool: asyncpg.Pool, command: DeleteAccount) -> CommandReply:
    """Remove the account, then what it owns in every region, under the rules."""
    account_id = command.account_id

    async def delete(connection: asyncpg.Connection, held: set[str]) -> CommandReply:
        deleted = await connection.fetchval(
            "DELETE FROM accounts WHERE account_id = $1 RETURNING account_id",
            account_id,
        )
        if deleted is None:
            return _not_found(account_id)
        # An apply of the account holds its row (KEY SHARE) until it commits, and
        # none can begin now: every region it has data in is known from here on.
        regions = await _regions_with_data(connection, account_id)
        if not set(regions) <= held:
            raise _MoreRegions(regions)
        removed = await _remove_regions(connection, account_id, regions)
        return CommandReply(ok=True, removed=removed)

    async with pool.acquire() as connection:
        likely = await _regions_with_data(connection, account_id)
        return await _holding_regions(connection, likely, delete)


async def remove_region(
    pool: asyncpg.Pool, command: RemoveAccountRegion
) -> CommandReply:
    """Drop a region from the account and remove what it had there."""
    async with pool.acquire() as connection, connection.transaction():
        await lock_region(connection, command.region)
        row = await connection.fetchrow(
            "UPDATE accounts SET default_regions = array_remove(default_regions, $2),"
            f" updated_at = now() WHERE account_id = $1 RETURNING {_SELECT}",
            command.account_id,
            command.region,
        )
        if row is None:
            return _not_found(command.account_id)
        removed = await _remove_regions(
            connection, command.account_id, [command.region]
        )
    return CommandReply(ok=True, account=_spec(row), removed=removed)


async def _regions_with_data(
    connection: asyncpg.Connection, account_id: str
) -> list[str]:
    """Regions of the account: configured, polled, or holding rows it owns or sees."""
    unions = " UNION ".join(
        f"SELECT region FROM {table}"
        " WHERE owner_account_id = $1 OR seen_by @> ARRAY[$1]::varchar[]"
        for table in _RESOURCE_TABLES
    )
    rows = await connection.fetch(
        "SELECT unnest(default_regions) AS region FROM accounts WHERE account_id = $1"
        " UNION SELECT region FROM region_polls WHERE account_id = $1"
        f" UNION {unions} ORDER BY region",
        account_id,
    )
    return [row["region"] for row in rows]


async def _remove_regions(
    connection: asyncpg.Connection, account_id: str, regions: list[str]
) -> dict[str, int]:
    """Apply an empty snapshot of the account to each region (locks already held)."""
    total = ApplyResult()
    for region in regions:
        result = await apply_snapshot(connection, account_id, region, StagedRows())
        for kind, count in result.removed.items():
            total.removed[kind] += count
        await connection.execute(
            "DELETE FROM region_polls WHERE account_id = $1 AND region = $2",
            account_id,
            region,
        )
    return {kind: count for kind, count in total.removed.items() if count}


async def create_token(pool: asyncpg.Pool, command: CreateApiToken) -> CommandReply:
    async with pool.acquire() as connection:
        created = await connection.fetchval(
            "INSERT INTO api_tokens (id, name, role, token_sha256, created_by)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id",
            command.token_id,
            command.name,
            command.role.value,
            command.token_sha256,
            command.requested_by,
        )
    if created is None:
        return CommandReply(
            ok=False, error_code=ErrorCode.CONFLICT, error="the token already exists"
        )
    return CommandReply(ok=True)


async def revoke_token(pool: asyncpg.Pool, command: RevokeApiToken) -> CommandReply:
    """Revoke a token; revoking it again keeps the first revocation time."""
    async with pool.acquire() as connection:
        revoked = await connection.fetchval(
            "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())"
            " WHERE id = $1 RETURNING id",
            command.token_id,
        )
    if revoked is None:
        return CommandReply(
            ok=False,
            error_code=ErrorCode.NOT_FOUND,
            error=f"token {command.token_id} does not exist",
        )
    return CommandReply(ok=True)
