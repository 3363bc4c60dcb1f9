"""The API contract over real HTTP against the wallet-api containers.

Requests alternate between replicas on purpose: every replica must see what
another one wrote (shared Redis, no replica-local state). Success bodies are
validated against the OpenAPI document the containers themselves serve.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import requests
from containers_support import PROBLEM_JSON, TYPE_PREFIX, auth, create_wallet, read_ledger, session
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

if TYPE_CHECKING:  # conftest is pytest's to import, not ours
    from conftest import Replica, Stack

pytestmark = pytest.mark.containers


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    s = session()
    yield s
    s.close()


@pytest.fixture(scope="module")
def spec(stack: Stack, http: requests.Session) -> dict[str, Any]:
    r = http.get(f"{stack.replicas[0].url}/openapi.json", timeout=10)
    assert r.status_code == 200
    return dict(r.json())


@pytest.fixture
def api(healthy_stack: Stack, http: requests.Session, spec: dict[str, Any]) -> Api:
    return Api(healthy_stack, http, spec)


class Api:
    """A tiny client: each call goes to the next replica; checks shapes as it goes."""

    def __init__(self, stack: Stack, http: requests.Session, spec: dict[str, Any]) -> None:
        self.stack, self.http, self.spec = stack, http, spec
        self.key = stack.api_keys[0]
        self._n = 0
        registry: Registry = Registry().with_resource("urn:spec", DRAFT202012.create_resource(spec))
        self._registry = registry

    def base(self) -> str:
        urls = self.stack.urls()
        self._n += 1
        return urls[self._n % len(urls)]

    def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = "default",
        headers: dict[str, str] | None = None,
        base: str | None = None,
        **kw: Any,
    ) -> requests.Response:
        h = dict(headers or {})
        if key is not None:
            h.update(auth(self.key if key == "default" else key))
        return self.http.request(method, (base or self.base()) + path, headers=h, timeout=10, **kw)

    def conforms(self, resp: requests.Response, schema: str) -> dict[str, Any]:
        assert resp.headers["Content-Type"].startswith("application/json"), resp.headers
        body = resp.json()
        validator = Draft202012Validator(
            {"$ref": f"urn:spec#/components/schemas/{schema}"}, registry=self._registry
        )
        errors = sorted(validator.iter_errors(body), key=str)
        assert not errors, f"{schema}: {errors[0].message} in {body}"
        return dict(body)

    def problem(
        self, resp: requests.Response, status: int, slug: str | None = None
    ) -> dict[str, Any]:
        """An RFC 9457 problem document with this status (and type slug)."""
        assert resp.status_code == status, (resp.status_code, resp.text)
        assert resp.headers["Content-Type"].startswith(PROBLEM_JSON), resp.headers
        body = self.conforms_problem(resp)
        assert body["status"] == status
        if slug is not None:
            expected = slug if slug == "about:blank" else TYPE_PREFIX + slug
            assert body["type"] == expected, body
        return body

    def conforms_problem(self, resp: requests.Response) -> dict[str, Any]:
        body = resp.json()
        validator = Draft202012Validator(
            {"$ref": "urn:spec#/components/schemas/Problem"}, registry=self._registry
        )
        errors = list(validator.iter_errors(body))
        assert not errors, f"Problem: {errors[0].message} in {body}"
        return dict(body)

    def wallet(self, currency: str = "EUR", funds: int = 0) -> str:
        wallet_id = create_wallet(self.http, self.base(), self.key, currency)
        if funds:
            r = self.call("POST", f"/wallets/{wallet_id}/deposit", json={"amount": funds})
            assert r.status_code == 200, r.text
        return wallet_id

    def balance(self, wallet_id: str) -> int:
        r = self.call("GET", f"/wallets/{wallet_id}")
        assert r.status_code == 200, r.text
        return int(r.json()["balance"])


# -- open endpoints --------------------------------------------------------------


def test_every_replica_is_up_and_names_itself(api: Api) -> None:
    seen = set()
    for replica in api.stack.replicas:
        r = api.http.get(f"{replica.url}/status", timeout=10)
        body = api.conforms(r, "Status")
        assert body["status"] == "ok" and body["redis"] == "ok"
        seen.add(body["replica"])
        for path in ("/healthz", "/readyz"):
            assert api.http.get(f"{replica.url}{path}", timeout=10).status_code == 200
        metrics = api.http.get(f"{replica.url}/metrics", timeout=10)
        assert metrics.status_code == 200 and "flask_http_request_duration_seconds" in metrics.text
    assert seen == {r.replica_id for r in api.stack.replicas}


# -- wallets, deposits, withdrawals, transfers ---------------------------------------


def test_create_and_read_wallet_across_replicas(api: Api) -> None:
    first, second = api.stack.urls()[:2]
    r = api.call("POST", "/wallets", json={"currency": "EUR"}, base=first)
    assert r.status_code == 201
    wallet = api.conforms(r, "Wallet")
    assert wallet["balance"] == 0 and wallet["currency"] == "EUR"
    assert r.headers["Location"] == f"/wallets/{wallet['id']}"
    # written through one replica, read through the other
    assert (
        api.conforms(api.call("GET", f"/wallets/{wallet['id']}", base=second), "Wallet") == wallet
    )

    chosen = f"w-{uuid.uuid4().hex[:12]}"
    r = api.call("POST", "/wallets", json={"currency": "USD", "id": chosen}, base=first)
    assert r.status_code == 201 and api.conforms(r, "Wallet")["id"] == chosen
    # the same id again, through the other replica: 409, not a second wallet
    api.problem(
        api.call("POST", "/wallets", json={"currency": "USD", "id": chosen}, base=second),
        409,
        "wallet-exists",
    )

    api.problem(api.call("GET", f"/wallets/{uuid.uuid4().hex}"), 404, "wallet-not-found")
    body = api.problem(api.call("POST", "/wallets", json={"currency": "eur"}), 422, "validation")
    assert body["errors"] == [{"field": "currency", "detail": body["errors"][0]["detail"]}]
    body = api.problem(
        api.call("POST", "/wallets", json={"currency": "EUR", "owner": "x"}), 422, "validation"
    )
    assert body["errors"][0]["field"] == "owner"
    body = api.problem(api.call("POST", "/wallets", json={"currency": "EUR", "id": "bad id!"}), 422)
    assert body["errors"][0]["field"] == "id"


def test_deposit_withdraw_and_insufficient_funds(api: Api) -> None:
    wallet_id = api.wallet()
    r = api.call("POST", f"/wallets/{wallet_id}/deposit", json={"amount": 1250})
    assert r.status_code == 200
    body = api.conforms(r, "MoneyResult")
    assert body["balance"] == 1250 and body["transaction"]["type"] == "deposit"
    assert body["transaction"]["seq"] == 1 and body["transaction"]["balance_after"] == 1250
    r = api.call("POST", f"/wallets/{wallet_id}/withdraw", json={"amount": 250})
    body = api.conforms(r, "MoneyResult")
    assert body["balance"] == 1000 and body["transaction"]["type"] == "withdrawal"

    problem = api.problem(
        api.call("POST", f"/wallets/{wallet_id}/withdraw", json={"amount": 1001}),
        409,
        "insufficient-funds",
    )
    assert "1000" in problem["detail"]
    assert api.balance(wallet_id) == 1000  # refused: nothing changed
    assert [e["seq"] for e in read_ledger(api.http, api.stack.urls(), api.key, wallet_id)] == [1, 2]

    for bad in (0, -5, 1.5, "10", True, None, 10_000_000_001):
        body = api.problem(
            api.call("POST", f"/wallets/{wallet_id}/deposit", json={"amount": bad}),
            422,
            "validation",
        )
        assert body["errors"][0]["field"] == "amount", (bad, body)
    body = api.problem(
        api.call("POST", f"/wallets/{wallet_id}/deposit", json={}), 422, "validation"
    )
    assert body["errors"][0]["field"] == "amount"
    api.problem(
        api.call("POST", f"/wallets/{uuid.uuid4().hex}/deposit", json={"amount": 1}),
        404,
        "wallet-not-found",
    )
    assert api.balance(wallet_id) == 1000


def test_transfer(api: Api) -> None:
    a, b = api.wallet(funds=5000), api.wallet()
    r = api.call("POST", "/transfers", json={"from": a, "to": b, "amount": 1200})
    assert r.status_code == 201
    t = api.conforms(r, "Transfer")
    assert (t["from"], t["to"], t["amount"], t["balance"]) == (a, b, 1200, 3800)
    assert t["transaction"]["type"] == "transfer_out" and t["transaction"]["counterparty"] == b
    assert api.balance(a) == 3800 and api.balance(b) == 1200
    (credit,) = read_ledger(api.http, api.stack.urls(), api.key, b)
    assert (
        credit["type"] == "transfer_in"
        and credit["transfer_id"] == t["id"]
        and credit["counterparty"] == a
    )
    assert credit["amount"] == 1200 and credit["balance_after"] == 1200

    api.problem(
        api.call("POST", "/transfers", json={"from": a, "to": b, "amount": 3801}),
        409,
        "insufficient-funds",
    )
    body = api.problem(
        api.call("POST", "/transfers", json={"from": a, "to": a, "amount": 1}), 422, "validation"
    )
    assert body["errors"][0]["field"] == "to"
    api.problem(
        api.call("POST", "/transfers", json={"from": a, "to": uuid.uuid4().hex, "amount": 1}),
        404,
        "wallet-not-found",
    )
    usd = api.wallet("USD")
    api.problem(
        api.call("POST", "/transfers", json={"from": a, "to": usd, "amount": 1}),
        422,
        "currency-mismatch",
    )
    body = api.problem(
        api.call("POST", "/transfers", json={"from": a, "amount": 1}), 422, "validation"
    )
    assert body["errors"][0]["field"] == "to"
    assert api.balance(a) == 3800 and api.balance(b) == 1200 and api.balance(usd) == 0


def test_history_pagination(api: Api) -> None:
    wallet_id = api.wallet()
    for i in range(1, 26):
        r = api.call("POST", f"/wallets/{wallet_id}/deposit", json={"amount": i})
        assert r.status_code == 200
    pages, cursor = [], None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 10}
        if cursor is not None:
            params["cursor"] = cursor
        page = api.conforms(
            api.call("GET", f"/wallets/{wallet_id}/transactions", params=params), "TransactionPage"
        )
        pages.append([e["seq"] for e in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # newest first, 10 + 10 + 5, no overlap, no gap
    assert pages == [list(range(25, 15, -1)), list(range(15, 5, -1)), list(range(5, 0, -1))]
    default = api.conforms(api.call("GET", f"/wallets/{wallet_id}/transactions"), "TransactionPage")
    assert len(default["items"]) == 20 and default["next_cursor"] is not None
    exact = api.conforms(
        api.call("GET", f"/wallets/{wallet_id}/transactions", params={"limit": 25}),
        "TransactionPage",
    )
    assert len(exact["items"]) == 25 and exact["next_cursor"] is None
    for params in (
        {"limit": 0},
        {"limit": 101},
        {"limit": "x"},
        {"cursor": "abc"},
        {"cursor": "-1"},
    ):
        body = api.problem(
            api.call("GET", f"/wallets/{wallet_id}/transactions", params=params), 422, "validation"
        )
        assert body["errors"][0]["field"] in params
    api.problem(
        api.call("GET", f"/wallets/{uuid.uuid4().hex}/transactions"), 404, "wallet-not-found"
    )


# -- idempotency -------------------------------------------------------------------


def test_idempotent_replay_across_replicas(api: Api) -> None:
    first, second = api.stack.urls()[:2]
    wallet_id = api.wallet()
    key = {"Idempotency-Key": f"dep-{uuid.uuid4()}"}
    r1 = api.call(
        "POST", f"/wallets/{wallet_id}/deposit", json={"amount": 700}, headers=key, base=first
    )
    assert r1.status_code == 200 and "Idempotent-Replayed" not in r1.headers
    r2 = api.call(
        "POST", f"/wallets/{wallet_id}/deposit", json={"amount": 700}, headers=key, base=second
    )
    assert r2.status_code == 200 and r2.headers["Idempotent-Replayed"] == "true"
    assert r2.json() == r1.json()  # the first answer, byte for byte in JSON terms
    assert api.balance(wallet_id) == 700
    assert len(read_ledger(api.http, api.stack.urls(), api.key, wallet_id)) == 1

    # conflicting reuse: same key, different body / different operation -> 422, nothing moves
    api.problem(
        api.call("POST", f"/wallets/{wallet_id}/deposit", json={"amount": 701}, headers=key),
        422,
        "idempotency-key-reused",
    )
    api.problem(
        api.call("POST", f"/wallets/{wallet_id}/withdraw", json={"amount": 700}, headers=key),
        422,
        "idempotency-key-reused",
    )
    assert api.balance(wallet_id) == 700

    # transfers: replayed with the same transfer id and status 201
    other = api.wallet()
    tkey = {"Idempotency-Key": f"tr-{uuid.uuid4()}"}
    t1 = api.call(
        "POST",
        "/transfers",
        json={"from": wallet_id, "to": other, "amount": 100},
        headers=tkey,
        base=first,
    )
    t2 = api.call(
        "POST",
        "/transfers",
        json={"from": wallet_id, "to": other, "amount": 100},
        headers=tkey,
        base=second,
    )
    assert (t1.status_code, t2.status_code) == (201, 201) and t2.headers[
        "Idempotent-Replayed"
    ] == "true"
    assert t1.json() == t2.json()
    api.problem(
        api.call(
            "POST", "/transfers", json={"from": wallet_id, "to": other, "amount": 101}, headers=tkey
        ),
        422,
        "idempotency-key-reused",
    )
    assert api.balance(wallet_id) == 600 and api.balance(other) == 100


def test_idempotency_replays_refusals_too(api: Api) -> None:
    wallet_id = api.wallet()
    key = {"Idempotency-Key": uuid.uuid4().hex}
    api.problem(
        api.call("POST", f"/wallets/{wallet_id}/withdraw", json={"amount": 50}, headers=key),
        409,
        "insufficient-funds",
    )
    api.call("POST", f"/wallets/{wallet_id}/deposit", json={"amount": 100})
    # the stored answer stands, even though the withdrawal would succeed now
    r = api.call("POST", f"/wallets/{wallet_id}/withdraw", json={"amount": 50}, headers=key)
    api.problem(r, 409, "insufficient-funds")
    assert r.headers["Idempotent-Replayed"] == "true"
    assert api.balance(wallet_id) == 100


def test_idempotency_keys_are_scoped_per_tenant_and_wallet(api: Api) -> None:
    key_a, key_b = api.stack.api_keys  # two keys of one tenant
    wallet_id, other = api.wallet(), api.wallet()
    same = {"Idempotency-Key": f"shared-key-{uuid.uuid4().hex}"}
    ra = api.call(
        "POST", f"/wallets/{wallet_id}/deposit", json={"amount": 10}, headers=same, key=key_a
    )
    rb = api.call(
        "POST", f"/wallets/{wallet_id}/deposit", json={"amount": 10}, headers=same, key=key_b
    )
    # another key of the same tenant (a rotated key) replays: the money moved once
    assert ra.status_code == rb.status_code == 200 and rb.headers["Idempotent-Replayed"] == "true"
    assert rb.json() == ra.json()
    # ... and the same key may be used again on another wallet
    rc = api.call("POST", f"/wallets/{other}/deposit", json={"amount": 10}, headers=same, key=key_a)
    assert rc.status_code == 200 and "Idempotent-Replayed" not in rc.headers
    assert api.balance(wallet_id) == 10 and api.balance(other) == 10


def test_invalid_idempotency_keys(api: Api) -> None:
    wallet_id = api.wallet()
    for bad in ("has space", "x" * 256):
        body = api.problem(
            api.call(
                "POST",
                f"/wallets/{wallet_id}/deposit",
                json={"amount": 1},
                headers={"Idempotency-Key": bad},
            ),
            422,
            "validation",
        )
        assert body["errors"][0]["field"] == "Idempotency-Key"
    assert api.balance(wallet_id) == 0


# -- auth --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer not-a-valid-key-0000000000",
        "Basic dXNlcjpwYXNz",
        "Bearer ",
        "containers-suite-key-A-0123456789",
    ],
    ids=["missing", "wrong-key", "basic-scheme", "empty-token", "no-scheme"],
)
def test_auth_is_required(api: Api, header: str | None) -> None:
    wallet_id = api.wallet()
    headers = {"Authorization": header} if header is not None else {}
    for method, path, body in (
        ("POST", "/wallets", {"currency": "EUR"}),
        ("GET", f"/wallets/{wallet_id}", None),
        ("GET", f"/wallets/{wallet_id}/transactions", None),
        ("POST", f"/wallets/{wallet_id}/deposit", {"amount": 5}),
        ("POST", f"/wallets/{wallet_id}/withdraw", {"amount": 5}),
        ("POST", "/transfers", {"from": wallet_id, "to": wallet_id + "x", "amount": 5}),
    ):
        r = api.call(method, path, key=None, headers=headers, json=body)
        api.problem(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="wallet-api"', (path, r.headers)
    assert api.balance(wallet_id) == 0


def test_both_api_keys_work(api: Api) -> None:
    for key in api.stack.api_keys:
        r = api.call("POST", "/wallets", json={"currency": "EUR"}, key=key)
        assert r.status_code == 201, r.text


# -- problem+json errors --------------------------------------------------------------


def test_malformed_requests_get_problem_documents(api: Api) -> None:
    wallet_id = api.wallet()
    url = f"/wallets/{wallet_id}/deposit"
    json_ct = {"Content-Type": "application/json"}
    cases: list[tuple[dict[str, str], bytes, int, str]] = [
        (json_ct, b'{"amount": 10', 400, "malformed-json"),
        (json_ct, b"[10]", 400, "malformed-json"),
        (json_ct, b"", 400, "malformed-json"),
        (json_ct, b'{"amount": NaN}', 422, "validation"),
        (json_ct, b'{"amount": 1, "amount": 2}', 422, "validation"),
        (json_ct, b'{"amount": 1e3}', 422, "validation"),
        ({"Content-Type": "text/plain"}, b'{"amount": 10}', 415, "unsupported-media-type"),
        ({}, b'{"amount": 10}', 415, "unsupported-media-type"),
        (json_ct, b'{"amount": 1, "pad": "' + b"x" * 20_000 + b'"}', 413, "about:blank"),
    ]
    for headers, data, status, slug in cases:
        request_id = f"it-{uuid.uuid4().hex[:12]}"
        r = api.call("POST", url, headers={**headers, "X-Request-ID": request_id}, data=data)
        body = api.problem(r, status, slug)
        assert body["instance"] == url and body["request_id"] == request_id, body
        assert r.headers["X-Request-ID"] == request_id
    assert api.balance(wallet_id) == 0

    api.problem(api.call("GET", "/no/such/route"), 404, "about:blank")
    r = api.call("DELETE", f"/wallets/{wallet_id}")
    api.problem(r, 405, "about:blank")
    assert "GET" in r.headers["Allow"]


# -- tenants and scopes ----------------------------------------------------------------


def _comparable(r: requests.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    """A response byte for byte, apart from its request id (and the Date header)."""
    request_id = r.headers["X-Request-ID"]
    headers = sorted(
        (k.lower(), v) for k, v in r.headers.items() if k.lower() not in ("x-request-id", "date")
    )
    return r.status_code, headers, r.content.replace(request_id.encode(), b"<request-id>")


def _calls_naming(
    wallet: str, own: str, tag: str
) -> list[tuple[str, str, dict[str, Any] | None, dict[str, str]]]:
    """Every endpoint that names `wallet`; `own` is one of the caller's wallets."""

    def keyed(name: str) -> dict[str, str]:
        return {"Idempotency-Key": f"{tag}-{name}"}

    return [
        ("GET", f"/wallets/{wallet}", None, {}),
        ("GET", f"/wallets/{wallet}/transactions", None, {}),
        ("GET", f"/wallets/{wallet}/transactions?limit=1&cursor=5", None, {}),
        ("POST", f"/wallets/{wallet}/deposit", {"amount": 7}, {}),
        ("POST", f"/wallets/{wallet}/deposit", {"amount": 7}, keyed("deposit")),
        ("POST", f"/wallets/{wallet}/withdraw", {"amount": 7}, {}),
        ("POST", f"/wallets/{wallet}/withdraw", {"amount": 7}, keyed("withdraw")),
        ("POST", "/transfers", {"from": wallet, "to": own, "amount": 7}, {}),
        ("POST", "/transfers", {"from": wallet, "to": own, "amount": 7}, keyed("out")),
        ("POST", "/transfers", {"from": own, "to": wallet, "amount": 7}, {}),
        ("POST", "/transfers", {"from": own, "to": wallet, "amount": 7}, keyed("in")),
    ]


def _books(api: Api, key: str, wallets: list[str]) -> dict[str, Any]:
    return {
        w: (
            api.call("GET", f"/wallets/{w}", key=key).json(),
            read_ledger(api.http, api.stack.urls(), key, w),
        )
        for w in wallets
    }


def test_tenant_matrix_foreign_wallets_are_missing_wallets(api: Api) -> None:
    """alpha and beta call every endpoint on each other's wallets (and their own),
    through alternating replicas. Each foreign-wallet answer is byte for byte the
    answer the same call got before that wallet existed, and nothing changes."""
    alpha, beta = api.stack.api_keys[0], api.stack.beta_key
    tag = uuid.uuid4().hex[:8]
    own = {alpha: f"a-{tag}", beta: f"b-{tag}"}
    foreign = {alpha: f"b2-{tag}", beta: f"a2-{tag}"}  # created by the other tenant below
    for key, wallet in own.items():
        assert create_wallet(api.http, api.base(), key, wallet_id=wallet) == wallet
        assert (
            api.call(
                "POST", f"/wallets/{wallet}/deposit", json={"amount": 500}, key=key
            ).status_code
            == 200
        )

    def run(key: str) -> list[requests.Response]:
        return [
            api.call(m, path, key=key, json=body, headers=h)
            for m, path, body, h in _calls_naming(foreign[key], own[key], f"{tag}-{key[-4:]}")
        ]

    missing = {key: [_comparable(r) for r in run(key)] for key in own}
    assert {status for rs in missing.values() for status, _, _ in rs} == {404}
    # Now the other tenant creates those wallets (and moves money in them).
    for key, other in ((alpha, beta), (beta, alpha)):
        assert create_wallet(api.http, api.base(), other, wallet_id=foreign[key]) == foreign[key]
        r = api.call("POST", f"/wallets/{foreign[key]}/deposit", json={"amount": 300}, key=other)
        assert r.status_code == 200
    before = {k: _books(api, k, [own[k], foreign[o]]) for k, o in ((alpha, beta), (beta, alpha))}
    for key in own:
        for got, want in zip(run(key), missing[key], strict=True):
            assert _comparable(got) == want, (key, got.request.method, got.request.url)
            api.problem(got, 404, "wallet-not-found")
    after = {k: _books(api, k, [own[k], foreign[o]]) for k, o in ((alpha, beta), (beta, alpha))}
    assert after == before, "a cross-tenant call changed something"
    # Each tenant's own wallets answer the same calls normally.
    for key, other in ((alpha, beta), (beta, alpha)):
        statuses = [
            api.call(m, path, key=key, json=body, headers=h).status_code
            for m, path, body, h in _calls_naming(foreign[other], own[key], f"{tag}-own-{key[-4:]}")
        ]
        assert statuses == [200] * 7 + [201] * 4, (key, statuses)


def test_transfers_between_tenants_are_refused_both_ways(api: Api) -> None:
    alpha, beta = api.stack.api_keys[0], api.stack.beta_key
    a = create_wallet(api.http, api.base(), alpha)
    b = create_wallet(api.http, api.base(), beta)
    for key, wallet in ((alpha, a), (beta, b)):
        assert (
            api.call(
                "POST", f"/wallets/{wallet}/deposit", json={"amount": 100}, key=key
            ).status_code
            == 200
        )
    for key, source, target in ((alpha, a, b), (beta, b, a)):
        for body in (
            {"from": source, "to": target, "amount": 10},
            {"from": target, "to": source, "amount": 10},
        ):
            api.problem(api.call("POST", "/transfers", json=body, key=key), 404, "wallet-not-found")
    for key, wallet in ((alpha, a), (beta, b)):
        assert api.call("GET", f"/wallets/{wallet}", key=key).json()["balance"] == 100
        assert [e["type"] for e in read_ledger(api.http, api.stack.urls(), key, wallet)] == [
            "deposit"
        ]


def test_idempotency_keys_reused_across_tenants_never_meet(api: Api) -> None:
    alpha, beta = api.stack.api_keys[0], api.stack.beta_key
    a = create_wallet(api.http, api.base(), alpha)
    b = create_wallet(api.http, api.base(), beta)
    same = {"Idempotency-Key": f"cross-{uuid.uuid4().hex}"}
    first = api.call("POST", f"/wallets/{a}/deposit", json={"amount": 30}, headers=same, key=alpha)
    theirs = api.call("POST", f"/wallets/{b}/deposit", json={"amount": 45}, headers=same, key=beta)
    assert first.status_code == theirs.status_code == 200
    assert "Idempotent-Replayed" not in theirs.headers
    # beta naming alpha's wallet with alpha's key and body: not found, never a replay
    stolen = api.call("POST", f"/wallets/{a}/deposit", json={"amount": 30}, headers=same, key=beta)
    api.problem(stolen, 404, "wallet-not-found")
    assert "Idempotent-Replayed" not in stolen.headers
    again = api.call("POST", f"/wallets/{a}/deposit", json={"amount": 30}, headers=same, key=alpha)
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert api.call("GET", f"/wallets/{a}", key=alpha).json()["balance"] == 30
    assert api.call("GET", f"/wallets/{b}", key=beta).json()["balance"] == 45


def test_scope_matrix(api: Api) -> None:
    """Each one-scope key against every endpoint: 403 insufficient-scope (nothing
    changes) unless the endpoint needs that very scope."""
    src, dst = api.wallet(funds=100), api.wallet()
    for n, (scope, token) in enumerate(api.stack.scope_keys.items()):
        new_id = f"scoped-{uuid.uuid4().hex[:8]}-{n}"
        endpoints = [
            ("wallets:create", "POST", "/wallets", {"currency": "EUR", "id": new_id}),
            ("wallets:read", "GET", f"/wallets/{src}", None),
            ("wallets:read", "GET", f"/wallets/{src}/transactions", None),
            ("money:move", "POST", f"/wallets/{src}/deposit", {"amount": 3}),
            ("money:move", "POST", f"/wallets/{src}/withdraw", {"amount": 2}),
            ("money:move", "POST", "/transfers", {"from": src, "to": dst, "amount": 1}),
        ]
        for needed, method, path, body in endpoints:
            before = _books(api, api.key, [src, dst])
            r = api.call(method, path, key=token, json=body)
            if needed == scope:
                assert r.status_code in (200, 201), (scope, path, r.text)
                continue
            problem = api.problem(r, 403, "insufficient-scope")
            assert needed in problem["detail"]
            assert r.headers["WWW-Authenticate"] == (
                f'Bearer realm="wallet-api", error="insufficient_scope", scope="{needed}"'
            )
            assert _books(api, api.key, [src, dst]) == before, (scope, path)
        created = api.call("GET", f"/wallets/{new_id}")
        assert created.status_code == (200 if scope == "wallets:create" else 404)


def test_key_rotation_retried_deposit_moves_money_once(
    api: Api, retired_key_replica: Replica
) -> None:
    """Add the new key, switch the client, retire the old key: a deposit sent with
    the old key and retried with the new one (same Idempotency-Key) -- also on a
    replica deployed without the old key -- is applied once."""
    old, new = api.stack.api_keys
    wallet_id = api.wallet()
    key = {"Idempotency-Key": f"rotation-{uuid.uuid4().hex}"}
    first = api.call(
        "POST", f"/wallets/{wallet_id}/deposit", json={"amount": 1250}, headers=key, key=old
    )
    assert first.status_code == 200
    retry = api.call(
        "POST", f"/wallets/{wallet_id}/deposit", json={"amount": 1250}, headers=key, key=new
    )
    assert retry.headers["Idempotent-Replayed"] == "true" and retry.json() == first.json()
    rotated = retired_key_replica.url
    assert rotated is not None
    api.problem(
        api.call("GET", f"/wallets/{wallet_id}", key=old, base=rotated), 401, "unauthorized"
    )
    late = api.call(
        "POST",
        f"/wallets/{wallet_id}/deposit",
        json={"amount": 1250},
        headers=key,
        key=new,
        base=rotated,
    )
    assert late.headers["Idempotent-Replayed"] == "true" and late.json() == first.json()
    assert api.balance(wallet_id) == 1250
    (entry,) = read_ledger(api.http, api.stack.urls(), new, wallet_id)
    assert entry["key_id"] == api.stack.key_ids[old]  # who moved it, kept after retirement
    assert entry["request_id"] == first.headers["X-Request-ID"]
