from __future__ import annotations

import logging

import httpx
import pytest

from shared.events import CreateApiToken
from tests.api.conftest import ADMIN, ADMIN_TOKEN, READER, READER_TOKEN, bearer
from tests.api.responder import ContractResponder

READS = ["/api/v1/accounts", "/api/v1/enis", "/api/v1/tasks", "/api/v1/schedule"]


@pytest.mark.parametrize("path", READS)
async def test_reads_are_refused_when_no_token_is_sent(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "unauthorized"


@pytest.mark.parametrize(
    "header",
    [
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {READER_TOKEN}"},
        {"Authorization": "Bearer"},
    ],
)
async def test_reads_are_refused_when_the_token_is_wrong(
    client: httpx.AsyncClient, header: dict[str, str]
) -> None:
    response = await client.get("/api/v1/enis", headers=header)

    assert response.status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/accounts"),
        ("PATCH", "/api/v1/accounts/111111111111"),
        ("DELETE", "/api/v1/accounts/111111111111"),
        ("POST", "/api/v1/polls"),
        ("POST", "/api/v1/accounts/111111111111/polls"),
        ("POST", "/api/v1/tokens"),
        ("GET", "/api/v1/tokens"),
    ],
)
async def test_readers_are_forbidden_when_they_write(
    client: httpx.AsyncClient, responder: ContractResponder, method: str, path: str
) -> None:
    response = await client.request(method, path, headers=READER, json={})

    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert responder.requests == []


async def test_token_works_until_revoked_when_an_admin_creates_it(
    client: httpx.AsyncClient, responder: ContractResponder
) -> None:
    created = await client.post(
        "/api/v1/tokens", json={"name": "grafana", "role": "reader"}, headers=ADMIN
    )
    token = created.json()["token"]
    before = await client.get("/api/v1/enis", headers=bearer(token))
    listed = await client.get("/api/v1/tokens", headers=ADMIN)
    revoked = await client.delete(
        f"/api/v1/tokens/{created.json()['token_id']}", headers=ADMIN
    )
    after = await client.get("/api/v1/enis", headers=bearer(token))

    assert created.status_code == 201
    (command,) = responder.of(responder.names.tokens_create)
    assert isinstance(command, CreateApiToken)
    assert token not in command.model_dump_json()
    assert before.status_code == 200
    assert "grafana" in [t["name"] for t in listed.json()["items"]]
    assert token not in listed.text
    assert revoked.status_code == 204
    assert after.status_code == 401


async def test_revoking_an_unknown_token_is_not_found_when_asked(
    client: httpx.AsyncClient, responder: ContractResponder
) -> None:
    response = await client.delete(
        "/api/v1/tokens/00000000-0000-4000-8000-00000000ffff", headers=ADMIN
    )

    assert response.status_code == 404


async def test_tokens_never_reach_the_logs_when_used(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    await client.get("/api/v1/enis", headers=ADMIN)
    await client.get("/api/v1/enis", headers=READER)
    await client.get("/api/v1/enis", headers=bearer("a-wrong-secret-token"))

    assert caplog.records
    assert ADMIN_TOKEN not in caplog.text
    assert READER_TOKEN not in caplog.text
    assert "a-wrong-secret-token" not in caplog.text
