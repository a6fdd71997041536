"""`python -m services.poller`: serve account polls until SIGTERM."""

from __future__ import annotations

import asyncio

from services.poller.app import run
from shared.logging import configure_logging
from shared.settings import PollerSettings, load_settings


def main() -> None:
    settings = load_settings(PollerSettings)
    configure_logging(
        service="poller", level=settings.log_level, fmt=settings.log_format
    )
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
