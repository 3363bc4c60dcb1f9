"""Every response the API gives in a full scenario matches /openapi.json."""

from typing import Any

import pytest
from flask import Blueprint, Flask
from flask.testing import FlaskClient

from tests.helpers import SPEC, auth, check
from wallet_api.contract import operation
from wallet_api.models import Health
from wallet_api.service import ApiResponse


def test_spec_is_valid_openapi_31_shape(client: FlaskClient) -> None:
    served = client.get("/openapi.json").get_json()
    assert served == SPEC
    assert served["openapi"].startswith("3.1")
    for item in served["paths"].values():
        for op in item.values():
            assert op["responses"], op


def test_every_scenario_response_matches_the_spec(client: FlaskClient) -> None:
    calls: list[tuple[str, str, dict[str, Any] | None, dict[str, str]]] = [
        ("get", "/status", None, {}),
        ("get", "/healthz", None, {}),
        ("get", "/readyz", None, {}),
        ("post", "/wallets", {"currency": "EUR", "id": "a"}, auth()),
        ("post", "/wallets", {"currency": "EUR", "id": "b"}, auth()),
        ("post", "/wallets", {"currency": "EUR", "id": "a"}, auth()),  # 409
        ("post", "/wallets", {"currency": "eur"}, auth()),  # 422
        ("get", "/wallets/a", None, auth()),
        ("get", "/wallets/zzz", None, auth()),  # 404
        ("get", "/wallets/a", None, {}),  # 401
        ("post", "/wallets/a/deposit", {"amount": 1000}, auth(**{"Idempotency-Key": "c1"})),
        (
            "post",
            "/wallets/a/deposit",
            {"amount": 1000},
            auth(**{"Idempotency-Key": "c1"}),
        ),  # replay
        (
            "post",
            "/wallets/a/deposit",
            {"amount": 5},
            auth(**{"Idempotency-Key": "c1"}),
        ),  # 422 reuse
        ("post", "/wallets/a/withdraw", {"amount": 1}, auth()),
        ("post", "/wallets/a/withdraw", {"amount": 10**6}, auth()),  # 409
        ("post", "/wallets/a/withdraw", {"amount": 1.5}, auth()),  # 422
        ("post", "/transfers", {"from": "a", "to": "b", "amount": 10}, auth()),
        ("post", "/transfers", {"from": "a", "to": "b", "amount": 10**6}, auth()),  # 409
        ("post", "/transfers", {"from": "a", "to": "nobody", "amount": 1}, auth()),  # 404
        ("get", "/wallets/a/transactions?limit=2", None, auth()),
        ("get", "/wallets/a/transactions?limit=2&cursor=2", None, auth()),
        ("get", "/wallets/a/transactions?limit=500", None, auth()),  # 422
    ]
    for method, url, body, headers in calls:
        response = getattr(client, method)(url, json=body, headers=headers)
        check(method, url, response)


def test_check_catches_a_drift() -> None:
    """The checker itself must fail on a body that breaks the spec."""

    class Fake:
        status_code = 200
        mimetype = "application/json"

        @staticmethod
        def get_json() -> dict[str, Any]:
            return {"id": "a", "currency": "EUR", "balance": -1, "created_at": "x"}

    with pytest.raises(AssertionError, match="minimum"):
        check("get", "/wallets/a", Fake())  # type: ignore[arg-type]


def test_an_undocumented_answer_is_a_bug_not_a_silent_drift(app: Flask) -> None:
    """contract.operation serialises answers by their declared status: a view
    answering with another status fails loudly instead of leaving the document."""
    bp = Blueprint("drift", __name__)

    @bp.get("/drift")
    @operation((200, Health, "OK"), auth=False)
    def drift() -> ApiResponse:
        return ApiResponse(202, {"status": "accepted"})

    @bp.get("/extra-field")
    @operation((200, Health, "OK"), auth=False)
    def extra_field() -> ApiResponse:
        return ApiResponse(200, {"status": "ok", "secret": "x"})

    app.register_blueprint(bp)
    with app.test_client() as c:
        for url in ("/drift", "/extra-field"):
            r = c.get(url)
            assert r.status_code == 500 and r.mimetype == "application/problem+json", url
            assert "secret" not in r.get_data(as_text=True)


def test_production_serialisation_gives_the_documents_the_models_give(
    app: Flask, client: FlaskClient
) -> None:
    """Production skips validating its own answers (json.dumps); the documents
    must be the same ones, field for field and in the same order."""
    from dataclasses import replace

    from wallet_api.context import wallet_context

    client.post("/wallets", json={"currency": "EUR", "id": "a"}, headers=auth())
    client.post("/wallets", json={"currency": "EUR", "id": "b"}, headers=auth())
    calls = [
        ("post", "/wallets/a/deposit", {"amount": 9}, "k1"),  # replayed with the flag off
        ("post", "/transfers", {"from": "a", "to": "b", "amount": 2}, "k2"),
        ("get", "/wallets/a", None, None),
        ("get", "/wallets/a/transactions?limit=1", None, None),
    ]
    documents: list[list[tuple[str, Any]]] = []
    with app.app_context():
        ctx = wallet_context()
    for validate in (True, False):
        ctx.settings = replace(ctx.settings, validate_responses=validate)
        for method, url, body, key in calls:
            headers = auth(**({"Idempotency-Key": key} if key else {}))
            r = getattr(client, method)(url, json=body, headers=headers)
            assert r.status_code in (200, 201), r.get_json()
            check(method, url, r)
            documents.append(list(r.get_json().items()))
    assert documents[: len(calls)] == documents[len(calls) :]


def test_every_503_type_is_in_the_spec() -> None:
    """Each typed 503 the API answers is documented, on every operation that may give it."""
    from wallet_api.models import UnavailableType

    documented = set(UnavailableType.__args__)  # type: ignore[attr-defined]
    assert {t.rsplit(":", 1)[1] for t in documented} == {
        "redis-unavailable",
        "storage-full",
        "contention",
        "outcome-unknown",
        "wallet-unavailable",
    }
    schemas = SPEC["components"]["schemas"]
    deposit = SPEC["paths"]["/wallets/{wallet_id}/deposit"]["post"]["responses"]["503"]
    ref = deposit["content"]["application/problem+json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(schemas[ref]["properties"]["type"]["enum"]) == documented
    assert "Retry-After" in deposit["headers"]
