"""Start a polling cycle now."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.commands import accepted
from services.api.deps import Admin, RuntimeDep
from services.api.errors import WRITE_ERRORS
from services.api.schemas import Accepted
from shared.events import StartCycle

router = APIRouter(tags=["polls"])


@router.post("/polls", status_code=202, responses=WRITE_ERRORS)
async def start_cycle(principal: Admin, runtime: RuntimeDep) -> Accepted:
    """Poll every eligible account now, as the schedule would; answers the cycle."""
    command = StartCycle(requested_by=principal.name)
    reply = await runtime.commands.send(runtime.names.scheduler_start_cycle, command)

    return accepted(reply)
