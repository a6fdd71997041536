"""The other side of the API's commands, as the contract in shared.events says.

The reconciler and the scheduler answer these subjects in production. Here a
small responder answers them: it records each request, commits the effect the
contract promises (accounts and tokens rows) before replying, and can be told
to refuse the next command with a given error code.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from sqlalchemy import delete, func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.bus import BusNames
from shared.db.engine import make_engine
from shared.db.models import Account, ApiToken
from shared.events import (
    CommandReply,
    CreateAccount,
    CreateApiToken,
    DeleteAccount,
    ErrorCode,
    PollAccountNow,
    RemoveAccountRegion,
    RevokeApiToken,
    StartCycle,
    UpdateAccount,
)


@dataclass
class ContractResponder:
    nats: NatsClient
    names: BusNames
    engine: AsyncEngine
    requests: list[tuple[str, Any]] = field(default_factory=list)
    refuse_next: tuple[ErrorCode, str] | None = None
    failures: list[Exception] = field(default_factory=list)
    removed: dict[str, int] = field(default_factory=lambda: {"enis": 2, "vpcs": 1})
    _subscriptions: list[Subscription] = field(default_factory=list)

    async def start(self) -> None:
        handlers = {
            self.names.accounts_create: (CreateAccount, self._create_account),
            self.names.accounts_update: (UpdateAccount, self._update_account),
            self.names.accounts_delete: (DeleteAccount, self._delete_account),
            self.names.accounts_remove_region: (RemoveAccountRegion, self._region),
            self.names.tokens_create: (CreateApiToken, self._create_token),
            self.names.tokens_revoke: (RevokeApiToken, self._revoke_token),
            self.names.scheduler_start_cycle: (StartCycle, self._task),
            self.names.scheduler_poll_account: (PollAccountNow, self._task),
        }
        for subject, (model, handler) in handlers.items():
            self._subscriptions.append(
                await self.nats.subscribe(subject, cb=self._answer(model, handler))
            )
        await self.nats.flush()

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            await subscription.unsubscribe()

    def of(self, subject: str) -> list[Any]:
        return [command for name, command in self.requests if name == subject]

    def _answer(self, model: Any, handler: Any) -> Any:
        async def answer(message: Msg) -> None:
            command = model.model_validate_json(message.data)
            self.requests.append((message.subject, command))
            if self.refuse_next is not None:
                code, text = self.refuse_next
                self.refuse_next = None
                reply = CommandReply(ok=False, error_code=code, error=text)
            else:
                try:
                    reply = await handler(command)
                except IntegrityError as error:
                    reply = CommandReply(
                        ok=False, error_code=ErrorCode.INVALID, error=str(error.orig)
                    )
                except Exception as error:
                    self.failures.append(error)
                    raise
            await message.respond(reply.model_dump_json().encode())

        return answer

    async def _create_account(self, command: CreateAccount) -> CommandReply:
        try:
            async with self.engine.begin() as connection:
                await connection.execute(
                    insert(Account).values(
                        **command.account.model_dump(exclude={"schema_version"})
                    )
                )
        except IntegrityError:
            return CommandReply(
                ok=False, error_code=ErrorCode.CONFLICT, error="account exists"
            )
        return CommandReply(ok=True, account=command.account)

    async def _update_account(self, command: UpdateAccount) -> CommandReply:
        changes = command.changes.model_dump(
            exclude_unset=True, exclude={"schema_version"}
        )
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(Account)
                .where(Account.account_id == command.account_id)
                .values(**changes)
            )
        if result.rowcount == 0:
            return CommandReply(
                ok=False, error_code=ErrorCode.NOT_FOUND, error="no such account"
            )
        return CommandReply(ok=True)

    async def _delete_account(self, command: DeleteAccount) -> CommandReply:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                delete(Account).where(Account.account_id == command.account_id)
            )
        if result.rowcount == 0:
            return CommandReply(
                ok=False, error_code=ErrorCode.NOT_FOUND, error="no such account"
            )
        return CommandReply(ok=True, removed=self.removed)

    async def _region(self, command: RemoveAccountRegion) -> CommandReply:
        return CommandReply(ok=True, removed={"enis": 1})

    async def _create_token(self, command: CreateApiToken) -> CommandReply:
        async with self.engine.begin() as connection:
            await connection.execute(
                insert(ApiToken).values(
                    id=command.token_id,
                    name=command.name,
                    role=command.role.value,
                    token_sha256=command.token_sha256,
                    created_by=command.requested_by,
                )
            )
        return CommandReply(ok=True)

    async def _revoke_token(self, command: RevokeApiToken) -> CommandReply:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(ApiToken)
                .where(ApiToken.id == command.token_id)
                .values(revoked_at=func.now())
            )
        if result.rowcount == 0:
            return CommandReply(
                ok=False, error_code=ErrorCode.NOT_FOUND, error="no such token"
            )
        return CommandReply(ok=True)

    async def _task(self, command: StartCycle | PollAccountNow) -> CommandReply:
        return CommandReply(ok=True, task_id=uuid.uuid4())


@contextlib.contextmanager
def responder_in_thread(
    nats_url: str, names: BusNames, database_url: str
) -> Iterator[ContractResponder]:
    """A responder on an event loop of its own, for tests that block theirs."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> ContractResponder:
        client = await nats.connect(nats_url)
        responder = ContractResponder(client, names, make_engine(database_url))
        await responder.start()
        return responder

    async def stop(responder: ContractResponder) -> None:
        await responder.stop()
        await responder.nats.drain()
        await responder.engine.dispose()

    responder = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    try:
        yield responder
    finally:
        asyncio.run_coroutine_threadsafe(stop(responder), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
