"""The compose file runs what the services are and gives them what they read.

Checked without a Docker engine: the YAML is parsed and compared with the
settings classes, the entry points and the Dockerfile.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from shared.settings import (
    ApiSettings,
    PollerSettings,
    ReconcilerSettings,
    SchedulerSettings,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DEMO_ENV = ROOT / "deploy" / "demo.env"

SETTINGS: dict[str, type[BaseSettings]] = {
    "scheduler": SchedulerSettings,
    "poller": PollerSettings,
    "reconciler": ReconcilerSettings,
    "api": ApiSettings,
}
# Read by boto3 itself rather than by the poller's settings class.
BOTO3_VARIABLES = {
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_STS_REGIONAL_ENDPOINTS",
}
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment must be a mapping"
    return {key: None if value is None else str(value) for key, value in env.items()}


def with_defaults(value: str) -> str:
    """The value the container gets when the shell sets nothing."""
    return INTERPOLATION.sub(lambda match: match.group(2) or "", value)


def env_names(settings: type[BaseSettings]) -> set[str]:
    return {name.upper() for name in settings.model_fields}


def test_stack_has_every_service_when_parsed(services: dict[str, Any]) -> None:
    expected = {
        "nats",
        "postgres",
        "migrate",
        "scheduler",
        "poller",
        "reconciler",
        "api",
        "moto",
        "demo-register",
    }

    assert set(services) == expected


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_service_runs_its_own_entry_point_when_started(
    services: dict[str, Any], name: str
) -> None:
    command = services[name]["command"]

    assert command == ["python", "-m", f"services.{name}"]
    assert importlib.util.find_spec(f"services.{name}.__main__") is not None


def test_migration_runs_alembic_to_head_before_the_services(
    services: dict[str, Any],
) -> None:
    migrate = services["migrate"]

    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert (ROOT / "alembic.ini").exists()
    assert set(environment(migrate)) == {"DATABASE_URL"}
    assert "restart" not in migrate or migrate["restart"].startswith("on-failure")
    for name in SETTINGS:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["nats"]["condition"] == "service_healthy"
        assert depends["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_service_is_given_only_variables_it_reads_when_configured(
    services: dict[str, Any], name: str
) -> None:
    allowed = env_names(SETTINGS[name]) | (
        BOTO3_VARIABLES if name == "poller" else set()
    )

    given = set(environment(services[name]))

    assert given <= allowed, given - allowed
    assert {"DATABASE_URL", "NATS_URL"} <= given


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_service_settings_validate_when_the_shell_sets_nothing(
    services: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_class = SETTINGS[name]
    for variable in env_names(settings_class) | BOTO3_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment(services[name]).items():
        if value is not None:
            monkeypatch.setenv(variable, with_defaults(value))
    monkeypatch.setenv("API_ADMIN_TOKEN", "set-by-the-operator")

    settings = settings_class(_env_file=None)  # type: ignore[call-arg]

    assert settings.nats_url == "nats://nats:4222"  # type: ignore[attr-defined]
    assert "@postgres:5432/" in settings.database_url  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["scheduler", "poller"])
def test_scheduled_polling_defaults_pass_through_when_unset(
    services: dict[str, Any], name: str
) -> None:
    env = environment(services[name])

    assert env["SCHEDULED_POLLING_ENABLED"] == "${SCHEDULED_POLLING_ENABLED:-true}"
    assert env["SCHEDULED_POLLING_MAX_CONCURRENT"] == (
        "${SCHEDULED_POLLING_MAX_CONCURRENT:-2}"
    )
    assert env["SCHEDULED_POLLING_STAGGER_SECONDS"] == (
        "${SCHEDULED_POLLING_STAGGER_SECONDS:-30}"
    )


def test_scheduler_gets_the_hourly_cron_when_unset(services: dict[str, Any]) -> None:
    env = environment(services["scheduler"])

    assert with_defaults(env["SCHEDULED_POLLING_CRON"] or "") == "0 * * * *"


def test_api_requires_an_admin_token_when_started(services: dict[str, Any]) -> None:
    env = environment(services["api"])

    assert env["API_ADMIN_TOKEN"] is not None
    assert env["API_ADMIN_TOKEN"].startswith("${API_ADMIN_TOKEN:?")
    assert services["api"]["ports"] == ["${API_PUBLISH:-127.0.0.1:8000}:8000"]


def test_poller_leaves_aws_credentials_to_the_host_when_unset(
    services: dict[str, Any],
) -> None:
    env = environment(services["poller"])

    for variable in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[variable] is None, f"{variable} must only pass through"


def test_poller_runs_two_replicas_when_deployed(services: dict[str, Any]) -> None:
    assert services["poller"]["deploy"]["replicas"] == 2
    assert "container_name" not in services["poller"]


def test_nats_keeps_jetstream_on_a_volume_when_restarted(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    nats = services["nats"]
    command = nats["command"]
    store_dir = command[command.index("--store_dir") + 1]

    assert "--jetstream" in command
    assert f"nats-data:{store_dir}" in nats["volumes"]
    assert "nats-data" in compose["volumes"]


def test_postgres_keeps_its_data_on_a_volume_when_restarted(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    postgres = services["postgres"]

    assert "postgres-data:/var/lib/postgresql/data" in postgres["volumes"]
    assert "postgres-data" in compose["volumes"]


def test_long_running_services_restart_and_report_health(
    services: dict[str, Any],
) -> None:
    long_running = ["nats", "postgres", "moto", *SETTINGS]

    for name in long_running:
        service = services[name]
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], name
        assert int(service["healthcheck"]["retries"]) >= 3, name


def test_health_checks_use_a_module_the_image_ships(services: dict[str, Any]) -> None:
    for name in SETTINGS:
        test = services[name]["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", "deploy.healthcheck"], name

    assert importlib.util.find_spec("deploy.healthcheck") is not None


def test_demo_profile_adds_only_the_stand_in_and_the_seeding(
    services: dict[str, Any],
) -> None:
    profiled = {name for name, service in services.items() if "profiles" in service}

    assert profiled == {"moto", "demo-register"}
    assert all(services[name]["profiles"] == ["demo"] for name in profiled)


def test_demo_stand_in_serves_the_sample_estate_on_the_port_the_poller_uses(
    services: dict[str, Any],
) -> None:
    moto = services["moto"]
    command = moto["command"]
    demo_env = dict(
        line.split("=", 1)
        for line in DEMO_ENV.read_text().splitlines()
        if line and not line.startswith("#")
    )

    assert command[:3] == ["python", "-m", "deploy.standin"]
    assert importlib.util.find_spec("deploy.standin") is not None
    assert moto["build"]["target"] == "demo"
    port = command[command.index("--port") + 1]
    assert demo_env["AWS_ENDPOINT_URL"] == f"http://moto:{port}"


def test_demo_registration_waits_for_the_api_and_the_stand_in(
    services: dict[str, Any],
) -> None:
    register = services["demo-register"]

    assert register["command"] == ["python", "-m", "deploy.register"]
    assert importlib.util.find_spec("deploy.register") is not None
    assert set(environment(register)) == {"API_URL", "API_ADMIN_TOKEN"}
    assert register["depends_on"]["moto"]["condition"] == "service_healthy"
    assert register["depends_on"]["api"]["condition"] == "service_healthy"


def test_demo_env_file_turns_on_the_profile_and_the_stand_in() -> None:
    lines = [
        line.split("=", 1)
        for line in DEMO_ENV.read_text().splitlines()
        if line and not line.startswith("#")
    ]
    values = dict(lines)

    assert values["COMPOSE_PROFILES"] == "demo"
    assert values["AWS_ENDPOINT_URL"] == "http://moto:5000"
    assert values["API_ADMIN_TOKEN"]


def test_images_build_the_production_target(services: dict[str, Any]) -> None:
    built = [
        service
        for name, service in services.items()
        if "build" in service and name != "moto"
    ]

    assert len(built) == 6
    for service in built:
        assert service["build"]["target"] == "production"
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (
            COMPOSE.parent / service["build"]["context"] / "pyproject.toml"
        ).exists()


def test_dockerfile_production_stage_runs_as_a_non_root_user() -> None:
    stages = re.split(r"(?m)^FROM ", DOCKERFILE.read_text())
    production = next(stage for stage in stages if " AS production" in stage)
    users = re.findall(r"(?m)^USER (\S+)", production)

    assert len(stages) >= 3, "multi-stage build expected"
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert "COPY --from=builder" in production
    assert "alembic.ini" in production
    assert any(stage.startswith("production AS demo") for stage in stages)


def test_dockerfile_copies_only_paths_that_exist() -> None:
    lines = re.findall(r"(?m)^COPY (.+)$", DOCKERFILE.read_text())
    from_context = [line.split() for line in lines if "--from=" not in line]
    sources = [
        path
        for words in from_context
        for path in words[:-1]
        if not path.startswith("--") and path != "."
    ]

    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source


def test_api_health_check_asks_a_path_the_api_serves(services: dict[str, Any]) -> None:
    from services.api.app import create_app

    url = services["api"]["healthcheck"]["test"][-1]
    path = "/" + url.split("://", 1)[1].split("/", 1)[1]
    paths = create_app(ApiSettings()).openapi()["paths"]

    assert path in paths
    assert "security" not in paths[path]["get"]
