"""Metrics (Prometheus), structured JSON logs and request ids."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import uuid
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Attributes every LogRecord has; anything else was passed via `extra=`.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}
# The values the request metrics' `method` label may take: HTTP's methods (RFC 9110)
# and PATCH. gunicorn and Traefik pass any token as a method, and each new one would
# be new time series in every worker's files and every scrape, for as long as the
# replica runs. Such a request is answered as before (a 405 problem), logged, and not
# counted.
_HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


class WalletMetrics:
    """Domain metrics; in gunicorn multiprocess mode they aggregate across workers."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.operations = Counter(
            "wallet_operations_total",
            "Wallet operations by type and outcome",
            ["operation", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "wallet_watch_retries_total",
            "WATCH/MULTI transactions retried after a conflict or lost connection",
            ["operation"],
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "wallet_transaction_seconds",
            "Time to commit one Redis transaction, retries included",
            ["operation"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.batch_size = Histogram(
            "wallet_commit_batch_size",
            "Operations committed per Redis transaction (per-wallet group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=registry,
        )
        # Series that exist from the start, at 0: a retry rate of 0 is a fact to graph and
        # alert on, while a missing series looks like a scrape problem.
        for operation in ("deposit", "withdrawal", "transfer", "mixed"):
            self.retries.labels(operation)

    def operation(self, operation: str, outcome: str) -> None:
        self.operations.labels(operation, outcome).inc()

    def watch_retry(self, operation: str) -> None:
        self.retries.labels(operation).inc()

    def commit(self, operation: str, seconds: float, batch_size: int) -> None:
        self.commit_seconds.labels(operation).observe(seconds)
        self.batch_size.observe(batch_size)


def init_metrics(app: Flask) -> WalletMetrics:
    """Expose /metrics; multiprocess-aware when PROMETHEUS_MULTIPROC_DIR is set.

    gunicorn.conf.py sets that variable before anything imports prometheus_client
    and wipes the directory at start; every worker then writes its samples to
    files there and /metrics (served by any worker) aggregates them.
    """
    common: dict[str, Any] = {
        "group_by": "url_rule",  # the route pattern, not every wallet id
        "excluded_paths": ["^/metrics$"],
        "defaults_prefix": "flask",
    }

    @app.before_request
    def _count_only_http_methods() -> None:
        if request.method not in _HTTP_METHODS:
            # prometheus_flask_exporter's own opt-out (what its @do_not_track sets).
            request.prom_do_not_track = True  # type: ignore[attr-defined]

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

        GunicornInternalPrometheusMetrics(app, **common)
        # Samples go to the multiprocess files; exposition reads those files.
        return WalletMetrics(registry=None)
    from prometheus_flask_exporter import PrometheusMetrics

    registry = CollectorRegistry()
    PrometheusMetrics(app, registry=registry, **common)
    return WalletMetrics(registry=registry)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, then the `extra=` fields."""

    def __init__(self) -> None:
        super().__init__()
        # (second, its "YYYY-MM-DDTHH:MM:SS"): the access log writes a line per request,
        # many per second, and strftime(gmtime()) is the dearest part of the timestamp.
        # One tuple, read and replaced whole, so threads never pair a second with
        # another second's text.
        self._second: tuple[int, str] = (-1, "")

    def _timestamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = cached
        return f"{cached[1]}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    """JSON lines on stdout, at `level`.

    Every LogRecord would also find its caller's file and line (a walk up the stack),
    and note its thread, process and multiprocessing process name: attributes that
    JsonFormatter never writes, paid on every access-log line, i.e. every request.
    The logging HOWTO's "Optimization" switches turn those look-ups off; nothing the
    logs show changes (exceptions keep their tracebacks: exc_info is separate).
    """
    logging._srcfile = None  # no caller look-up (findCaller)
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def init_request_logging(app: Flask, replica_id: str) -> None:
    """Request ids (honouring X-Request-ID) and one JSON access-log line per request.

    Only method, route, status and timing are logged, and who called: the API
    key's public id and its tenant (null when no key was accepted). Never
    headers or bodies, so API keys and Idempotency-Keys stay out of the logs.
    """
    access = logging.getLogger("wallet_api.access")

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        request_id = getattr(g, "request_id", None)
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        started = getattr(g, "started", None)
        if access.isEnabledFor(logging.INFO):
            access.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": request.method,
                    "route": request.url_rule.rule if request.url_rule else None,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3)
                    if started is not None
                    else None,
                    "replica": replica_id,
                    "key_id": getattr(g, "key_id", None),
                    "tenant": getattr(g, "tenant", None),
                },
            )
        return response
