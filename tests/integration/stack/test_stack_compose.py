"""Container health as docker compose reports it (same compose files as `make up`)."""

from __future__ import annotations

from typing import Any

import pytest
import stack_support as ss

pytestmark = pytest.mark.stack

EXPECTED_SERVICES = {"traefik", "prometheus", "whoami", "wallet-api", "redis",
                     "redis-replica-1", "redis-replica-2", "sentinel-1", "sentinel-2", "sentinel-3"}  # fmt: skip
# traefik/whoami is a scratch image with no healthcheck (see docker-compose.traefik.yml).
WITHOUT_HEALTHCHECK = {"whoami"}


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
