"""Container health as docker compose reports it (same compose files as `make up-ha`)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import stack_support as ss

pytestmark = pytest.mark.stack

EXPECTED_SERVICES = {
    "traefik", "prometheus", "whoami", "wallet-api", "redis",
    "redis-exporter", "alertmanager", "alert-sink",
    "redis-replica-1", "redis-replica-2", "sentinel-1", "sentinel-2", "sentinel-3",
}  # fmt: skip
# Scratch images with no healthcheck tool (see the compose files): traefik/whoami (Traefik's
# load-balancer check covers it) and redis_exporter (Prometheus' scrape and RedisDown do).
WITHOUT_HEALTHCHECK = {"whoami", "redis-exporter"}


def _has_healthcheck(service: dict[str, Any]) -> bool:
    check = service.get("healthcheck")
    return bool(check) and not check.get("disable", False) and check.get("test") != ["NONE"]


def test_every_service_healthy_or_running(stack: ss.Stack) -> None:
    services = ss.compose_config()["services"]
    assert set(services) == EXPECTED_SERVICES
    with_check = {name for name, svc in services.items() if _has_healthcheck(svc)}
    assert with_check == EXPECTED_SERVICES - WITHOUT_HEALTHCHECK

    def problems(ps: list[dict[str, Any]]) -> list[str]:
        found: list[str] = []
        for name in sorted(services):
            containers = [c for c in ps if c["Service"] == name]
            want = stack.replicas if name == "wallet-api" else 1
            if len(containers) != want:
                found.append(f"{name}: {len(containers)} containers, want {want}")
            for c in containers:
                if c["State"] != "running":
                    found.append(f"{c['Name']}: state {c['State']}")
                elif name in with_check and c["Health"] != "healthy":
                    found.append(f"{c['Name']}: health {c['Health']!r}")
                elif name not in with_check and c["Health"]:
                    found.append(f"{c['Name']}: unexpected health {c['Health']!r}")
        return found

    ps = ss.poll(
        "docker compose ps: all healthy/running",
        ss.compose_ps,
        lambda p: not problems(p),
        timeout=60,
    )
    summary = ", ".join(
        f"{c['Service']}={c['Health'] or c['State']}" for c in sorted(ps, key=lambda c: c["Name"])
    )
    ss.note(f"docker compose ps: {summary}")


def test_wallet_api_gets_key_definitions_never_a_token(stack: ss.Stack) -> None:
    """The replicas read the key definitions compose mounts as a secret; the
    development token of .env (what the README's API example uses) is only a
    digest in there, and appears nowhere in the containers' configuration."""
    containers = ss.wallet_api_containers()
    assert len(containers) == stack.replicas
    for c in containers:
        env = {k: v for k, _, v in (e.partition("=") for e in c["Config"]["Env"])}
        assert env["WALLET_API_KEYS_FILE"] == "/etc/wallet-api/keys/api-keys.yaml"
        assert "WALLET_API_KEYS" not in env
        mount = next(m for m in c["Mounts"] if m["Destination"] == env["WALLET_API_KEYS_FILE"])
        assert mount["Source"].endswith("/.secrets/api-keys.yaml") and not mount["RW"]
        assert stack.api_key not in json.dumps(c), "the token reached the container's config"
        mounted = ss.run(["docker", "exec", c["Id"], "cat", env["WALLET_API_KEYS_FILE"]])
        digest = hashlib.sha256(stack.api_key.encode()).hexdigest()
        assert f"sha256:{digest}" in mounted and stack.api_key not in mounted


def test_each_replica_runs_one_worker_per_cpu_it_may_use(stack: ss.Stack) -> None:
    """compose gives every replica one CPU (`cpus: 1`, the chart's limits.cpu), and
    gunicorn, with WEB_CONCURRENCY unset, starts one gevent worker per CPU it may use:
    more workers than cores only take turns on them (config.available_cpus)."""
    for c in ss.wallet_api_containers():
        assert c["HostConfig"]["NanoCpus"] == 1_000_000_000, c["HostConfig"]["NanoCpus"]
        rows = ss.run(["docker", "top", c["Id"], "-o", "pid,ppid,args"]).splitlines()[1:]
        procs = [row.split(None, 2) for row in rows]
        gunicorns = [p for p in procs if "gunicorn" in p[2]]
        masters = [p for p in gunicorns if p[1] not in {g[0] for g in gunicorns}]
        assert len(masters) == 1, procs
        workers = [p for p in gunicorns if p[1] == masters[0][0]]
        assert len(workers) == 1, procs
