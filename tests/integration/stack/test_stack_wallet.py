"""The wallet API through Traefik: routing to every replica, metrics in Prometheus,
API-key protected money movement, /metrics not exposed."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests
import stack_support as ss

pytestmark = pytest.mark.stack

WALLET = "wallet.localhost"
STATUS_CALLS = 20
STATUS_COUNT_QUERY = (
    "sum(flask_http_request_duration_seconds_count"
    f'{{job="{ss.PROMETHEUS_JOB}",url_rule="/status"}})'
)


def _prom_query(stack: ss.Stack, http: requests.Session, query: str) -> float:
    """Value of an instant query returning one (summed) sample; 0 when it has none."""
    r = http.get(
        stack.url("prometheus.localhost", "/api/v1/query"),
        params={"query": query},
        auth=stack.basic_auth,
        timeout=ss.HTTP_TIMEOUT,
    )
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture(scope="module")
def status_calls(
    stack: ss.Stack, http: requests.Session, wallet_backends: dict[str, Any]
) -> dict[str, Any]:
    """STATUS_CALLS requests to https://wallet.localhost/status, once every replica is
    UP in Traefik; with Prometheus' count just before (a scrape may lag: that only
    makes the baseline lower)."""
    baseline = _prom_query(stack, http, STATUS_COUNT_QUERY)
    replicas: list[str] = []
    for _ in range(STATUS_CALLS):
        r = http.get(stack.url(WALLET, "/status"), timeout=ss.HTTP_TIMEOUT)
        assert r.status_code == 200, r.text[:200]
        body = r.json()
        assert body["status"] == "ok" and body["redis"] == "ok", body
        replicas.append(body["replica"])
    return {"baseline": baseline, "replicas": replicas}


def test_traefik_api_lists_wallet_router_and_service(
    stack: ss.Stack, http: requests.Session, wallet_backends: dict[str, Any]
) -> None:
    get = lambda path: http.get(  # noqa: E731
        stack.url("traefik.localhost", path), auth=stack.basic_auth, timeout=ss.HTTP_TIMEOUT
    )
    routers = {r["name"]: r for r in get("/api/http/routers").json()}
    wallet_routers = [r for r in routers.values() if "wallet.localhost" in r.get("rule", "")]
    names = sorted(r["name"] for r in wallet_routers)
    assert names == ["wallet-keyed@docker", "wallet@docker"], list(routers)
    router = routers["wallet@docker"]
    keyed = routers["wallet-keyed@docker"]
    # Requests with an Idempotency-Key: the same route, a retry that may repeat a POST.
    assert keyed["rule"] == router["rule"] + " && HeaderRegexp(`Idempotency-Key`, `.+`)"
    assert keyed["service"] == "wallet" and keyed["status"] == "enabled"
    # The entrypoint's security headers, the edge limits, then the retry (nearest the
    # replicas): for requests with an Idempotency-Key, the one that may repeat a POST.
    edge = ["security-headers@file", "wallet-rate-limit@file", "wallet-in-flight@file"]
    assert router["middlewares"] == [*edge, "wallet-retry@file"]
    assert keyed["middlewares"] == [*edge, "wallet-retry-keyed@file"]
    assert router["status"] == "enabled"
    assert router["service"] == "wallet"
    assert router["entryPoints"] == ["websecure"]
    assert "tls" in router
    assert "!PathPrefix(`/metrics`)" in router["rule"]

    services = {s["name"]: s for s in get("/api/http/services").json()}
    assert "wallet@docker" in services, list(services)
    service = services["wallet@docker"]
    servers = [s["url"] for s in service["loadBalancer"]["servers"]]
    assert len(servers) == stack.replicas == 2
    assert service["serverStatus"] == dict.fromkeys(servers, "UP")
    # The servers are exactly the replicas' addresses on the edge network.
    expected = {f"http://{ss.edge_ip(c)}:8000" for c in ss.wallet_api_containers()}
    assert set(servers) == expected
    ss.note(f"traefik: router wallet@docker, rule {router['rule']!r}")
    ss.note(f"traefik: service wallet@docker, servers UP: {sorted(servers)}")


def test_status_reaches_every_replica(status_calls: dict[str, Any]) -> None:
    seen = set(status_calls["replicas"])
    hostnames = {c["Config"]["Hostname"] for c in ss.wallet_api_containers()}
    assert len(seen) == 2, status_calls["replicas"]
    assert seen == hostnames  # REPLICA_ID defaults to the container's hostname
    counts = {r: status_calls["replicas"].count(r) for r in sorted(seen)}
    ss.note(f"/status x{STATUS_CALLS} through Traefik: replicas {counts}")


def test_prometheus_scrapes_every_replica(stack: ss.Stack, http: requests.Session) -> None:
    expected = {ss.edge_ip(c) for c in ss.wallet_api_containers()}

    def up_targets() -> list[dict[str, Any]]:
        r = http.get(
            stack.url("prometheus.localhost", "/api/v1/targets"),
            params={"state": "active"},
            auth=stack.basic_auth,
            timeout=ss.HTTP_TIMEOUT,
        )
        r.raise_for_status()
        return [
            t
            for t in r.json()["data"]["activeTargets"]
            if t["labels"].get("job") == ss.PROMETHEUS_JOB and t["health"] == "up"
        ]

    targets = ss.poll(
        f"Prometheus has the {len(expected)} {ss.PROMETHEUS_JOB} targets up",
        up_targets,
        lambda ts: {t["labels"]["instance"].rsplit(":", 1)[0] for t in ts} >= expected,
        timeout=90,
        interval=2,
    )
    assert len(targets) >= 2
    up = _prom_query(stack, http, f'sum(up{{job="{ss.PROMETHEUS_JOB}"}})')
    assert up >= 2
    instances = sorted(t["labels"]["instance"] for t in targets)
    ss.note(f"prometheus: {len(targets)} {ss.PROMETHEUS_JOB} targets up: {instances}")


def test_prometheus_counts_status_requests(
    stack: ss.Stack, http: requests.Session, status_calls: dict[str, Any]
) -> None:
    want = status_calls["baseline"] + STATUS_CALLS
    value = ss.poll(
        f"{STATUS_COUNT_QUERY} >= {want:g}",
        lambda: _prom_query(stack, http, STATUS_COUNT_QUERY),
        lambda v: v >= want,
        timeout=90,
        interval=2,
    )
    assert value >= STATUS_CALLS
    before = status_calls["baseline"]
    ss.note(f"prometheus: {STATUS_COUNT_QUERY} = {value:g}")
    ss.note(f"  ({before:g} before the {STATUS_CALLS} calls)")


def test_deposit_with_api_key_is_idempotent(stack: ss.Stack, http: requests.Session) -> None:
    wallet_id = f"e2e-{uuid.uuid4().hex[:12]}"
    created = http.post(
        stack.url(WALLET, "/wallets"),
        json={"currency": "EUR", "id": wallet_id},
        headers=stack.bearer,
        timeout=ss.HTTP_TIMEOUT,
    )
    assert created.status_code == 201, created.text
    assert created.json()["id"] == wallet_id
    assert created.json()["balance"] == 0

    deposit_url = stack.url(WALLET, f"/wallets/{wallet_id}/deposit")
    headers = {**stack.bearer, "Idempotency-Key": f"e2e-{uuid.uuid4()}"}
    first = http.post(deposit_url, json={"amount": 1250}, headers=headers, timeout=ss.HTTP_TIMEOUT)
    assert first.status_code == 200, first.text
    assert "Idempotent-Replayed" not in first.headers
    assert first.json()["balance"] == 1250
    assert first.json()["transaction"]["amount"] == 1250

    replay = http.post(deposit_url, json={"amount": 1250}, headers=headers, timeout=ss.HTTP_TIMEOUT)
    assert replay.status_code == first.status_code
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json() == first.json()

    wallet = http.get(
        stack.url(WALLET, f"/wallets/{wallet_id}"), headers=stack.bearer, timeout=ss.HTTP_TIMEOUT
    )
    assert wallet.status_code == 200
    assert wallet.json()["balance"] == 1250  # once, not twice
    ss.note(f"deposit through Traefik into {wallet_id}: 1250, replayed (same body), balance 1250")


def test_without_api_key_refused(stack: ss.Stack, http: requests.Session) -> None:
    wallet_id = f"e2e-{uuid.uuid4().hex[:12]}"
    created = http.post(
        stack.url(WALLET, "/wallets"),
        json={"currency": "EUR", "id": wallet_id},
        headers=stack.bearer,
        timeout=ss.HTTP_TIMEOUT,
    )
    assert created.status_code == 201
    deposit_url = stack.url(WALLET, f"/wallets/{wallet_id}/deposit")
    for headers in (
        {},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": f"Basic {stack.api_key}"},
    ):
        r = http.post(
            deposit_url,
            json={"amount": 500},
            headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
            timeout=ss.HTTP_TIMEOUT,
        )
        assert r.status_code == 401, r.text
        assert r.headers["Content-Type"].startswith("application/problem+json")
        assert r.json()["status"] == 401
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")
    wallet = http.get(
        stack.url(WALLET, f"/wallets/{wallet_id}"), headers=stack.bearer, timeout=ss.HTTP_TIMEOUT
    )
    assert wallet.json()["balance"] == 0
    assert (
        http.post(
            stack.url(WALLET, "/wallets"), json={"currency": "EUR"}, timeout=ss.HTTP_TIMEOUT
        ).status_code
        == 401
    )


@pytest.mark.parametrize("path", ["/metrics", "/metrics/", "/metrics?name[]=up"])
def test_metrics_not_routed(stack: ss.Stack, http: requests.Session, path: str) -> None:
    r = http.get(stack.url(WALLET, path), headers=stack.bearer, timeout=ss.HTTP_TIMEOUT)
    assert r.status_code == 404, f"{path}: HTTP {r.status_code}"
    assert "flask_http_request" not in r.text
