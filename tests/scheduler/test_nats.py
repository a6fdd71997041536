"""What the scheduler announces on JetStream: batch ids, contents and sizes."""

from __future__ import annotations

import string
import uuid
from datetime import UTC, datetime

import pytest

from services.scheduler.adapters.nats import task_batches
from services.scheduler.planning import (
    AccountRow,
    CycleKind,
    CyclePlan,
    manual_cycle_id,
    plan_cycle,
)
from shared.events import TasksCreated, TaskStatus

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NATS_MAX_PAYLOAD = 1024 * 1024


def longest_region(n: int) -> str:
    """A distinct region name of the most characters the contract allows (32)."""
    letters = string.ascii_lowercase
    return f"{letters[n % 26]}{letters[n // 26 % 26]}-{'z' * 26}-{n % 100:02d}"


def longest_plan(regions_per_account: int, accounts: int = 450) -> CyclePlan:
    """A cycle whose every field is as long as an operator or the scheduler makes it.

    Every account is skipped (a reason is longer than a due time), is polled
    through a role ARN and an external id of the greatest length, and the
    cycle was asked for by a 255-character name of four-byte letters.
    """
    rows = [
        AccountRow(
            account_id=str(100000000000 + i),
            auth_method="instance_role",
            is_active=True,
            default_role_name=None,
            role_arn="arn:aws:iam::123456789012:role/" + "r" * (2048 - 31),
            external_id="e" * 1224,
            regions=tuple(longest_region(n) for n in range(regions_per_account)),
        )
        for i in range(accounts)
    ]
    cycle_id = manual_cycle_id(CycleKind.MANUAL)
    busy = {
        row.account_id: f"previous poll {uuid.uuid4()} of cycle {cycle_id} is "
        "queued (published, not yet recorded)"
        for row in rows
    }
    return plan_cycle(
        cycle_id, CycleKind.MANUAL, rows, busy, NOW, 30, "\U0001d400" * 255
    )


@pytest.mark.parametrize("regions_per_account", [1, 16, 64])
def test_a_batch_stays_under_half_the_nats_limit_when_every_field_is_longest(
    regions_per_account: int,
) -> None:
    plan = longest_plan(regions_per_account)

    payloads = [
        batch.model_dump_json().encode() for _, batch in task_batches(plan, NOW)
    ]

    assert max(len(payload) for payload in payloads) < NATS_MAX_PAYLOAD / 2
    restored = [TasksCreated.model_validate_json(payload) for payload in payloads]
    assert [task.task_id for batch in restored for task in batch.tasks] == [
        child.task_id for child in plan.children
    ]
    assert {task.status for batch in restored for task in batch.tasks} == {
        TaskStatus.SKIPPED
    }


def test_batch_ids_are_the_same_when_two_replicas_announce_the_stored_plan() -> None:
    plan = longest_plan(1, accounts=250)
    other_replica = CyclePlan.model_validate_json(plan.model_dump_json())

    ids = [msg_id for msg_id, _ in task_batches(plan, NOW)]
    again = [msg_id for msg_id, _ in task_batches(other_replica, NOW)]

    assert ids == again
    assert ids == [
        f"tasks-created-{plan.cycle_id}-0-200",
        f"tasks-created-{plan.cycle_id}-200-50",
    ]
