"""The HA stack of `make up-ha` as it runs, and a wallet-api replica SIGKILLed under
load through Traefik: clients see no gateway error (issue 11).

The Redis failover itself is exercised, with the same compose files, by
tests/integration/containers/test_containers_failover.py.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest
import requests
import stack_support as ss

pytestmark = pytest.mark.stack

WALLET = "wallet.localhost"
CLIENTS = 8
SERVICES = ("redis", "redis-replica-1", "redis-replica-2")


def _redis_cli(service: str, *args: str, port: int = 6379) -> str:
    return ss.run(
        ss.compose_cmd("exec", "-T", service, "redis-cli", "-p", str(port), *args)
    ).strip()


def test_redis_ha_topology(stack: ss.Stack) -> None:
    """One primary named by all 3 Sentinels, 2 replicas with their link up; on every node
    AOF appendfsync always, noeviction, maxmemory = 75% of the container's 256 MiB limit,
    min-replicas-to-write 1; wallet-api set to go through the Sentinels and wait for one."""
    primaries = {
        _redis_cli(s, "sentinel", "get-master-addr-by-name", "wallet", port=26379).split()[0]
        for s in ("sentinel-1", "sentinel-2", "sentinel-3")
    }
    assert len(primaries) == 1, primaries
    (primary,) = primaries
    roles = {}
    for service in SERVICES:
        info = _redis_cli(service, "info", "replication")
        roles[service] = "master" if "role:master" in info else "replica"
        if service != primary:
            assert "master_link_status:up" in info, info
        config = {
            name: _redis_cli(service, "config", "get", name).split()[-1]
            for name in (
                "appendonly",
                "appendfsync",
                "maxmemory",
                "maxmemory-policy",
                "min-replicas-to-write",
            )
        }
        assert config == {
            "appendonly": "yes",
            "appendfsync": "always",
            "maxmemory": str(256 * 1024 * 1024 * 75 // 100),
            "maxmemory-policy": "noeviction",
            "min-replicas-to-write": "1",
        }, (service, config)
    assert roles[primary] == "master" and list(roles.values()).count("master") == 1, roles
    (api,) = ss.wallet_api_containers()[:1]
    env = dict(e.split("=", 1) for e in api["Config"]["Env"] if "=" in e)
    assert env["REDIS_SENTINELS"] == "sentinel-1:26379,sentinel-2:26379,sentinel-3:26379"
    assert env["REDIS_MIN_REPLICAS_ACK"] == "1"
    ss.note(f"redis HA: primary {primary}, roles {roles}, maxmemory 75% of 256 MiB, noeviction")


def test_prometheus_scrapes_every_redis_node(stack: ss.Stack, http: requests.Session) -> None:
    """The replication alerts (RedisNoReplica, RedisReplicationBroken) need every node:
    every node through the exporter's multi-target /scrape (job redis)."""
    up = ss.poll(
        "redis_up == 1 for the 3 nodes in Prometheus",
        lambda: ss.prom_vector(stack, http, "redis_up"),
        lambda v: len(v) == 3 and all(s["value"][1] == "1" for s in v),
        timeout=90,
        interval=3,
    )
    roles = ss.prom_vector(stack, http, "count by (role) (redis_instance_info)")
    assert {s["metric"]["role"]: s["value"][1] for s in roles} == {"master": "1", "slave": "2"}
    links = ss.prom_vector(stack, http, "redis_master_link_up")
    assert len(links) == 2 and all(s["value"][1] == "1" for s in links), links
    ss.note(f"prometheus: redis_up 1 from {sorted(s['metric']['instance'] for s in up)}")


def _deposit_until_definitive(
    http: requests.Session,
    stack: ss.Stack,
    wallet: str,
    answers: Counter[str],
    lock: threading.Lock,
) -> bool:
    """One keyed deposit, retried with its key until a definitive answer."""
    key = uuid.uuid4().hex
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            r = http.post(
                stack.url(WALLET, f"/wallets/{wallet}/deposit"),
                json={"amount": 1},
                headers={**stack.bearer, "Idempotency-Key": key},
                timeout=ss.HTTP_TIMEOUT,
            )
            answer = str(r.status_code)
        except requests.RequestException as exc:
            answer = type(exc).__name__
        with lock:
            answers[answer] += 1
        if answer == "200":
            return True
        time.sleep(0.05)
    return False


def test_replica_sigkill_through_traefik_shows_no_gateway_error(
    stack: ss.Stack, http: requests.Session, wallet_backends: dict[str, Any]
) -> None:
    """8 clients deposit through Traefik while one wallet-api replica is SIGKILLed: the
    retry middlewares, the 1 s dial timeout and the passive health check keep every
    request off the dead replica or resend it. No 502/504, no timeout, nothing lost,
    nothing doubled. The replica is started again at the end."""
    wallets = []
    for _ in range(CLIENTS):
        wallet = f"e2e-kill-{uuid.uuid4().hex[:10]}"
        r = http.post(stack.url(WALLET, "/wallets"), json={"currency": "EUR", "id": wallet},
                      headers=stack.bearer, timeout=ss.HTTP_TIMEOUT)  # fmt: skip
        assert r.status_code == 201, r.text
        wallets.append(wallet)
    answers: Counter[str] = Counter()
    acked: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    failures: list[str] = []

    def client(wallet: str) -> None:
        with stack.session() as s:
            while not stop.is_set():
                if _deposit_until_definitive(s, stack, wallet, answers, lock):
                    with lock:
                        acked[wallet] += 1
                else:
                    failures.append(wallet)
                    return

    threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in wallets]
    for t in threads:
        t.start()
    time.sleep(3)
    victim = ss.wallet_api_containers()[0]["Id"]
    subprocess.run(["docker", "kill", "--signal", "KILL", victim], check=True, capture_output=True)
    killed_at = time.monotonic()
    time.sleep(6)  # the survivor carries the load alone
    stop.set()
    for t in threads:
        t.join(timeout=90)
    survivor_only_s = time.monotonic() - killed_at
    subprocess.run(["docker", "start", victim], check=True, capture_output=True)
    ss.poll(
        f"Traefik has the {stack.replicas} wallet replicas UP again",
        lambda: http.get(stack.url("traefik.localhost", "/api/http/services/wallet@docker"),
                         auth=stack.basic_auth, timeout=ss.HTTP_TIMEOUT).json(),
        lambda svc: list((svc.get("serverStatus") or {}).values()) == ["UP"] * stack.replicas,
        timeout=90,
    )  # fmt: skip
    assert not failures and not any(t.is_alive() for t in threads), failures
    gateway = {a: n for a, n in answers.items() if a in ("502", "503", "504") or not a.isdigit()}
    assert not gateway, f"clients saw {gateway} (all answers: {dict(answers)})"
    for wallet in wallets:
        balance = http.get(stack.url(WALLET, f"/wallets/{wallet}"), headers=stack.bearer,
                           timeout=ss.HTTP_TIMEOUT).json()["balance"]  # fmt: skip
        entries, cursor = 0, None
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = http.get(stack.url(WALLET, f"/wallets/{wallet}/transactions"), params=params,
                            headers=stack.bearer, timeout=ss.HTTP_TIMEOUT).json()  # fmt: skip
            entries += len(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        # balance = acknowledged = ledger entries (every deposit is 1 cent)
        assert balance == acked[wallet] == entries, (wallet, balance, acked[wallet], entries)
    total = sum(acked.values())
    assert total > 100
    ss.note(f"replica SIGKILL through Traefik: {total} deposits acknowledged by {CLIENTS} clients, "
            f"answers {dict(answers)} (0 x 502/503/504, 0 timeouts), {survivor_only_s:.1f}s on one replica")  # fmt: skip
