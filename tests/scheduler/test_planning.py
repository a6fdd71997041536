"""Planning a cycle: eligibility, order, due times, skips, overruns, cron."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.scheduler.planning import (
    BATCH_CHILDREN,
    AccountRow,
    CronError,
    CycleKind,
    CyclePlan,
    announcement_batches,
    cron_interval,
    ineligibility,
    next_fire,
    overrun,
    plan_cycle,
    scheduled_cycle_id,
    task_id,
)
from shared.events import TaskStatus

FIRE = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def account(account_id: str, **changes: object) -> AccountRow:
    fields: dict[str, object] = {
        "account_id": account_id,
        "auth_method": "instance_role",
        "is_active": True,
        "default_role_name": "PaloInventoryInspectionRole",
        "role_arn": None,
        "external_id": None,
        "regions": ("us-east-1",),
    }
    fields.update(changes)
    return AccountRow(**fields)  # type: ignore[arg-type]


def plan(accounts: list[AccountRow], busy: dict[str, str] | None = None, **kw: object):
    return plan_cycle(
        scheduled_cycle_id(FIRE),
        CycleKind.SCHEDULED,
        accounts,
        busy or {},
        FIRE,
        float(kw.get("stagger", 30)),  # type: ignore[arg-type]
    )


def test_only_eligible_accounts_are_planned_when_six_accounts_of_which_two_qualify():
    accounts = [
        account("111111111111"),
        account("222222222222", auth_method="manual"),
        account("333333333333", is_active=False),
        account("444444444444", default_role_name=None, role_arn=None),
        account("555555555555", regions=()),
        account(
            "666666666666",
            default_role_name=None,
            role_arn="arn:aws:iam::666666666666:role/Inspect",
        ),
    ]

    planned = plan(accounts)

    assert [child.account_id for child in planned.children] == [
        "111111111111",
        "666666666666",
    ]
    assert planned.children[1].role_arn == "arn:aws:iam::666666666666:role/Inspect"


def test_polls_are_due_every_stagger_seconds_when_defaults_apply():
    accounts = [account(f"10000000000{i}") for i in range(4)]

    planned = plan(accounts)

    offsets = [
        (planned.due_at(i) - FIRE).total_seconds() for i in range(len(planned.polls))
    ]
    assert offsets == [0, 30, 60, 90]


def test_busy_accounts_are_skipped_with_their_reason_and_take_no_slot():
    accounts = [account(f"10000000000{i}") for i in range(3)]

    planned = plan(accounts, busy={"100000000000": "previous poll x is still running"})

    assert planned.children[0].status == TaskStatus.SKIPPED
    assert planned.children[0].reason == "previous poll x is still running"
    assert [poll.account_id for poll in planned.polls] == [
        "100000000001",
        "100000000002",
    ]
    assert planned.due_at(1) - FIRE == timedelta(seconds=30)


def test_task_ids_are_the_same_on_every_replica_when_the_cycle_is_the_same():
    first = plan([account("111111111111")])
    second = plan([account("111111111111")])

    assert first.parent_task_id == second.parent_task_id == task_id(first.cycle_id)
    assert first.children[0].task_id == second.children[0].task_id
    assert first.children[0].task_id != first.parent_task_id


def test_overrun_gives_the_numbers_when_accounts_times_stagger_exceed_the_interval():
    late = overrun(150, 30, timedelta(hours=1))

    assert late is not None
    assert (late.accounts, late.needed_seconds, late.interval_seconds) == (
        150,
        4500,
        3600,
    )
    assert overrun(120, 30, timedelta(hours=1)) is None


def test_next_fire_is_minute_zero_of_the_next_hour_when_the_cron_is_the_default():
    assert next_fire("0 * * * *", datetime(2026, 1, 1, 11, 15, tzinfo=UTC)) == FIRE


def test_next_fire_raises_when_the_cron_never_fires():
    with pytest.raises(CronError):
        next_fire("0 0 31 2 *", FIRE)


def test_an_account_is_not_planned_when_its_region_breaks_the_poll_contract():
    planned = plan([account("111111111111", regions=("us-east-1", "Mars"))])

    assert planned.children == []
    assert ineligibility(account("111111111111", regions=("Mars",))) == (
        "region 'Mars' cannot be carried by a poll"
    )


def test_the_interval_is_the_cron_period_when_a_cycle_starts_between_fires():
    late_in_the_hour = datetime(2026, 1, 1, 12, 55, tzinfo=UTC)

    assert cron_interval("0 * * * *", late_in_the_hour) == timedelta(hours=1)
    assert cron_interval("0 * * * *", FIRE) == timedelta(hours=1)


def batch_bounds(planned: CyclePlan) -> list[tuple[int, int]]:
    return [(first, len(children)) for first, children in announcement_batches(planned)]


def test_children_are_cut_in_plan_order_into_batches_when_the_cycle_is_large():
    accounts = [account(str(100000000000 + i)) for i in range(450)]

    planned = plan(accounts, busy={"100000000007": "previous poll x is still running"})

    batches = announcement_batches(planned)
    assert BATCH_CHILDREN == 200
    assert batch_bounds(planned) == [(0, 200), (200, 200), (400, 50)]
    assert [child for _, children in batches for child in children] == (
        planned.children
    )


def test_a_batch_closes_early_when_its_children_poll_many_regions():
    regions = tuple(f"xx-region-{n}" for n in range(64))
    accounts = [account(str(100000000000 + i)) for i in range(10)] + [
        account(str(200000000000 + i), regions=regions) for i in range(100)
    ]

    planned = plan(accounts)

    assert batch_bounds(planned) == [(0, 10 + 49), (59, 50), (109, 1)]


def test_batches_are_the_same_when_another_replica_reads_the_stored_plan():
    accounts = [account(str(100000000000 + i)) for i in range(401)]
    planned = plan(accounts)

    stored = CyclePlan.model_validate_json(planned.model_dump_json())

    assert announcement_batches(stored) == announcement_batches(planned)
    assert batch_bounds(stored) == [(0, 200), (200, 200), (400, 1)]
