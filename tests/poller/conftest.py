"""AWS for the poller's tests: moto in-process with fake base credentials."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from tests.poller.fakes import moto_pages_enis

FAKE_BASE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def aws_env() -> Iterator[None]:
    """Base credentials for the standard boto3 chain; no endpoint override."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_BASE_CREDENTIALS.items():
            patch.setenv(name, value)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        patch.delenv("AWS_PROFILE", raising=False)
        yield


@pytest.fixture(scope="module")
def moto(aws_env: None) -> Iterator[None]:
    """moto in-process for the module's tests, paging ENIs like AWS does."""
    with mock_aws(), moto_pages_enis():
        yield
