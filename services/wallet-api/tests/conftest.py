"""Fixtures; the helpers tests import live in tests/helpers.py."""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import TEST_KEYS, Api, FakeRedis
from wallet_api import create_app
from wallet_api.config import Settings


@pytest.fixture
def settings() -> Settings:
    return Settings(
        redis_url="redis://unused:6379/0",
        api_keys=TEST_KEYS,
        max_amount=1_000_000,
        replica_id="test-replica",
        log_level="WARNING",
        validate_responses=True,  # every answer checked against its model
    )


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    return FakeRedis()


@pytest.fixture
def app(settings: Settings, fake_redis: fakeredis.FakeRedis) -> Flask:
    return create_app(settings, redis_client=fake_redis)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c


@pytest.fixture
def api(client: FlaskClient) -> Api:
    return Api(client)
