"""Applying region snapshots under the domain rules, against a real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from services.reconciler import accounts, discovery
from shared.events import (
    DeleteAccount,
    DiscoveryFailed,
    FailureKind,
    RegionSnapshot,
    RemoveAccountRegion,
)
from tests.reconciler.factories import (
    OUTSIDER,
    REGION,
    A,
    B,
    add_account,
    at,
    discovered,
    eni,
    group,
    ids,
    instance,
    poll,
    subnet,
    vpc,
)


def _shared_vpc_seen_by_a() -> RegionSnapshot:
    return RegionSnapshot(
        vpcs=[vpc("vpc-shared", A)],
        subnets=[
            subnet("subnet-1", "vpc-shared", A),
            subnet("subnet-2", "vpc-shared", A),
        ],
        security_groups=[group("sg-a", A, "vpc-shared")],
        enis=[
            eni("eni-1", A, "subnet-1", "vpc-shared", "10.0.1.1", ("sg-a",)),
            eni("eni-2", B, "subnet-1", "vpc-shared", "10.0.1.2", ("sg-a",)),
            eni("eni-3", A, "subnet-2", "vpc-shared", "10.0.2.3", ("sg-a",)),
        ],
    )


async def test_shared_vpc_is_kept_while_another_accounts_eni_remains_when_owner_repolls(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    await add_account(pool, B)
    await poll(pool, A, _shared_vpc_seen_by_a(), at(0))
    await poll(
        pool,
        B,
        RegionSnapshot(
            vpcs=[vpc("vpc-shared", A)],
            subnets=[subnet("subnet-1", "vpc-shared", A)],
            enis=[eni("eni-2", B, "subnet-1", "vpc-shared", "10.0.1.2", ("sg-a",))],
        ),
        at(1),
    )
    after_first_polls = await ids(pool, "enis", "eni_id")

    # AWS no longer has ENI-1, ENI-3 nor the VPC in A's view; ENI-2 remains.
    await poll(pool, A, RegionSnapshot(), at(60))
    after_a_repoll = {
        table: await ids(pool, table, key)
        for table, key in [
            ("enis", "eni_id"),
            ("vpcs", "vpc_id"),
            ("subnets", "subnet_id"),
            ("security_groups", "group_id"),
        ]
    }

    # ENI-2 goes too (B's poll), then A's next poll removes the empty VPC.
    await poll(pool, B, RegionSnapshot(), at(61))
    await poll(pool, A, RegionSnapshot(), at(120))
    remaining = [
        await ids(pool, table, key)
        for table, key in [
            ("enis", "eni_id"),
            ("vpcs", "vpc_id"),
            ("subnets", "subnet_id"),
            ("security_groups", "group_id"),
            ("security_group_rules", "rule_id"),
        ]
    ]

    assert after_first_polls == {"eni-1", "eni-2", "eni-3"}
    assert after_a_repoll == {
        "enis": {"eni-2"},
        "vpcs": {"vpc-shared"},
        "subnets": {"subnet-1"},
        "security_groups": {"sg-a"},
    }
    assert remaining == [set(), set(), set(), set(), set()]


async def test_empty_gone_vpc_is_removed_with_subnets_groups_and_rules_when_polled(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    await poll(
        pool,
        A,
        RegionSnapshot(
            vpcs=[vpc("vpc-1", A), vpc("vpc-2", A)],
            subnets=[subnet("subnet-1", "vpc-1", A), subnet("subnet-2", "vpc-2", A)],
            security_groups=[
                group("sg-1", A, "vpc-1", rules=3),
                group("sg-2", A, "vpc-2"),
            ],
        ),
        at(0),
    )

    outcome = await poll(
        pool,
        A,
        RegionSnapshot(
            vpcs=[vpc("vpc-2", A)],
            subnets=[subnet("subnet-2", "vpc-2", A)],
            security_groups=[group("sg-2", A, "vpc-2")],
        ),
        at(60),
    )

    assert await ids(pool, "vpcs", "vpc_id") == {"vpc-2"}
    assert await ids(pool, "subnets", "subnet_id") == {"subnet-2"}
    assert await ids(pool, "security_groups", "group_id") == {"sg-2"}
    assert await ids(pool, "security_group_rules", "rule_id") == {"sg-2-r0"}
    assert outcome.result is not None
    assert outcome.result.removed["vpcs"] == 1
    assert outcome.result.removed["security_group_rules"] == 3


async def test_vpc_still_in_aws_is_kept_when_everything_in_it_is_gone(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    await poll(
        pool,
        A,
        RegionSnapshot(
            vpcs=[vpc("vpc-1", A)],
            subnets=[subnet("subnet-1", "vpc-1", A)],
            enis=[eni("eni-1", A, "subnet-1", "vpc-1")],
            instances=[instance("i-1", A, "subnet-1", "vpc-1")],
        ),
        at(0),
    )

    await poll(pool, A, RegionSnapshot(vpcs=[vpc("vpc-1", A)]), at(60))

    assert await ids(pool, "vpcs", "vpc_id") == {"vpc-1"}
    assert await ids(pool, "enis", "eni_id") == set()
    assert await ids(pool, "ec2_instances", "instance_id") == set()
    assert await ids(pool, "subnets", "subnet_id") == set()


async def test_group_gone_from_aws_is_kept_when_another_accounts_eni_uses_it(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    await add_account(pool, B)
    shared = [vpc("vpc-1", A)], [subnet("subnet-1", "vpc-1", A)]
    await poll(
        pool,
        A,
        RegionSnapshot(
            vpcs=shared[0],
            subnets=shared[1],
            security_groups=[group("sg-a", A, "vpc-1"), group("sg-unused", A, "vpc-1")],
        ),
        at(0),
    )
    await poll(
        pool,
        B,
        RegionSnapshot(enis=[eni("eni-b", B, "subnet-1", "vpc-1", groups=("sg-a",))]),
        at(1),
    )

    await poll(pool, A, RegionSnapshot(vpcs=shared[0], subnets=shared[1]), at(60))

    assert await ids(pool, "security_groups", "group_id") == {"sg-a"}
    assert await ids(pool, "security_group_rules", "rule_id") == {"sg-a-r0"}


async def test_resources_commit_once_when_seen_twice_in_one_snapshot(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    twice = RegionSnapshot(
        vpcs=[vpc("vpc-1", A), vpc("vpc-1", A, tags={"Name": "late"})],
        subnets=[subnet("subnet-1", "vpc-1", A), subnet("subnet-1", "vpc-1", A)],
        security_groups=[group("sg-1", A, "vpc-1"), group("sg-1", A, "vpc-1")],
        enis=[eni("eni-1", A, "subnet-1", "vpc-1")] * 2,
    )

    outcome = await poll(pool, A, twice, at(0))

    assert outcome.status == "applied"
    assert outcome.result is not None
    assert outcome.result.added["vpcs"] == 1
    assert outcome.result.added["subnets"] == 1
    assert await pool.fetchval("SELECT tags->>'Name' FROM vpcs") == "late"


async def test_resources_are_kept_when_accounts_are_polled_in_separate_cycles(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    await add_account(pool, B)
    a_view = RegionSnapshot(
        vpcs=[vpc("vpc-a", A)],
        subnets=[subnet("subnet-a", "vpc-a", A)],
        enis=[eni("eni-a", A, "subnet-a", "vpc-a")],
    )
    b_view = RegionSnapshot(
        vpcs=[vpc("vpc-b", B)],
        subnets=[subnet("subnet-b", "vpc-b", B)],
        enis=[eni("eni-b", B, "subnet-b", "vpc-b", "10.9.0.1")],
    )

    await poll(pool, A, a_view, at(0))
    await poll(pool, B, b_view, at(30))
    await poll(pool, A, a_view, at(60))
    await poll(pool, B, b_view, at(90))

    assert await ids(pool, "enis", "eni_id") == {"eni-a", "eni-b"}
    assert await ids(pool, "vpcs", "vpc_id") == {"vpc-a", "vpc-b"}


async def test_outsiders_resource_goes_when_its_only_witness_no_longer_sees_it(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    await add_account(pool, B)
    foreign = eni("eni-x", OUTSIDER, "subnet-x", "vpc-x")
    await poll(pool, A, RegionSnapshot(enis=[foreign]), at(0))
    await poll(pool, B, RegionSnapshot(enis=[foreign]), at(1))

    await poll(pool, A, RegionSnapshot(), at(60))
    kept_while_b_sees_it = await ids(pool, "enis", "eni_id")
    await poll(pool, B, RegionSnapshot(), at(61))

    assert kept_while_b_sees_it == {"eni-x"}
    assert await ids(pool, "enis", "eni_id") == set()


async def test_resource_is_kept_when_its_owner_is_in_the_inventory_and_others_lose_it(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    await add_account(pool, B)
    await poll(pool, A, RegionSnapshot(enis=[eni("eni-b", B, "s", "v")]), at(0))

    await poll(pool, A, RegionSnapshot(), at(60))

    assert await ids(pool, "enis", "eni_id") == {"eni-b"}
    assert await pool.fetchval("SELECT seen_by FROM enis") == []


async def test_owners_vpc_goes_when_its_region_was_removed_and_the_last_user_left(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    await add_account(pool, B)
    shared = [vpc("vpc-s", A), subnet("subnet-1", "vpc-s", A)]
    await poll(
        pool,
        A,
        RegionSnapshot(
            vpcs=shared[:1],
            subnets=shared[1:],
            enis=[eni("eni-1", A, "subnet-1", "vpc-s")],
        ),
        at(0),
    )
    participant = eni("eni-2", B, "subnet-1", "vpc-s")
    await poll(
        pool,
        B,
        RegionSnapshot(vpcs=shared[:1], subnets=shared[1:], enis=[participant]),
        at(1),
    )
    removal = await accounts.remove_region(
        pool, RemoveAccountRegion(account_id=A, region=REGION)
    )
    kept_while_b_uses_it = await ids(pool, "vpcs", "vpc_id")

    await poll(pool, B, RegionSnapshot(), at(60))

    assert removal.ok and removal.removed["enis"] == 1
    assert kept_while_b_uses_it == {"vpc-s"}
    assert await ids(pool, "vpcs", "vpc_id") == set()
    assert await ids(pool, "subnets", "subnet_id") == set()


async def test_owners_vpc_is_kept_when_the_owner_still_polls_the_region(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    await add_account(pool, B)
    await poll(pool, B, RegionSnapshot(vpcs=[vpc("vpc-a", A)]), at(0))

    await poll(pool, B, RegionSnapshot(), at(60))

    assert await ids(pool, "vpcs", "vpc_id") == {"vpc-a"}


async def test_addresses_groups_and_rules_are_replaced_when_their_parent_is_polled(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    first = eni("eni-1", A, "s", "v", "10.0.0.1", ("sg-1", "sg-2"))
    await poll(
        pool,
        A,
        RegionSnapshot(security_groups=[group("sg-1", A, "v", rules=2)], enis=[first]),
        at(0),
    )
    second = first.model_copy(
        update={
            "private_addresses": [
                first.private_addresses[0],
                first.private_addresses[0].model_copy(
                    update={"address": "10.0.0.2", "is_primary": False}
                ),
            ],
            "ipv6_prefixes": ["2001:db8::/80"],
            "group_ids": ["sg-2"],
        }
    )

    outcome = await poll(
        pool,
        A,
        RegionSnapshot(security_groups=[group("sg-1", A, "v", rules=1)], enis=[second]),
        at(60),
    )

    addresses = await pool.fetch("SELECT host(address) AS a, kind FROM eni_addresses")
    assert {(row["a"], row["kind"]) for row in addresses} == {
        ("10.0.0.1", "private_ipv4"),
        ("10.0.0.2", "private_ipv4"),
        ("2001:db8::", "ipv6_prefix"),
    }
    assert await ids(pool, "eni_security_groups", "group_id") == {"sg-2"}
    assert await ids(pool, "security_group_rules", "rule_id") == {"sg-1-r0"}
    assert outcome.result is not None
    assert outcome.result.added["eni_addresses"] == 2
    assert outcome.result.removed["security_group_rules"] == 1


async def test_no_resource_row_is_written_when_the_repoll_is_unchanged(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    await poll(pool, A, _shared_vpc_seen_by_a(), at(0))
    tables = [
        "vpcs",
        "subnets",
        "security_groups",
        "security_group_rules",
        "enis",
        "eni_addresses",
        "eni_security_groups",
        "ec2_instances",
    ]
    versions = {
        t: await pool.fetch(f"SELECT xmin::text, ctid::text FROM {t}") for t in tables
    }

    outcome = await poll(pool, A, _shared_vpc_seen_by_a(), at(60))

    after = {
        t: await pool.fetch(f"SELECT xmin::text, ctid::text FROM {t}") for t in tables
    }
    assert outcome.status == "applied"
    assert outcome.result is not None
    assert outcome.result.total("added") + outcome.result.total("updated") == 0
    assert after == versions
    assert await pool.fetchval(
        "SELECT last_seen_at FROM enis_with_last_seen WHERE eni_id = 'eni-1'"
    ) == at(60).replace(second=30)


async def test_resource_is_updated_in_place_when_it_changed(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    await poll(pool, A, RegionSnapshot(enis=[eni("eni-1", A, "s", "v")]), at(0))
    before = await pool.fetchrow("SELECT first_seen_at, updated_at FROM enis")

    outcome = await poll(
        pool,
        A,
        RegionSnapshot(enis=[eni("eni-1", A, "s", "v", description="web")]),
        at(60),
    )

    after = await pool.fetchrow(
        "SELECT first_seen_at, updated_at, description FROM enis"
    )
    assert outcome.result is not None
    assert outcome.result.updated["enis"] == 1
    assert after["first_seen_at"] == before["first_seen_at"]
    assert after["updated_at"] > before["updated_at"]
    assert after["description"] == "web"


async def test_nothing_changes_when_the_snapshot_is_older_than_the_last_applied(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    await poll(pool, A, RegionSnapshot(enis=[eni("eni-new", A, "s", "v")]), at(60))

    outcome = await poll(
        pool, A, RegionSnapshot(enis=[eni("eni-old", A, "s", "v")]), at(0)
    )

    assert outcome.status == "superseded"
    assert await ids(pool, "enis", "eni_id") == {"eni-new"}


async def test_snapshot_is_discarded_when_its_account_is_not_in_the_inventory(
    pool: asyncpg.Pool,
) -> None:
    outcome = await poll(
        pool, OUTSIDER, RegionSnapshot(enis=[eni("e", OUTSIDER, "s", "v")]), at(0)
    )

    assert outcome.status == "discarded"
    assert await ids(pool, "enis", "eni_id") == set()
    assert REGION


async def test_participants_group_and_the_vpc_stay_when_the_owner_is_deleted(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    await add_account(pool, B)
    shared = RegionSnapshot(
        vpcs=[vpc("vpc-s", A)],
        subnets=[subnet("subnet-1", "vpc-s", A)],
        security_groups=[group("sg-a", A, "vpc-s")],
    )
    await poll(pool, A, shared, at(0))
    await poll(
        pool,
        B,
        RegionSnapshot(
            vpcs=[vpc("vpc-s", A)], security_groups=[group("sg-b", B, "vpc-s")]
        ),
        at(1),
    )

    deletion = await accounts.delete_account(pool, DeleteAccount(account_id=A))
    after_deletion = {
        table: await ids(pool, table, key)
        for table, key in [
            ("vpcs", "vpc_id"),
            ("subnets", "subnet_id"),
            ("security_groups", "group_id"),
            ("security_group_rules", "rule_id"),
        ]
    }
    await poll(pool, B, RegionSnapshot(), at(60))

    assert deletion.ok
    assert deletion.removed["security_groups"] == 1
    assert deletion.removed["subnets"] == 1
    assert after_deletion == {
        "vpcs": {"vpc-s"},
        "subnets": set(),
        "security_groups": {"sg-b"},
        "security_group_rules": {"sg-b-r0"},
    }
    assert await ids(pool, "security_groups", "group_id") == set()
    assert await ids(pool, "vpcs", "vpc_id") == set()


async def test_snapshot_from_a_clock_running_ahead_fails_and_supersedes_nothing(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    now = datetime.now(UTC)
    ahead = RegionSnapshot(enis=[eni("eni-ghost", A, "s", "v")])

    refused = await poll(pool, A, ahead, now + timedelta(days=1))
    slightly_ahead = await poll(pool, A, RegionSnapshot(), now + timedelta(minutes=1))
    later = await poll(
        pool,
        A,
        RegionSnapshot(enis=[eni("eni-1", A, "s", "v")]),
        now + timedelta(minutes=2),
    )

    assert refused.status == "failed"
    assert refused.reason is not None and "clock" in refused.reason
    assert slightly_ahead.status == "applied"
    assert later.status == "applied"
    assert await ids(pool, "enis", "eni_id") == {"eni-1"}


async def test_a_stored_time_far_ahead_no_longer_holds_the_region(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    await poll(pool, A, RegionSnapshot(enis=[eni("eni-ghost", A, "s", "v")]), at(0))
    await pool.execute(
        "UPDATE region_polls SET last_discovery_started_at = '9999-01-01T00:00:00Z'"
    )

    outcome = await poll(pool, A, RegionSnapshot(), datetime.now(UTC))

    assert outcome.status == "applied"
    assert await ids(pool, "enis", "eni_id") == set()


async def test_an_outsiders_vpc_takes_the_view_of_whoever_polls_it(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, B)
    await poll(pool, B, RegionSnapshot(vpcs=[vpc("vpc-o", OUTSIDER)]), at(0))

    await poll(
        pool, B, RegionSnapshot(vpcs=[vpc("vpc-o", OUTSIDER, tags={"k": "v"})]), at(1)
    )

    assert json.loads(await pool.fetchval("SELECT tags FROM vpcs")) == {"k": "v"}


async def test_inactive_owners_vpc_goes_when_its_last_witness_no_longer_sees_it(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    await add_account(pool, B)
    await pool.execute("UPDATE accounts SET is_active = false WHERE account_id = $1", A)
    await poll(pool, B, RegionSnapshot(vpcs=[vpc("vpc-a", A)]), at(0))

    await poll(pool, B, RegionSnapshot(), at(60))

    assert await ids(pool, "vpcs", "vpc_id") == set()


async def test_end_times_ahead_of_the_clock_are_kept_to_now(
    pool: asyncpg.Pool,
) -> None:
    await add_account(pool, A)
    far = datetime(9999, 12, 31, tzinfo=UTC)
    event = discovered(A, RegionSnapshot(), datetime.now(UTC))
    event = event.model_copy(update={"discovery_finished_at": far})

    await discovery.apply_discovered(pool, event, event.snapshot)
    applied = await pool.fetchval("SELECT last_applied_at FROM region_polls")
    failure = DiscoveryFailed(
        task_id=event.task_id,
        account_id=A,
        region=REGION,
        kind=FailureKind.THROTTLED,
        reason="slow down",
        discovery_started_at=datetime.now(UTC) + timedelta(seconds=1),
        failed_at=far,
    )
    await discovery.record_failure(
        pool, failure.model_copy(update={"task_id": uuid.uuid4()})
    )
    polled = await pool.fetchrow("SELECT last_polled_at, stale_since FROM region_polls")

    now = await pool.fetchval("SELECT now()")
    assert applied <= now
    assert polled["last_polled_at"] <= now and polled["stale_since"] <= now
