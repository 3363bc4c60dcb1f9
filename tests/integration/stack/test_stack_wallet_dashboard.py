"""The Grafana dashboard, tested through its PromQL: after real traffic every panel's
query returns data from the stack's Prometheus. (No Grafana runs here when air-gapped;
the queries are what can break.) Runs last: it needs the traffic of the other tests."""

from __future__ import annotations

import json
import uuid

import pytest
import requests
import stack_support as ss

pytestmark = pytest.mark.stack

DASHBOARD = ss.ROOT / "infra" / "grafana" / "dashboards" / "wallet-stack.json"


def _queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    found = [(p["title"], t["expr"]) for p in dash["panels"] for t in p["targets"]]
    assert len(found) >= 10
    return found


def _traffic(stack: ss.Stack, http: requests.Session) -> None:
    """Deposits, a refusal and an unauthenticated call: every panel has something."""
    wallet = f"dash-{uuid.uuid4().hex[:10]}"
    http.post(stack.url("wallet.localhost", "/wallets"), json={"currency": "EUR", "id": wallet},
              headers=stack.bearer, timeout=ss.HTTP_TIMEOUT).raise_for_status()  # fmt: skip
    for n in range(20):
        http.post(stack.url("wallet.localhost", f"/wallets/{wallet}/deposit"), json={"amount": 100},
                  headers={**stack.bearer, "Idempotency-Key": f"dash-{wallet}-{n}"},
                  timeout=ss.HTTP_TIMEOUT).raise_for_status()  # fmt: skip
    refused = http.post(stack.url("wallet.localhost", f"/wallets/{wallet}/withdraw"),
                        json={"amount": 10**9}, headers=stack.bearer, timeout=ss.HTTP_TIMEOUT)  # fmt: skip
    assert refused.status_code == 409
    assert (
        http.get(stack.url("wallet.localhost", "/wallets/x"), timeout=ss.HTTP_TIMEOUT).status_code
        == 401
    )


def test_every_dashboard_query_returns_data_after_traffic(
    stack: ss.Stack, http: requests.Session
) -> None:
    _traffic(stack, http)
    empty: dict[str, str] = {}

    def all_have_data() -> bool:
        empty.clear()
        for title, expr in _queries():
            query = expr.replace("$__rate_interval", "2m")
            if not ss.prom_vector(stack, http, query):
                empty[title] = query
        return not empty

    try:
        ss.poll(
            "every dashboard query returns data",
            all_have_data,
            lambda ok: ok,
            timeout=90,
            interval=5,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; empty: {json.dumps(empty, indent=1)}") from None
    ss.note(f"dashboard: all {len(_queries())} panel queries return data")
