"""Liveness and readiness, without a token."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from services.api.deps import RuntimeDep

router = APIRouter(tags=["health"])

READY_TIMEOUT_SECONDS = 2


class Health(BaseModel):
    status: str
    database: bool | None = None
    nats: bool | None = None


@router.get("/healthz")
async def healthz() -> Health:
    """The process answers."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "Not ready."}},
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """The database and NATS are reachable."""
    database, bus = await asyncio.gather(_database(runtime), _nats(runtime))

    ready = database and bus
    body = Health(status="ready" if ready else "not_ready", database=database, nats=bus)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


async def _database(runtime: RuntimeDep) -> bool:
    try:
        async with (
            asyncio.timeout(READY_TIMEOUT_SECONDS),
            runtime.sessions() as session,
        ):
            await session.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


async def _nats(runtime: RuntimeDep) -> bool:
    if not runtime.nats.is_connected:
        return False
    try:
        await runtime.nats.flush(timeout=READY_TIMEOUT_SECONDS)
    except Exception:
        return False
    return True
