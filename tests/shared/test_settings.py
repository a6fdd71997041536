"""Settings keep the names and defaults operators know, and refuse bad values."""

from __future__ import annotations

import pytest

from shared.settings import (
    ApiSettings,
    PollerSettings,
    SchedulerSettings,
    load_settings,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in (
        "SCHEDULED_POLLING_ENABLED",
        "SCHEDULED_POLLING_MAX_CONCURRENT",
        "SCHEDULED_POLLING_STAGGER_SECONDS",
        "SCHEDULED_POLLING_CRON",
        "API_PORT",
        "API_ADMIN_TOKEN",
        "AWS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(str(tmp_path))


def test_scheduler_defaults_match_what_operators_know() -> None:
    settings = SchedulerSettings()

    assert settings.scheduled_polling_enabled is True
    assert settings.scheduled_polling_max_concurrent == 2
    assert settings.scheduled_polling_stagger_seconds == 30
    assert settings.scheduled_polling_cron == "0 * * * *"


def test_settings_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCHEDULED_POLLING_ENABLED", "false")
    monkeypatch.setenv("SCHEDULED_POLLING_MAX_CONCURRENT", "5")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")

    settings = PollerSettings()

    assert settings.scheduled_polling_enabled is False
    assert settings.scheduled_polling_max_concurrent == 5
    assert settings.aws_endpoint_url == "http://127.0.0.1:5000"


def test_settings_are_read_from_a_dotenv_file(tmp_path: object) -> None:
    with open(".env", "w") as env_file:
        env_file.write("API_PORT=9001\nAPI_ADMIN_TOKEN=s3cret-0123456789abcdef\n")

    settings = ApiSettings()

    assert settings.api_port == 9001
    assert settings.api_admin_token is not None
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SCHEDULED_POLLING_CRON", "every hour please"),
        ("SCHEDULED_POLLING_MAX_CONCURRENT", "0"),
        ("SCHEDULED_POLLING_STAGGER_SECONDS", "-1"),
        ("SCHEDULED_POLLING_ENABLED", "perhaps"),
        ("DATABASE_URL", "mysql://localhost/x"),
        ("NATS_URL", "http://localhost:4222"),
    ],
)
def test_bad_value_stops_the_service_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SystemExit) as stopped:
        load_settings(SchedulerSettings)

    assert stopped.value.code == 2
    assert variable in capsys.readouterr().err


def test_empty_endpoint_means_real_aws_when_copied_from_the_example(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "")

    settings = PollerSettings()

    assert settings.aws_endpoint_url is None


def test_env_example_lists_every_setting_a_service_reads() -> None:
    import re
    from pathlib import Path

    from shared import settings as shared_settings

    read = {
        name.upper()
        for cls in (
            shared_settings.SchedulerSettings,
            shared_settings.PollerSettings,
            shared_settings.ReconcilerSettings,
            shared_settings.ApiSettings,
        )
        for name in cls.model_fields
    }
    example = Path(__file__).resolve().parents[2] / ".env.example"

    listed = set(re.findall(r"^([A-Z_]+)=", example.read_text(), re.MULTILINE))

    assert listed == read


def test_short_admin_token_stops_the_api_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("API_ADMIN_TOKEN", "a")

    with pytest.raises(SystemExit):
        load_settings(ApiSettings)

    assert "API_ADMIN_TOKEN" in capsys.readouterr().err


def test_empty_admin_token_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_ADMIN_TOKEN", "")

    assert ApiSettings().api_admin_token is None
