"""`python -m services.reconciler`: run the reconciler until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal

import structlog

from services.reconciler.bootstrap import run
from shared.logging import configure_logging
from shared.settings import ReconcilerSettings, load_settings


async def _main() -> None:
    settings = load_settings(ReconcilerSettings)
    configure_logging("reconciler", settings.log_level, settings.log_format)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    structlog.get_logger(__name__).info("reconciler_starting")
    await run(settings, stop)


def main() -> None:
    asyncio.run(_main())


if __name__ == "__main__":
    main()
