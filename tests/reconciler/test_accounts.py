"""Account commands change the inventory under the same rules as snapshots."""

from __future__ import annotations

import asyncio

import asyncpg

from services.reconciler import accounts
from services.reconciler.apply import lock_region
from shared.events import (
    AccountChanges,
    AuthMethod,
    DeleteAccount,
    ErrorCode,
    RegionSnapshot,
    UpdateAccount,
)
from tests.reconciler.factories import (
    REGION,
    A,
    B,
    add_account,
    at,
    eni,
    eventually,
    ids,
    poll,
)

OTHER_REGION = "eu-central-1"


async def test_only_that_regions_data_is_removed_when_an_update_drops_a_region(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A, (REGION, OTHER_REGION))
    await add_account(pool, B, (OTHER_REGION,))
    await poll(pool, A, RegionSnapshot(enis=[eni("eni-kept", A, "s", "v")]), at(0))
    await poll(
        pool,
        A,
        RegionSnapshot(
            enis=[eni("eni-gone", A, "s", "v"), eni("eni-b", B, "s", "v", "10.0.0.2")]
        ),
        at(0),
        OTHER_REGION,
    )

    reply = await accounts.update_account(
        pool,
        UpdateAccount(account_id=A, changes=AccountChanges(default_regions=[REGION])),
    )

    assert reply.ok
    assert reply.removed == {"enis": 1, "eni_addresses": 1}
    assert await ids(pool, "enis", "eni_id") == {"eni-kept", "eni-b"}
    assert await pool.fetchval(
        "SELECT array_agg(region) FROM region_polls WHERE account_id = $1", A
    ) == [REGION]


async def test_fields_are_kept_when_not_given_and_cleared_when_given_as_null(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    await pool.execute("UPDATE accounts SET external_id = 'secret-ish-id'")

    reply = await accounts.update_account(
        pool,
        UpdateAccount(
            account_id=A,
            changes=AccountChanges(is_active=False, external_id=None),
        ),
    )

    assert reply.account is not None
    assert reply.account.is_active is False
    assert reply.account.external_id is None
    assert reply.account.default_regions == [REGION]
    assert reply.account.account_name == f"account {A}"


async def test_change_leaving_an_instance_role_account_without_a_role_is_refused(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    before = await pool.fetchrow("SELECT * FROM accounts")

    refused = await accounts.update_account(
        pool,
        UpdateAccount(
            account_id=A,
            changes=AccountChanges(default_role_name=None, account_name="renamed"),
        ),
    )
    manual = await accounts.update_account(
        pool,
        UpdateAccount(
            account_id=A,
            changes=AccountChanges(
                auth_method=AuthMethod.MANUAL, default_role_name=None
            ),
        ),
    )

    assert (refused.ok, refused.error_code) == (False, ErrorCode.INVALID)
    assert refused.error is not None and "role_arn" in refused.error
    assert manual.ok and manual.account is not None
    assert manual.account.default_role_name is None
    assert manual.account.account_name == before["account_name"]


async def test_deletion_removes_data_of_a_region_added_while_it_waited(
    pool: asyncpg.Pool,
) -> None:
    other = "eu-central-1"
    await add_account(pool, A)
    await poll(pool, A, RegionSnapshot(enis=[eni("eni-1", A, "s", "v")]), at(0))
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query LIKE '%pg_advisory_xact_lock%'"
    )

    async with pool.acquire() as blocker:
        transaction = blocker.transaction()
        await transaction.start()
        await lock_region(blocker, REGION)
        deletion = asyncio.create_task(
            accounts.delete_account(pool, DeleteAccount(account_id=A))
        )
        await eventually(lambda: pool.fetchval(waiting))
        # Meanwhile the account gains a region, and a snapshot of it is applied.
        await pool.execute(
            "UPDATE accounts SET default_regions = default_regions || $1::varchar",
            other,
        )
        await poll(
            pool, A, RegionSnapshot(enis=[eni("eni-2", A, "s", "v")]), at(1), other
        )
        await transaction.rollback()
        reply = await asyncio.wait_for(deletion, timeout=20)

    assert reply.ok
    assert reply.removed == {"enis": 2, "eni_addresses": 2}
    assert await ids(pool, "enis", "eni_id") == set()
    assert await pool.fetchval("SELECT count(*) FROM region_polls") == 0
