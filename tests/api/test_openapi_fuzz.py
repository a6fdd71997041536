"""schemathesis against the served OpenAPI document: no 500s, no answers off-schema.

Every operation gets a bounded number of generated requests, valid and invalid,
with an admin token, against `python -m services.api` on the seeded inventory.
`positive_data_acceptance` is left out on purpose: a request can match the
schema and still be refused for what only the server knows (a cursor it never
handed out, a region AWS does not have), and those answers must be 4xx.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.bus import BusNames
from tests.api.conftest import ADMIN, ADMIN_TOKEN, add_reader_token
from tests.api.responder import responder_in_thread
from tests.api.seed import seed_inventory, seed_tasks

EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "6"))


def fuzz_operations(base_url: str) -> list[str]:
    """Run every operation's cases; returns the failures, one line each."""
    schema = schemathesis.openapi.from_dict(
        httpx.get(f"{base_url}/openapi.json", timeout=10).json()
    )
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation, mode, base_url)
            except hypothesis.errors.Unsatisfiable:
                continue  # nothing invalid can be sent (no parameters, no body)
            except (Exception, BaseExceptionGroup) as error:
                failures.append(f"{operation.label} [{mode.value}]: {error}")
    return failures


def _fuzz(operation: Any, mode: GenerationMode, base_url: str) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(
            base_url=base_url,
            headers=ADMIN,
            timeout=15,
            excluded_checks=[positive_data_acceptance],
        )

    run()


async def test_no_operation_fails_or_leaves_its_schema_when_fuzzed(
    live_server: str,
    db: AsyncEngine,
    names: BusNames,
    nats_url: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    await add_reader_token(db)
    await seed_inventory(db)
    await seed_tasks(db)

    with responder_in_thread(nats_url, names, database_url):
        failures = await asyncio.to_thread(fuzz_operations, live_server)

    assert failures == [], "\n".join(failures)
    log = (tmp_path / "api.log").read_text()
    assert '"event": "request"' in log
    assert ADMIN_TOKEN not in log


pytestmark = pytest.mark.timeout(240)
