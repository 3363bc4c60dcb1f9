"""What a new user gets from `git clone` + the README's set-up, on a pristine Debian."""

from __future__ import annotations

import json

import pytest
import stack_support as ss
from fresh_support import PROJECT, Fresh

pytestmark = pytest.mark.fresh


def test_provision_installs_the_readme_prerequisites(fresh: Fresh) -> None:
    step = fresh.step("provision")
    assert step.returncode == 0, step.tail
    assert "provision: installing" in step.output  # the base image really was pristine


def test_make_up_succeeds(fresh: Fresh) -> None:
    step = fresh.step("make up")
    assert step.returncode == 0, step.tail
    assert "wallet-stack is up:" in step.output


def test_printed_smoke_test_works_as_printed(fresh: Fresh) -> None:
    step = fresh.step("smoke test")
    assert step.returncode == 0, step.output
    assert f"https://wallet.localhost:{fresh.stack().https_port}/status" in step.output
    # stdout and stderr are one stream here; curl's progress meter (stderr, no terminal)
    # may come before, after or on the same line as the body (which has no newline).
    body = _first_json_object(step.output)
    assert body is not None, step.output
    assert body["redis"] == "ok", body


def _first_json_object(text: str) -> dict | None:
    decoder = json.JSONDecoder()
    for start in (i for i, c in enumerate(text) if c == "{"):
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def test_wallet_status_through_traefik_with_verified_tls(fresh: Fresh) -> None:
    stack = fresh.stack()
    with stack.session() as http:
        r = ss.poll(
            "wallet status through Traefik",
            lambda: http.get(stack.url("wallet.localhost", "/status"), timeout=ss.HTTP_TIMEOUT),
            lambda r: r.status_code == 200,
            timeout=60,
        )
    assert r.json()["redis"] == "ok"


def test_dashboard_wants_its_password(fresh: Fresh) -> None:
    stack = fresh.stack()
    url = stack.url("traefik.localhost", "/dashboard/")
    with stack.session() as http:
        assert http.get(url, timeout=ss.HTTP_TIMEOUT).status_code == 401
        assert http.get(url, auth=(stack.user, "wrong"), timeout=ss.HTTP_TIMEOUT).status_code == 401
        assert http.get(url, auth=stack.basic_auth, timeout=ss.HTTP_TIMEOUT).status_code == 200


def test_the_stack_is_its_own_project(fresh: Fresh) -> None:
    """Beside a developer's stack: its own networks, and Traefik only routes its own."""
    stack = fresh.stack()
    with stack.session() as http:
        svc = ss.poll(
            "Traefik serves wallet@docker from both replicas",
            lambda: http.get(
                stack.url("traefik.localhost", "/api/http/services/wallet@docker"),
                auth=stack.basic_auth,
                timeout=ss.HTTP_TIMEOUT,
            ).json(),
            lambda svc: len(svc["loadBalancer"]["servers"]) == 2,
            timeout=60,
        )
    ips = {s["url"].split("//")[1].split(":")[0] for s in svc["loadBalancer"]["servers"]}
    assert len(ips) == 2, svc
    out = ss.run(["docker", "network", "inspect", f"{PROJECT}-edge", "--format",
                  "{{range .Containers}}{{.IPv4Address}} {{end}}"])  # fmt: skip
    edge_ips = {a.split("/")[0] for a in out.split()}
    assert ips <= edge_ips, (ips, edge_ips)
