"""gunicorn settings for wallet-api; every value can be overridden by env vars.

Loaded by the gunicorn master before the app is imported, which is what lets it
prepare Prometheus' multiprocess directory in time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

# prometheus_client picks its multiprocess mode at import time, so this must be
# set before any worker imports the app. Wiped at start (below) so counters of
# a previous run's dead workers are not reported as current.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "/tmp/prometheus-multiproc")  # noqa: S108

from wallet_api.config import ConfigError, ServerSettings, Settings

try:
    Settings.from_env()  # fail fast, with one line, before forking workers
    _server = ServerSettings.from_env()
except ConfigError as exc:
    sys.stderr.write(f"wallet-api: configuration error: {exc}\n")
    sys.exit(2)

# A Redis that could evict our keys is refused the same way (redis_clients.py):
# an evicted idempotency record makes a retry pay twice. A Redis not reachable
# yet is not a reason: /readyz stays 503 until it is and checks the policy too.
# In a child process: importing redis here, in the master, would import ssl
# before the gevent workers monkey-patch it.
_check = subprocess.run(
    [sys.executable, "-m", "wallet_api.redis_clients"],
    capture_output=True,
    text=True,
    timeout=60,
    check=False,
)
if _check.returncode == 2:
    sys.stderr.write(_check.stderr)
    sys.exit(2)

wsgi_app = "wallet_api:create_app()"
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104
# gevent: measured best for this workload (README, "Choosing the worker class").
worker_class = _server.worker_class
# One per CPU of the container's quota, unless WEB_CONCURRENCY says (config.default_workers).
workers = _server.worker_count
threads = _server.threads  # gthread only
worker_connections = _server.worker_connections  # gevent
# The proxy in front must drop idle upstream connections sooner (Traefik:
# serversTransport idleConnTimeout 3 s in infra/traefik and the chart), or a
# request sent on a connection gunicorn is closing fails with 502. Kept short
# because idle keep-alive connections hold up a gevent worker's graceful stop.
keepalive = _server.keepalive
timeout = _server.timeout
# On SIGTERM, finish in-flight requests (money movements) before exiting.
graceful_timeout = _server.graceful_timeout
max_requests = _server.max_requests
max_requests_jitter = _server.max_requests_jitter
# The app writes its own JSON access log with request ids; gunicorn's would duplicate it.
accesslog = None
# gunicorn 27's control socket lives in $HOME, which is read-only in the image.
control_socket_disable = True
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Heartbeat files on tmpfs: a slow or read-only disk must not look like a hung worker.
_SHM = "/dev/shm"  # noqa: S108
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR") or (
    _SHM if os.path.isdir(_SHM) else None
)


def on_starting(server: Any) -> None:
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    # Drop a dead worker's live gauges; its counters stay summed in.
    from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

    GunicornInternalPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)
