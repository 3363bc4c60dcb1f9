"""Probes against a real gunicorn when Redis stops answering."""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from devtools.local_servers import api_server, redis_server

pytestmark = pytest.mark.redis
KEY = "readiness-test-key-0123456789"


def test_hung_redis_makes_the_replica_unready_fast_but_alive() -> None:
    with redis_server() as redis, api_server(redis.url, KEY) as api:
        assert requests.get(f"{api.url}/readyz", timeout=5).status_code == 200
        os.kill(redis.proc.pid, signal.SIGSTOP)  # hung, not gone: connections hang
        try:
            started = time.monotonic()
            ready = requests.get(f"{api.url}/readyz", timeout=5)
            elapsed = time.monotonic() - started
            assert ready.status_code == 503
            assert ready.headers["Content-Type"] == "application/problem+json"
            # Within the chart's readiness timeout (2 s) and Traefik's (3 s).
            assert elapsed < 1.5, elapsed
            assert requests.get(f"{api.url}/healthz", timeout=5).status_code == 200
            status = requests.get(f"{api.url}/status", timeout=5).json()
            assert status["redis"] == "unreachable" and status["status"] == "degraded"
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + 10
        while requests.get(f"{api.url}/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "not ready again after Redis resumed"
            time.sleep(0.1)
