from flask.testing import FlaskClient

from tests.helpers import OTHER_KEY, Api, auth


def test_open_endpoints_need_no_key(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready"}
    status = client.get("/status").get_json()
    assert status["service"] == "wallet-api"
    assert status["redis"] == "ok"
    assert status["replica"] == "test-replica"
    assert client.get("/metrics").status_code == 200


def test_wallet_lifecycle(api: Api) -> None:
    wallet = api.create("EUR")
    assert wallet["balance"] == 0 and wallet["currency"] == "EUR"
    wid = wallet["id"]

    r = api.move("deposit", wid, 1250)
    assert r.status_code == 200
    body = r.get_json()
    assert body["balance"] == 1250
    assert body["transaction"]["type"] == "deposit"
    assert body["transaction"]["amount"] == 1250
    assert body["transaction"]["balance_after"] == 1250

    r = api.move("withdraw", wid, 250)
    assert r.status_code == 200 and r.get_json()["balance"] == 1000
    assert api.balance(wid) == 1000


def test_withdraw_more_than_balance_is_409_and_changes_nothing(
    api: Api, client: FlaskClient
) -> None:
    wid = api.create()["id"]
    api.move("deposit", wid, 100)
    r = api.move("withdraw", wid, 101)
    assert r.status_code == 409
    assert r.mimetype == "application/problem+json"
    assert r.get_json()["type"].endswith("insufficient-funds")
    assert api.balance(wid) == 100
    history = client.get(f"/wallets/{wid}/transactions", headers=auth()).get_json()
    assert [e["type"] for e in history["items"]] == ["deposit"]


def test_client_chosen_id_and_duplicate(api: Api, client: FlaskClient) -> None:
    assert api.create("USD", "alice")["id"] == "alice"
    r = client.post("/wallets", json={"currency": "USD", "id": "alice"}, headers=auth())
    assert r.status_code == 409
    assert r.get_json()["type"].endswith("wallet-exists")


def test_transfer_moves_money_atomically(api: Api, client: FlaskClient) -> None:
    a, b = api.create("EUR", "a")["id"], api.create("EUR", "b")["id"]
    api.move("deposit", a, 500)
    r = client.post("/transfers", json={"from": a, "to": b, "amount": 200}, headers=auth())
    assert r.status_code == 201
    body = r.get_json()
    assert body["balance"] == 300 and body["from"] == "a" and body["to"] == "b"
    assert (api.balance(a), api.balance(b)) == (300, 200)
    out = client.get(f"/wallets/{a}/transactions", headers=auth()).get_json()["items"][0]
    inn = client.get(f"/wallets/{b}/transactions", headers=auth()).get_json()["items"][0]
    assert out["type"] == "transfer_out" and inn["type"] == "transfer_in"
    assert out["transfer_id"] == inn["transfer_id"] == body["id"]


def test_transfer_refusals_change_nothing(api: Api, client: FlaskClient) -> None:
    a, b = api.create("EUR", "a")["id"], api.create("EUR", "b")["id"]
    usd = api.create("USD", "u")["id"]
    api.move("deposit", a, 100)
    cases = [
        ({"from": a, "to": b, "amount": 101}, 409, "insufficient-funds"),
        ({"from": a, "to": usd, "amount": 1}, 422, "currency-mismatch"),
        ({"from": a, "to": "ghost", "amount": 1}, 404, "wallet-not-found"),
        ({"from": a, "to": a, "amount": 1}, 422, "validation"),
    ]
    for body, status, slug in cases:
        r = client.post("/transfers", json=body, headers=auth())
        assert r.status_code == status, (body, r.get_json())
        assert r.get_json()["type"].endswith(slug)
    assert (api.balance(a), api.balance(b), api.balance(usd)) == (100, 0, 0)


def test_history_is_newest_first_with_cursor_pagination(api: Api, client: FlaskClient) -> None:
    wid = api.create()["id"]
    for amount in range(1, 8):
        api.move("deposit", wid, amount)
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        url = f"/wallets/{wid}/transactions?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=auth()).get_json()
        seen += [e["amount"] for e in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [7, 6, 5, 4, 3, 2, 1]
    assert pages == 3


def test_wallet_endpoints_require_a_valid_key(api: Api, client: FlaskClient) -> None:
    wid = api.create()["id"]
    for headers in (
        {},
        {"Authorization": "Bearer wrong-key-0123456789"},
        {"Authorization": "Basic x"},
    ):
        for method, url, body in [
            ("get", f"/wallets/{wid}", None),
            ("post", f"/wallets/{wid}/deposit", {"amount": 1}),
            ("post", f"/wallets/{wid}/withdraw", {"amount": 1}),
            ("post", "/transfers", {"from": wid, "to": "x", "amount": 1}),
            ("post", "/wallets", {"currency": "EUR"}),
            ("get", f"/wallets/{wid}/transactions", None),
        ]:
            r = getattr(client, method)(url, json=body, headers=headers)
            assert r.status_code == 401, (url, headers)
            assert r.mimetype == "application/problem+json"
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert api.balance(wid) == 0
    # every configured key works
    assert client.get(f"/wallets/{wid}", headers=auth(OTHER_KEY)).status_code == 200


def test_request_id_is_honoured_or_generated(client: FlaskClient) -> None:
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
        == "abc-123"
    )
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers[
        "X-Request-ID"
    ]
    assert generated != "bad id with spaces" and len(generated) == 32


def test_metrics_use_route_patterns_and_domain_counters(api: Api, client: FlaskClient) -> None:
    wid = api.create()["id"]
    api.move("deposit", wid, 5)
    api.move("withdraw", wid, 50)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'url_rule="/wallets/<wallet_id>/deposit"' in text
    assert wid not in text  # ids never become label values
    assert 'wallet_operations_total{operation="deposit",outcome="ok"} 1.0' in text
    assert 'wallet_operations_total{operation="withdrawal",outcome="refused"} 1.0' in text


def test_invented_methods_are_refused_and_not_counted(client: FlaskClient) -> None:
    """Each new method would be a new series of the request metrics, for good."""
    for n in range(3):
        r = client.open("/healthz", method=f"FOO{n}")
        assert r.status_code == 405 and r.mimetype == "application/problem+json"
    assert client.open("/healthz", method="PATCH").status_code == 405
    text = client.get("/metrics").get_data(as_text=True)
    assert "FOO" not in text
    assert 'method="PATCH"' in text and 'method="GET"' not in text  # /metrics is excluded
    client.get("/healthz")
    assert 'method="GET"' in client.get("/metrics").get_data(as_text=True)


def test_unknown_route_and_method_are_problems(client: FlaskClient) -> None:
    r = client.get("/nope")
    assert r.status_code == 404 and r.mimetype == "application/problem+json"
    r = client.delete("/wallets")
    assert r.status_code == 405 and "POST" in r.headers["Allow"]


def test_docs_page_is_self_contained(client: FlaskClient) -> None:
    html = client.get("/docs").get_data(as_text=True)
    assert "/openapi.json" in html
    assert "http://" not in html and "https://" not in html  # no CDN


def test_one_version_source_the_package_metadata(client: FlaskClient) -> None:
    from importlib.metadata import version

    from wallet_api import __version__

    assert __version__ == version("wallet-api")
    assert client.get("/status").get_json()["version"] == __version__
    assert client.get("/openapi.json").get_json()["info"]["version"] == __version__
