"""Open endpoints for humans, orchestrators and dashboards (no API key)."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from flask import Blueprint

from wallet_api import __version__
from wallet_api.context import wallet_context
from wallet_api.problems import ProblemError, problem

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> dict[str, Any]:
    """Liveness: the process serves requests. Deliberately ignores Redis, so a
    Redis outage makes replicas unready, not restarted."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> dict[str, Any]:
    if not wallet_context().store.ping():
        raise ProblemError(
            problem(503, "redis-unavailable", "Not ready", "Redis does not answer PING")
        )
    return {"status": "ready"}


@bp.get("/status")
def status() -> dict[str, Any]:
    ctx = wallet_context()
    redis_ok = ctx.store.ping()
    return {
        "service": "wallet-api",
        "version": __version__,
        "status": "ok" if redis_ok else "degraded",
        "redis": "ok" if redis_ok else "unreachable",
        "replica": ctx.settings.replica_id,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "uptime_seconds": round(time.monotonic() - ctx.started_at, 3),
    }
