from __future__ import annotations

import httpx

from shared.events import ErrorCode, PollAccountNow, StartCycle
from tests.api import seed
from tests.api.conftest import ADMIN
from tests.api.responder import ContractResponder


async def test_cycle_is_accepted_with_its_task_when_started(
    client: httpx.AsyncClient, responder: ContractResponder
) -> None:
    response = await client.post("/api/v1/polls", headers=ADMIN)

    assert response.status_code == 202
    (command,) = responder.of(responder.names.scheduler_start_cycle)
    assert isinstance(command, StartCycle)
    assert command.requested_by == "admin (API_ADMIN_TOKEN)"
    assert len(response.json()["task_id"]) == 36


async def test_account_poll_is_accepted_when_the_scheduler_queues_it(
    client: httpx.AsyncClient, responder: ContractResponder
) -> None:
    response = await client.post(f"/api/v1/accounts/{seed.A}/polls", headers=ADMIN)

    assert response.status_code == 202
    (command,) = responder.of(responder.names.scheduler_poll_account)
    assert isinstance(command, PollAccountNow)
    assert command.account_id == seed.A


async def test_account_poll_is_not_found_when_the_scheduler_knows_no_such_account(
    client: httpx.AsyncClient, responder: ContractResponder
) -> None:
    responder.refuse_next = (ErrorCode.NOT_FOUND, "account 999999999999 not found")

    response = await client.post("/api/v1/accounts/999999999999/polls", headers=ADMIN)

    assert response.status_code == 404
    assert response.json()["message"] == "account 999999999999 not found"
