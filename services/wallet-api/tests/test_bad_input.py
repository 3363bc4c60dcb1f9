"""A table of malformed requests: each is a 4xx problem+json naming the problem,
never a 5xx, and none changes any state."""

from typing import Any

import fakeredis
import pytest
from flask.testing import FlaskClient

from tests.helpers import Api, auth

JSON = "application/json"


def _cases(wid: str) -> list[tuple[str, str, Any, dict[str, str], int, str]]:
    dep = f"/wallets/{wid}/deposit"
    wd = f"/wallets/{wid}/withdraw"
    h = {"Content-Type": JSON}
    return [
        # (method, url, raw body, headers, status, field or slug expected in the problem)
        ("post", dep, '{"amount": 12.5}', h, 422, "amount"),
        ("post", dep, '{"amount": 12.0}', h, 422, "amount"),
        ("post", dep, '{"amount": "1250"}', h, 422, "amount"),
        ("post", dep, '{"amount": true}', h, 422, "amount"),
        ("post", dep, '{"amount": 0}', h, 422, "amount"),
        ("post", dep, '{"amount": -1}', h, 422, "amount"),
        ("post", dep, '{"amount": 1000001}', h, 422, "amount"),
        ("post", dep, '{"amount": 1e400}', h, 422, "amount"),
        ("post", dep, '{"amount": 99999999999999999999999999}', h, 422, "amount"),
        ("post", dep, '{"amount": NaN}', h, 422, "body"),
        ("post", dep, '{"amount": null}', h, 422, "amount"),
        ("post", dep, "{}", h, 422, "amount"),
        ("post", dep, '{"amount": 5, "note": "x"}', h, 422, "note"),
        ("post", dep, '{"amount": 5, "amount": 6}', h, 422, "amount"),
        ("post", dep, '{"amount": 5', h, 400, "malformed-json"),
        ("post", dep, "[5]", h, 400, "malformed-json"),
        ("post", dep, "", h, 400, "malformed-json"),
        (
            "post",
            dep,
            '{"amount": 5}',
            {"Content-Type": "text/plain"},
            415,
            "unsupported-media-type",
        ),
        (
            "post",
            dep,
            "amount=5",
            {"Content-Type": "application/x-www-form-urlencoded"},
            415,
            "unsupported-media-type",
        ),
        ("post", dep, '{"amount": 5}', {}, 415, "unsupported-media-type"),
        ("post", dep, '{"amount": 5, "pad": "' + "x" * 20000 + '"}', h, 413, "about:blank"),
        ("post", dep, '{"amount": 5}', {**h, "Idempotency-Key": "x" * 256}, 422, "Idempotency-Key"),
        ("post", wd, '{"amount": 5.5}', h, 422, "amount"),
        ("post", "/wallets/bad%20id!/deposit", '{"amount": 5}', h, 404, "wallet-not-found"),
        ("post", "/wallets/ghost/deposit", '{"amount": 5}', h, 404, "wallet-not-found"),
        ("post", "/wallets", '{"currency": "eur"}', h, 422, "currency"),
        ("post", "/wallets", '{"currency": "EUR", "id": "has space"}', h, 422, "id"),
        ("post", "/wallets", '{"currency": "EUR", "balance": 100}', h, 422, "balance"),
        ("post", "/wallets", "{}", h, 422, "currency"),
        (
            "post",
            "/transfers",
            '{"from": "' + wid + '", "to": "x", "amount": "5"}',
            h,
            422,
            "amount",
        ),
        ("post", "/transfers", '{"from": "' + wid + '", "amount": 5}', h, 422, "to"),
        ("post", "/transfers", '{"from": 7, "to": "x", "amount": 5}', h, 422, "from"),
        ("get", f"/wallets/{wid}/transactions?limit=0", {}, {}, 422, "limit"),
        ("get", f"/wallets/{wid}/transactions?limit=abc", {}, {}, 422, "limit"),
        ("get", f"/wallets/{wid}/transactions?cursor=-1", {}, {}, 422, "cursor"),
        ("get", f"/wallets/{wid}/transactions?limt=5", {}, {}, 422, "limt"),
        ("get", f"/wallets/{wid}?limit=5", {}, {}, 422, "limit"),
        ("post", f"{dep}?amount=5", '{"amount": 5}', h, 422, "amount"),
        # Issue 9: `$` let a trailing newline through, str.isdigit() took '²'.
        ("post", "/wallets", '{"currency": "EUR", "id": "abc\\n"}', h, 422, "id"),
        ("post", "/wallets", '{"currency": "EUR\\n"}', h, 422, "currency"),
        ("post", "/wallets", '{"currency": "EUR", "id": null}', h, 422, "id"),
        (
            "post",
            "/transfers",
            '{"from": "' + wid + '\\n", "to": "x", "amount": 5}',
            h,
            422,
            "from",
        ),
        ("post", f"/wallets/{wid}%0A/deposit", '{"amount": 5}', h, 404, "wallet-not-found"),
        ("get", f"/wallets/{wid}/transactions?limit=%C2%B2", {}, {}, 422, "limit"),
        ("get", f"/wallets/{wid}/transactions?cursor=%C2%B2", {}, {}, 422, "cursor"),
        ("get", f"/wallets/{wid}/transactions?limit=%D9%A3", {}, {}, 422, "limit"),
        ("get", f"/wallets/{wid}/transactions?limit=5%0A", {}, {}, 422, "limit"),
        ("get", f"/wallets/{wid}/transactions?limit=+5", {}, {}, 422, "limit"),
        ("get", f"/wallets/{wid}/transactions?limit=1_0", {}, {}, 422, "limit"),
        ("get", f"/wallets/{wid}/transactions?cursor=1%0A", {}, {}, 422, "cursor"),
        ("post", dep, '{"amount": 5}', {**h, "Idempotency-Key": "a b"}, 422, "Idempotency-Key"),
        # Lone surrogates as keys, which json.loads accepts (escaped, or as CESU-8
        # bytes): named in the problem, which UTF-8 cannot carry as they are.
        ("post", dep, '{"\\ud800": 1, "\\ud800": 2}', h, 422, "\ud800"),
        ("post", "/wallets", b'{"\xed\xa0\x80": 1, "\xed\xa0\x80": 1}', h, 422, "\ud800"),
        ("post", "/wallets", '{"currency": {"\\udc00": 1, "\\udc00": 2}}', h, 422, "\udc00"),
    ]


def test_malformed_requests_are_refused_cleanly(
    api: Api, client: FlaskClient, fake_redis: fakeredis.FakeRedis
) -> None:
    wid = api.create("EUR", "w1")["id"]
    api.move("deposit", wid, 100)
    before = {k: fake_redis.dump(k) for k in fake_redis.keys("*")}
    cases = _cases(wid)
    for method, url, raw, headers, status, expected in cases:
        kwargs: dict[str, Any] = {"headers": {**auth(), **headers}}
        if method == "post":
            kwargs["data"] = raw
        r = getattr(client, method)(url, **kwargs)
        assert r.status_code == status, (
            url,
            raw[:60] if isinstance(raw, str) else raw,
            r.get_json(),
        )
        assert r.mimetype == "application/problem+json", url
        problem = r.get_json()
        assert problem["status"] == status
        assert problem["instance"] == r.request.path
        assert problem["request_id"] == r.headers["X-Request-ID"]
        fields = [e["field"] for e in problem.get("errors", [])]
        assert expected in fields or problem["type"].endswith(expected), (expected, problem)
    after = {k: fake_redis.dump(k) for k in fake_redis.keys("*")}
    assert after == before, "a refused request changed stored state"
    assert len(cases) >= 30


@pytest.mark.parametrize(
    ("body", "field"),
    [({"currency": "EUR", "id": "abc\n"}, "id"), ({"currency": "EUR\n"}, "currency")],
)
def test_issue_9_newline_ids_and_currencies_create_nothing(
    client: FlaskClient, fake_redis: fakeredis.FakeRedis, body: dict[str, str], field: str
) -> None:
    r = client.post("/wallets", json=body, headers=auth())
    assert r.status_code == 422, r.get_json()
    assert [e["field"] for e in r.get_json()["errors"]] == [field]
    assert fake_redis.keys("*") == []
    assert client.get("/wallets/abc%0A", headers=auth()).status_code == 404


@pytest.mark.parametrize("query", ["limit=%C2%B2", "cursor=%C2%B2"])
def test_issue_9_unicode_digits_in_the_query_are_422(
    api: Api, client: FlaskClient, query: str
) -> None:
    wid = api.create()["id"]
    r = client.get(f"/wallets/{wid}/transactions?{query}", headers=auth())
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["errors"][0]["field"] == query.split("=", maxsplit=1)[0]


@pytest.mark.parametrize("amount", [1, 1_000_000])
def test_boundaries_are_accepted(api: Api, amount: int) -> None:
    wid = api.create()["id"]
    assert api.move("deposit", wid, amount).status_code == 200


@pytest.mark.parametrize("empty", ["?", "?&", "?&&"])
def test_a_query_string_without_parameters_is_no_query(
    api: Api, client: FlaskClient, empty: str
) -> None:
    """'?&' is a query string with no parameter in it: the routes that take none
    answer as without it (it was a 500: the first of no parameters to name)."""
    h = auth()
    r = client.post(f"/wallets{empty}", json={"currency": "EUR", "id": "q1"}, headers=h)
    assert r.status_code == 201, r.get_json()
    other = api.create("EUR", "q2")["id"]
    r = client.post(f"/wallets/q1/deposit{empty}", json={"amount": 5}, headers=h)
    assert r.status_code == 200, r.get_json()
    r = client.post(f"/wallets/q1/withdraw{empty}", json={"amount": 1}, headers=h)
    assert r.status_code == 200, r.get_json()
    transfer = {"from": "q1", "to": other, "amount": 1}
    assert client.post(f"/transfers{empty}", json=transfer, headers=h).status_code == 201
    r = client.get(f"/wallets/q1{empty}", headers=h)
    assert r.status_code == 200 and r.get_json()["balance"] == 3
    assert client.get(f"/wallets/q1/transactions{empty}", headers=h).status_code == 200
