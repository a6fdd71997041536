"""Log lines are structured and always name the service."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from shared.logging import configure_logging


def test_json_lines_carry_service_and_bound_context(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("poller", fmt="json")
    structlog.contextvars.bind_contextvars(account_id="111111111111")

    structlog.get_logger("test").info("poll_started", region="eu-west-1")
    logging.getLogger("library").warning("from the standard library")

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["event"] == "poll_started"
    assert lines[0]["service"] == "poller"
    assert lines[0]["account_id"] == "111111111111"
    assert lines[0]["region"] == "eu-west-1"
    assert lines[1]["service"] == "poller"
    assert lines[1]["level"] == "warning"


def test_console_format_is_readable_text(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("api", fmt="console")

    structlog.get_logger("test").info("ready", port=8000)

    line = capsys.readouterr().err
    assert "ready" in line and "port=8000" in line and "service=api" in line
