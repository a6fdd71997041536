from __future__ import annotations

import httpx
import pytest

from services.api import tasks
from services.api.pagination import encode_cursor
from tests.api import seed
from tests.api.conftest import READER


async def get(client: httpx.AsyncClient, path: str, **params: object) -> httpx.Response:
    return await client.get(f"/api/v1{path}", params=params, headers=READER)


@pytest.fixture(scope="module")
def client(seeded_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return seeded_client


AFTER_9999 = "9999-12-31T23:59:59-23:00"
ID = "00000000-0000-4000-8000-000000000001"


def task_ids(response: httpx.Response) -> list[str]:
    return [task["task_id"] for task in response.json()["items"]]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [seed.MANUAL, seed.CHILD_FAILED, seed.CHILD_OK, seed.CYCLE]),
        ({"status": "failed"}, [seed.CHILD_FAILED]),
        ({"account": seed.A}, [seed.MANUAL, seed.CHILD_OK]),
        ({"parent": str(seed.CYCLE)}, [seed.CHILD_FAILED, seed.CHILD_OK]),
        ({"parent": "none"}, [seed.MANUAL, seed.CYCLE]),
        ({"since": "2026-01-05T10:30:00Z"}, [seed.MANUAL]),
    ],
)
async def test_tasks_come_newest_first_when_filtered(
    client: httpx.AsyncClient, params: dict[str, str], expected: list[object]
) -> None:
    response = await get(client, "/tasks", **params)

    assert response.status_code == 200, response.text
    assert task_ids(response) == [str(task) for task in expected]


async def test_task_pages_cover_every_task_when_the_cursor_is_followed(
    client: httpx.AsyncClient,
) -> None:
    first = await get(client, "/tasks", limit=3)
    second = await get(client, "/tasks", limit=3, cursor=first.json()["next_cursor"])

    assert task_ids(first) + task_ids(second) == [
        str(t) for t in (seed.MANUAL, seed.CHILD_FAILED, seed.CHILD_OK, seed.CYCLE)
    ]
    assert second.json()["next_cursor"] is None


async def test_cycle_shows_children_progress_and_duration_when_fetched(
    client: httpx.AsyncClient,
) -> None:
    task = (await get(client, f"/tasks/{seed.CYCLE}")).json()

    assert task["status"] == "partially_failed"
    assert task["initiated_by"] is None
    assert task["progress"] == 1.0
    assert task["duration_seconds"] == 600
    assert task["children"]["failed"] == 1
    assert [c["account_id"] for c in task["child_tasks"]] == [seed.A, seed.B]
    assert task["child_tasks_complete"] is True
    failed = task["child_tasks"][1]
    assert failed["region_results"]["eu-west-1"]["kind"] == "assume_role_failed"
    assert failed["error"] == "AssumeRole was denied"


async def test_cycle_says_when_it_holds_more_children_than_shown(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "MAX_CHILDREN", 1)

    task = (await get(client, f"/tasks/{seed.CYCLE}")).json()
    page = await client.get(f"/tasks/{seed.CYCLE}", headers=READER)

    assert [c["account_id"] for c in task["child_tasks"]] == [seed.A]
    assert task["child_tasks_complete"] is False
    assert f"GET /api/v1/tasks?parent={seed.CYCLE}" in page.text


async def test_account_poll_shows_region_counts_when_fetched(
    client: httpx.AsyncClient,
) -> None:
    task = (await get(client, f"/tasks/{seed.CHILD_OK}")).json()

    result = task["region_results"]["eu-west-1"]
    assert result["added"] == {"enis": 3, "vpcs": 1}
    assert result["removed"] == {"enis": 1}
    assert task["parent_task_id"] == str(seed.CYCLE)
    assert task["child_tasks"] == []


@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        ("/tasks/not-a-uuid", {}, 422, "task_id"),
        ("/tasks/00000000-0000-4000-8000-0000000000ff", {}, 404, None),
        ("/tasks", {"status": "exploded"}, 422, "status"),
        ("/tasks", {"parent": "nope"}, 422, "parent"),
        ("/tasks", {"since": "yesterday"}, 422, "since"),
        ("/tasks", {"since": "2026-01-01T00:00:00"}, 422, "since"),
        ("/tasks", {"account": "1"}, 422, "account"),
        ("/tasks", {"cursor": "eyJzIjoidGFza3MiLCJrIjpbIngiLCJ5Il19"}, 422, "cursor"),
        ("/tasks", {"state": "failed"}, 422, "state"),
        ("/tasks", {"since": "9999-12-31T23:59:59-23:00"}, 422, "since"),
        ("/tasks", {"since": "0001-01-01T00:00:00+14:00"}, 422, "since"),
        ("/tasks", {"cursor": encode_cursor("tasks", [AFTER_9999, ID])}, 422, "cursor"),
        (
            "/tasks",
            {"cursor": encode_cursor("tasks", ["2026-01-01", ID])},
            422,
            "cursor",
        ),
    ],
)
async def test_bad_task_input_is_refused_when_given(
    client: httpx.AsyncClient,
    path: str,
    params: dict[str, str],
    status: int,
    field: str | None,
) -> None:
    response = await get(client, path, **params)

    assert response.status_code == status, response.text
    if field:
        assert response.json()["fields"][0]["field"] == field
