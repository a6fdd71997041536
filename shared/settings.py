"""Settings read from the environment (and an optional `.env`), one class per service.

Every service builds its settings once at start with `load_settings`, which turns
a validation error into a message naming each bad variable and stops the process.
"""

from __future__ import annotations

import sys
from typing import Literal, TypeVar

from croniter import croniter
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/inventory"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


class BaseServiceSettings(BaseSettings):
    """What every service reads: where the database and the bus are, how to log."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = DEFAULT_DATABASE_URL
    nats_url: str = DEFAULT_NATS_URL
    nats_namespace: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9_-]*$",
        description="Prefix for subjects, streams and buckets; empty in production.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("database_url")
    @classmethod
    def _async_postgres_url(cls, value: str) -> str:
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            value = "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("nats_url")
    @classmethod
    def _nats_url(cls, value: str) -> str:
        for server in value.split(","):
            if not server.strip().startswith(("nats://", "tls://", "ws://", "wss://")):
                raise ValueError("must be one or more nats:// URLs, comma-separated")
        return value


class PollingSettings(BaseServiceSettings):
    """The scheduled-polling knobs operators already know from the predecessor."""

    scheduled_polling_enabled: bool = True
    scheduled_polling_max_concurrent: int = Field(default=2, ge=1, le=10_000)
    scheduled_polling_stagger_seconds: float = Field(default=30, ge=0, le=86_400)


class SchedulerSettings(PollingSettings):
    """Settings of the scheduler service."""

    scheduled_polling_cron: str = "0 * * * *"

    @field_validator("scheduled_polling_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"not a valid cron expression: {value!r}")
        return value


class PollerSettings(PollingSettings):
    """Settings of the poller service."""

    aws_endpoint_url: str | None = Field(
        default=None, description="Send every AWS call here (a local AWS stand-in)."
    )
    poller_region_concurrency: int = Field(default=4, ge=1, le=64)
    poller_calls_per_second: float = Field(default=5.0, gt=0, le=100)
    poller_max_attempts: int = Field(default=8, ge=1, le=20)
    poller_region_timeout_seconds: float = Field(default=900, gt=0)
    poller_ack_wait_seconds: float = Field(
        default=120,
        gt=0,
        description="How long a poll may go silent before JetStream redelivers it.",
    )

    @field_validator("aws_endpoint_url")
    @classmethod
    def _empty_endpoint_is_unset(cls, value: str | None) -> str | None:
        # `.env.example` ships `AWS_ENDPOINT_URL=`: empty means real AWS.
        return value or None


class ReconcilerSettings(BaseServiceSettings):
    """Settings of the reconciler service."""

    task_timeout_seconds: float = Field(default=3600, gt=0)
    reconciler_ack_wait_seconds: float = Field(
        default=120,
        gt=0,
        description="An unacknowledged discovery message is redelivered after this.",
    )
    reconciler_workers: int = Field(default=4, ge=1, le=64)


class ApiSettings(BaseServiceSettings):
    """Settings of the API service."""

    api_host: str = "0.0.0.0"
    api_port: int = Field(default=8000, ge=1, le=65_535)
    api_admin_token: SecretStr | None = None

    @field_validator("api_admin_token")
    @classmethod
    def _strong_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # empty, as in .env.example: no admin token
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (or unset)")
        return value

    api_command_timeout_seconds: float = Field(
        default=10,
        gt=0,
        le=300,
        description="How long a write waits for the reconciler or scheduler.",
    )
    api_workers: int = Field(
        default=1, ge=1, le=64, description="Server processes answering requests."
    )


S = TypeVar("S", bound=BaseServiceSettings)


def load_settings(cls: type[S]) -> S:
    """Build `cls` from the environment, or exit naming each bad variable."""
    try:
        return cls()
    except ValidationError as error:
        lines = [f"invalid configuration for {cls.__name__}:"]
        for problem in error.errors():
            variable = "_".join(str(part) for part in problem["loc"]).upper()
            lines.append(f"  {variable}: {problem['msg']}")
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None
