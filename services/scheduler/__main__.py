"""`python -m services.scheduler`: run one scheduler replica until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from datetime import UTC, datetime

import structlog

from services.scheduler.app import build
from services.scheduler.planning import CronError, next_fire
from shared.logging import configure_logging
from shared.settings import SchedulerSettings, load_settings

log = structlog.get_logger("services.scheduler")


def main() -> None:
    settings = load_settings(SchedulerSettings)
    configure_logging("scheduler", settings.log_level, settings.log_format)
    try:
        next_fire(settings.scheduled_polling_cron, datetime.now(UTC))
    except CronError as error:
        print(
            "invalid configuration for SchedulerSettings:\n"
            f"  SCHEDULED_POLLING_CRON: never fires: {error}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None

    asyncio.run(_serve(settings))


async def _serve(settings: SchedulerSettings) -> None:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        if task is not None:
            loop.add_signal_handler(signum, task.cancel)

    app = await build(settings)
    with contextlib.suppress(asyncio.CancelledError):
        await app.run()
    log.info("scheduler_stopped")


if __name__ == "__main__":
    main()
