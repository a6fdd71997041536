"""The reconciler as it runs: discovery events and commands over a real NATS."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from structlog.testing import capture_logs

from services.reconciler import accounts, discovery
from services.reconciler.apply import lock_region
from services.reconciler.bootstrap import run as run_reconciler
from shared import snapshots
from shared.bus import BusNames, ensure_streams
from shared.events import (
    AccountChanges,
    AccountSpec,
    ApiTokenRole,
    CreateAccount,
    CreateApiToken,
    DeleteAccount,
    ErrorCode,
    RegionSnapshot,
    RemoveAccountRegion,
    RevokeApiToken,
    SnapshotRef,
    TaskCreated,
    TaskFinished,
    TaskKind,
    TasksCreated,
    TaskStatus,
    UpdateAccount,
)
from shared.settings import ReconcilerSettings
from tests.conftest import StartReconciler
from tests.reconciler.factories import (
    REGION,
    A,
    B,
    at,
    create,
    discovered,
    eni,
    eventually,
    ids,
    request,
    subnet,
    vpc,
)

OTHER_REGION = "eu-central-1"


@pytest.fixture
async def service(start_reconciler: StartReconciler) -> None:
    await start_reconciler()


def child_created(account: str, **fields: object) -> TaskCreated:
    """The announcement of a poll of `account` in REGION."""
    announced: dict[str, object] = {
        "task_id": uuid.uuid4(),
        "kind": TaskKind.ACCOUNT_POLL,
        "account_id": account,
        "regions": [REGION],
        "created_at": at(0),
    }
    return TaskCreated.model_validate(announced | fields)


async def finished_events(
    nats_client: NatsClient, names: BusNames
) -> asyncio.Queue[TaskFinished]:
    """Every `tasks.finished` published from now on, in order."""
    finished: asyncio.Queue[TaskFinished] = asyncio.Queue()

    async def on_finished(msg) -> None:  # type: ignore[no-untyped-def]
        await finished.put(TaskFinished.model_validate_json(msg.data))

    await nats_client.subscribe(names.tasks_finished, cb=on_finished)
    return finished


@pytest.mark.usefixtures("service")
async def test_snapshot_is_applied_discarded_and_task_finish_published_when_stored(
    pool: asyncpg.Pool, nats_client: NatsClient, names: BusNames
) -> None:
    js = nats_client.jetstream()
    finished = await finished_events(nats_client, names)
    await create(nats_client, names, A, [REGION])
    task_id = uuid.uuid4()
    big = RegionSnapshot(
        enis=[
            eni(f"eni-{n:05d}", A, "s", "v", f"10.0.{n >> 8}.{n & 255}")
            for n in range(3000)
        ]
    )
    ref = await snapshots.store(js, names, f"{task_id}/{REGION}", big)
    assert isinstance(ref, SnapshotRef)
    event = discovered(A, RegionSnapshot(), at(0), task_id=task_id)
    event = event.model_copy(update={"snapshot": None, "snapshot_ref": ref})
    created = child_created(A, task_id=task_id)

    await js.publish(names.resources_discovered, event.model_dump_json().encode())
    await js.publish(names.tasks_created, created.model_dump_json().encode())

    done = await asyncio.wait_for(finished.get(), timeout=30)
    assert (done.task_id, done.status) == (task_id, TaskStatus.SUCCEEDED)
    assert await pool.fetchval("SELECT count(*) FROM enis") == 3000
    with pytest.raises(snapshots.SnapshotMissing):
        await snapshots.load(js, names, ref)


@pytest.mark.usefixtures("service")
async def test_every_child_of_a_batch_is_recorded_when_the_batch_comes_on_the_bus(
    pool: asyncpg.Pool, nats_client: NatsClient, names: BusNames
) -> None:
    js = nats_client.jetstream()
    finished = await finished_events(nats_client, names)
    parent = TaskCreated(
        task_id=uuid.uuid4(), kind=TaskKind.CYCLE, children_total=2, created_at=at(0)
    )
    polled = child_created(A, parent_task_id=parent.task_id)
    skipped = child_created(
        B, parent_task_id=parent.task_id, status=TaskStatus.SKIPPED, reason="busy"
    )
    batch = TasksCreated(
        cycle_id="manual-1",
        parent_task_id=parent.task_id,
        first=0,
        tasks=[polled, skipped],
    )

    await js.publish(names.tasks_created_batch, batch.model_dump_json().encode())
    await js.publish(names.tasks_created, parent.model_dump_json().encode())
    done = await asyncio.wait_for(finished.get(), timeout=20)
    await eventually(
        lambda: pool.fetchval(
            "SELECT count(*) = 3 FROM discovery_tasks WHERE announced"
        )
    )

    rows = await pool.fetch("SELECT account_id, status, error FROM discovery_tasks")
    assert (done.task_id, done.status) == (skipped.task_id, TaskStatus.SKIPPED)
    assert {tuple(row) for row in rows} == {
        (None, "pending", None),
        (A, "pending", None),
        (B, "skipped", "busy"),
    }


@pytest.mark.usefixtures("service")
async def test_message_is_terminated_not_redelivered_when_its_payload_is_bad(
    pool: asyncpg.Pool, nats_client: NatsClient, names: BusNames
) -> None:
    js = nats_client.jetstream()
    created = TaskCreated(task_id=uuid.uuid4(), kind=TaskKind.CYCLE, created_at=at(0))

    await js.publish(names.resources_discovered, b'{"task_id": "not a task"}')
    await js.publish(names.tasks_created, created.model_dump_json().encode())
    await eventually(lambda: pool.fetchval("SELECT count(*) = 1 FROM discovery_tasks"))
    await asyncio.sleep(3.5)  # longer than the ack wait: a kept message would return

    info = await js.consumer_info(names.discovery_stream, names.reconciler_consumer)
    assert info.num_ack_pending == 0
    assert info.num_redelivered == 0
    assert info.num_pending == 0


@pytest.mark.usefixtures("service")
async def test_commands_answer_with_clear_errors_when_invalid_unknown_or_duplicate(
    pool: asyncpg.Pool, nats_client: NatsClient, names: BusNames
) -> None:
    spec = AccountSpec(account_id=A, account_name="prod", default_regions=[REGION])

    created = await request(
        nats_client, names.accounts_create, CreateAccount(account=spec)
    )
    stored = await pool.fetchval("SELECT account_name FROM accounts")
    duplicate = await request(
        nats_client, names.accounts_create, CreateAccount(account=spec)
    )
    garbage = await request(nats_client, names.accounts_create, b'{"account": 1}')
    unknown = await request(
        nats_client,
        names.accounts_update,
        UpdateAccount(account_id=B, changes=AccountChanges(account_name="x")),
    )
    renamed = await request(
        nats_client,
        names.accounts_update,
        UpdateAccount(
            account_id=A,
            changes=AccountChanges(account_name="production", external_id=None),
        ),
    )

    assert created.ok and created.account == spec
    assert stored == "prod"
    assert duplicate.error_code is ErrorCode.CONFLICT
    assert garbage.error_code is ErrorCode.INVALID
    assert unknown.error_code is ErrorCode.NOT_FOUND
    assert renamed.account is not None
    assert renamed.account.account_name == "production"
    assert renamed.account.default_regions == [REGION]
    assert renamed.account.default_role_name == spec.default_role_name


@pytest.mark.usefixtures("service")
async def test_what_the_account_owns_is_removed_when_its_region_or_itself_is_removed(
    pool: asyncpg.Pool, nats_client: NatsClient, names: BusNames
) -> None:
    js = nats_client.jetstream()
    await create(nats_client, names, A, [REGION, OTHER_REGION])
    await create(nats_client, names, B, [REGION])
    shared = RegionSnapshot(
        vpcs=[vpc("vpc-a", A)],
        subnets=[subnet("subnet-a", "vpc-a", A)],
        enis=[eni("eni-a", A, "subnet-a", "vpc-a")],
    )
    for account, region, snapshot in [
        (A, REGION, shared),
        (A, OTHER_REGION, RegionSnapshot(enis=[eni("eni-other", A, "s", "v")])),
        (
            B,
            REGION,
            RegionSnapshot(enis=[eni("eni-b", B, "subnet-a", "vpc-a", "10.0.0.99")]),
        ),
    ]:
        event = discovered(account, snapshot, at(0), region)
        await js.publish(names.resources_discovered, event.model_dump_json().encode())
    await eventually(lambda: pool.fetchval("SELECT count(*) = 3 FROM enis"))

    dropped = await request(
        nats_client,
        names.accounts_remove_region,
        RemoveAccountRegion(account_id=A, region=OTHER_REGION),
    )
    deleted = await request(
        nats_client, names.accounts_delete, DeleteAccount(account_id=A)
    )
    again = await request(
        nats_client, names.accounts_delete, DeleteAccount(account_id=A)
    )

    assert dropped.removed == {"enis": 1, "eni_addresses": 1}
    assert dropped.account is not None and dropped.account.default_regions == [REGION]
    assert deleted.ok and deleted.removed["enis"] == 1
    assert await ids(pool, "enis", "eni_id") == {"eni-b"}
    assert await ids(pool, "vpcs", "vpc_id") == {"vpc-a"}
    assert await ids(pool, "subnets", "subnet_id") == {"subnet-a"}
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM region_polls WHERE account_id = $1", A
        )
        == 0
    )
    assert again.error_code is ErrorCode.NOT_FOUND


@pytest.mark.usefixtures("service")
async def test_only_the_digest_is_stored_when_a_token_is_created_then_revoked(
    pool: asyncpg.Pool, nats_client: NatsClient, names: BusNames
) -> None:
    token = CreateApiToken(
        token_id=uuid.uuid4(),
        name="ci",
        role=ApiTokenRole.READER,
        token_sha256="a" * 64,
    )

    created = await request(nats_client, names.tokens_create, token)
    duplicate = await request(nats_client, names.tokens_create, token)
    revoked = await request(
        nats_client, names.tokens_revoke, RevokeApiToken(token_id=token.token_id)
    )
    unknown = await request(
        nats_client, names.tokens_revoke, RevokeApiToken(token_id=uuid.uuid4())
    )

    row = await pool.fetchrow("SELECT * FROM api_tokens")
    assert created.ok and revoked.ok
    assert duplicate.error_code is ErrorCode.CONFLICT
    assert unknown.error_code is ErrorCode.NOT_FOUND
    assert row["token_sha256"] == "a" * 64 and row["revoked_at"] is not None
    assert json.dumps(dict(row), default=str).count("a" * 64) == 1


async def test_task_failure_is_published_when_the_sweep_finds_it_timed_out(
    start_reconciler: StartReconciler, nats_client: NatsClient, names: BusNames
) -> None:
    js = nats_client.jetstream()
    finished = await finished_events(nats_client, names)
    parent = TaskCreated(
        task_id=uuid.uuid4(), kind=TaskKind.CYCLE, children_total=1, created_at=at(0)
    )
    stuck = child_created(A, parent_task_id=parent.task_id)
    await ensure_streams(js, names)
    for event in (parent, stuck):
        await js.publish(names.tasks_created, event.model_dump_json().encode())

    await start_reconciler(task_timeout_seconds=2)

    statuses = {}
    for _ in range(2):
        event = await asyncio.wait_for(finished.get(), timeout=20)
        statuses[event.task_id] = (event.status, event.error)
    assert statuses == {
        stuck.task_id: (TaskStatus.FAILED, "timed out after 2 s"),
        parent.task_id: (TaskStatus.FAILED, None),
    }


@pytest.mark.usefixtures("service")
async def test_region_fails_not_redelivered_when_the_database_refuses_the_snapshot(
    pool: asyncpg.Pool, nats_client: NatsClient, names: BusNames
) -> None:
    js = nats_client.jetstream()
    await create(nats_client, names, A, [REGION])
    too_long = RegionSnapshot(enis=[eni("eni-" + "x" * 80, A, "s", "v")])
    event = discovered(A, too_long, at(0))

    await js.publish(names.resources_discovered, event.model_dump_json().encode())
    await eventually(
        lambda: pool.fetchval(
            "SELECT region_results ? $2 FROM discovery_tasks WHERE id = $1",
            event.task_id,
            REGION,
        )
    )

    results = await pool.fetchval(
        "SELECT region_results FROM discovery_tasks WHERE id = $1", event.task_id
    )
    info = await js.consumer_info(names.discovery_stream, names.reconciler_consumer)
    assert json.loads(results)[REGION]["status"] == "failed"
    assert await ids(pool, "enis", "eni_id") == set()
    assert info.num_ack_pending == 0


@pytest.mark.usefixtures("db")
async def test_a_clean_stop_logs_no_lost_connection(
    database_url: str, nats_url: str, names: BusNames
) -> None:
    settings = ReconcilerSettings(
        database_url=database_url, nats_url=nats_url, nats_namespace=names.namespace
    )
    stop, ready = asyncio.Event(), asyncio.Event()

    with capture_logs() as logs:
        running = asyncio.create_task(run_reconciler(settings, stop, ready))
        await asyncio.wait_for(ready.wait(), timeout=20)
        stop.set()
        await asyncio.wait_for(running, timeout=20)

    events = [entry["event"] for entry in logs]
    assert "reconciler_stopped" in events
    assert "nats_disconnected" not in events


@pytest.mark.usefixtures("service")
async def test_snapshot_applies_on_redelivery_when_its_statement_was_cancelled(
    pool: asyncpg.Pool, nats_client: NatsClient, names: BusNames
) -> None:
    js = nats_client.jetstream()
    finished = await finished_events(nats_client, names)
    await create(nats_client, names, A, [REGION])
    created = child_created(A)
    await js.publish(names.tasks_created, created.model_dump_json().encode())
    await eventually(lambda: pool.fetchval("SELECT count(*) = 1 FROM discovery_tasks"))
    snapshot = RegionSnapshot(enis=[eni("eni-1", A, "s", "v")])
    event = discovered(A, snapshot, at(0), task_id=created.task_id)
    waiting = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query LIKE '%pg_advisory_xact_lock%'"
    )

    async with pool.acquire() as blocker, blocker.transaction():
        await lock_region(blocker, REGION)
        await js.publish(names.resources_discovered, event.model_dump_json().encode())
        await eventually(lambda: pool.fetchval(waiting))
        assert await pool.fetchval(
            "SELECT pg_cancel_backend($1)", await pool.fetchval(waiting)
        )

    done = await asyncio.wait_for(finished.get(), timeout=30)
    assert (done.task_id, done.status) == (created.task_id, TaskStatus.SUCCEEDED)
    assert await ids(pool, "enis", "eni_id") == {"eni-1"}


@pytest.mark.usefixtures("service")
async def test_message_is_terminated_when_even_its_failure_cannot_be_recorded(
    pool: asyncpg.Pool,
    nats_client: NatsClient,
    names: BusNames,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[object] = []

    async def unrecordable(*args: object) -> None:
        attempts.append(args)
        raise RuntimeError("the failure cannot be stored either")

    monkeypatch.setattr(discovery, "record_failure", unrecordable)
    js = nats_client.jetstream()
    await create(nats_client, names, A, [REGION])
    # PostgreSQL refuses NUL in text: the apply fails for good.
    refused = RegionSnapshot(vpcs=[vpc("vpc-1", A, tags={"Name": "a\x00b"})])
    event = discovered(A, refused, at(0))

    await js.publish(names.resources_discovered, event.model_dump_json().encode())
    await eventually(lambda: asyncio.sleep(0, bool(attempts)))
    await asyncio.sleep(3.5)  # longer than the ack wait: a kept message would return

    info = await js.consumer_info(names.discovery_stream, names.reconciler_consumer)
    assert len(attempts) == 1
    assert (info.num_ack_pending, info.num_redelivered, info.num_pending) == (0, 0, 0)


async def test_command_is_answered_when_it_fails_unexpectedly(
    start_reconciler: StartReconciler,
    nats_client: NatsClient,
    names: BusNames,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(accounts, "delete_account", broken)
    await start_reconciler()

    reply = await request(
        nats_client, names.accounts_delete, DeleteAccount(account_id=A)
    )

    assert (reply.ok, reply.error_code) == (False, ErrorCode.UNAVAILABLE)
    assert reply.error is not None and "may or may not" in reply.error


@pytest.mark.usefixtures("service")
async def test_account_named_before_the_name_rules_can_still_be_changed(
    pool: asyncpg.Pool, nats_client: NatsClient, names: BusNames
) -> None:
    await create(nats_client, names, A, [REGION])
    await pool.execute("UPDATE accounts SET account_name = 'tab\tname'")

    reply = await request(
        nats_client,
        names.accounts_update,
        UpdateAccount(account_id=A, changes=AccountChanges(is_active=False)),
    )

    assert reply.ok and reply.account is not None
    assert (reply.account.account_name, reply.account.is_active) == ("tab\tname", False)


@pytest.mark.usefixtures("service")
async def test_region_fails_with_the_reason_when_an_inline_snapshot_is_no_snapshot(
    pool: asyncpg.Pool, nats_client: NatsClient, names: BusNames
) -> None:
    js = nats_client.jetstream()
    finished = await finished_events(nats_client, names)
    await create(nats_client, names, A, [REGION])
    created = child_created(A)
    event = json.loads(
        discovered(
            A, RegionSnapshot(), at(0), task_id=created.task_id
        ).model_dump_json()
    )
    event["snapshot"] = {"hello": "world"}

    await js.publish(names.tasks_created, created.model_dump_json().encode())
    await js.publish(names.resources_discovered, json.dumps(event).encode())

    done = await asyncio.wait_for(finished.get(), timeout=30)
    row = await pool.fetchrow("SELECT status, error FROM discovery_tasks")
    assert (done.task_id, done.status) == (created.task_id, TaskStatus.FAILED)
    assert row["status"] == "failed"
    assert "the snapshot was refused: snapshot" in row["error"]
    assert "not a complete RegionSnapshot" in row["error"]
