from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from nats.aio.client import Client as NatsClient

from services.api.errors import MAX_BODY_BYTES
from shared.bus import BusNames
from shared.events import CreateAccount, DeleteAccount, ErrorCode, UpdateAccount
from tests.api import seed
from tests.api.conftest import ADMIN, READER
from tests.api.responder import ContractResponder

NEW = {
    "account_id": "444444444444",
    "account_name": "delta",
    "default_regions": ["eu-west-1", "us-east-1"],
    "external_id": "delta-ext",
}


@pytest.mark.usefixtures("inventory")
async def test_accounts_are_listed_with_their_roles_when_read(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/accounts", headers=READER)
    one = await client.get(f"/api/v1/accounts/{seed.B}", headers=READER)

    assert [a["account_id"] for a in response.json()["items"]] == [seed.A, seed.B]
    assert one.json()["role_arn"] == f"arn:aws:iam::{seed.B}:role/InventoryRole"
    assert one.json()["external_id"] == "beta-external"
    assert one.json()["default_regions"] == ["eu-west-1", "us-east-1"]


async def test_account_is_created_when_the_reconciler_has_stored_it(
    client: httpx.AsyncClient, responder: ContractResponder
) -> None:
    response = await client.post("/api/v1/accounts", json=NEW, headers=ADMIN)
    listed = await client.get("/api/v1/accounts/444444444444", headers=READER)

    assert response.status_code == 201, response.text
    assert response.json()["account_name"] == "delta"
    assert response.json()["default_role_name"] == "PaloInventoryInspectionRole"
    assert listed.status_code == 200
    (command,) = responder.of(responder.names.accounts_create)
    assert isinstance(command, CreateAccount)
    assert command.account.account_id == "444444444444"
    assert command.requested_by == "admin (API_ADMIN_TOKEN)"


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"account_id": "12345"}, "account_id", "pattern"),
        ({"account_id": "12345678901a"}, "account_id", "pattern"),
        ({"account_id": "١١١١١١١١١١١٢"}, "account_id", "pattern"),
        (
            {"default_regions": ["eu-west-1", "eu-west-1"]},
            "default_regions",
            "more than once",
        ),
        ({"is_active": "yes"}, "is_active", "boolean"),
        ({"account_name": "a\u0000b"}, "account_name", "pattern"),
        ({"account_name": "two\nlines"}, "account_name", "pattern"),
        ({"account_name": "next\u0085line"}, "account_name", "pattern"),
        ({"account_name": "line\u2028break"}, "account_name", "pattern"),
        ({"account_name": "abc\u202edcba"}, "account_name", "pattern"),
        ({"auth_method": "password"}, "auth_method", "instance_role"),
        (
            {"default_regions": ["eu-west-1", "mars-north-1"]},
            "default_regions.1",
            "unknown AWS region",
        ),
        ({"default_regions": ["EU_WEST"]}, "default_regions.0", "unknown AWS region"),
        ({"role_arn": "arn:aws:iam::12:role/x"}, "role_arn", "pattern"),
        ({"default_role_name": "bad role!"}, "default_role_name", "pattern"),
        ({"account_name": ""}, "account_name", "at least 1"),
        ({"surprise": 1}, "surprise", "Extra inputs"),
    ],
)
async def test_account_is_refused_with_the_field_when_invalid(
    client: httpx.AsyncClient,
    responder: ContractResponder,
    change: dict[str, object],
    field: str,
    words: str,
) -> None:
    response = await client.post(
        "/api/v1/accounts", json={**NEW, **change}, headers=ADMIN
    )

    body = response.json()
    assert response.status_code == 422, body
    assert body["fields"][0]["field"] == field
    assert words in body["fields"][0]["reason"]
    assert responder.requests == []


async def test_instance_role_account_is_refused_when_it_has_no_role(
    client: httpx.AsyncClient,
) -> None:
    body = {**NEW, "default_role_name": None}

    response = await client.post("/api/v1/accounts", json=body, headers=ADMIN)

    assert response.status_code == 422
    assert "default_role_name or role_arn" in response.json()["message"]


async def test_body_that_is_not_json_names_the_body_and_the_place(
    client: httpx.AsyncClient,
) -> None:
    headers = {**ADMIN, "Content-Type": "application/json"}

    response = await client.post(
        "/api/v1/accounts", content=b'{"account_id": ', headers=headers
    )

    assert response.status_code == 422
    [problem] = response.json()["fields"]
    assert problem["field"] == "body"
    assert problem["reason"].startswith("not valid JSON: ")
    assert problem["reason"].endswith("at character 15")


def _chunks(total: int) -> list[bytes]:
    return [b'{"account_name": "', *[b"x" * 1024] * (total // 1024), b'"}']


async def _streamed(chunks: list[bytes]) -> AsyncIterator[bytes]:
    """A body sent chunked, without a Content-Length."""
    for chunk in chunks:
        yield chunk


@pytest.mark.parametrize("declared", [True, False])
@pytest.mark.parametrize("headers", [{}, ADMIN], ids=["anonymous", "admin"])
async def test_body_over_the_limit_is_refused_before_it_is_read(
    client: httpx.AsyncClient,
    responder: ContractResponder,
    headers: dict[str, str],
    declared: bool,
) -> None:
    size = MAX_BODY_BYTES + 1024
    body = b"".join(_chunks(size))
    content = body if declared else _streamed(_chunks(size))

    response = await client.post(
        "/api/v1/accounts",
        content=content,
        headers={**headers, "Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert responder.requests == []


async def test_body_under_the_limit_sent_in_chunks_is_read_whole(
    client: httpx.AsyncClient, responder: ContractResponder
) -> None:
    body = json.dumps({**NEW, "account_name": "d" * 200}).encode()
    chunks = _streamed([body[:10], body[10:100], body[100:]])

    response = await client.post(
        "/api/v1/accounts",
        content=chunks,
        headers={**ADMIN, "Content-Type": "application/json"},
    )

    assert response.status_code == 201, response.text
    assert response.json()["account_name"] == "d" * 200


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCode.CONFLICT, 409),
        (ErrorCode.INVALID, 422),
        (ErrorCode.NOT_FOUND, 404),
        (ErrorCode.UNAVAILABLE, 503),
    ],
)
async def test_refusals_map_to_http_when_the_reconciler_refuses(
    client: httpx.AsyncClient,
    responder: ContractResponder,
    code: ErrorCode,
    status: int,
) -> None:
    responder.refuse_next = (code, "the reconciler says no")

    response = await client.post("/api/v1/accounts", json=NEW, headers=ADMIN)

    assert response.status_code == status
    assert response.json()["message"] == "the reconciler says no"


async def test_write_is_unavailable_when_nobody_answers(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/v1/accounts", json=NEW, headers=ADMIN)

    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"
    assert "the change was not made" in response.json()["message"]


@pytest.mark.usefixtures("inventory")
async def test_account_is_changed_when_fields_are_sent(
    client: httpx.AsyncClient, responder: ContractResponder
) -> None:
    response = await client.patch(
        f"/api/v1/accounts/{seed.A}",
        json={"is_active": False, "external_id": None},
        headers=ADMIN,
    )

    assert response.status_code == 200, response.text
    assert response.json()["is_active"] is False
    (command,) = responder.of(responder.names.accounts_update)
    assert isinstance(command, UpdateAccount)
    assert command.changes.model_fields_set == {"is_active", "external_id"}


@pytest.mark.parametrize("field", ["account_name", "is_active", "default_regions"])
async def test_update_is_refused_when_a_required_field_is_cleared(
    client: httpx.AsyncClient, responder: ContractResponder, field: str
) -> None:
    response = await client.patch(
        f"/api/v1/accounts/{seed.A}", json={field: None}, headers=ADMIN
    )

    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == field
    assert responder.requests == []


async def test_update_is_not_found_when_the_account_is_unknown(
    client: httpx.AsyncClient, responder: ContractResponder
) -> None:
    response = await client.patch(
        "/api/v1/accounts/999999999999", json={"is_active": False}, headers=ADMIN
    )

    assert response.status_code == 404


@pytest.mark.usefixtures("inventory")
async def test_delete_says_what_was_removed_when_done(
    client: httpx.AsyncClient, responder: ContractResponder
) -> None:
    response = await client.delete(f"/api/v1/accounts/{seed.A}", headers=ADMIN)
    after = await client.get(f"/api/v1/accounts/{seed.A}", headers=READER)

    assert response.status_code == 200
    assert response.json() == {"account_id": seed.A, "removed": {"enis": 2, "vpcs": 1}}
    assert isinstance(responder.of(responder.names.accounts_delete)[0], DeleteAccount)
    assert after.status_code == 404


@pytest.mark.usefixtures("inventory")
async def test_region_is_removed_when_known_and_refused_when_unknown(
    client: httpx.AsyncClient, responder: ContractResponder
) -> None:
    known = await client.delete(
        f"/api/v1/accounts/{seed.B}/regions/us-east-1", headers=ADMIN
    )
    unknown = await client.delete(
        f"/api/v1/accounts/{seed.B}/regions/mars-north-1", headers=ADMIN
    )

    assert known.status_code == 200
    assert known.json()["removed"] == {"enis": 1}
    assert unknown.status_code == 422
    assert len(responder.of(responder.names.accounts_remove_region)) == 1


async def test_malformed_account_id_is_refused_when_read(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/accounts/abc", headers=READER)

    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "account_id"


async def test_write_outcome_is_unknown_when_the_answer_never_comes(
    client: httpx.AsyncClient, nats_client: NatsClient, names: BusNames
) -> None:
    silent = await nats_client.subscribe(names.accounts_create)  # takes, never answers
    await nats_client.flush()

    response = await client.post("/api/v1/accounts", json=NEW, headers=ADMIN)
    await silent.unsubscribe()

    assert response.status_code == 503
    assert "may or may not have been made" in response.json()["message"]
