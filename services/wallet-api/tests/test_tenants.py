"""Tenants and scoped API keys, through the API: a key sees and moves only its
own tenant's money, needs the scope of each operation, and leaves an audit trail.

Tenants here: acme (ACME_KEY, ACME_ROTATED_KEY and one key per scope) and
globex (GLOBEX_KEY), as WALLET_API_KEYS_FILE would define them, and the
development keys of tenant `default` (API_KEY, OTHER_KEY).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from typing import Any

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.helpers import (
    ACME_KEY,
    ACME_ROTATED_KEY,
    API_KEY,
    GLOBEX_KEY,
    OTHER_KEY,
    SCOPE_KEYS,
    SPEC,
    TEST_KEYS,
    Api,
    auth,
    check,
)
from wallet_api import create_app
from wallet_api.config import Settings
from wallet_api.keys import MONEY_MOVE, SCOPES, WALLETS_CREATE, WALLETS_READ, token_digest

Call = tuple[str, str, dict[str, Any] | None, dict[str, str]]


def send(client: FlaskClient, call: Call) -> TestResponse:
    method, url, body, headers = call
    return getattr(client, method)(url, json=body, headers=headers)


def comparable(r: TestResponse) -> tuple[int, list[tuple[str, str]], bytes]:
    """A response, byte for byte, apart from its request id (header and body)."""
    request_id = r.headers["X-Request-ID"]
    headers = sorted((k, v) for k, v in r.headers.items() if k != "X-Request-ID")
    return r.status_code, headers, r.get_data().replace(request_id.encode(), b"<request-id>")


def wallet_calls(token: str, wallet: str, own: str) -> list[Call]:
    """Every endpoint that names `wallet`; `own` is a wallet of the caller's tenant
    (for transfers in both directions)."""
    h = auth(token)

    def keyed(name: str) -> dict[str, str]:
        return auth(token, **{"Idempotency-Key": f"{name}-{wallet}"})

    return [
        ("get", f"/wallets/{wallet}", None, h),
        ("get", f"/wallets/{wallet}/transactions", None, h),
        ("get", f"/wallets/{wallet}/transactions?limit=1&cursor=1", None, h),
        ("post", f"/wallets/{wallet}/deposit", {"amount": 5}, h),
        ("post", f"/wallets/{wallet}/deposit", {"amount": 5}, keyed("deposit")),
        ("post", f"/wallets/{wallet}/withdraw", {"amount": 5}, h),
        ("post", f"/wallets/{wallet}/withdraw", {"amount": 5}, keyed("withdraw")),
        ("post", "/transfers", {"from": wallet, "to": own, "amount": 5}, h),
        ("post", "/transfers", {"from": wallet, "to": own, "amount": 5}, keyed("out")),
        ("post", "/transfers", {"from": own, "to": wallet, "amount": 5}, h),
        ("post", "/transfers", {"from": own, "to": wallet, "amount": 5}, keyed("in")),
    ]


def books(client: FlaskClient, token: str, wallets: list[str]) -> dict[str, Any]:
    """Balances and full ledgers, as the owner sees them."""
    seen = {}
    for w in wallets:
        wallet = client.get(f"/wallets/{w}", headers=auth(token)).get_json()
        history = client.get(f"/wallets/{w}/transactions?limit=100", headers=auth(token))
        seen[w] = (wallet, history.get_json()["items"])
    return seen


def test_tenant_matrix_foreign_wallets_answer_exactly_as_missing_ones(
    client: FlaskClient,
) -> None:
    """acme and globex call every endpoint on each other's wallets and their own.
    Every call on the other tenant's wallet gets, byte for byte (request ids
    aside), the answer the same call got before that wallet existed, and
    changes nothing; the same calls on their own wallets work."""
    tenants = {"acme": (ACME_KEY, ["a1", "a2"]), "globex": (GLOBEX_KEY, ["g1", "g2"])}
    others = {"acme": "globex", "globex": "acme"}
    for token, (own, _) in tenants.values():
        r = client.post("/wallets", json={"currency": "EUR", "id": own}, headers=auth(token))
        assert r.status_code == 201
        assert (
            send(
                client, ("post", f"/wallets/{own}/deposit", {"amount": 100}, auth(token))
            ).status_code
            == 200
        )

    # Before the other tenant's wallets exist: what a missing wallet gets.
    missing: dict[str, list[tuple[int, Any, bytes]]] = {}
    for tenant, (token, (own, other_wallet)) in tenants.items():
        foreign = tenants[others[tenant]][1][1]
        missing[tenant] = [comparable(send(client, c)) for c in wallet_calls(token, foreign, own)]
        assert {status for status, _, _ in missing[tenant]} == {404}
    for tenant, (token, (_, second)) in tenants.items():
        api = Api(client, token)
        api.create("EUR", second)
        assert api.move("deposit", second, 40).status_code == 200
        api.move("withdraw", second, 1)
    before = {t: books(client, token, ws) for t, (token, ws) in tenants.items()}

    for tenant, (token, (own, _)) in tenants.items():
        foreign = tenants[others[tenant]][1][1]
        for call, expected in zip(wallet_calls(token, foreign, own), missing[tenant], strict=True):
            r = send(client, call)
            check(call[0], call[1], r)
            assert comparable(r) == expected, (tenant, call)
            # the documents say "wallet-not-found" and nothing about who owns it
            assert r.get_json()["type"].endswith("wallet-not-found")
    after = {t: books(client, token, ws) for t, (token, ws) in tenants.items()}
    assert after == before, "a cross-tenant call changed something"

    # The same calls on their own wallets do what they say.
    for tenant, (token, (own, second)) in tenants.items():
        statuses = [send(client, c).status_code for c in wallet_calls(token, second, own)]
        assert statuses == [200] * 7 + [201] * 4, tenant


def test_transfers_between_tenants_are_refused_both_ways(client: FlaskClient) -> None:
    acme, globex = Api(client, ACME_KEY), Api(client, GLOBEX_KEY)
    acme.create("EUR", "a")
    globex.create("EUR", "b")
    acme.move("deposit", "a", 100)
    globex.move("deposit", "b", 100)
    for token, source, target in ((ACME_KEY, "a", "b"), (GLOBEX_KEY, "b", "a")):
        for body in (
            {"from": source, "to": target, "amount": 10},  # out of own wallet into theirs
            {"from": target, "to": source, "amount": 10},  # out of theirs into own
        ):
            r = client.post("/transfers", json=body, headers=auth(token))
            assert r.status_code == 404, (token, body, r.get_json())
    assert (acme.balance("a"), globex.balance("b")) == (100, 100)
    for api, w in ((acme, "a"), (globex, "b")):
        items = client.get(f"/wallets/{w}/transactions", headers=auth(api.token)).get_json()
        assert [e["type"] for e in items["items"]] == ["deposit"]


def test_wallet_ids_are_unique_per_tenant(client: FlaskClient) -> None:
    """Each tenant may have its own `shared`: two wallets. (Global ids would tell
    the second tenant, by a 409, that the first one has it.)"""
    acme, globex = Api(client, ACME_KEY), Api(client, GLOBEX_KEY)
    assert acme.create("EUR", "shared")["id"] == "shared"
    assert globex.create("USD", "shared")["currency"] == "USD"
    acme.move("deposit", "shared", 7)
    assert (acme.balance("shared"), globex.balance("shared")) == (7, 0)
    r = client.post("/wallets", json={"currency": "EUR", "id": "shared"}, headers=auth(ACME_KEY))
    assert r.status_code == 409  # within one tenant, ids stay unique
    # And the development keys' tenant `default` is a tenant like the others.
    assert client.get("/wallets/shared", headers=auth(API_KEY)).status_code == 404


def test_idempotency_keys_are_reused_across_tenants_without_meeting(
    client: FlaskClient,
) -> None:
    acme, globex = Api(client, ACME_KEY), Api(client, GLOBEX_KEY)
    acme.create("EUR", "a")
    globex.create("EUR", "g")
    first = acme.move("deposit", "a", 30, key="same-key")
    assert first.status_code == 200
    # globex's own wallet, same Idempotency-Key, another body: a new request of its own.
    theirs = globex.move("deposit", "g", 45, key="same-key")
    assert theirs.status_code == 200 and "Idempotent-Replayed" not in theirs.headers
    # globex names acme's wallet with acme's key and body: not found, not a replay.
    missing = globex.move("deposit", "never-created", 30, key="same-key")
    r = globex.move("deposit", "a", 30, key="same-key")
    assert r.status_code == 404 and "Idempotent-Replayed" not in r.headers
    assert comparable(r)[2] == comparable(missing)[2].replace(b"never-created", b"a")
    # acme's retry still replays its own answer; each tenant's money moved once.
    again = acme.move("deposit", "a", 30, key="same-key")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert (acme.balance("a"), globex.balance("g")) == (30, 45)


# -- scopes ------------------------------------------------------------------------------


def _endpoints(token: str, n: int) -> dict[str, tuple[str, Call]]:
    """Each operation that takes a key -> (the scope it needs, a valid call)."""
    h = auth(token)
    return {
        "create": (WALLETS_CREATE, ("post", "/wallets", {"currency": "EUR", "id": f"new{n}"}, h)),
        "read": (WALLETS_READ, ("get", "/wallets/src", None, h)),
        "history": (WALLETS_READ, ("get", "/wallets/src/transactions", None, h)),
        "deposit": (MONEY_MOVE, ("post", "/wallets/src/deposit", {"amount": 3}, h)),
        "withdraw": (MONEY_MOVE, ("post", "/wallets/src/withdraw", {"amount": 2}, h)),
        "transfer": (
            MONEY_MOVE,
            ("post", "/transfers", {"from": "src", "to": "dst", "amount": 1}, h),
        ),
    }


def test_scope_matrix_every_scope_against_every_endpoint(client: FlaskClient) -> None:
    """A key with one scope: every operation needing another answers 403
    insufficient-scope (problem+json, RFC 6750 challenge) and changes nothing;
    the operations of its own scope work."""
    acme = Api(client, ACME_KEY)
    acme.create("EUR", "src")
    acme.create("EUR", "dst")
    acme.move("deposit", "src", 100)
    assert set(SCOPE_KEYS) == set(SCOPES)
    for n, (scope, token) in enumerate(SCOPE_KEYS.items()):
        for name, (needed, call) in _endpoints(token, n).items():
            before = books(client, ACME_KEY, ["src", "dst"])
            r = send(client, call)
            check(call[0], call[1], r)
            if scope == needed:
                assert r.status_code in (200, 201), (scope, name, r.get_json())
                continue
            assert r.status_code == 403, (scope, name, r.status_code)
            assert r.mimetype == "application/problem+json"
            problem = r.get_json()
            assert problem["type"] == "urn:wallet-stack:problem:insufficient-scope"
            assert problem["detail"] == f"this API key lacks the scope {needed!r}"
            assert r.headers["WWW-Authenticate"] == (
                f'Bearer realm="wallet-api", error="insufficient_scope", scope="{needed}"'
            )
            assert books(client, ACME_KEY, ["src", "dst"]) == before, (scope, name)
            created = client.get(f"/wallets/new{n}", headers=auth(ACME_KEY))
            assert created.status_code == (200 if scope == WALLETS_CREATE else 404)


def test_scope_is_checked_before_anything_else_is_read(client: FlaskClient) -> None:
    """A key without the scope learns nothing: not whether a wallet exists, not
    whether its request was valid."""
    read_only = SCOPE_KEYS[WALLETS_READ]
    for call in [
        ("post", "/wallets/ghost/deposit", {"amount": 1}, auth(read_only)),
        ("post", "/wallets/ghost/deposit", {"amount": -1}, auth(read_only)),
        ("post", "/wallets/ghost/deposit", None, auth(read_only, **{"Idempotency-Key": " "})),
        ("post", "/transfers", {"nonsense": True}, auth(read_only)),
        ("post", "/wallets", {"currency": "euro"}, auth(read_only)),
    ]:
        assert send(client, call).status_code == 403, call
    # An unknown or missing key is still 401, before any scope.
    for headers in ({}, auth("not-a-key-0123456789abcdef")):
        assert client.post("/wallets", json={"currency": "EUR"}, headers=headers).status_code == 401


# -- rotation ----------------------------------------------------------------------------


def test_key_rotation_a_retried_deposit_moves_money_once(
    settings: Settings, fake_redis: fakeredis.FakeRedis
) -> None:
    """The rotation procedure: add the new key, switch the client, retire the old
    key. A deposit first sent with the old key and retried with the new one
    (same Idempotency-Key) is applied once, before and after the old key goes."""
    both = create_app(settings, redis_client=fake_redis)  # old and new acme keys
    c = both.test_client()
    Api(c, ACME_KEY).create("EUR", "payroll")
    sent = c.post(
        "/wallets/payroll/deposit",
        json={"amount": 1250},
        headers=auth(ACME_KEY, **{"Idempotency-Key": "pay-2025-06"}),
    )
    assert sent.status_code == 200  # ... but say the client never saw this answer
    retry = c.post(
        "/wallets/payroll/deposit",
        json={"amount": 1250},
        headers=auth(ACME_ROTATED_KEY, **{"Idempotency-Key": "pay-2025-06"}),
    )
    assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json() == sent.get_json()

    # The old key is retired: a new deployment without it, same Redis.
    retired = tuple(k for k in TEST_KEYS if k.digest != token_digest(ACME_KEY))
    after = create_app(replace(settings, api_keys=retired), redis_client=fake_redis)
    c2 = after.test_client()
    old = c2.get("/wallets/payroll", headers=auth(ACME_KEY))
    assert old.status_code == 401
    late = c2.post(
        "/wallets/payroll/deposit",
        json={"amount": 1250},
        headers=auth(ACME_ROTATED_KEY, **{"Idempotency-Key": "pay-2025-06"}),
    )
    assert late.headers["Idempotent-Replayed"] == "true"
    assert Api(c2, ACME_ROTATED_KEY).balance("payroll") == 1250
    history = c2.get("/wallets/payroll/transactions", headers=auth(ACME_ROTATED_KEY)).get_json()
    assert len(history["items"]) == 1
    assert history["items"][0]["key_id"] == "key_acme1"  # the key that moved it


# -- audit -------------------------------------------------------------------------------


def test_every_ledger_entry_records_key_id_and_request_id(client: FlaskClient) -> None:
    acme = Api(client, ACME_KEY)
    acme.create("EUR", "a")
    acme.create("EUR", "b")
    r = client.post(
        "/wallets/a/deposit",
        json={"amount": 50},
        headers=auth(ACME_KEY, **{"X-Request-ID": "req-deposit-1"}),
    )
    assert r.get_json()["transaction"]["key_id"] == "key_acme1"
    assert r.get_json()["transaction"]["request_id"] == "req-deposit-1"
    t = client.post(
        "/transfers",
        json={"from": "a", "to": "b", "amount": 20},
        headers=auth(ACME_ROTATED_KEY, **{"X-Request-ID": "req-transfer-1"}),
    )
    assert t.status_code == 201
    generated = client.post("/wallets/a/withdraw", json={"amount": 1}, headers=auth(ACME_KEY))
    audit = {
        w: [
            (e["type"], e["key_id"], e["request_id"])
            for e in client.get(f"/wallets/{w}/transactions", headers=auth(ACME_KEY)).get_json()[
                "items"
            ]
        ]
        for w in ("a", "b")
    }
    assert audit == {
        "a": [
            ("withdrawal", "key_acme1", generated.headers["X-Request-ID"]),
            ("transfer_out", "key_acme2", "req-transfer-1"),
            ("deposit", "key_acme1", "req-deposit-1"),
        ],
        "b": [("transfer_in", "key_acme2", "req-transfer-1")],
    }


def test_no_token_is_ever_stored(client: FlaskClient, fake_redis: fakeredis.FakeRedis) -> None:
    """Ledger entries and idempotency records name keys by their public id; the
    tokens (and their digests) never reach Redis."""
    for token in (ACME_KEY, API_KEY):
        api = Api(client, token)
        api.create("EUR", "w")
        api.move("deposit", "w", 5, key="k")
        client.post("/transfers", json={"from": "w", "to": "x", "amount": 1}, headers=auth(token))
    dump = b""
    for key in fake_redis.keys("*"):
        kind = fake_redis.type(key)
        dump += key
        if kind == b"hash":
            dump += b"".join(k + v for k, v in fake_redis.hgetall(key).items())
        elif kind == b"zset":
            dump += b"".join(fake_redis.zrange(key, 0, -1))
        else:
            dump += fake_redis.get(key) or b""
    assert b"key_acme1" in dump  # the dump is the real thing
    for token in (ACME_KEY, API_KEY):
        digest = token_digest(token)
        for secret in (token.encode(), digest.hex().encode(), digest):
            assert secret not in dump


def test_access_log_lines_carry_key_id_and_tenant(
    settings: Settings, fake_redis: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(replace(settings, log_level="INFO"), redis_client=fake_redis)
    c = app.test_client()
    c.post("/wallets", json={"currency": "EUR", "id": "w"}, headers=auth(ACME_KEY))
    c.get("/wallets/w", headers=auth(SCOPE_KEYS[MONEY_MOVE]))  # 403
    c.get("/wallets/w", headers=auth("wrong-0123456789abcdef"))  # 401
    c.get("/healthz")
    c.get("/wallets/w", headers=auth(API_KEY))  # default tenant: 404
    lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    access = [
        (x["route"], x["status"], x["key_id"], x["tenant"])
        for x in lines
        if x["logger"] == "wallet_api.access"
    ]
    assert access == [
        ("/wallets", 201, "key_acme1", "acme"),
        ("/wallets/<wallet_id>", 403, "key_acme_money_move", "acme"),
        ("/wallets/<wallet_id>", 401, None, None),
        ("/healthz", 200, None, None),
        ("/wallets/<wallet_id>", 404, "key_" + token_digest(API_KEY).hex()[:16], "default"),
    ]
    text = json.dumps(lines)
    assert ACME_KEY not in text and API_KEY not in text


# -- the default tenant keeps the data of earlier versions -----------------------------


def test_data_from_before_tenants_belongs_to_the_default_tenant(
    client: FlaskClient, fake_redis: fakeredis.FakeRedis
) -> None:
    """A wallet and an idempotency record as the previous version wrote them (no
    tenant in the keys, records scoped per API key): the development keys'
    tenant `default` reads the wallet, and a retry of the request answered
    before the upgrade is replayed, not applied again."""
    old_response = {
        "wallet_id": "legacy",
        "currency": "EUR",
        "balance": 900,
        "transaction": {
            "id": "op-1",
            "wallet_id": "legacy",
            "seq": 1,
            "type": "deposit",
            "amount": 900,
            "balance_after": 900,
            "created_at": "2025-01-01T00:00:00.000Z",
        },
    }
    fake_redis.hset(
        "w:{w:legacy}",
        mapping={
            "currency": "EUR",
            "balance": 900,
            "seq": 1,
            "created_at": "2025-01-01T00:00:00.000Z",
            "nonce": "n",
        },
    )
    fake_redis.zadd("w:{w:legacy}:ledger", {json.dumps(old_response["transaction"]): 1})
    scope = token_digest(OTHER_KEY).hex()[:16]  # the old per-API-key scope
    idem = hashlib.sha256(b"old-retry").hexdigest()[:32]
    body = {"amount": 900}
    fp = hashlib.sha256(
        (
            "POST /wallets/legacy/deposit\n"
            + json.dumps(body, sort_keys=True, separators=(",", ":"))
        ).encode()
    ).hexdigest()
    record = {"fingerprint": fp, "op": "op-1", "status": 200, "body": old_response}
    fake_redis.set(f"w:{{w:legacy}}:idem:{scope}:{idem}", json.dumps(record), ex=3600)

    r = client.post(
        "/wallets/legacy/deposit",
        json=body,
        headers=auth(OTHER_KEY, **{"Idempotency-Key": "old-retry"}),
    )
    assert r.status_code == 200 and r.headers["Idempotent-Replayed"] == "true"
    assert r.get_json() == old_response
    assert Api(client, API_KEY).balance("legacy") == 900
    history = client.get("/wallets/legacy/transactions", headers=auth(API_KEY)).get_json()
    assert history["items"] == [old_response["transaction"]]  # no key_id: written before
    assert client.get("/wallets/legacy", headers=auth(ACME_KEY)).status_code == 404
    # A new request in the same wallet is recorded under the tenant's key, with audit.
    new = Api(client, API_KEY).move("deposit", "legacy", 1, key="new-key")
    assert new.get_json()["transaction"]["key_id"].startswith("key_")
    assert fake_redis.exists(f"w:{{w:legacy}}:idem:{hashlib.sha256(b'new-key').hexdigest()[:32]}")


def test_redis_keys_carry_the_tenant_in_the_hash_tag(
    client: FlaskClient, fake_redis: fakeredis.FakeRedis
) -> None:
    """Cluster-aware: all keys of one wallet share one hash tag, which names the
    tenant (except `default`, which keeps the layout from before tenants)."""
    Api(client, ACME_KEY).create("EUR", "w")
    Api(client, ACME_KEY).move("deposit", "w", 5, key="k")
    Api(client, API_KEY).create("EUR", "w")
    keys = sorted(k.decode() for k in fake_redis.keys("*"))
    tags = {re.search(r"\{(.*?)\}", k).group(1) for k in keys}  # type: ignore[union-attr]
    assert tags == {"w:acme:w", "w:w"}, keys
    assert any(k.startswith("w:{w:acme:w}:idem:") for k in keys)


# -- the document ------------------------------------------------------------------------


def test_openapi_documents_401_403_404_and_the_scope_of_every_operation() -> None:
    needs = {
        ("post", "/wallets"): WALLETS_CREATE,
        ("get", "/wallets/{wallet_id}"): WALLETS_READ,
        ("get", "/wallets/{wallet_id}/transactions"): WALLETS_READ,
        ("post", "/wallets/{wallet_id}/deposit"): MONEY_MOVE,
        ("post", "/wallets/{wallet_id}/withdraw"): MONEY_MOVE,
        ("post", "/transfers"): MONEY_MOVE,
    }
    seen = {}
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            if "security" not in op:
                continue
            ((_scheme, scopes),) = op["security"][0].items()
            seen[(method, path)] = scopes[0]
            assert {"401", "403", "404"} <= set(op["responses"]) or path == "/wallets", path
            assert {"401", "403"} <= set(op["responses"])
            assert "WWW-Authenticate" in op["responses"]["403"]["headers"]
            assert f"API key scope: `{scopes[0]}`" in op["description"]
    assert seen == needs
    assert "tenant" in SPEC["components"]["securitySchemes"]["bearerAuth"]["description"]


def test_an_authenticated_operation_must_declare_its_scope() -> None:
    from wallet_api.contract import operation
    from wallet_api.models import Health

    with pytest.raises(TypeError):
        operation((200, Health, "OK"))
    with pytest.raises(TypeError):
        operation((200, Health, "OK"), auth=False, scope=WALLETS_READ)


def test_other_key_is_a_second_key_of_the_default_tenant(app: Flask) -> None:
    """(The fixtures' development keys: both tenant `default`, every scope.)"""
    with app.test_client() as c:
        Api(c, API_KEY).create("EUR", "d")
        assert c.get("/wallets/d", headers=auth(OTHER_KEY)).status_code == 200
