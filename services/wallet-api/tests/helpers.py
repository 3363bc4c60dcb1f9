"""Helpers the tests share (imported as tests.helpers; fixtures live in conftest.py)."""

from __future__ import annotations

import re
from typing import Any

import fakeredis
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from werkzeug.test import TestResponse

from wallet_api.openapi import build_spec

API_KEY = "test-key-0123456789abcdef"
OTHER_KEY = "other-key-0123456789abcdef"
SPEC = build_spec()
# Response headers the API sets on purpose: each must be documented where it is sent.
API_HEADERS = ("Location", "Idempotent-Replayed", "Retry-After", "WWW-Authenticate")


class FakeRedis(fakeredis.FakeRedis):
    """fakeredis has no INFO; the store reads maxmemory_policy from it (readiness)."""

    maxmemory_policy = "noeviction"

    def info(self, section: str | None = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"maxmemory_policy": self.maxmemory_policy}


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


def operation_of(path: str, method: str) -> dict[str, Any]:
    """The documented operation serving `method path` (path without query)."""
    for template, item in SPEC["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method in item:
            return item[method]  # type: ignore[no-any-return]
    raise AssertionError(f"{method.upper()} {path} is not documented")


def check(method: str, url: str, response: TestResponse) -> None:
    """The response is documented for its operation and status: media type,
    body schema and the API's own headers."""
    path = url.split("?", maxsplit=1)[0]
    op = operation_of(path, method)
    documented = op["responses"].get(str(response.status_code))
    assert documented is not None, f"{method.upper()} {path} -> {response.status_code} undocumented"
    if "$ref" in documented:
        documented = SPEC["components"]["responses"][documented["$ref"].rsplit("/", 1)[1]]
    ((media, content),) = documented["content"].items()
    assert response.mimetype == media, (path, response.mimetype, media)
    validator = Draft202012Validator({**content["schema"], "components": SPEC["components"]})
    errors = sorted(validator.iter_errors(response.get_json()), key=str)
    assert not errors, f"{method.upper()} {path} {response.status_code}: {errors[0].message}"
    for header in API_HEADERS:
        if header in response.headers:
            assert header in documented.get("headers", {}), (path, response.status_code, header)
