"""Time as the scheduler sees it; tests pass a clock they drive themselves."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol

MAX_NAP_SECONDS = 30.0
"""Longest single sleep, so a wall-clock jump is noticed within this long."""


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Return once `now()` has reached `when` (at once if it already has)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        # Short naps rather than one long sleep: the wall clock may jump.
        while (left := (when - self.now()).total_seconds()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(left, MAX_NAP_SECONDS))
