"""Every contract survives a JSON round trip; a malformed one is refused clearly."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared import events

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TASK = uuid.UUID("00000000-0000-0000-0000-000000000001")
PARENT = uuid.UUID("00000000-0000-0000-0000-000000000002")


def _child(account_id: str, **fields: object) -> events.TaskCreated:
    defaults: dict[str, object] = {
        "task_id": uuid.uuid5(PARENT, account_id),
        "parent_task_id": PARENT,
        "kind": events.TaskKind.ACCOUNT_POLL,
        "cycle_id": "scheduled-20260101T120000Z",
        "regions": ["us-east-1"],
        "not_before": NOW,
        "created_at": NOW,
    }
    return events.TaskCreated.model_validate(
        defaults | {"account_id": account_id} | fields
    )


def _batch(*tasks: events.TaskCreated) -> events.TasksCreated:
    return events.TasksCreated(
        cycle_id="scheduled-20260101T120000Z",
        parent_task_id=PARENT,
        first=200,
        tasks=list(tasks),
    )


def _snapshot() -> events.RegionSnapshot:
    return events.RegionSnapshot(
        vpcs=[
            events.Vpc(
                vpc_id="vpc-1",
                owner_id="111111111111",
                cidr_block="10.0.0.0/16",
                cidr_blocks=["10.0.0.0/16", "10.1.0.0/16"],
                ipv6_cidr_blocks=["2600:1f18::/56"],
                tags={"Name": "main"},
            )
        ],
        subnets=[
            events.Subnet(
                subnet_id="subnet-1",
                vpc_id="vpc-1",
                owner_id="111111111111",
                cidr_block="10.0.1.0/24",
            )
        ],
        security_groups=[
            events.SecurityGroup(
                group_id="sg-1",
                group_name="web",
                owner_id="111111111111",
                vpc_id="vpc-1",
                rules=[
                    events.SecurityGroupRule(
                        rule_id="sgr-1",
                        group_id="sg-1",
                        is_egress=False,
                        ip_protocol="tcp",
                        from_port=443,
                        to_port=443,
                        cidr_ipv6="::/0",
                    ),
                    events.SecurityGroupRule(
                        rule_id="sgr-2",
                        group_id="sg-1",
                        is_egress=False,
                        ip_protocol="-1",
                        referenced_group_id="sg-9",
                        referenced_group_owner_id="222222222222",
                    ),
                ],
            )
        ],
        enis=[
            events.Eni(
                eni_id="eni-1",
                owner_id="222222222222",
                subnet_id="subnet-1",
                vpc_id="vpc-1",
                private_addresses=[
                    events.PrivateAddress(
                        address="10.0.1.5", is_primary=True, public_ip="3.3.3.3"
                    ),
                    events.PrivateAddress(address="10.0.1.6"),
                ],
                ipv6_addresses=["2600:1f18::5"],
                ipv4_prefixes=["10.0.1.32/28"],
                group_ids=["sg-1"],
                attachment=events.EniAttachment(instance_id="i-1", device_index=0),
            )
        ],
        instances=[
            events.Instance(
                instance_id="i-1",
                owner_id="222222222222",
                state="running",
                private_ip="10.0.1.5",
                eni_ids=["eni-1"],
                launch_time=NOW,
            )
        ],
    )


ROUND_TRIPS: list[events.Contract] = [
    events.AccountPoll(
        task_id=TASK,
        account_id="111111111111",
        role_name="PaloInventoryInspectionRole",
        regions=["us-east-1", "eu-west-1"],
        requested_at=NOW,
    ),
    events.ResourcesDiscovered(
        task_id=TASK,
        account_id="111111111111",
        region="us-east-1",
        discovery_started_at=NOW,
        discovery_finished_at=NOW,
        snapshot=_snapshot(),
    ),
    events.ResourcesDiscovered(
        task_id=TASK,
        account_id="111111111111",
        region="us-east-1",
        discovery_started_at=NOW,
        discovery_finished_at=NOW,
        snapshot_ref=events.SnapshotRef(
            bucket="snapshots", name="x", size=10, sha256="a" * 64
        ),
    ),
    events.DiscoveryFailed(
        task_id=TASK,
        account_id="111111111111",
        region="ap-south-1",
        kind=events.FailureKind.REGION_NOT_ENABLED,
        reason="OptInRequired",
        discovery_started_at=NOW,
        failed_at=NOW,
    ),
    events.TaskCreated(
        task_id=TASK,
        kind=events.TaskKind.CYCLE,
        children_total=3,
        created_at=NOW,
    ),
    _batch(
        _child("111111111111"),
        _child(
            "222222222222",
            status=events.TaskStatus.SKIPPED,
            reason="previous poll is still running",
        ),
    ),
    events.TaskStarted(task_id=TASK, account_id="111111111111", started_at=NOW),
    events.TaskFinished(
        task_id=TASK, status=events.TaskStatus.SUCCEEDED, finished_at=NOW
    ),
    events.CreateAccount(
        account=events.AccountSpec(
            account_id="111111111111",
            account_name="prod",
            default_regions=["us-east-1"],
        )
    ),
    events.UpdateAccount(
        account_id="111111111111",
        changes=events.AccountChanges(is_active=False),
    ),
    events.DeleteAccount(account_id="111111111111"),
    events.RemoveAccountRegion(account_id="111111111111", region="us-east-1"),
    events.CreateApiToken(
        token_id=TASK, name="ci", role=events.ApiTokenRole.READER, token_sha256="b" * 64
    ),
    events.RevokeApiToken(token_id=TASK),
    events.StartCycle(requested_by="alice"),
    events.PollAccountNow(account_id="111111111111", requested_by="alice"),
    events.CommandReply(ok=True, task_id=TASK, removed={"enis": 2}),
]


@pytest.mark.parametrize("contract", ROUND_TRIPS, ids=lambda c: type(c).__name__)
def test_contract_round_trips_through_json(contract: events.Contract) -> None:
    payload = contract.model_dump_json()

    restored = type(contract).model_validate_json(payload)

    assert restored == contract
    assert restored.schema_version == events.SCHEMA_VERSION


def test_reader_ignores_fields_it_does_not_know_yet() -> None:
    payload = ROUND_TRIPS[0].model_dump(mode="json") | {"added_later": 1}

    restored = events.AccountPoll.model_validate(payload)

    assert restored == ROUND_TRIPS[0]


@pytest.mark.parametrize(
    ("contract", "payload", "field"),
    [
        (events.AccountPoll, {"account_id": "12345"}, "account_id"),
        (events.AccountPoll, {"regions": []}, "regions"),
        (events.AccountPoll, {"regions": ["Mars-1"]}, "regions"),
        (events.AccountPoll, {"requested_at": "2026-01-01T00:00:00"}, "requested_at"),
        (events.DiscoveryFailed, {"kind": "gremlins"}, "kind"),
        (events.TaskCreated, {"status": "running"}, "status"),
        (
            events.ResourcesDiscovered,
            {"discovery_finished_at": "9999-12-31T23:59:59-23:00"},
            "discovery_finished_at",
        ),
        (events.TaskStarted, {"started_at": "0001-01-01T00:00:00+14:00"}, "started_at"),
    ],
)
def test_malformed_contract_is_rejected_naming_the_field(
    contract: type[events.Contract], payload: dict[str, object], field: str
) -> None:
    valid = next(c for c in ROUND_TRIPS if type(c) is contract).model_dump(mode="json")

    with pytest.raises(ValidationError) as error:
        contract.model_validate(valid | payload)

    assert field in {str(problem["loc"][0]) for problem in error.value.errors()}


def test_times_are_held_in_utc() -> None:
    valid = ROUND_TRIPS[0].model_dump(mode="json")

    poll = events.AccountPoll.model_validate(
        valid | {"requested_at": "2026-01-01T10:00:00+02:00"}
    )

    assert poll.requested_at.isoformat() == "2026-01-01T08:00:00+00:00"


@pytest.mark.parametrize("snapshot", [{}, {"x": 1}, {"vpcs": [], "enis": []}])
def test_snapshot_read_from_json_without_all_its_lists_is_refused(
    snapshot: dict[str, object],
) -> None:
    valid = ROUND_TRIPS[1].model_dump(mode="json")

    with pytest.raises(ValidationError, match="not a complete RegionSnapshot"):
        events.ResourcesDiscovered.model_validate_json(
            json.dumps(valid | {"snapshot": snapshot})
        )


@pytest.mark.parametrize(
    ("part", "field"),
    [
        ("security_groups", "rules"),
        ("enis", "private_addresses"),
        ("enis", "group_ids"),
        ("enis", "ipv6_addresses"),
        ("instances", "eni_ids"),
    ],
)
def test_snapshot_read_from_json_with_a_part_missing_a_list_is_refused(
    part: str, field: str
) -> None:
    valid = ROUND_TRIPS[1].model_dump(mode="json")
    assert valid["snapshot"][part], "the example must have one"
    del valid["snapshot"][part][0][field]

    with pytest.raises(ValidationError, match=f"not a complete .*: no {field}"):
        events.ResourcesDiscovered.model_validate_json(json.dumps(valid))


def test_discovered_event_needs_exactly_one_body() -> None:
    valid = ROUND_TRIPS[1].model_dump(mode="json")

    with pytest.raises(ValidationError, match="exactly one of snapshot"):
        events.ResourcesDiscovered.model_validate(valid | {"snapshot": None})


def test_poll_without_any_role_is_rejected() -> None:
    valid = ROUND_TRIPS[0].model_dump(mode="json")

    with pytest.raises(ValidationError, match="role_name or role_arn"):
        events.AccountPoll.model_validate(valid | {"role_name": None})


def test_malformed_json_is_rejected() -> None:
    with pytest.raises(ValidationError, match="Invalid JSON"):
        events.AccountPoll.model_validate_json(b"{not json")


def test_account_id_in_other_scripts_digits_is_rejected() -> None:
    with pytest.raises(ValidationError, match="account_id"):
        events.DeleteAccount(account_id="١١١١١١١١١١١٢")


def test_rule_may_reference_a_group_of_an_aws_service() -> None:
    rule = events.SecurityGroupRule(
        rule_id="sgr-9",
        group_id="sg-1",
        is_egress=False,
        ip_protocol="tcp",
        referenced_group_id="sg-amazon-elb",
        referenced_group_owner_id="amazon-elb",
    )

    assert rule.referenced_group_owner_id == "amazon-elb"


def test_batch_keeps_its_children_in_order_when_it_round_trips() -> None:
    batch = _batch(*(_child(f"1111111111{n:02d}") for n in range(30)))

    restored = events.TasksCreated.model_validate_json(batch.model_dump_json())

    assert [task.account_id for task in restored.tasks] == [
        f"1111111111{n:02d}" for n in range(30)
    ]
    assert restored.tasks[0].not_before == NOW and restored.first == 200


@pytest.mark.parametrize(
    ("tasks", "words"),
    [
        ([], "at least 1"),
        ([_child("111111111111", parent_task_id=TASK)], "not a child of the parent"),
        ([_child("111111111111", kind=events.TaskKind.CYCLE)], "not an account poll"),
        ([_child("111111111111"), _child("111111111111")], "appears twice"),
    ],
)
def test_batch_is_refused_when_its_tasks_are_not_distinct_children_of_its_parent(
    tasks: list[events.TaskCreated], words: str
) -> None:
    valid = _batch(_child("111111111111")).model_dump(mode="json")
    payload = [task.model_dump(mode="json") for task in tasks]

    with pytest.raises(ValidationError, match=words):
        events.TasksCreated.model_validate(valid | {"tasks": payload})
