"""Operators' commands over NATS request-reply."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NatsClient
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.bus import BusNames
from shared.events import CommandReply, PollAccountNow, StartCycle
from tests.scheduler.conftest import (
    AccountSeed,
    FakeClock,
    account_ids,
    polls,
    seed_accounts,
    seed_task,
    tasks_created,
)

pytestmark = pytest.mark.usefixtures("db")


async def ask(
    nats_client: NatsClient, subject: str, command: BaseModel | bytes
) -> CommandReply:
    body = command if isinstance(command, bytes) else command.model_dump_json().encode()
    reply = await nats_client.request(subject, body, timeout=10)
    return CommandReply.model_validate_json(reply.data)


async def test_start_cycle_creates_a_cycle_recording_the_user_when_asked(
    db: AsyncEngine, nats_client: NatsClient, names: BusNames, start_replica
) -> None:
    await seed_accounts(db, *(AccountSeed(i) for i in account_ids(2)))
    await start_replica(FakeClock(), stagger_seconds=0)

    reply = await ask(
        nats_client, names.scheduler_start_cycle, StartCycle(requested_by="alice")
    )

    created = await tasks_created(nats_client, names)
    parent = next(task for task in created if task["kind"] == "cycle")
    assert reply.ok and str(reply.task_id) == parent["task_id"]
    assert parent["initiated_by"] == "alice" and parent["children_total"] == 2
    assert {task["initiated_by"] for task in created} == {"alice"}


async def test_poll_account_publishes_one_poll_without_parent_when_asked(
    db: AsyncEngine, nats_client: NatsClient, names: BusNames, start_replica
) -> None:
    await seed_accounts(db, AccountSeed("123456789012", regions=["eu-west-1"]))
    await start_replica(FakeClock())

    reply = await ask(
        nats_client,
        names.scheduler_poll_account,
        PollAccountNow(account_id="123456789012", requested_by="bob"),
    )

    [poll] = await polls(nats_client, names)
    [task] = await tasks_created(nats_client, names)
    assert reply.ok and str(reply.task_id) == poll["task_id"] == task["task_id"]
    assert task["parent_task_id"] is None and task["initiated_by"] == "bob"
    assert poll["requested_by"] == "bob" and poll["regions"] == ["eu-west-1"]


@pytest.mark.parametrize(
    ("seed", "code", "words"),
    [
        (AccountSeed("999999999999"), "not_found", "no account"),
        (AccountSeed("123456789012", auth_method="manual"), "invalid", "manual"),
        (AccountSeed("123456789012", regions=[]), "invalid", "no region"),
        (AccountSeed("123456789012", is_active=False), "invalid", "inactive"),
        (
            AccountSeed("123456789012", role_name=None),
            "invalid",
            "neither a role name",
        ),
    ],
)
async def test_poll_account_is_refused_when_the_account_cannot_be_polled(
    db: AsyncEngine,
    nats_client: NatsClient,
    names: BusNames,
    start_replica,
    seed: AccountSeed,
    code: str,
    words: str,
) -> None:
    await seed_accounts(db, seed)
    await start_replica(FakeClock())

    reply = await ask(
        nats_client,
        names.scheduler_poll_account,
        PollAccountNow(account_id="123456789012", requested_by="bob"),
    )

    assert not reply.ok and reply.error_code == code
    assert words in (reply.error or "")
    assert await polls(nats_client, names) == []


async def test_poll_account_is_a_conflict_when_its_previous_poll_is_pending(
    db: AsyncEngine, nats_client: NatsClient, names: BusNames, start_replica
) -> None:
    await seed_accounts(db, AccountSeed("123456789012"))
    pending = await seed_task(db, "123456789012", "pending")
    await start_replica(FakeClock())

    reply = await ask(
        nats_client,
        names.scheduler_poll_account,
        PollAccountNow(account_id="123456789012", requested_by="bob"),
    )

    assert not reply.ok and reply.error_code == "conflict"
    assert str(pending) in (reply.error or "")
    assert await polls(nats_client, names) == []


@pytest.mark.parametrize("body", [b"not json", b'{"account_id": "12"}', b"{}"])
async def test_malformed_commands_are_answered_invalid_when_they_do_not_parse(
    db: AsyncEngine, nats_client: NatsClient, names: BusNames, start_replica, body
) -> None:
    await start_replica(FakeClock())

    polled = await ask(nats_client, names.scheduler_poll_account, body)
    started = await ask(nats_client, names.scheduler_start_cycle, body)

    assert (polled.ok, polled.error_code) == (False, "invalid")
    assert (started.ok, started.error_code) == (False, "invalid")
    assert polled.error
