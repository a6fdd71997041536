"""The container health check passes only when what it checks answers."""

from __future__ import annotations

import pytest

from deploy import healthcheck
from shared.devservers import free_port


async def test_check_passes_when_nats_and_postgres_answer(
    monkeypatch: pytest.MonkeyPatch, nats_url: str, database_url: str
) -> None:
    monkeypatch.setenv("NATS_URL", nats_url)
    monkeypatch.setenv("DATABASE_URL", database_url)

    failures = await healthcheck.run(["nats", "postgres"])

    assert failures == []


async def test_check_names_each_failure_when_nothing_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    monkeypatch.setenv("NATS_URL", f"nats://127.0.0.1:{port}")
    monkeypatch.setenv("DATABASE_URL", f"postgresql://nobody@127.0.0.1:{port}/none")

    failures = await healthcheck.run(
        ["nats", "postgres", f"http://127.0.0.1:{port}/healthz", "disk"], seconds_each=2
    )

    assert [failure.split(":")[0] for failure in failures] == [
        "nats",
        "postgres",
        "http",
        "disk",
    ]
