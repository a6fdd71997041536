"""Reading accounts and discovery tasks; the scheduler never writes the database."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import String, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scheduler.planning import AccountRow
from shared.db.models import Account, DiscoveryTask
from shared.events import TaskKind, TaskStatus

UNFINISHED = (TaskStatus.PENDING.value, TaskStatus.RUNNING.value)

_ACCOUNT_COLUMNS = (
    Account.account_id,
    Account.auth_method,
    Account.is_active,
    Account.default_role_name,
    Account.role_arn,
    Account.external_id,
    Account.default_regions,
)


class SqlAccounts:
    """The accounts and discovery tasks tables, read-only."""

    def __init__(self, engine: AsyncEngine) -> None:
        # Each read is a statement of its own: no transaction stays open (and
        # no lock stays held) between reads, even if a read is cancelled.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def accounts(self) -> list[AccountRow]:
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                select(*_ACCOUNT_COLUMNS).order_by(Account.account_id)
            )
            return [_account(row) for row in rows]

    async def account(self, account_id: str) -> AccountRow | None:
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                select(*_ACCOUNT_COLUMNS).where(Account.account_id == account_id)
            )
            row = rows.first()
            return _account(row) if row else None

    async def accounts_by_id(self, account_ids: list[str]) -> dict[str, AccountRow]:
        ids = bindparam("ids", account_ids, type_=ARRAY(String))
        query = select(*_ACCOUNT_COLUMNS).where(Account.account_id == any_(ids))
        async with self._engine.connect() as connection:
            rows = await connection.execute(query)
            return {account.account_id: account for account in map(_account, rows)}

    async def unfinished_polls(self) -> dict[str, str]:
        query = select(
            DiscoveryTask.account_id, DiscoveryTask.id, DiscoveryTask.status
        ).where(
            DiscoveryTask.kind == TaskKind.ACCOUNT_POLL.value,
            DiscoveryTask.status.in_(UNFINISHED),
            DiscoveryTask.account_id.is_not(None),
        )
        async with self._engine.connect() as connection:
            rows = await connection.execute(query)
            return {
                str(account_id): f"previous poll {task_id} is still {status}"
                for account_id, task_id, status in rows
            }

    async def recorded(self, task_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        if not task_ids:
            return set()
        ids = bindparam("ids", task_ids, type_=ARRAY(UUID(as_uuid=True)))
        query = select(DiscoveryTask.id).where(DiscoveryTask.id == any_(ids))
        async with self._engine.connect() as connection:
            rows = await connection.execute(query)
            return {task_id for (task_id,) in rows}


def _account(row: Sequence[Any]) -> AccountRow:
    account_id, auth_method, is_active, role_name, role_arn, external_id, regions = row
    return AccountRow(
        account_id=account_id,
        auth_method=auth_method,
        is_active=bool(is_active),
        default_role_name=role_name,
        role_arn=role_arn,
        external_id=external_id,
        regions=tuple(regions or ()),
    )
