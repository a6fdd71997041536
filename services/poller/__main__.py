"""`python -m services.poller`: serve account polls until SIGTERM."""

from __future__ import annotations

import asyncio

import structlog

from services.poller.app import NatsUnreachable, run
from shared.logging import configure_logging
from shared.settings import PollerSettings, load_settings


def main() -> None:
    settings = load_settings(PollerSettings)
    configure_logging(
        service="poller", level=settings.log_level, fmt=settings.log_format
    )
    try:
        asyncio.run(run(settings))
    except NatsUnreachable as error:
        structlog.get_logger("services.poller").error(
            "poller_not_started", reason=str(error)
        )
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
