from __future__ import annotations

import httpx

from shared.bus import BusNames
from shared.devservers import free_port
from tests.api.conftest import ADMIN, api_settings, serve_in_process


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


async def test_reads_answer_503_when_the_database_is_unreachable(
    nats_url: str, names: BusNames
) -> None:
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/inventory"
    settings = api_settings(unreachable, names, nats_url)

    async with serve_in_process(settings) as http:
        response = await http.get("/api/v1/vpcs", headers=ADMIN)
        ready = await http.get("/readyz")

    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"
    assert ready.status_code == 503


async def test_docs_page_loads_its_scripts_from_the_api_itself(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/docs")
    script = await client.get("/docs-assets/swagger-ui-bundle.js")

    assert page.status_code == 200
    assert "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    assert script.status_code == 200 and len(script.content) > 100_000
