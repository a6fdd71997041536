from __future__ import annotations

import httpx

from tests.api.conftest import ADMIN


async def test_healthz_answers_when_no_token_is_sent(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_readyz_is_ready_when_database_and_nats_answer(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": True, "nats": True}


async def test_openapi_describes_every_error_when_fetched(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json", headers=ADMIN)).json()

    assert "ErrorBody" in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/api/"):
                assert "401" in operation["responses"], (method, path)
                assert operation["responses"]["422"]["content"], (method, path)
