from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient

from wallet_api import create_app
from wallet_api.config import Settings

API_KEY = "test-key-0123456789abcdef"
OTHER_KEY = "other-key-0123456789abcdef"


@pytest.fixture
def settings() -> Settings:
    return Settings(
        redis_url="redis://unused:6379/0",
        api_keys=(API_KEY, OTHER_KEY),
        max_amount=1_000_000,
        replica_id="test-replica",
        log_level="WARNING",
    )


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def app(settings: Settings, fake_redis: fakeredis.FakeRedis) -> Flask:
    return create_app(settings, redis_client=fake_redis)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c


def auth(key: str = API_KEY, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


class Api:
    """Small helper so tests read like API calls."""

    def __init__(self, client: FlaskClient) -> None:
        self.c = client

    def create(self, currency: str = "EUR", wallet_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"currency": currency}
        if wallet_id:
            body["id"] = wallet_id
        r = self.c.post("/wallets", json=body, headers=auth())
        assert r.status_code == 201, r.get_json()
        return r.get_json()  # type: ignore[no-any-return]

    def move(self, kind: str, wallet_id: str, amount: Any, key: str | None = None):  # type: ignore[no-untyped-def]
        headers = auth(**({"Idempotency-Key": key} if key else {}))
        return self.c.post(f"/wallets/{wallet_id}/{kind}", json={"amount": amount}, headers=headers)

    def balance(self, wallet_id: str) -> int:
        r = self.c.get(f"/wallets/{wallet_id}", headers=auth())
        assert r.status_code == 200
        return r.get_json()["balance"]  # type: ignore[no-any-return]


@pytest.fixture
def api(client: FlaskClient) -> Api:
    return Api(client)
