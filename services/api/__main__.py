"""`python -m services.api`: serve the API with uvicorn."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from services.api.app import create_app
from shared.logging import configure_logging
from shared.settings import ApiSettings, load_settings


def app_from_environment() -> FastAPI:
    """The application as each worker process builds it."""
    settings = load_settings(ApiSettings)
    configure_logging("api", settings.log_level, settings.log_format)
    return create_app(settings)


def main() -> None:
    settings = load_settings(ApiSettings)
    configure_logging("api", settings.log_level, settings.log_format)
    uvicorn.run(
        "services.api.__main__:app_from_environment",
        factory=True,
        workers=settings.api_workers,
        host=settings.api_host,
        port=settings.api_port,
        access_log=False,
        log_config=None,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
