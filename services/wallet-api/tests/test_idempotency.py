import threading

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import OTHER_KEY, Api, auth


def _history_len(client: FlaskClient, wid: str) -> int:
    return len(client.get(f"/wallets/{wid}/transactions", headers=auth()).get_json()["items"])


def test_retry_with_same_key_replays_without_moving_money(api: Api, client: FlaskClient) -> None:
    wid = api.create()["id"]
    first = api.move("deposit", wid, 700, key="k-1")
    again = api.move("deposit", wid, 700, key="k-1")
    assert first.status_code == again.status_code == 200
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert api.balance(wid) == 700
    assert _history_len(client, wid) == 1


def test_business_refusals_are_replayed_too(api: Api) -> None:
    wid = api.create()["id"]
    first = api.move("withdraw", wid, 10, key="k-2")
    assert first.status_code == 409
    api.move("deposit", wid, 100)
    # Funds arrived meanwhile, but a retry of the same request gets the same answer.
    again = api.move("withdraw", wid, 10, key="k-2")
    assert again.status_code == 409 and again.headers["Idempotent-Replayed"] == "true"
    assert api.balance(wid) == 100


def test_same_key_with_different_body_is_refused(api: Api) -> None:
    wid = api.create()["id"]
    assert api.move("deposit", wid, 5, key="k-3").status_code == 200
    r = api.move("deposit", wid, 6, key="k-3")
    assert r.status_code == 422
    assert r.get_json()["type"].endswith("idempotency-key-reused")
    r = api.move("withdraw", wid, 5, key="k-3")  # same key, other endpoint
    assert r.status_code == 422
    assert api.balance(wid) == 5


def test_keys_are_scoped_per_tenant_not_per_api_key(api: Api, client: FlaskClient) -> None:
    """Another key of the same tenant (a rotated key) replays the first answer;
    see test_tenants.py for other tenants."""
    wid = api.create()["id"]
    first = api.move("deposit", wid, 5, key="shared")
    r = client.post(
        f"/wallets/{wid}/deposit",
        json={"amount": 5},
        headers=auth(OTHER_KEY, **{"Idempotency-Key": "shared"}),
    )
    assert r.status_code == 200 and r.headers["Idempotent-Replayed"] == "true"
    assert r.get_json() == first.get_json()
    assert api.balance(wid) == 5


def test_transfer_replay(api: Api, client: FlaskClient) -> None:
    a, b = api.create("EUR", "ta")["id"], api.create("EUR", "tb")["id"]
    api.move("deposit", a, 100)
    headers = auth(**{"Idempotency-Key": "t-1"})
    body = {"from": a, "to": b, "amount": 60}
    first = client.post("/transfers", json=body, headers=headers)
    again = client.post("/transfers", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.get_json()["id"] == first.get_json()["id"]
    assert (api.balance(a), api.balance(b)) == (40, 60)


def test_concurrent_requests_with_one_key_move_money_once(app: Flask, api: Api) -> None:
    wid = api.create()["id"]
    results: list[tuple[int, dict, bool]] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        with app.test_client() as c:
            start.wait()
            r = c.post(
                f"/wallets/{wid}/deposit",
                json={"amount": 9},
                headers=auth(**{"Idempotency-Key": "race"}),
            )
            with lock:
                results.append((r.status_code, r.get_json(), "Idempotent-Replayed" in r.headers))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    originals = [body for status, body, replayed in results if status == 200 and not replayed]
    assert len(originals) == 1
    for status, body, replayed in results:
        assert status == 409 or (status == 200 and body == originals[0]), (status, body)
    assert api.balance(wid) == 9


def test_a_failed_request_leaves_its_key_free_for_the_retry(api: Api, monkeypatch) -> None:
    from wallet_api.store import StoreUnavailable, WalletStore

    wid = api.create()["id"]

    def outage(self, *a, **k):  # type: ignore[no-untyped-def]
        raise StoreUnavailable("simulated outage")

    with monkeypatch.context() as m:
        m.setattr(WalletStore, "commit", outage)
        r = api.move("deposit", wid, 3, key="after-outage")
    assert r.status_code == 503 and r.get_json()["type"].endswith("redis-unavailable")
    r = api.move("deposit", wid, 3, key="after-outage")
    assert r.status_code == 200 and "Idempotent-Replayed" not in r.headers
    assert api.balance(wid) == 3


def test_unknown_wallet_is_not_recorded_under_the_key(api: Api, client: FlaskClient) -> None:
    assert api.move("deposit", "later", 4, key="early").status_code == 404
    api.create("EUR", "later")
    r = api.move("deposit", "later", 4, key="early")
    assert r.status_code == 200 and "Idempotent-Replayed" not in r.headers


@pytest.mark.parametrize(
    ("error", "slug"),
    [
        ("StoreUnavailable", "redis-unavailable"),
        ("ContentionExhausted", "contention"),
        ("OutcomeUnknown", "outcome-unknown"),
    ],
)
def test_redis_trouble_is_a_503_problem_saying_what_happened(
    api: Api, monkeypatch: pytest.MonkeyPatch, error: str, slug: str
) -> None:
    from wallet_api import store

    wid = api.create()["id"]

    def fail(self, *a, **k):  # type: ignore[no-untyped-def]
        raise getattr(store, error)("simulated")

    monkeypatch.setattr(store.WalletStore, "commit", fail)
    r = api.move("deposit", wid, 1)
    assert r.status_code == 503 and r.mimetype == "application/problem+json"
    assert r.get_json()["type"].endswith(slug)
    assert r.headers["Retry-After"] == "1"


def test_problems_from_outcomes_and_replays_carry_this_requests_instance_and_id(
    api: Api,
) -> None:
    wid = api.create()["id"]
    answers = [
        api.move("withdraw", wid, 10, key="k-p"),  # rendered from the ledger's refusal
        api.move("withdraw", wid, 10, key="k-p"),  # replayed from the idempotency record
        api.move("withdraw", wid, 11, key="k-p"),  # the key reused with another body
    ]
    assert [r.status_code for r in answers] == [409, 409, 422]
    assert answers[1].headers["Idempotent-Replayed"] == "true"
    for r in answers:
        problem = r.get_json()
        assert problem["instance"] == f"/wallets/{wid}/withdraw"
        assert problem["request_id"] == r.headers["X-Request-ID"]
    assert len({r.get_json()["request_id"] for r in answers}) == 3
