"""Operating the stack: Redis ACL, Redis metrics, alerts that reach a receiver, and the
hardening every container runs with."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
import stack_support as ss

pytestmark = pytest.mark.stack

ADMIN = 'redis-cli --no-auth-warning --user ops --pass "$REDIS_ADMIN_PASSWORD"'
# Run through `sh -c` in the container: the pattern is quoted (/data has several files).
FORBIDDEN = ["FLUSHALL", "FLUSHDB", "CONFIG SET maxmemory 1", "DEBUG SLEEP 0", "KEYS '*'"]


@pytest.mark.parametrize("command", FORBIDDEN)
def test_the_apps_redis_user_is_refused_dangerous_commands(stack: ss.Stack, command: str) -> None:
    """The app's user (`default`, REDIS_PASSWORD) is refused; ACL DRYRUN (as `ops`) says
    it is the ACL, not some other setting, that refuses it."""
    direct = ss.compose_exec("redis", f"redis-cli --no-auth-warning {command}")
    assert direct.startswith(("NOPERM", "ERR DEBUG command not allowed")), direct
    verdict = ss.compose_exec("redis", f"{ADMIN} ACL DRYRUN default {command}")
    assert "has no permissions" in verdict, verdict
    ss.note(
        f"redis ACL: default user refused {command.split(maxsplit=1)[0]}: {verdict.strip()[:70]}"
    )


def test_the_apps_redis_user_keeps_what_the_app_needs(stack: ss.Stack) -> None:
    for command in ["WATCH w", "MULTI", "HSET w a 1", "ZADD z 1 m", "SET k v", "GET k", "INFO server",
                    "CONFIG GET maxmemory-policy", "PING", "EXPIRE k 10"]:  # fmt: skip
        verdict = ss.compose_exec("redis", f"{ADMIN} ACL DRYRUN default {command}").strip()
        assert verdict == "OK", (command, verdict)


def test_the_exporter_user_reads_no_keys(stack: ss.Stack) -> None:
    for command, allowed in [
        ("INFO all", True),
        ("GET k", False),
        ("SET k v", False),
        ("KEYS *", False),
    ]:
        verdict = ss.compose_exec("redis", f"{ADMIN} ACL DRYRUN exporter {command}").strip()
        assert (verdict == "OK") is allowed, (command, verdict)


def test_prometheus_scrapes_redis(stack: ss.Stack, http: requests.Session) -> None:
    result = ss.poll(
        "redis_up == 1 in Prometheus",
        lambda: ss.prom_vector(stack, http, "redis_up"),
        lambda v: bool(v) and v[0]["value"][1] == "1",
        timeout=60,
        interval=2,
    )
    aof = ss.prom_vector(stack, http, "redis_aof_last_write_status")
    assert aof and aof[0]["value"][1] == "1", aof
    ss.note(f"prometheus: redis_up 1 from {result[0]['metric']['instance']}, AOF writes ok")


def test_every_container_is_hardened(stack: ss.Stack) -> None:
    ids = ss.run(ss.compose_cmd("ps", "-q")).split()
    containers = ss.inspect(ids)
    assert len(containers) >= 9, len(containers)
    for c in containers:
        name, host = c["Name"].lstrip("/"), c["HostConfig"]
        assert host["ReadonlyRootfs"], f"{name}: root filesystem is writable"
        assert host["CapDrop"] and "ALL" in host["CapDrop"], f"{name}: {host['CapDrop']}"
        added = {cap.removeprefix("CAP_") for cap in host.get("CapAdd") or []}
        assert added <= {"NET_BIND_SERVICE", "CHOWN", "SETUID", "SETGID"}, (name, added)
        assert "no-new-privileges:true" in (host.get("SecurityOpt") or []), name
        assert host["Memory"] > 0 and (host.get("PidsLimit") or 0) > 0, (
            f"{name}: no memory/pids limit"
        )
    ss.note(
        f"hardening: {len(containers)} containers read-only, cap_drop ALL, no-new-privileges, limits"
    )


def _sink_alerts() -> list[dict[str, Any]]:
    out = ss.compose_exec(
        "alert-sink",
        "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9095/alerts').read().decode())\"",
    )
    return list(json.loads(out))


def test_an_alert_reaches_the_receiver_when_a_replica_stops(
    stack: ss.Stack, http: requests.Session
) -> None:
    """Stop one wallet-api replica; within a bounded time Prometheus fires
    WalletApiReplicasLost, Alertmanager routes it, and the sink has received it."""
    replicas = ss.wallet_api_containers()
    assert len(replicas) >= 2, "needs two replicas"
    # The rule compares with the most replicas of the last hour, sampled every 15 s: on a
    # stack that just started, that sample must already count every replica.
    ss.poll(
        "Prometheus' last-hour maximum counts every replica",
        lambda: ss.prom_vector(
            stack, http, 'max_over_time(count(up{job="wallet-api"} == 1)[1h:15s])'
        ),
        lambda v: bool(v) and int(v[0]["value"][1]) == len(replicas),
        timeout=90,
        interval=2,
    )
    victim = replicas[-1]["Id"]
    started = time.monotonic()
    ss.run(["docker", "stop", "-t", "20", victim], timeout=60)
    try:
        try:
            fired = ss.poll(
                "WalletApiReplicasLost received by alert-sink",
                _sink_alerts,
                lambda alerts: any(
                    a["alertname"] == "WalletApiReplicasLost" and a["status"] == "firing"
                    for a in alerts
                ),
                timeout=180,
                interval=3,
            )
        except AssertionError as exc:
            prom = http.get(stack.url("prometheus.localhost", "/api/v1/alerts"),
                            auth=stack.basic_auth, timeout=ss.HTTP_TIMEOUT).text[:800]  # fmt: skip
            count = ss.prom_vector(stack, http, 'count(up{job="wallet-api"} == 1)')
            raise AssertionError(
                f"{exc}; Prometheus alerts: {prom}; replicas scraped: {count}"
            ) from None
        took = time.monotonic() - started
        alert = next(a for a in fired if a["alertname"] == "WalletApiReplicasLost")
        assert alert["runbook_url"] == "docs/runbooks.md#walletapireplicaslost"
        ss.note(
            f"alert: WalletApiReplicasLost reached alert-sink {took:.0f}s after `docker stop`: {alert['summary']}"
        )
    finally:
        ss.run(["docker", "start", victim], timeout=60)
        ss.poll(
            "the stopped replica is back and healthy",
            lambda: ss.inspect([victim])[0]["State"].get("Health", {}).get("Status"),
            lambda status: status == "healthy",
            timeout=90,
            interval=2,
        )
