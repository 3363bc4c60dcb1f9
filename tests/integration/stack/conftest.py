"""End-to-end tests of the compose stack (marker `stack`): `make e2e`.

The session fixture `stack` runs `make up-ha` (unless STACK_ALREADY_UP=1): the whole
stack with the Redis HA overlay, docker-compose.ha.yml, so the overlay is what these
tests see (the plain `make up` is what `make fresh-check` proves). At the end of the
session, `make clean` (= docker compose ... down --remove-orphans --volumes), also
when a test or `make up-ha` itself failed, so the next run starts from empty volumes.

    STACK_ALREADY_UP=1   use the running stack; it is then left running
    STACK_TEARDOWN=0|1   override: keep (0) or remove (1) the stack at the end
    STACK_UP_TIMEOUT     seconds for `make up-ha` (default 900: it builds the image)
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import stack_support as ss


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "stack: end-to-end test of the compose stack (brings it up with `make up-ha`)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """test_stack_failover.py kills a wallet-api replica (and starts it again): it runs
    last, so no other test sees a replica whose counters restarted."""
    last = [i for i in items if i.path.name == "test_stack_failover.py"]
    items[:] = [i for i in items if i not in last] + last


def _make(target: str, timeout: float) -> float:
    """Run `make <target>` at the repository root; returns its duration in seconds."""
    started = time.monotonic()
    try:
        proc = subprocess.run(
            ["make", "--no-print-directory", target],
            cwd=ss.ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"`make {target}` did not finish within {timeout:.0f}s") from exc
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        raise RuntimeError(
            f"`make {target}` exited {proc.returncode} after {elapsed:.0f}s:\n{tail}"
        )
    return elapsed


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # pytest then still runs the fixture finalizers (teardown)


def _wait_for_routes(stack: ss.Stack) -> None:
    """Traefik picks the Docker routes up a moment after the containers are healthy:
    wait (bounded) until no host answers 404 and the wallet API answers /status."""
    with stack.session() as http:
        for host, path in [
            ("traefik.localhost", "/dashboard/"),
            ("prometheus.localhost", "/"),
            ("whoami.localhost", "/"),
        ]:
            ss.poll(
                f"Traefik routes {host}",
                lambda h=host, p=path: http.get(  # type: ignore[misc]
                    stack.url(h, p), timeout=ss.HTTP_TIMEOUT, allow_redirects=False
                ),
                lambda r: r.status_code != 404,
                timeout=90,
            )
        ss.poll(
            "https://wallet.localhost/status answers 200",
            lambda: http.get(stack.url("wallet.localhost", "/status"), timeout=ss.HTTP_TIMEOUT),
            lambda r: r.status_code == 200,
            timeout=90,
        )


def _diagnostics() -> str:
    """`docker compose ps -a` and the last log lines, taken before the teardown removes
    the containers (a CI step running after the suite would find nothing left)."""
    parts = []
    for args, timeout in [(("ps", "-a"), 30), (("logs", "--no-color", "--tail=60"), 60)]:
        try:
            parts.append(ss.run(ss.compose_cmd(*args), timeout=timeout))
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            parts.append(f"docker compose {' '.join(args)}: {exc}")
    return "\n".join(parts)


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[ss.Stack]:
    already_up = os.environ.get("STACK_ALREADY_UP") == "1"
    teardown = os.environ.get("STACK_TEARDOWN", "0" if already_up else "1") == "1"
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    ok = False
    try:
        if not already_up:
            if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode:
                raise RuntimeError(
                    "`docker info` fails: start Docker (air-gapped: scripts/airgap.sh)"
                )
            timeout = float(os.environ.get("STACK_UP_TIMEOUT", "900"))
            ss.TIMINGS["make up-ha"] = _make("up-ha", timeout)
        started = time.monotonic()
        loaded = ss.Stack.load()
        _wait_for_routes(loaded)
        ss.TIMINGS["routes ready after up"] = time.monotonic() - started
        ss.TIMINGS["tests start"] = time.monotonic()
        yield loaded
        ok = request.session.testsfailed == 0
    finally:
        if "tests start" in ss.TIMINGS:
            ss.TIMINGS["tests"] = time.monotonic() - ss.TIMINGS.pop("tests start")
        try:
            if not ok:
                ss.DIAGNOSTICS.append(_diagnostics())
            if teardown:
                ss.TIMINGS["make clean (down -v)"] = _make("clean", 300)
            else:
                ss.note("stack left running (STACK_ALREADY_UP=1 or STACK_TEARDOWN=0)")
        finally:
            signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def http(stack: ss.Stack) -> Iterator[requests.Session]:
    with stack.session() as session:
        yield session


@pytest.fixture(scope="session")
def wallet_backends(stack: ss.Stack, http: requests.Session) -> dict[str, Any]:
    """Traefik's view of the `wallet@docker` service once all replicas are in it and UP
    (its /readyz health check runs every 5 s). Polled, bounded."""

    def healthy(svc: dict[str, Any]) -> bool:
        servers = svc.get("loadBalancer", {}).get("servers", [])
        status = svc.get("serverStatus", {})
        return len(servers) == stack.replicas and all(status.get(s["url"]) == "UP" for s in servers)

    return ss.poll(
        f"Traefik service wallet@docker has {stack.replicas} servers UP",
        lambda: http.get(
            stack.url("traefik.localhost", "/api/http/services/wallet@docker"),
            auth=stack.basic_auth,
            timeout=ss.HTTP_TIMEOUT,
        ).json(),
        healthy,
        timeout=60,
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not (ss.SUMMARY or ss.TIMINGS or ss.DIAGNOSTICS):
        return
    terminalreporter.section("wallet-stack e2e summary")
    for line in ss.SUMMARY:
        terminalreporter.write_line(line)
    for name, seconds in ss.TIMINGS.items():
        terminalreporter.write_line(f"{name}: {seconds:.1f}s")
    for text in ss.DIAGNOSTICS:
        terminalreporter.section("wallet-stack: docker compose ps -a / logs (before teardown)")
        terminalreporter.write_line(text)
