"""`make run`: the four services as local processes, against the environment's
NATS, PostgreSQL and AWS (real AWS unless AWS_ENDPOINT_URL points elsewhere).

Every service reads its own settings from the environment or `.env`. The
database is migrated first unless `--skip-migrations`. When one service exits
the others are stopped and the exit code is passed on, so that a supervisor
(systemd, a container runtime) can restart the whole set; Ctrl-C or SIGTERM
stops them all cleanly.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import structlog

from deploy.processes import SERVICES, ServiceGroup, describe_exit
from shared.db.migrate import migrate
from shared.logging import configure_logging
from shared.settings import BaseServiceSettings, load_settings

log = structlog.get_logger(__name__)


class Stopped(Exception):
    """Ctrl-C or SIGTERM arrived."""


def raise_stopped(signum: int, frame: Any) -> None:
    raise Stopped


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "services", nargs="*", help=f"which to run: {', '.join(SERVICES)} (all)"
    )
    parser.add_argument("--pollers", type=int, default=1, help="poller processes")
    parser.add_argument("--skip-migrations", action="store_true")
    args = parser.parse_args()
    if unknown := set(args.services) - set(SERVICES):
        parser.error(f"unknown services: {', '.join(sorted(unknown))}")
    return args


def main() -> None:
    args = parse_args()
    settings = load_settings(BaseServiceSettings)
    configure_logging("run", settings.log_level, settings.log_format)
    if not args.skip_migrations:
        migrate(settings.database_url)
        log.info("database_migrated")

    services = ServiceGroup(env={})
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, raise_stopped)
    code = 0
    try:
        for name in args.services or SERVICES:
            if name == "poller":
                for index in range(1, args.pollers + 1):
                    services.start(f"poller-{index}", module="poller")
            else:
                services.start(name)
        log.info("services_started", services=sorted(services.running))
        for name, exit_code in services.wait_any():
            log.error("service_exited", service=name, exit_code=exit_code)
            code = exit_code or 1
    except (Stopped, KeyboardInterrupt):
        log.info("stopping")
    finally:
        codes = services.stop_all()
        log.info(
            "services_stopped",
            services={name: describe_exit(code) for name, code in codes.items()},
        )
    sys.exit(code)


if __name__ == "__main__":
    main()
