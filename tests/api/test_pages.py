"""The tasks pages in a real browser: sign in, read the list, open a cycle."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.models import DiscoveryTask
from tests.api import seed
from tests.api.browser import Page, chromium
from tests.api.conftest import ADMIN, ADMIN_TOKEN, add_reader_token
from tests.api.seed import seed_tasks

pytestmark = pytest.mark.timeout(120)


async def sign_in(page: Page, base_url: str, token: str) -> str:
    shown = await page.open(f"{base_url}/tasks/")
    assert "Sign in" in shown
    return await page.submit("form[action='/login']", token=token)


async def test_operator_sees_tasks_and_a_cycles_children_when_signed_in(
    module_server: str, db: AsyncEngine, tmp_path: Path
) -> None:
    await add_reader_token(db)
    await seed_tasks(db)

    async with chromium(tmp_path / "profile") as page:
        tasks = await sign_in(page, module_server, ADMIN_TOKEN)
        cycle = await page.open(f"{module_server}/tasks/{seed.CYCLE}")
        child = await page.open(f"{module_server}/tasks/{seed.CHILD_OK}")
        path = await page.path()

    assert path == f"/tasks/{seed.CHILD_OK}"
    rows = tasks.split("\n")
    assert "Discovery tasks" in tasks
    newest = next(i for i, row in enumerate(rows) if "Poll of 111111111111" in row)
    oldest = next(i for i, row in enumerate(rows) if "Polling cycle" in row)
    assert newest < oldest
    assert "token:ops" in rows[newest] and "running" in rows[newest]
    assert "schedule" in rows[oldest] and "partially_failed" in rows[oldest]
    assert "2 of 2 accounts" in rows[oldest]
    assert "1 failed" in rows[oldest]
    assert "Poll of 222222222222" not in tasks

    assert "Polling cycle" in cycle
    assert "Started by\tschedule" in cycle or "Started by\nschedule" in cycle
    assert "111111111111" in cycle and "222222222222" in cycle
    assert "AssumeRole was denied" in cycle
    assert "10m 00s" in cycle

    assert "Poll of account 111111111111" in child
    assert "enis 3, vpcs 1" in child
    assert "Part of" in child


async def test_pages_ask_to_sign_in_when_the_token_is_wrong(
    module_server: str, db: AsyncEngine, tmp_path: Path
) -> None:
    await add_reader_token(db)
    await seed_tasks(db)

    async with chromium(tmp_path / "profile") as page:
        await page.open(f"{module_server}/tasks/")
        shown = await page.submit("form[action='/login']", token="not-a-token")
        path = await page.path()

    assert path == "/login"
    assert "That token is unknown or revoked." in shown
    assert "Polling cycle" not in shown


async def test_cycle_row_says_how_many_accounts_were_skipped(
    client: httpx.AsyncClient, db: AsyncEngine
) -> None:
    cycle = uuid.uuid4()
    async with db.begin() as connection:
        await connection.execute(
            insert(DiscoveryTask),
            [
                {
                    "id": cycle,
                    "kind": "cycle",
                    "cycle_id": "2026-01-05T11:00Z",
                    "status": "succeeded",
                    "children_total": 3,
                    "children_succeeded": 2,
                    "children_skipped": 1,
                    "created_at": seed.T0,
                    "finished_at": seed.T0 + timedelta(minutes=3),
                }
            ],
        )

    shown = await client.get("/tasks/", headers=ADMIN)

    assert shown.status_code == 200
    row = next(r for r in shown.text.split("<tr>") if f"/tasks/{cycle}" in r)
    assert "3 of 3 accounts, 1 skipped" in row
