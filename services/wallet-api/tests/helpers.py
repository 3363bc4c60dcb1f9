"""Helpers the tests share (imported as tests.helpers; fixtures live in conftest.py)."""

from __future__ import annotations

import re
from typing import Any

import fakeredis
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from werkzeug.test import TestResponse

from wallet_api.domain.operations import DEFAULT_TENANT, Actor, WalletRef
from wallet_api.keys import SCOPES, ApiKey, development_key, token_digest
from wallet_api.openapi import build_spec

# The actor of ops built directly in store and combiner tests (tenant `default`, whose
# wallets keep the Redis keys from before tenants).
ACTOR = Actor(DEFAULT_TENANT, "key_test", "req-test")


def ref(wallet_id: str) -> WalletRef:
    """A wallet of ACTOR's tenant."""
    return WalletRef(DEFAULT_TENANT, wallet_id)


# Development keys (WALLET_API_KEYS form): tenant `default`, every scope.
API_KEY = "test-key-0123456789abcdef"
OTHER_KEY = "other-key-0123456789abcdef"
# Keys as WALLET_API_KEYS_FILE defines them: tenants acme and globex.
ACME_KEY = "acme-token-0123456789abcdef"
ACME_ROTATED_KEY = "acme-token-rotated-0123456789"
GLOBEX_KEY = "globex-token-0123456789abcdef"
# One acme key per scope, and one with none of the wallet scopes it is asked for.
SCOPE_KEYS = {scope: f"acme-only-{scope}-0123456789" for scope in SCOPES}
SPEC = build_spec()


def defined_key(token: str, tenant: str, *scopes: str, key_id: str | None = None) -> ApiKey:
    """A key as the definitions file declares it (only the token's digest is kept)."""
    key_id = key_id or "key_" + token_digest(token).hex()[16:32]  # not the development id
    return ApiKey(key_id, tenant, frozenset(scopes or SCOPES), token_digest(token))


TEST_KEYS = (
    development_key(API_KEY),
    development_key(OTHER_KEY),
    defined_key(ACME_KEY, "acme", key_id="key_acme1"),
    defined_key(ACME_ROTATED_KEY, "acme", key_id="key_acme2"),
    defined_key(GLOBEX_KEY, "globex", key_id="key_globex1"),
    *(
        defined_key(t, "acme", s, key_id=f"key_acme_{s.replace(':', '_')}")
        for s, t in SCOPE_KEYS.items()
    ),
)
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

    def __init__(self, client: FlaskClient, token: str = API_KEY) -> None:
        self.c = client
        self.token = token

    def create(self, currency: str = "EUR", wallet_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"currency": currency}
        if wallet_id:
            body["id"] = wallet_id
        r = self.c.post("/wallets", json=body, headers=auth(self.token))
        assert r.status_code == 201, r.get_json()
        return r.get_json()  # type: ignore[no-any-return]

    def move(self, kind: str, wallet_id: str, amount: Any, key: str | None = None):  # type: ignore[no-untyped-def]
        headers = auth(self.token, **({"Idempotency-Key": key} if key else {}))
        return self.c.post(f"/wallets/{wallet_id}/{kind}", json={"amount": amount}, headers=headers)

    def balance(self, wallet_id: str) -> int:
        r = self.c.get(f"/wallets/{wallet_id}", headers=auth(self.token))
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
