"""Open endpoints for humans, orchestrators and dashboards (no API key)."""

from __future__ import annotations

import os
import socket
import time

from flask import Blueprint

from wallet_api import __version__
from wallet_api.context import wallet_context
from wallet_api.contract import operation
from wallet_api.models import Health, Status
from wallet_api.problems import ProblemError, problem
from wallet_api.service import ApiResponse

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@operation((200, Health, "Alive"), auth=False)
def healthz() -> ApiResponse:
    """Liveness (does not touch Redis)

    Deliberately ignores Redis, so a Redis outage makes replicas unready, not restarted.
    """
    return ApiResponse(200, {"status": "ok"})


@bp.get("/readyz")
@operation((200, Health, "Ready"), problems=(503,), auth=False)
def readyz() -> ApiResponse:
    """Readiness (Redis answers, with maxmemory-policy noeviction)

    503 when Redis does not answer, or when its eviction policy could drop
    idempotency records or ledger entries.
    """
    reason = wallet_context().store.not_ready()
    if reason is not None:
        raise ProblemError(problem(503, "redis-unavailable", "Not ready", reason))
    return ApiResponse(200, {"status": "ready"})


@bp.get("/status")
@operation((200, Status, "Status"), auth=False)
def status() -> ApiResponse:
    """Service status for humans and dashboards"""
    ctx = wallet_context()
    redis_ok = ctx.store.ping()
    return ApiResponse(
        200,
        {
            "service": "wallet-api",
            "version": __version__,
            "status": "ok" if redis_ok else "degraded",
            "redis": "ok" if redis_ok else "unreachable",
            "replica": ctx.settings.replica_id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "uptime_seconds": round(time.monotonic() - ctx.started_at, 3),
        },
    )
